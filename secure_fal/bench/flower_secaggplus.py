"""Benchmark anchors: Flower's own SecAgg+ (``SecAggPlusWorkflow`` + ``secaggplus_mod``) and Flower's plain FedAvg
fit round (``AnchorSettings.plain``: the same clients, no secure aggregation: Flower's floor for one round) on our
workload.

``time_secaggplus(length, clients, dropout_rate)`` runs one SecAgg+ fit round of Flower among ``clients``
ClientApps, each contributing ``synthetic_input(seed, cid, 1, length, bound)`` as its single parameter
array (weight 1, so Flower returns the mean), with the first ``round(dropout_rate * clients)`` client ids
failing in the masked-vector stage (after sharing their keys, the case that needs reconstruction).
``secure-fal bench`` divides our masking protocol's numbers by these.

What is measured, in the ServerApp: ``seconds``, the wall time of the SecAgg+ fit workflow alone (its
four stages, from the setup message to the unmasked aggregate; after an untimed warm-up round trip to
every node, no app start-up, no evaluation), and the
bytes of every Flower Message that workflow sent and received (``flower.carrier.envelope.flower_bytes``: metadata and
records as Flower serializes them, before HTTP framing). The fit instructions carry a one-value
placeholder model, so no model broadcast is counted: only what SecAgg+ itself moves. The workflow's Grid is wrapped so that it
waits for replies by polling every 0.1 s, as our transport does, instead of Flower's 3 s in the
deployment engine: both sides then pay the same waiting, and the protocol code is Flower's unchanged.

Parameters follow our masking defaults for a like-for-like comparison: complete graph (``num_shares``
= 1.0, i.e. every client), threshold t = floor(2n/3) + 1, clipping range = ``bound``.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.constant import MessageTypeLegacy
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.default_workflows import default_fit_workflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.serverapp import Grid, ServerApp

from ..flower.app_bundle import write_app_dir
from ..flower.carrier.envelope import flower_bytes
from ..flower.carrier.exchange import exchange
from ..flower.carrier.node_config import client_id_of
from ..flower.carrier.run_config import settings_kwargs, to_run_config, write_json
from ..flower.secure_sum.synthetic import synthetic_input

ANCHOR_APPS = ("secure_fal.bench.flower_secaggplus:server_app", "secure_fal.bench.flower_secaggplus:client_app")


@dataclass(frozen=True)
class AnchorSettings:
    """One anchor measurement.

    Attributes:
        length: values per client vector L.
        clients: number of clients n (ids 0..n-1).
        dropout_rate: fraction of clients that fail in the masked-vector stage (rounded to a count).
        seed: seed of the synthetic inputs.
        bound: inputs lie in [-bound, bound); also Flower's clipping range.
        threshold: shares needed to reconstruct a secret; 0 means floor(2n/3) + 1.
        timeout: seconds the workflow waits for the answers of each stage.
        result_file: where the ServerApp writes its ``AnchorResult`` as JSON ('' = nowhere).
        plain: True: Flower's plain FedAvg fit round (one exchange, inputs in the clear), no SecAgg+.
    """

    length: int = 1000
    clients: int = 10
    dropout_rate: float = 0.0
    seed: int = 0
    bound: float = 1.0
    threshold: int = 0
    timeout: float = 120.0
    result_file: str = ""
    plain: bool = False

    @property
    def dropped(self) -> tuple[int, ...]:
        """Ids of the clients that drop out: the first round(dropout_rate * clients)."""
        return tuple(range(round(self.dropout_rate * self.clients)))

    @property
    def reconstruction_threshold(self) -> int:
        return self.threshold or (2 * self.clients) // 3 + 1

    def check(self) -> None:
        """ValueError unless the survivors can reach the threshold and the sizes make sense."""
        if self.clients < 3 or self.length < 1:
            raise ValueError(f"need clients >= 3 and length >= 1, got {self.clients}, {self.length}")
        if not 0 <= self.dropout_rate < 1 or (self.plain and self.dropout_rate):
            raise ValueError(f"dropout_rate must be in [0, 1) (0 for a plain round), got {self.dropout_rate}")
        survivors = self.clients - len(self.dropped)
        if survivors < self.reconstruction_threshold:
            raise ValueError(f"{survivors} survivors cannot reach the threshold t={self.reconstruction_threshold}")

    def to_run_config(self) -> dict[str, bool | int | float | str]:
        return to_run_config(self)

    @classmethod
    def from_run_config(cls, config: Mapping[str, object]) -> AnchorSettings:
        return cls(**settings_kwargs(cls, config))


@dataclass
class AnchorResult:
    """One timing of Flower's SecAgg+.

    Attributes:
        seconds: wall seconds of the fit workflow in the ServerApp (SecAgg+: 4 stages; plain: 1 exchange).
        bytes_down: bytes of the Flower Messages the workflow sent (all clients together).
        bytes_up: bytes of the replies it received.
        length, clients: workload size.
        dropped: ids of the clients that failed in the masked-vector stage.
        max_abs_error: max |Flower's aggregate - exact mean of the survivors' inputs| (Flower quantizes
            to 2^22 levels over [-bound, bound]); a sanity check that the round really aggregated.
        engine: 'simulation' or 'deployment'.
        wall_seconds: wall time of the whole call, start-up of the engine and apps included.
        protocol: 'flower-secaggplus' or 'flower-plain'.
    """

    seconds: float
    bytes_down: int
    bytes_up: int
    length: int
    clients: int
    dropped: tuple[int, ...]
    max_abs_error: float
    engine: str = ""
    wall_seconds: float = 0.0
    protocol: str = "flower-secaggplus"

    @property
    def total_bytes(self) -> int:
        return self.bytes_down + self.bytes_up


class MeteredGrid(Grid):
    """A Grid that forwards to another, counting the bytes of every message pushed and pulled, and
    waiting for replies with ``flower.carrier.exchange.exchange`` (polling every ``poll_s`` seconds)."""

    def __init__(self, grid: Grid, poll_s: float = 0.1) -> None:
        self.grid = grid
        self.poll_s = poll_s
        self.bytes_down = 0
        self.bytes_up = 0

    def set_run(self, run) -> None:  # noqa: ANN001 (flwr's Run)
        self.grid.set_run(run)

    @property
    def run(self):  # noqa: ANN201
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self.bytes_down += sum(flower_bytes(m) for m in messages)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self.bytes_up += sum(flower_bytes(m) for m in replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return exchange(self, list(messages), math.inf if timeout is None else timeout, self.poll_s)


def make_anchor_server_app(settings: AnchorSettings | None = None, sink: list | None = None) -> ServerApp:
    """The anchor's ServerApp: one FedAvg round whose fit is Flower's SecAgg+ workflow (or, with ``plain``, Flower's
    default fit), timed.

    Settings come from the run config unless given; the AnchorResult is appended to ``sink`` (when
    given) and written to ``settings.result_file`` (when set).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        s = settings or AnchorSettings.from_run_config(context.run_config)
        s.check()
        n = s.clients
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
                          initial_parameters=ndarrays_to_parameters([np.zeros(1)]))
        secagg = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=s.reconstruction_threshold,
                                    clipping_range=s.bound, max_weight=1.0, timeout=s.timeout)
        measured: dict[str, float] = {}

        def timed_fit(grid: Grid, ctx: Context) -> None:
            # untimed warm-up round trip (in the simulation engine it starts the Ray workers), as our
            # ServerApp's hello exchange is before its first round
            warm_up = compat.getpropertiesins_to_recorddict(GetPropertiesIns({}))
            exchange(grid, [Message(warm_up, nid, MessageTypeLegacy.GET_PROPERTIES, group_id="warm-up")
                            for nid in grid.get_node_ids()], s.timeout)
            metered = MeteredGrid(grid)
            t0 = time.perf_counter()
            (default_fit_workflow if s.plain else secagg)(metered, ctx)
            measured.update(seconds=time.perf_counter() - t0, down=metered.bytes_down, up=metered.bytes_up)

        legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
        DefaultWorkflow(fit_workflow=timed_fit)(grid, legacy)
        params = compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        aggregate = parameters_to_ndarrays(params)[0]
        survivors = [c for c in range(n) if c not in s.dropped]
        exact = np.mean([synthetic_input(s.seed, c, 1, s.length, s.bound) for c in survivors], axis=0)
        result = AnchorResult(measured["seconds"], int(measured["down"]), int(measured["up"]), s.length, n,
                              s.dropped, float(np.max(np.abs(aggregate - exact))),
                              protocol="flower-plain" if s.plain else "flower-secaggplus")
        if sink is not None:
            sink.append(result)
        if s.result_file:
            write_json(s.result_file, asdict(result))

    return app


DROPOUT_ERROR_CODE = 0  # Flower's ErrorCode.UNKNOWN


class _SyntheticClient(NumPyClient):
    """Contributes its synthetic vector as the only parameter array, with weight 1."""

    def __init__(self, cid: int, settings: AnchorSettings) -> None:
        self.cid = cid
        self.settings = settings

    def fit(self, parameters, config):  # noqa: ANN001, ANN201
        s = self.settings
        return [synthetic_input(s.seed, self.cid, 1, s.length, s.bound)], 1, {}


def _settings_of(settings: AnchorSettings | None, context: Context) -> AnchorSettings:
    return settings or AnchorSettings.from_run_config(context.run_config)


def make_anchor_client_app(settings: AnchorSettings | None = None) -> ClientApp:
    """The anchor's ClientApp: a NumPyClient behind Flower's ``secaggplus_mod``, behind a mod that makes
    the clients of the dropout plan answer the masked-vector stage with an error (what the workflow
    counts as a dropout) instead of their masked vector; raising would also restart the simulation
    engine's worker, which would be timed as if it were SecAgg+'s cost. In a plain run (``plain``) the SecAgg+
    mod is skipped."""

    def client_fn(context: Context):  # noqa: ANN202
        return _SyntheticClient(client_id_of(context), _settings_of(settings, context)).to_client()

    def dropout_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        cid = client_id_of(context)
        if (msg.metadata.message_type == MessageType.TRAIN and cid in _settings_of(settings, context).dropped
                and msg.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS):
            return Message(Error(DROPOUT_ERROR_CODE, f"client {cid} drops out (anchor dropout plan)"), reply_to=msg)
        return call_next(msg, context)

    def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if _settings_of(settings, context).plain:
            return call_next(msg, context)
        return secaggplus_mod(msg, context, call_next)

    return ClientApp(client_fn=client_fn, mods=[dropout_mod, secagg_mod])


server_app = make_anchor_server_app()
client_app = make_anchor_client_app()


def time_secaggplus(length: int, clients: int, dropout_rate: float = 0.0, *, engine: str = "simulation",
                    seed: int = 0, bound: float = 1.0, timeout: float = 120.0,
                    workdir: str | Path | None = None, run_timeout: float = 600.0) -> AnchorResult:
    """Time one round of Flower's SecAgg+ on ``clients`` x ``length`` values with the given dropout rate.

    Args:
        engine: 'simulation' (Flower's simulation engine: ClientApps in Ray workers, one process) or
            'deployment' (a SuperLink and ``clients`` SuperNodes on 127.0.0.1, ``loopback``).
        timeout: seconds the workflow waits for each stage's answers.
        workdir: deployment only: where logs go (a temporary directory by default).
        run_timeout: deployment only: seconds before the run is abandoned (TimeoutExpired).
    """
    t0 = time.perf_counter()
    if engine == "simulation":
        from flwr.simulation import run_simulation

        from ..flower.simulation import SIMULATION_BACKEND

        settings = AnchorSettings(length, clients, dropout_rate, seed, bound, timeout=timeout)
        settings.check()
        sink: list[AnchorResult] = []
        run_simulation(make_anchor_server_app(settings, sink), make_anchor_client_app(settings),
                       num_supernodes=clients, backend_config=SIMULATION_BACKEND)
        if not sink:
            raise RuntimeError("the simulated SecAgg+ round produced no result (see Flower's log above)")
        result = sink[0]
    elif engine == "deployment":
        from ..flower.loopback import LoopbackFederation

        work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="secaggplus-anchor-"))
        result_file = work / "anchor-result.json"
        settings = AnchorSettings(length, clients, dropout_rate, seed, bound, timeout=timeout,
                                  result_file=str(result_file))
        settings.check()
        app_dir = write_app_dir(work / "anchor-app", AnchorSettings().to_run_config(), name="secure-fal-secaggplus-anchor",
                                what="Flower SecAgg+ timed on synthetic vectors", apps=ANCHOR_APPS)
        with LoopbackFederation(work, [{"client-id": c} for c in range(clients)]) as fed:
            fed.run_app(app_dir, settings.to_run_config(), timeout=run_timeout)
        if not result_file.exists():
            raise RuntimeError(f"the SecAgg+ round produced no result; logs in {work}")
        raw = json.loads(result_file.read_text())
        result = AnchorResult(**{**raw, "dropped": tuple(raw["dropped"])})
    else:
        raise ValueError(f"engine must be 'simulation' or 'deployment', got {engine!r}")
    result.engine = engine
    result.wall_seconds = time.perf_counter() - t0
    return result
