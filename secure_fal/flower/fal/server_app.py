"""The FAL ServerApp: a FAL experiment (FedAvg, then selection, per cycle) driven over Flower.

Run config (``flwr run APP_DIR CONN --run-config ...``; defaults in ``FalSettings``): ``experiment`` (JSON of
``ExperimentConfig.to_dict()``; a federated strategy: s-al, f-al, fal-local, fal-global, fairfal, or the FairFAL
paper's baselines logo, kafal, ifal; protocol plaintext, masking or ckks), ``timeout`` (s per exchange), ``min-nodes``, ``wait-nodes`` (s), ``result-file``.

Per cycle c, as ``run_experiment`` does in-process (same seeds: ``derive_seed(seed, "init" | "fedavg" |
"secagg", c)``, ``client_seed``), within one secure-aggregation session per cycle (a fresh random session id,
as ``Aggregator``'s; CKKS: its keys are distributed first, in band), whose
secure sums are numbered 1, 2, ... in the order the in-process strategy calls ``Aggregator.sum``:

1. a fresh global model (seed ``init``); per FedAvg round r a secure sum of length L + 1 whose opening carries
   the global model and the weight total T (the smallest power of two >= the train-set size); each client trains
   locally and its input is [n_k * delta / T, n_k / T] (``secagg/weighted.py``); the server sets
   global += sum(n_k delta_k / T) / sum(n_k / T) over the contributors (under ``[privacy]``: the input is delta_k,
   which the node clips and noises, and global += the projected noised mean, as in process; protocols/dp.md,
   "Over Flower");
2. the server evaluates the global model on the test set;
3. except in the last cycle, selection (protocols/flower.md, "FAL experiments over Flower"):
   - s-al, f-al, fal-local: every client selects alone (with its local-only, the global, or the fine-tuned
     global model); logo, kafal, ifal: every client selects alone by the baseline's rule, with the global model
     and its local-only model (logo) or the model it trained itself in the cycle's last FedAvg round (kafal,
     ifal; kept in its node state);
   - fairfal: at the first query one secure sum of [gamma_k, 1] (gamma_bar, then kept), then every client
     chooses its query model and selects;
   - fal-global: every client keeps its uncertain candidates; secure federated k-means (per-cluster counts,
     sums, squares) gives public centroids; with quota each client picks its share near them, without
     quota the secure ownership bisection decides who labels each centroid's closest candidate.
   Clients answer only how many samples they labeled.

What the server knows of the data: the dataset's test set and train-set size (public), never a pool. So the
per-client budget is the even share of ``split_budget`` (a client with fewer unlabeled samples labels what it
has; the excess is not handed to others, which the in-process split does), and the FedAvg weight bound and weight
total are the smallest power of two >= the train-set size (the in-process run has the same weight total and bounds
a weight by its largest labeled set; the weight bound only sizes the inputs' check, the sum is the same).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.serverapp import Grid, ServerApp

from ...data import load_dataset, long_tail_indices
from ...experiment.config import ExperimentConfig
from ...experiment.privacy import build_privacy, privacy_summary
from ...experiment.setup import build_trainer, cycle_budget, split_budget
from ...federated.fedavg import UPDATE_STATISTIC, StateVector, valid_running_vars
from ...federated.ownership import owner_thresholds, ownership_statistic
from ...secagg.api import make_protocol
from ...secagg.encoding import FixedPoint
from ...secagg.errors import DropoutError, MessageError, SecAggError
from ...secagg.machine import RoundSpec
from ...secagg.privacy import Statistic
from ...secagg.privacy.ledger import selected_counts_entry, sum_entry
from ...secagg.privacy.release import noised_mean, open_release
from ...secagg.privacy.session import SERVER, dp_label
from ...secagg.weighted import weighted_bounds
from ...strategies import ClientPools, derive_seed
from ...strategies.fairfal import GAMMA_STATISTIC, mean_gamma
from ...strategies.fal_global import stage2_kmeans
from ..carrier.envelope import DP_KEY, ROUND_TYPE
from ..carrier.exchange import Channel, Patience, discover_clients, drive, grid_channel
from ..carrier.run_config import settings_kwargs, to_run_config, write_json
from ..carrier.server_round import FlowerRound, ServerRound, WireCosts
from ..carrier.session_keys import SETUP_TYPE, ServerSetup, setup_group
from .client_app import SELECT_RECORD, SELECT_TYPE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FalSettings:
    """Parameters of one FAL run over Flower.

    Attributes:
        experiment: JSON of ``ExperimentConfig.to_dict()`` (the clients read the same run config key).
        timeout: floor (s) of the wait for the answers of each exchange (default 30; ``carrier.exchange.Patience``).
        min_nodes: nodes that must answer the hello (default 2).
        wait_nodes: seconds to wait for ``min_nodes`` nodes to connect (default 60).
        result_file: where to write the run's record as JSON after every cycle ('' = nowhere).
    """

    experiment: str = "{}"
    timeout: float = 30.0
    min_nodes: int = 2
    wait_nodes: float = 60.0
    result_file: str = ""

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> FalSettings:
        return cls(**settings_kwargs(cls, config))

    def to_run_config(self) -> dict[str, int | float | str]:
        return to_run_config(self)


def public_data(config: ExperimentConfig) -> tuple[ClientPools, int]:
    """(test-set holder, train-set size N): what the server may know of the data. The holder carries the test
    set in place of the train set (for ``build_trainer``'s shapes) and no pools."""
    cfg = config.data
    data = load_dataset(cfg.dataset, root=cfg.root, download=cfg.download)
    n_train = len(data.y_train)
    if cfg.rho is not None:  # the seed build_pools uses for the long tail
        n_train = len(long_tail_indices(data.y_train, cfg.rho, seed=derive_seed(config.seed, "long-tail") % 2**32,
                                        num_classes=data.num_classes))
    return ClientPools(data.x_test, data.y_test, (), data.x_test, data.y_test, data.num_classes), n_train


FLOWER_STRATEGIES = ("s-al", "f-al", "fal-local", "fal-global", "fairfal", "logo", "kafal", "ifal")
"""Strategies that run over Flower: the federated ones (the bounds never aggregate across clients)."""


class CycleSession:
    """The secure-aggregation session of one cycle over a ``Channel``: secure sums numbered 1, 2, ...

    Args:
        server: the FalServer (channel, protocol name and options, fixed-point bits).
        cycle: the cycle index; the session id is fresh randomness, as the in-process ``Aggregator``'s.
        members: the clients reachable at the start. A protocol with session keys sets them up in band among the
            reachable clients before the first sum (CKKS: once; session-mode masking: again every R sums, as the
            in-process ``Aggregator`` does), and only the key holders take part in the sums.

    ``ledger`` lists what the server learned from each sum (``privacy.ledger.sum_entry``), as the in-process
    ``Aggregator.ledger``. Under differential privacy (``server.privacy``) every sum is a noised release made as
    ``Aggregator.sum`` makes it (``privacy.release``): charged before its opening, its public parameters sent in the
    workload (``DP_KEY``), each client's input clipped and noised on its node, the protocol's sum decoded here; the
    session's public name in the rotation and noise keys is the in-process one (``dp_label`` of the cycle's
    ``secagg`` seed).
    """

    def __init__(self, server: FalServer, cycle: int, members: tuple[int, ...]) -> None:
        self.server, self.cycle = server, cycle
        self.session = secrets.randbits(64)  # always fresh (protocols/masking.md §Round registry)
        self.label = dp_label(derive_seed(server.config.seed, "secagg", cycle))  # as the in-process Aggregator's
        self.round_id = 0
        self.records: list[dict] = []
        self.ledger: list[dict] = []
        self.protocol = make_protocol(server.config.secure.protocol, **server.config.secure.options)
        self.setups: list[dict] = []
        if self.protocol.setup_due(1):
            self._set_up(1, members)

    @property
    def setup(self) -> dict | None:
        """The cycle's first key setup (``SetupOutcome.to_dict``), None without session keys."""
        return self.setups[0] if self.setups else None

    def _set_up(self, first_round: int, members: tuple[int, ...]) -> None:
        secure = self.server.config.secure
        setup = ServerSetup(secure.protocol, secure.options, self.session, members, first_round)
        t0 = time.perf_counter()
        drive(self.server.channel, setup, message_type=SETUP_TYPE, group=f"{self.cycle}.{setup_group(first_round)}")
        outcome = setup.outcome(time.perf_counter() - t0)
        self.protocol = outcome.protocol
        self.setups.append(outcome.to_dict())

    def members(self, among: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The reachable clients (of ``among``, default all) that may take part in a sum."""
        up = self.server.online()
        out = self.protocol.round_clients(tuple(k for k in (among or self.server.clients) if k in up))
        if not out:
            raise DropoutError("no client is reachable", round_id=self.round_id + 1, field=f"cycle {self.cycle}")
        return out

    def sum(self, kind: str, length: int, bound: float, workload: Mapping[str, object], statistic: Statistic,
            members: tuple[int, ...] | None = None, sum_bound: float | None = None) -> FlowerRound:
        """One secure sum of ``kind`` ('fedavg' | 'gamma' | 'kmeans' | 'owners'), declared as ``statistic``, of
        vectors of ``length`` values within ``bound`` over ``members`` (default all reachable clients);
        ``workload`` goes to the clients' input source; ``sum_bound`` as ``FixedPoint.sum_bound``. Under
        differential privacy the total is the released noised sum. Appends a record to ``records`` (its length: the
        values the protocol summed) and an entry to ``ledger``."""
        round_id = self.round_id + 1
        privacy, secure = self.server.privacy, self.server.config.secure
        release = None
        if privacy is not None:
            release = open_release(privacy, statistic, length, self.protocol.NAME, self.label, round_id, bound)
            workload = {**workload, DP_KEY: release.to_json()}
            sum_bound = release.sum_bound
        shape = (length, bound, secure.frac_bits) if release is None else release.round_shape(secure.frac_bits)
        if self.protocol.setup_due(round_id):
            up = self.server.online()
            self._set_up(round_id, tuple(k for k in self.server.clients if k in up))
        members = self.members(members)
        self.round_id = round_id
        spec = RoundSpec(self.session, round_id, members, shape[0],
                         FixedPoint(shape[1], shape[2], len(members), sum_bound))
        state = ServerRound(self.protocol, secure.options, spec, {"kind": kind, "cycle": self.cycle, **workload})
        t0 = time.perf_counter()
        drive(self.server.channel, state, message_type=ROUND_TYPE, group=f"{self.cycle}.{self.round_id}")
        result = state.outcome(time.perf_counter() - t0)
        if release is not None:
            result = dataclasses.replace(result, total=release.server_total(
                result.total, result.contributors, privacy.noise_source(self.label, round_id, SERVER)))
        self.ledger.append(sum_entry(round_id=round_id, kind=statistic.kind, length=length,
                                     protocol=self.protocol.NAME, contributors=result.contributors,
                                     cal=release and release.calibration))
        self.records.append({"kind": kind, "round": self.round_id, "length": shape[0], "members": list(members),
                             "contributors": list(result.contributors), "seconds": result.seconds,
                             "protocol_bytes": result.report.total_bytes,
                             "unanswered": [list(u) for u in result.wire.unanswered],
                             "rejected": list(result.wire.rejected),
                             "exchange_seconds": list(result.wire.exchange_seconds)})
        return result


class FalServer:
    """The server side of a FAL experiment over a ``Channel`` (Flower's Grid, or a test's loop).

    Args:
        config: the experiment; strategy one of ``FLOWER_STRATEGIES``.
        clients: the client ids taking part (discovered), each 0 <= id < data.clients.
        channel: sends one batch of messages and returns the answers that came back in time.
        online: returns the client ids still reachable (asked before every sum and request).
    """

    def __init__(self, config: ExperimentConfig, clients: tuple[int, ...], channel: Channel,
                 online: Callable[[], set[int]] | None = None) -> None:
        if config.active.strategy not in FLOWER_STRATEGIES:
            raise ValueError(f"strategy {config.active.strategy!r} does not run over Flower (it never aggregates "
                             f"across clients); choose one of {', '.join(FLOWER_STRATEGIES)}")
        make_protocol(config.secure.protocol, **config.secure.options)  # fail early on a bad protocol
        bad = [c for c in clients if not 0 <= c < config.data.clients]
        if bad:
            raise MessageError(f"no such client in an experiment of {config.data.clients}", client=bad[0],
                               field="client-id")
        self.config, self.clients, self.channel = config, tuple(sorted(clients)), channel
        self.online = online or (lambda: set(self.clients))
        holder, self.n_train = public_data(config)
        self.x_test, self.y_test = holder.x_test, holder.y_test
        self.trainer = build_trainer(config, holder, self.n_train)
        self.budget = cycle_budget(config, self.n_train)
        self.share = dict(zip(self.clients, split_budget(self.budget, [self.budget] * len(self.clients))))
        self.weight_bound = float(2 ** math.ceil(math.log2(max(self.n_train, 1))))
        self.gamma_bar: float | None = None   # fairfal: set at the first query, then kept
        # the run's budget is planned (and a config over it refused) before any client is asked anything
        self.privacy = build_privacy(config, self.trainer, list(self.share.values()), self.x_test[:1])

    def fedavg(self, session: CycleSession, r: int, global_vec: np.ndarray) -> np.ndarray:
        """FedAvg round r (0-based): the new global vector (under differential privacy: plus the noised mean of the
        clients' clipped deltas, ``noised_mean``, as ``Aggregator.weighted_mean``)."""
        fed = self.trainer.fedavg
        workload = {"round": r, "global": global_vec.astype(np.float64).tobytes()}
        if self.privacy is not None:
            result = session.sum("fedavg", len(global_vec), fed.update_bound, workload, UPDATE_STATISTIC)
            return global_vec + noised_mean(result.total, len(result.contributors),
                                            self.privacy.clip_for(UPDATE_STATISTIC))
        bound, sum_bound = weighted_bounds(fed.update_bound, self.weight_bound, fed.weight_total, len(self.clients),
                                           self.config.secure.frac_bits)
        result = session.sum("fedavg", len(global_vec) + 1, bound, {**workload, "weight-total": fed.weight_total},
                             UPDATE_STATISTIC, sum_bound=sum_bound)
        weight = float(result.total[-1])
        if weight <= 0:
            raise DropoutError("total weight of the contributors is 0", round_id=session.round_id,
                               field=f"cycle {session.cycle}")
        return global_vec + result.total[:-1] / weight

    def request(self, c: int, step: str, payload: Mapping[str, object],
                members: tuple[int, ...] | None = None) -> dict:
        """Send a selection request (``step``: 'candidates' | 'select') with ``payload`` to every reachable
        client; JSON-ready record {"selected" or "acknowledged", "failed"} of the answers."""
        up = self.online()
        members = tuple(k for k in (members or self.clients) if k in up)
        requests = {k: RecordDict({SELECT_RECORD: ConfigRecord({"cycle": c, "step": step, "budget": self.share[k],
                                                                **payload})}) for k in members}
        answers = self.channel(SELECT_TYPE, f"{c}.{step}", requests)
        done, failed = {}, {}
        for k in members:
            answer = answers.get(k)
            record = None if answer is None or isinstance(answer, str) else answer.config_records.get(SELECT_RECORD)
            if record is None or record.get("cycle") != c or not isinstance(record.get("selected"), int):
                failed[str(k)] = answer if isinstance(answer, str) else "no acknowledgement"
                log.warning("cycle %d: client %d did not acknowledge %r: %s", c, k, step, failed[str(k)])
            else:
                done[str(k)] = record["selected"]
        return {"selected" if step == "select" else "acknowledged": done, "failed": failed}

    def select(self, session: CycleSession, global_raw: bytes) -> dict:
        """The selection of the cycle, as the strategy does it; JSON-ready record."""
        c, strategy = session.cycle, self.config.active.strategy
        details: dict = {}
        payload: dict[str, object] = {"global": global_raw}
        if strategy == "fairfal":
            if self.gamma_bar is None:
                self.gamma_bar = mean_gamma(session.sum("gamma", 2, 1.0, {"global": global_raw}, GAMMA_STATISTIC).total)
            payload["gamma-bar"] = self.gamma_bar
            details["gamma_bar"] = self.gamma_bar
        elif strategy == "fal-global":
            payload, details = self._fal_global(session, global_raw)
        record = self.request(c, "select", payload)
        return {"budgets": [self.share[k] for k in self.clients], **record, "sums": session.records[
            self.config.training.rounds:], "details": details}

    def _fal_global(self, session: CycleSession, global_raw: bytes) -> tuple[dict, dict]:
        """Candidates on the clients, secure k-means, (no quota:) secure ownership; the final request's payload
        and the details."""
        c, active = session.cycle, self.config.active
        prepared = self.request(c, "candidates", {"global": global_raw})
        kmeans = stage2_kmeans(list(self.share.values()), active.beta)

        def stats_sum(centres: np.ndarray) -> np.ndarray:
            m, d = centres.shape
            return session.sum("kmeans", m + 2 * m * d, kmeans.bound,
                               {"centres": centres.astype(np.float64).tobytes(), "m": m}, kmeans.statistic).total

        fit = kmeans.fit_sums(stats_sum, self.embedding_dim)
        centroids = fit.centroids.astype(np.float64).tobytes()
        payload: dict[str, object] = {"centroids": centroids, "m": len(fit.centroids)}
        details = {"kmeans_rounds": fit.rounds, "kmeans_iterations": fit.iterations,
                   "kmeans_converged": fit.converged, "candidates_failed": prepared["failed"]}
        if not active.quota:
            def count_under(members, thresholds, mask):
                result = session.sum("owners", len(thresholds), 1.0, {
                    "centroids": centroids, "m": len(thresholds), "owners-members": list(members),
                    "thresholds": thresholds.astype(np.int64).tobytes(), "active": mask.astype(np.uint8).tobytes()},
                    ownership_statistic(len(thresholds)), members=session.members(members))
                return result.total, result.contributors

            owner_threshold, members = owner_thresholds(self.clients, len(fit.centroids), count_under)
            payload.update({"owner-threshold": owner_threshold.astype(np.int64).tobytes(),
                            "owners-members": list(members)})
            details["ownership_rounds"] = sum(1 for r in session.records if r["kind"] == "owners")
        return payload, details

    @functools.cached_property
    def embedding_dim(self) -> int:
        """Dimension of the model's embeddings (the k-means points), from one test input."""
        model = self.trainer.fresh_model(0)
        with torch.no_grad():
            return int(model.embed(self.x_test[:1].to(self.trainer.device)).shape[1])

    def run(self, on_cycle: Callable[[dict], None] | None = None) -> list[dict]:
        """Every cycle of the experiment; returns (and passes to ``on_cycle``) one record per cycle:
        cycle, accuracy, rounds (per FedAvg round: members, contributors, ...), selection, setup (CKKS),
        privacy_ledger (the cycle's sums, then the selected counts the server received in the clear, as in the
        in-process record), seconds."""
        records = []
        for c in range(self.config.active.cycles):
            t0 = time.perf_counter()
            up = self.online()
            session = CycleSession(self, c, tuple(k for k in self.clients if k in up))
            model = self.trainer.fresh_model(derive_seed(self.config.seed, "init", c))
            layout = StateVector(model)
            global_vec = layout.get(model)
            for r in range(self.config.training.rounds):
                layout.set(model, self.fedavg(session, r, global_vec))
                if self.privacy is not None:
                    valid_running_vars(model)
                global_vec = layout.get(model)
            accuracy = self.trainer.accuracy(model, self.x_test, self.y_test)
            record: dict = {"cycle": c, "accuracy": accuracy, "rounds": list(session.records)}
            if session.setups:
                record["setup"], record["setups"] = session.setup, session.setups
            if c < self.config.active.cycles - 1:
                record["selection"] = self.select(session, global_vec.astype(np.float64).tobytes())
            ledger = [{"cycle": c, **entry} for entry in session.ledger]
            if "selection" in record:
                selected = record["selection"]["selected"]
                ledger.append({"cycle": c, **selected_counts_entry([selected.get(str(k)) for k in self.clients])})
            record["privacy_ledger"] = ledger
            record["seconds"] = time.perf_counter() - t0
            log.info("cycle %d: accuracy %.4f, %.1f s", c, accuracy, record["seconds"])
            records.append(record)
            if on_cycle is not None:
                on_cycle(record)
        return records


def make_fal_server_app(settings: FalSettings | None = None, record: dict | None = None) -> ServerApp:
    """A ServerApp running ``FalServer`` over the Grid; settings from the run config unless given.

    The record {"settings", "clients", "cycles": [...], "wire": {"down", "up"} (Flower bytes), "started" (Unix time
    the ServerApp began), "seconds", "privacy_ledger" (every cycle's entries in order) and "privacy"
    (``experiment.privacy.privacy_summary``: the settings and epsilon spent), as in results.json}, plus
    "error" if the run fails (then re-raised), is kept in ``record`` (when given: filled in place, for callers
    in the same process, e.g. the simulation engine) and written to ``result_file`` after every cycle.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings or FalSettings.from_run_config(context.run_config)
        t0 = time.perf_counter()
        out = record if record is not None else {}
        out.update(settings=asdict(s), cycles=[], wire={"down": 0, "up": 0}, started=time.time())
        wire = WireCosts()

        def save() -> None:
            out["wire"] = {"down": sum(wire.bytes_down.values()), "up": sum(wire.bytes_up.values())}
            out["seconds"] = time.perf_counter() - t0
            out["privacy_ledger"] = [e for c in out["cycles"] for e in c["privacy_ledger"]]
            if server is not None:
                out["privacy"] = privacy_summary(server.config, server.privacy)
            if s.result_file:
                write_json(s.result_file, out)

        def on_cycle(record: dict) -> None:
            out["cycles"].append(record)
            save()

        server = None
        try:
            config = ExperimentConfig.from_dict(json.loads(s.experiment))
            patience = Patience(s.timeout)
            nodes = discover_clients(grid, min_nodes=s.min_nodes, wait_nodes=s.wait_nodes, timeout=patience)
            out["clients"] = sorted(nodes)
            channel = grid_channel(grid, nodes, timeout=patience, wire=wire, reject=lambda line: log.warning("%s", line))
            server = FalServer(config, tuple(nodes), channel,
                               lambda: {c for c, n in nodes.items() if n in set(grid.get_node_ids())})
            server.run(on_cycle)
            save()
        except (SecAggError, ValueError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
            save()
            raise

    return app


app = make_fal_server_app()


def fal_run_config(config: ExperimentConfig, **settings: object) -> dict[str, int | float | str]:
    """The run config of a FAL run: ``FalSettings(experiment=config JSON, **settings)``; the clients read the
    same ``experiment`` key."""
    return FalSettings(experiment=json.dumps(config.to_dict()), **settings).to_run_config()

