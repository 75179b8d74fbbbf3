"""The FAL ServerApp: an F-AL experiment (FedAvg, then local selection, per cycle) driven over Flower.

Run config (``flwr run APP_DIR CONN --run-config ...``; defaults in ``FalSettings``): ``experiment`` (JSON of
``ExperimentConfig.to_dict()``; strategy ``f-al``, protocol ``masking`` or ``plaintext``), ``timeout`` (s per
exchange), ``min-nodes``, ``wait-nodes`` (s), ``result-file``.

Per cycle c, as ``run_experiment`` does in-process (same seeds: ``derive_seed(seed, "init" | "fedavg" |
"secagg", c)``, ``client_seed``):

1. a fresh global model (seed ``init``); per FedAvg round r the server opens a secure sum of length L + 1
   whose opening carries the global model; each client trains locally and its input is [n_k * delta, n_k];
   the server sets global += sum(n_k delta_k) / sum(n_k) over the contributors. The session id of cycle c is
   that of ``Aggregator(seed=derive_seed(seed, "secagg", c))`` and rounds are numbered 1, 2, ...;
2. the server evaluates the global model on the test set;
3. except in the last cycle, it sends every client the global model and its budget share; clients select
   and label locally and acknowledge.

What the server knows of the data: the dataset's test set and train-set size (public), never a pool. So the
per-client budget is the even share of ``split_budget`` (a client with fewer unlabeled samples labels what it
has; the excess is not handed to others, which the in-process split does) and the FedAvg weight bound is the
smallest power of two >= the train-set size (the in-process run uses the largest labeled set; the bound only
sizes the ring, the sum is the same).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from ..data import load_dataset, long_tail_indices
from ..experiment.config import ExperimentConfig
from ..experiment.setup import build_trainer, cycle_budget, split_budget
from ..federated.fedavg import StateVector
from ..secagg.api import make_protocol
from ..secagg.encoding import FixedPoint
from ..secagg.errors import DropoutError, MessageError, SecAggError
from ..secagg.machine import RoundSpec
from ..strategies import ClientPools, derive_seed
from .fal_client import SELECT_RECORD, SELECT_TYPE
from .server_app import discover_clients, write_json
from .run_config import settings_kwargs, to_run_config
from .transport import ROUND_TYPE, TTL_SLACK_S, ServerRound, check_session_free, exchange, flower_bytes

log = logging.getLogger(__name__)

# (message type, group id, client id -> content) -> client id -> reply content, or an error text
Channel = Callable[[str, str, dict[int, RecordDict]], dict[int, RecordDict | str]]


@dataclass(frozen=True)
class FalSettings:
    """Parameters of one FAL run over Flower.

    Attributes:
        experiment: JSON of ``ExperimentConfig.to_dict()`` (the clients read the same run config key).
        timeout: seconds to wait for the answers of each exchange (default 30).
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


class FalServer:
    """The server side of an F-AL experiment over a ``Channel`` (Flower's Grid, or a test's loop).

    Args:
        config: the experiment; strategy must be ``f-al``.
        clients: the client ids taking part (discovered), each 0 <= id < data.clients.
        channel: sends one batch of messages and returns the answers that came back in time.
        online: returns the client ids still reachable (asked before every round and selection).
    """

    def __init__(self, config: ExperimentConfig, clients: tuple[int, ...], channel: Channel,
                 online: Callable[[], set[int]] | None = None) -> None:
        if config.active.strategy != "f-al":
            raise ValueError(f"the Flower FAL server runs strategy 'f-al', not {config.active.strategy!r}")
        self.protocol = make_protocol(config.secure.protocol, **config.secure.options)
        check_session_free(self.protocol)
        bad = [c for c in clients if not 0 <= c < config.data.clients]
        if bad:
            raise MessageError(f"no such client in an experiment of {config.data.clients}", client=bad[0],
                               field="client-id")
        self.config, self.clients, self.channel = config, tuple(sorted(clients)), channel
        self.online = online or (lambda: set(self.clients))
        holder, self.n_train = public_data(config)
        self.x_test, self.y_test = holder.x_test, holder.y_test
        self.trainer = build_trainer(config, holder)
        self.budget = cycle_budget(config, self.n_train)
        self.weight_bound = float(2 ** math.ceil(math.log2(max(self.n_train, 1))))

    def _members(self, c: int, r: int | None) -> tuple[int, ...]:
        up = self.online()
        members = tuple(k for k in self.clients if k in up)
        if not members:
            raise DropoutError("no client is reachable", round_id=None if r is None else r + 1,
                               field=f"cycle {c}")
        return members

    def secure_round(self, c: int, r: int, session: int, global_vec: np.ndarray) -> tuple[np.ndarray, dict]:
        """FedAvg round r (0-based) of cycle c: (new global vector, JSON-ready record of the round)."""
        members = self._members(c, r)
        fed = self.trainer.fedavg
        spec = RoundSpec(session, r + 1, members, len(global_vec) + 1,
                         FixedPoint(fed.update_bound * self.weight_bound, self.config.secure.frac_bits, len(members)))
        state = ServerRound(self.protocol, self.config.secure.options, spec,
                            {"cycle": c, "round": r, "global": global_vec.astype(np.float64).tobytes()})
        t0 = time.perf_counter()
        while batches := state.next_batches():
            group = f"{c}.{r + 1}.{len(state.wire.exchange_seconds)}"
            t_ex = time.perf_counter()
            state.take_answers(self.channel(ROUND_TYPE, group, batches))
            state.wire.exchange_seconds.append(time.perf_counter() - t_ex)
        result = state.outcome(time.perf_counter() - t0)
        weight = float(result.total[-1])
        if weight <= 0:
            raise DropoutError("total weight of the contributors is 0", round_id=r + 1, field=f"cycle {c}")
        record = {"round": r + 1, "members": list(members), "contributors": list(result.contributors),
                  "seconds": result.seconds, "protocol_bytes": result.report.total_bytes,
                  "unanswered": [list(u) for u in result.wire.unanswered], "rejected": list(result.wire.rejected),
                  "exchange_seconds": list(result.wire.exchange_seconds)}
        return global_vec + result.total[:-1] / weight, record

    def select(self, c: int, global_vec: np.ndarray) -> dict:
        """Ask every reachable client to select with the global model; JSON-ready record of the answers."""
        members = self._members(c, None)
        shares = split_budget(self.budget, [self.budget] * len(self.clients))  # even shares, no caps
        share = dict(zip(self.clients, shares))
        raw = global_vec.astype(np.float64).tobytes()
        requests = {k: RecordDict({SELECT_RECORD: ConfigRecord({"cycle": c, "budget": share[k], "global": raw})})
                    for k in members}
        answers = self.channel(SELECT_TYPE, f"{c}.select", requests)
        selected, failed = {}, {}
        for k in members:
            answer = answers.get(k)
            record = None if answer is None or isinstance(answer, str) else answer.config_records.get(SELECT_RECORD)
            if record is None or record.get("cycle") != c or not isinstance(record.get("selected"), int):
                failed[str(k)] = answer if isinstance(answer, str) else "no acknowledgement"
                log.warning("cycle %d: client %d did not acknowledge the selection: %s", c, k, failed[str(k)])
            else:
                selected[str(k)] = record["selected"]
        return {"budgets": [share[k] for k in self.clients], "selected": selected, "failed": failed}

    def run(self, on_cycle: Callable[[dict], None] | None = None) -> list[dict]:
        """Every cycle of the experiment; returns (and passes to ``on_cycle``) one record per cycle:
        cycle, accuracy, rounds (per FedAvg round: members, contributors, ...), selection, seconds."""
        records = []
        for c in range(self.config.active.cycles):
            t0 = time.perf_counter()
            model = self.trainer.fresh_model(derive_seed(self.config.seed, "init", c))
            layout = StateVector(model)
            global_vec = layout.get(model)
            session = random.Random(derive_seed(self.config.seed, "secagg", c)).getrandbits(64)  # as Aggregator
            rounds = []
            for r in range(self.config.training.rounds):
                global_vec, round_record = self.secure_round(c, r, session, global_vec)
                layout.set(model, global_vec)
                global_vec = layout.get(model)
                rounds.append(round_record)
            accuracy = self.trainer.accuracy(model, self.x_test, self.y_test)
            record = {"cycle": c, "accuracy": accuracy, "rounds": rounds}
            if c < self.config.active.cycles - 1:
                record["selection"] = self.select(c, global_vec)
            record["seconds"] = time.perf_counter() - t0
            log.info("cycle %d: accuracy %.4f, %.1f s", c, accuracy, record["seconds"])
            records.append(record)
            if on_cycle is not None:
                on_cycle(record)
        return records


def grid_channel(grid: Grid, nodes: Mapping[int, int], timeout: float, wire: dict[str, int]) -> Channel:
    """A Channel over Flower: one Message per client to its node, replies awaited ``timeout`` s; adds the
    Flower bytes moved (``flower_bytes``) to wire["down"] / wire["up"]."""
    client_of = {node: cid for cid, node in nodes.items()}

    def send(message_type: str, group: str, batches: dict[int, RecordDict]) -> dict[int, RecordDict | str]:
        messages = [Message(content, nodes[cid], message_type, group_id=group, ttl=timeout + TTL_SLACK_S)
                    for cid, content in batches.items()]
        wire["down"] += sum(flower_bytes(m) for m in messages)
        answers: dict[int, RecordDict | str] = {}
        for reply in exchange(grid, messages, timeout):
            cid = client_of.get(reply.metadata.src_node_id)
            if cid is None:
                log.warning("reply from node %d, which is no client of this run", reply.metadata.src_node_id)
                continue
            wire["up"] += flower_bytes(reply)
            answers[cid] = (reply.error.reason or f"error code {reply.error.code}") if reply.has_error() \
                else reply.content
        return answers

    return send


def make_fal_server_app(settings: FalSettings | None = None) -> ServerApp:
    """A ServerApp running ``FalServer`` over the Grid; settings from the run config unless given.

    The record {"settings", "clients", "cycles": [...], "wire": {"down", "up"} (Flower bytes), "seconds"}, plus
    "error" if the run fails (then re-raised), is written to ``result_file`` after every cycle.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings or FalSettings.from_run_config(context.run_config)
        t0 = time.perf_counter()
        out: dict = {"settings": asdict(s), "cycles": [], "wire": {"down": 0, "up": 0}}

        def save() -> None:
            out["seconds"] = time.perf_counter() - t0
            if s.result_file:
                write_json(s.result_file, out)

        def on_cycle(record: dict) -> None:
            out["cycles"].append(record)
            save()

        try:
            config = ExperimentConfig.from_dict(json.loads(s.experiment))
            nodes = discover_clients(grid, min_nodes=s.min_nodes, wait_nodes=s.wait_nodes, timeout=s.timeout)
            out["clients"] = sorted(nodes)
            server = FalServer(config, tuple(nodes), grid_channel(grid, nodes, s.timeout, out["wire"]),
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

