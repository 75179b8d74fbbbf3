"""The FAL ClientApp: one FAL client per SuperNode, its pool, labeled set and secrets kept on the node.

Each client derives its own pool from the experiment config (run config key ``experiment``, the JSON of
``ExperimentConfig.to_dict()``) and its client id, with the split code of the in-process runner
(``experiment.setup.build_pools``; the whole split is computed, only entry ``client id`` is used). Its
labeled set (train indices, in labeling order) lives in the node's ``Context.state``; it never leaves the
node, nor do labels, scores, embeddings or the strategy's per-client choices. The client runs the in-process
strategy's own per-client code (``LocalQueryStrategy.select_on_client``, ``FairFAL.client_gamma`` and
``select_on_client``, ``FALGlobal.candidates`` and ``Candidates``), so both give the same picks.

Messages it answers (protocols/flower.md, "FAL experiments over Flower"):

- ``query.secure_fal_hello``: its client id.
- ``query.secure_fal_setup``: the CKKS key distribution of a cycle's session (``session_keys``).
- ``query.secure_fal_round``: a batch of a secure sum. The workload of the opening names the ``kind`` of the
  client's input:
  - ``fedavg`` (``cycle``, ``round``, ``global``: the global model's floating-point state, float64 bytes):
    train locally from that model; input [n_k * delta, n_k] (delta = local - global), as ``train_federated``;
  - ``gamma`` (``cycle``, ``global``): [gamma_k, 1] (FairFAL);
  - ``kmeans`` (``cycle``, ``centres``: float64 (m, d) bytes, ``m``): its candidates' ``cluster_stats``;
  - ``owners`` (``cycle``, ``centroids``, ``m``, ``owners-members``, ``thresholds`` int64, ``active`` uint8):
    the bisection indicators of its ownership keys (``ownership.under_threshold``).
- ``query.secure_fal_select``: ``cycle``, ``step``, ``budget``, ``global`` and the strategy's public inputs.
  Step ``candidates`` (fal-global): keep the stage-1 candidates in the node state, answer ``selected`` = 0.
  Step ``select``: pick, label the picks (they join the labeled set) and answer only
  {"cycle": c, "selected": number of samples labeled}.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from ..experiment.config import ExperimentConfig
from ..experiment.setup import build_pools, build_strategy, build_trainer, initial_labeled
from ..federated import SGDConfig, train_local
from ..federated.fedavg import StateVector, client_seed
from ..federated.kmeans import cluster_stats
from ..federated.ownership import owned_items, ownership_keys, under_threshold
from ..secagg.errors import InputError, MessageError
from ..secagg.machine import RoundSpec
from ..strategies import Cycle, FairFAL, FALGlobal, LocalQueryStrategy, derive_seed
from ..strategies.fairfal import gamma_input
from ..strategies.fal_global import DISTANCE_BOUND, Candidates
from .client_app import DEFAULT_PROTOCOLS, client_id_of, policy_of
from .session_keys import SETUP_ACTION, client_setup_step
from .transport import HELLO_ACTION, ROUND_ACTION, NodePolicy, client_step, hello_content

SELECT_ACTION = "secure_fal_select"
SELECT_TYPE = f"query.{SELECT_ACTION}"
SELECT_RECORD = "secure_fal.select"
LABELED_RECORD = "secure_fal.labeled"
CANDIDATES_RECORD = "secure_fal.candidates"
EXPERIMENT_KEY = "experiment"


@functools.lru_cache(maxsize=2)
def _experiment(config_json: str):
    """(config, pools, trainer, strategy) of an experiment JSON; cached per process."""
    config = ExperimentConfig.from_dict(json.loads(config_json))
    pools = build_pools(config)
    trainer = build_trainer(config, pools)
    return config, pools, trainer, build_strategy(config, pools, trainer)


def experiment_json(run_config: Mapping[str, object]) -> str:
    """The experiment JSON of a run config; MessageError if missing."""
    raw = run_config.get(EXPERIMENT_KEY)
    if not isinstance(raw, str) or not raw:
        raise MessageError(f"run config has no {EXPERIMENT_KEY!r} (JSON of ExperimentConfig.to_dict())",
                           field=EXPERIMENT_KEY)
    return raw


def _array(raw: object, dtype: type, shape: tuple[int, ...], *, cid: int, field: str,
           round_id: int | None = None) -> np.ndarray:
    """A numpy array of ``dtype`` and ``shape`` from message bytes; MessageError naming the field if the size
    does not match."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if not isinstance(raw, bytes) or len(raw) != size:
        got = len(raw) if isinstance(raw, bytes) else type(raw).__name__
        raise MessageError(f"expected {size} bytes of {np.dtype(dtype).name} {shape}, got {got}", client=cid,
                           round_id=round_id, field=field)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _int(record: Mapping[str, object], key: str, *, cid: int, round_id: int | None = None, low: int = 0) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise MessageError(f"expected an int >= {low}, got {value!r}", client=cid, round_id=round_id, field=key)
    return value


class FalClient:
    """Client ``cid`` of the experiment, with ``state`` (the node's Context.state) holding its labeled set.

    Args:
        config_json: the experiment (JSON of ``ExperimentConfig.to_dict()``).
        cid: this client's id, 0 <= cid < data.clients.
        state: RecordDict kept on the node between messages.
    """

    def __init__(self, config_json: str, cid: int, state: RecordDict) -> None:
        self.config, self.pools, self.trainer, self.strategy = _experiment(config_json)
        if not 0 <= cid < self.pools.n_clients:
            raise InputError(f"no such client in an experiment of {self.pools.n_clients} clients", client=cid,
                             field="client-id")
        self.cid = cid
        self.state = state

    @property
    def labeled(self) -> np.ndarray:
        """int64 train indices labeled so far, in labeling order (the initial random draw until the first
        selection)."""
        record = self.state.config_records.get(LABELED_RECORD)
        if record is None:
            return initial_labeled(self.pools, self.config.active.initial_fraction, self.config.seed)[self.cid]
        return np.frombuffer(record["indices"], dtype=np.int64).copy()

    def _cycle(self, record: Mapping[str, object], round_id: int | None = None) -> Cycle:
        return Cycle(_int(record, "cycle", cid=self.cid, round_id=round_id), self.config.seed, None)

    def _global_model(self, cycle: int, raw: object, round_id: int | None = None):
        """(the cycle's model architecture holding the broadcast global state, its StateVector)."""
        model = self.trainer.fresh_model(derive_seed(self.config.seed, "init", cycle))
        layout = StateVector(model)
        layout.set(model, _array(raw, np.float64, (layout.length,), cid=self.cid, field="global", round_id=round_id))
        return model, layout

    def _use_global(self, cycle: Cycle, raw: object, round_id: int | None = None) -> None:
        self.strategy.use_global_model(cycle, self._global_model(cycle.index, raw, round_id)[0])

    def round_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """This client's input to a secure sum, by the workload's ``kind`` (see the module docstring)."""
        kind = workload.get("kind")
        inputs = {"fedavg": self.fedavg_input, "gamma": self.gamma_input, "kmeans": self.kmeans_input,
                  "owners": self.owners_input}
        if kind not in inputs:
            raise MessageError(f"unknown kind of input {kind!r}; expected one of {sorted(inputs)}", client=self.cid,
                               round_id=spec.round_id, field="workload.kind")
        vector = inputs[kind](spec, workload)
        if len(vector) != spec.length:
            raise MessageError(f"{kind} round of length {spec.length}, this client's input has {len(vector)}",
                               client=self.cid, round_id=spec.round_id, field="length")
        return vector

    def fedavg_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """Train from the broadcast global model; return [n_k * delta, n_k] (float64, (L + 1,))."""
        cycle = _int(workload, "cycle", cid=self.cid, round_id=spec.round_id)
        r = workload.get("round")
        if not isinstance(r, int) or not 0 <= r < self.config.training.rounds:
            raise MessageError(f"workload needs an int 'round' in [0, {self.config.training.rounds}), got {r!r}",
                               client=self.cid, round_id=spec.round_id, field="workload.round")
        model, layout = self._global_model(cycle, workload.get("global"), spec.round_id)
        global_vec = layout.get(model)  # as train_federated reads it: float64 of the model's own dtypes
        x, y = self.pools.labeled_data(self.labeled)
        fed = self.trainer.fedavg
        sgd = SGDConfig(fed.lr_at(r), fed.sgd.momentum, fed.sgd.weight_decay, fed.sgd.batch_size)
        train_local(model, x, y, epochs=fed.local_epochs, sgd=sgd, device=self.trainer.device,
                    seed=client_seed(derive_seed(self.config.seed, "fedavg", cycle), r, self.cid))
        delta = layout.get(model) - global_vec
        worst = int(np.argmax(np.abs(delta)))
        if not abs(delta[worst]) <= fed.update_bound:
            raise InputError(f"FedAvg round {r + 1}: update {delta[worst]!r} exceeds update_bound {fed.update_bound}",
                             client=self.cid, round_id=spec.round_id, field=layout.name_at(worst))
        n = float(len(y))
        return np.append(delta * n, n)

    def gamma_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """FairFAL: [gamma_k, 1] of this client under the broadcast global model."""
        strategy = self._strategy(FairFAL, spec.round_id)
        self._use_global(self._cycle(workload, spec.round_id), workload.get("global"), spec.round_id)
        return gamma_input(self.cid, strategy.client_gamma(self.labeled))

    def kmeans_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """FAL-Global: ``cluster_stats`` of the kept candidates for the broadcast centres."""
        candidates = self._candidates(workload, spec.round_id)
        centres = self._centres(workload, "centres", candidates, field="workload.centres", round_id=spec.round_id)
        points = candidates.points
        return cluster_stats(points, candidates.weights, torch.as_tensor(centres, device=points.device))

    def owners_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """FAL-Global without quota: 1 per centroid where this client's ownership key is under the threshold."""
        candidates = self._candidates(workload, spec.round_id)
        centroids = self._centres(workload, "centroids", candidates, field="centroids", round_id=spec.round_id)
        keys = self._ownership_keys(candidates, centroids, workload, spec.round_id)
        thresholds = _array(workload.get("thresholds"), np.int64, keys.shape, cid=self.cid,
                            field="workload.thresholds", round_id=spec.round_id)
        active = _array(workload.get("active"), np.uint8, keys.shape, cid=self.cid, field="workload.active",
                        round_id=spec.round_id).astype(bool)
        return under_threshold(keys, thresholds, active)

    def _centres(self, record: Mapping[str, object], key: str, candidates: Candidates, *, field: str,
                 round_id: int | None = None) -> np.ndarray:
        """The (m, d) float64 centres under ``key`` (m from the record's ``m``, d the candidates' dimension)."""
        m = _int(record, "m", cid=self.cid, round_id=round_id, low=1)
        return _array(record.get(key), np.float64, (m, candidates.points.shape[1]), cid=self.cid, field=field,
                      round_id=round_id)

    def _ownership_keys(self, candidates: Candidates, centroids: np.ndarray, record: Mapping[str, object],
                        round_id: int | None = None) -> np.ndarray:
        """This client's keys over the centroids, ranked among the record's ``owners-members`` (MessageError if
        it is not one of them)."""
        members = record.get("owners-members")
        if not isinstance(members, list) or members != sorted(set(members)) or self.cid not in members:
            raise MessageError(f"'owners-members' must be a sorted list of distinct ids holding {self.cid}, "
                               f"got {members!r}", client=self.cid, round_id=round_id, field="owners-members")
        return ownership_keys(candidates.closest(centroids), members.index(self.cid), len(members), DISTANCE_BOUND)

    def _strategy(self, cls: type, round_id: int | None = None):
        if not isinstance(self.strategy, cls):
            raise MessageError(f"this experiment runs {self.strategy.name!r}, not {cls.name!r}", client=self.cid,
                               round_id=round_id, field="workload.kind")
        return self.strategy

    def _candidates(self, record: Mapping[str, object], round_id: int | None = None) -> Candidates:
        """The candidates kept for the record's cycle; MessageError if this client has none for it."""
        cycle = _int(record, "cycle", cid=self.cid, round_id=round_id)
        kept = self.state.config_records.get(CANDIDATES_RECORD)
        if kept is None or kept["cycle"] != cycle:
            raise MessageError(f"no candidates kept for cycle {cycle} (step 'candidates' missed?)", client=self.cid,
                               round_id=round_id, field=CANDIDATES_RECORD)
        n, d = kept["shape"]
        device = self.trainer.device
        dtype = getattr(torch, kept["dtype"])
        points = torch.from_numpy(np.frombuffer(kept["points"], dtype=np.dtype(kept["dtype"])).reshape(n, d).copy())
        weights = torch.from_numpy(np.frombuffer(kept["weights"], dtype=np.dtype(kept["dtype"])).copy())
        return Candidates(np.frombuffer(kept["positions"], dtype=np.int64).copy(), points.to(device, dtype),
                          weights.to(device, dtype))

    def _keep_candidates(self, cycle: int, candidates: Candidates) -> None:
        points = candidates.points.detach().cpu()
        self.state.config_records[CANDIDATES_RECORD] = ConfigRecord({
            "cycle": cycle, "positions": candidates.positions.astype(np.int64).tobytes(),
            "points": points.numpy().tobytes(), "weights": candidates.weights.detach().cpu().numpy().tobytes(),
            "shape": list(points.shape), "dtype": str(points.dtype).removeprefix("torch.")})

    def select(self, content: RecordDict) -> RecordDict:
        """Answer a selection request (see the module docstring); reply {"cycle", "selected"}.

        A repeated ``select`` for a cycle already done is answered again without selecting twice.
        """
        record = content.config_records.get(SELECT_RECORD)
        if record is None:
            raise MessageError("selection request without its record", client=self.cid, field=SELECT_RECORD)
        cycle = self._cycle(record)
        budget, step = _int(record, "budget", cid=self.cid), record.get("step")
        labeled = self.labeled
        budget = min(budget, len(self.pools.pools[self.cid]) - len(labeled))
        if step == "candidates":
            strategy = self._strategy(FALGlobal)
            self._use_global(cycle, record.get("global"))
            self._keep_candidates(cycle.index, strategy.candidates(self.cid, labeled, budget))
            return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle.index, "selected": 0})})
        if step != "select":
            raise MessageError(f"unknown step {step!r}; expected 'candidates' or 'select'", client=self.cid,
                               field="step")
        done = self.state.config_records.get(LABELED_RECORD)
        if done is not None and done["cycle"] >= cycle.index:
            return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle.index, "selected": done["selected"]})})
        picks = self._picks(cycle, record, labeled, budget)
        labeled = np.concatenate([labeled, picks.astype(np.int64)])
        self.state.config_records[LABELED_RECORD] = ConfigRecord(
            {"indices": labeled.tobytes(), "cycle": cycle.index, "selected": int(len(picks))})
        self.state.config_records.pop(CANDIDATES_RECORD, None)
        return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle.index, "selected": int(len(picks))})})

    def _picks(self, cycle: Cycle, record: Mapping[str, object], labeled: np.ndarray, budget: int) -> np.ndarray:
        """This client's new train indices, chosen by the strategy's per-client code."""
        strategy = self.strategy
        if isinstance(strategy, FALGlobal):
            candidates = self._candidates(record)
            centroids = self._centres(record, "centroids", candidates, field="centroids")
            if strategy.quota:
                chosen = candidates.quota_choice(centroids, budget)
            elif self.cid in (record.get("owners-members") or []):
                owner_threshold = _array(record.get("owner-threshold"), np.int64, (len(centroids),), cid=self.cid,
                                         field="owner-threshold")
                keys = self._ownership_keys(candidates, centroids, record)
                chosen = candidates.owned_choice(centroids, owned_items(keys, owner_threshold))
            else:  # it dropped out of the ownership rounds: it owns nothing
                chosen = np.empty(0, dtype=np.int64)
            return self.pools.pools[self.cid][candidates.positions[chosen]]
        self._use_global(cycle, record.get("global"))
        if isinstance(strategy, FairFAL):
            gamma_bar = record.get("gamma-bar")
            if not isinstance(gamma_bar, float) or not 0 < gamma_bar <= 1:
                raise MessageError(f"expected a float gamma-bar in (0, 1], got {gamma_bar!r}", client=self.cid,
                                   field="gamma-bar")
            return strategy.select_on_client(cycle, self.cid, labeled, budget, gamma_bar)[0]
        if isinstance(strategy, LocalQueryStrategy):
            return strategy.select_on_client(cycle, self.cid, labeled, budget)
        raise MessageError(f"strategy {strategy.name!r} does not run over Flower", client=self.cid, field="strategy")


def handle(action: str, content: RecordDict, state: RecordDict, cid: int, config_json: str,
           policy: NodePolicy) -> RecordDict:
    """Answer one message of ``action`` (hello / setup / round / select) for client ``cid`` under the node's
    ``policy`` (``client_app.policy_of``); the sans-I/O core of the app."""
    if action == HELLO_ACTION:
        return hello_content(cid)
    if action == SETUP_ACTION:
        return client_setup_step(content, state, cid, policy)
    client = FalClient(config_json, cid, state)
    if action == ROUND_ACTION:
        return client_step(content, state, cid, lambda spec, c, workload: client.round_input(spec, workload), policy)
    if action == SELECT_ACTION:
        return client.select(content)
    raise MessageError(f"unknown action {action!r}", client=cid, field="message_type")


def make_fal_client_app(experiment: str | None = None, protocols: str = DEFAULT_PROTOCOLS) -> ClientApp:
    """A ClientApp answering hello, key distribution, secure-sum batches and selection requests (``handle``).

    Args:
        experiment: the experiment JSON used when the run config has none (the simulation engine, whose
            ``run_simulation`` passes no run config); default: the run config's ``experiment`` is required.
        protocols: protocols accepted where the node config sets no ``protocols`` (comma-separated).
    """
    app = ClientApp()

    def answer(action: str, message: Message, context: Context) -> Message:
        config_json = experiment if experiment is not None and EXPERIMENT_KEY not in context.run_config \
            else experiment_json(context.run_config)
        content = handle(action, message.content, context.state, client_id_of(context), config_json,
                         policy_of(context, protocols))
        return Message(content, reply_to=message)

    @app.query(HELLO_ACTION)
    def hello(message: Message, context: Context) -> Message:
        return answer(HELLO_ACTION, message, context)

    @app.query(SETUP_ACTION)
    def setup(message: Message, context: Context) -> Message:
        return answer(SETUP_ACTION, message, context)

    @app.query(ROUND_ACTION)
    def secure_round(message: Message, context: Context) -> Message:
        return answer(ROUND_ACTION, message, context)

    @app.query(SELECT_ACTION)
    def select(message: Message, context: Context) -> Message:
        return answer(SELECT_ACTION, message, context)

    return app


app = make_fal_client_app()
