"""The FAL ClientApp: one F-AL client per SuperNode, its pool, labeled set and secrets kept on the node.

Each client derives its own pool from the experiment config (run config key ``experiment``, the JSON of
``ExperimentConfig.to_dict()``) and its client id, with the split code of the in-process runner
(``experiment.setup.build_pools``; the whole split is computed, only entry ``client id`` is used). Its
labeled set (train indices, in labeling order) lives in the node's ``Context.state``; it never leaves the
node, nor do labels.

Messages it answers (protocols/flower.md, "FAL experiments over Flower"):

- ``query.secure_fal_hello``: its client id (phase 1).
- ``query.secure_fal_round``: a batch of a secure sum (phase 1's ``client_step``). At the opening of a
  FedAvg round the workload carries ``cycle``, ``round`` (0-based FedAvg round) and ``global`` (the global
  model's floating-point state, float64 bytes); the client then trains locally from that model and its
  input to the sum is [n_k * delta, n_k] (delta = local - global), exactly as ``train_federated`` computes it.
- ``query.secure_fal_select``: ``cycle``, ``budget`` and ``global``; the client runs the configured sampler on
  its pool with that model, labels the picks (they join its labeled set) and answers only
  {"cycle": c, "selected": number of samples labeled}.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from ..experiment.config import ExperimentConfig
from ..experiment.setup import build_pools, build_trainer, initial_labeled
from ..federated import SGDConfig, train_local
from ..federated.fedavg import StateVector, client_seed
from ..sampling import get_sampler, pool_view
from ..secagg.errors import InputError, MessageError
from ..secagg.machine import RoundSpec
from ..strategies import Cycle, derive_seed
from .client_app import client_id_of, policy_of
from .transport import HELLO_ACTION, ROUND_ACTION, client_step, hello_content

SELECT_ACTION = "secure_fal_select"
SELECT_TYPE = f"query.{SELECT_ACTION}"
SELECT_RECORD = "secure_fal.select"
LABELED_RECORD = "secure_fal.labeled"
EXPERIMENT_KEY = "experiment"


@functools.lru_cache(maxsize=2)
def _experiment(config_json: str):
    """(config, pools, trainer, sampler) of an experiment JSON; cached per process."""
    config = ExperimentConfig.from_dict(json.loads(config_json))
    pools = build_pools(config)
    trainer = build_trainer(config, pools)
    sampler = get_sampler(config.active.sampler_name, **config.active.sampler_options)
    return config, pools, trainer, sampler


def experiment_json(run_config: Mapping[str, object]) -> str:
    """The experiment JSON of a run config; MessageError if missing."""
    raw = run_config.get(EXPERIMENT_KEY)
    if not isinstance(raw, str) or not raw:
        raise MessageError(f"run config has no {EXPERIMENT_KEY!r} (JSON of ExperimentConfig.to_dict())",
                           field=EXPERIMENT_KEY)
    return raw


def _vector(raw: object, length: int, *, cid: int, field: str, round_id: int | None = None) -> np.ndarray:
    if not isinstance(raw, bytes) or len(raw) != 8 * length:
        size = len(raw) if isinstance(raw, bytes) else type(raw).__name__
        raise MessageError(f"expected {8 * length} bytes of float64, got {size}", client=cid, round_id=round_id,
                           field=field)
    return np.frombuffer(raw, dtype=np.float64).copy()


class FalClient:
    """Client ``cid`` of the experiment, with ``state`` (the node's Context.state) holding its labeled set.

    Args:
        config_json: the experiment (JSON of ``ExperimentConfig.to_dict()``).
        cid: this client's id, 0 <= cid < data.clients.
        state: RecordDict kept on the node between messages.
    """

    def __init__(self, config_json: str, cid: int, state: RecordDict) -> None:
        self.config, self.pools, self.trainer, self.sampler = _experiment(config_json)
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

    def _model(self, cycle: int):
        """(a model of the experiment's architecture as cycle ``cycle`` initialises it, its StateVector)."""
        model = self.trainer.fresh_model(derive_seed(self.config.seed, "init", cycle))
        return model, StateVector(model)

    def fedavg_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """Train from the broadcast global model; return [n_k * delta, n_k] (float64, (L + 1,))."""
        cycle, r = workload.get("cycle"), workload.get("round")
        if not isinstance(cycle, int) or not isinstance(r, int) or not 0 <= r < self.config.training.rounds:
            raise MessageError(f"workload needs int 'cycle' and 'round' in [0, {self.config.training.rounds}), got "
                               f"{cycle!r}, {r!r}", client=self.cid, round_id=spec.round_id, field="workload")
        model, layout = self._model(cycle)
        if spec.length != layout.length + 1:
            raise MessageError(f"round of length {spec.length}, the model needs {layout.length + 1}",
                               client=self.cid, round_id=spec.round_id, field="length")
        global_vec = _vector(workload.get("global"), layout.length, cid=self.cid, field="global",
                             round_id=spec.round_id)
        layout.set(model, global_vec)
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

    def select(self, content: RecordDict) -> RecordDict:
        """Answer a selection request: label up to ``budget`` new samples; reply {"cycle", "selected"}.

        A repeated request for a cycle already done is answered again without selecting twice.
        """
        record = content.config_records.get(SELECT_RECORD)
        cycle = None if record is None else record.get("cycle")
        budget = None if record is None else record.get("budget")
        if not isinstance(cycle, int) or not isinstance(budget, int) or budget < 0:
            raise MessageError(f"selection request needs int 'cycle' and 'budget' >= 0, got {cycle!r}, {budget!r}",
                               client=self.cid, field=SELECT_RECORD)
        done = self.state.config_records.get(LABELED_RECORD)
        if done is not None and done["cycle"] >= cycle:
            return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle, "selected": done["selected"]})})
        labeled = self.labeled
        budget = min(budget, len(self.pools.pools[self.cid]) - len(labeled))
        picks = np.empty(0, dtype=np.int64)
        if budget > 0:
            model, layout = self._model(cycle)
            layout.set(model, _vector(record.get("global"), layout.length, cid=self.cid, field="global"))
            k, pools = self.cid, self.pools
            view = pool_view(model, pools.pool_inputs(k), pools.labeled_mask(k, labeled), pools.pool_labels(k, labeled),
                             needs=self.sampler.needs, batch_size=self.trainer.inference_batch_size)
            chosen = self.sampler.select(view, budget, Cycle(cycle, self.config.seed, None).generator("select", k))
            picks = pools.pools[k][chosen.cpu().numpy()]
        labeled = np.concatenate([labeled, picks.astype(np.int64)])
        self.state.config_records[LABELED_RECORD] = ConfigRecord(
            {"indices": labeled.tobytes(), "cycle": cycle, "selected": int(len(picks))})
        return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle, "selected": int(len(picks))})})


def handle(action: str, content: RecordDict, state: RecordDict, cid: int, config_json: str,
           node_config: Mapping[str, object]) -> RecordDict:
    """Answer one message of ``action`` (hello / round / select) for client ``cid``; sans-I/O core of the app.

    ``node_config`` supplies the node's policy (``protocols``, ``min-clients``) as in ``client_app``.
    """
    if action == HELLO_ACTION:
        return hello_content(cid)
    client = FalClient(config_json, cid, state)
    if action == ROUND_ACTION:
        policy = policy_of(_NodeConfigOnly(node_config))
        return client_step(content, state, cid, lambda spec, c, workload: client.fedavg_input(spec, workload), policy)
    if action == SELECT_ACTION:
        return client.select(content)
    raise MessageError(f"unknown action {action!r}", client=cid, field="message_type")


class _NodeConfigOnly:
    """The part of a Context that ``policy_of`` reads."""

    def __init__(self, node_config: Mapping[str, object]) -> None:
        self.node_config = node_config


def make_fal_client_app() -> ClientApp:
    """A ClientApp answering hello, secure-sum batches and selection requests (``handle``)."""
    app = ClientApp()

    def answer(action: str, message: Message, context: Context) -> Message:
        content = handle(action, message.content, context.state, client_id_of(context),
                         experiment_json(context.run_config), context.node_config)
        return Message(content, reply_to=message)

    @app.query(HELLO_ACTION)
    def hello(message: Message, context: Context) -> Message:
        return answer(HELLO_ACTION, message, context)

    @app.query(ROUND_ACTION)
    def secure_round(message: Message, context: Context) -> Message:
        return answer(ROUND_ACTION, message, context)

    @app.query(SELECT_ACTION)
    def select(message: Message, context: Context) -> Message:
        return answer(SELECT_ACTION, message, context)

    return app


app = make_fal_client_app()
