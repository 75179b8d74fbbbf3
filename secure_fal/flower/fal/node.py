"""What one FAL client computes on its node: its inputs to secure sums, and its selections (heavy: torch).

``client_app.py`` (the ClientApp) imports this module only for a message that needs the client's data or model:
the opening of a FedAvg, gamma, k-means or ownership sum, and selection requests. Hello, key distribution and the
later exchanges of a sum (shares, unmask) never import it, nor torch.

The client runs the in-process strategy's own per-client code (``LocalQueryStrategy.select_on_client``,
``FairFAL.client_gamma`` and ``select_on_client``, ``FALGlobal.candidates`` and ``Candidates``) on a
``ClientPools`` that holds this client's rows only (``node_data``: the simulated split's rows, from the node-local
cache, or the node's own data), in the node's own index space 0..n-1. Labeled sets are kept in the node state under
the ids of ``ClientData.index`` (train indices of the simulated split), so a deployment reports what the in-process
run does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import numpy as np
import torch
import torch._dynamo  # noqa: F401  (torch.optim imports it on first use, ~2 s; here a warm executor's preload has it)
from flwr.app import ConfigRecord, RecordDict

from ...experiment.config import ExperimentConfig
from ...experiment.setup import build_strategy, build_trainer, initial_labeled
from ...federated import SGDConfig, train_local
from ...federated.fedavg import StateVector, client_seed
from ...federated.ownership import owned_items
from ...secagg.errors import InputError, MessageError
from ...secagg.machine import RoundSpec
from ...secagg.weighted import weighted_input
from ...strategies import (ClientPools, Cycle, FALGlobal, FairFAL, FinalLocalsStrategy, LocalQueryStrategy,
                           OwnRuleStrategy, derive_seed)
from ...strategies.fairfal import gamma_input
from ...strategies.fal_global import Candidates
from .candidates import (CANDIDATES_RECORD, array_field, centres_field, int_field, keep_candidates, kept_candidates,
                         ownership_keys_of)
from .client_app import LABELED_RECORD, SELECT_RECORD

FINAL_LOCAL_RECORD = "secure_fal.final_local"
"""Node state (KAFAL, IFAL): ``cycle`` and ``state``, the float64 bytes of the model this client trained in that
cycle's last FedAvg round (``StateVector`` order)."""
from .node_data import DataSource, client_data


@functools.lru_cache(maxsize=16)
def _experiment(config_json: str, cid: int, source: DataSource):
    """(config, client data, pools, trainer, strategy) of client ``cid`` in an experiment JSON; kept per process
    (the simulation engine's workers serve many messages; a deployment's ClientApp process serves one, and finds
    the rows in the node-local cache instead)."""
    config = ExperimentConfig.from_dict(json.loads(config_json))
    if not 0 <= cid < config.data.clients:
        raise InputError(f"no such client in an experiment of {config.data.clients} clients", client=cid,
                         field="client-id")
    data = client_data(config, cid, source)
    empty = np.empty(0, dtype=np.int64)
    pools = ClientPools(torch.from_numpy(data.x), torch.from_numpy(data.y),
                        tuple(np.arange(len(data.y), dtype=np.int64) if k == cid else empty
                              for k in range(config.data.clients)),
                        torch.empty((0, *data.x.shape[1:])), torch.empty(0, dtype=torch.int64), data.num_classes)
    trainer = build_trainer(config, pools)
    return config, data, pools, trainer, build_strategy(config, pools, trainer)


class FalClient:
    """Client ``cid`` of the experiment, with ``state`` (the node's Context.state) holding its labeled set.

    Args:
        config_json: the experiment (JSON of ``ExperimentConfig.to_dict()``).
        cid: this client's id, 0 <= cid < data.clients.
        state: RecordDict kept on the node between messages.
        source: where the node's data comes from (``node_data.data_source_of`` its node config).
    """

    def __init__(self, config_json: str, cid: int, state: RecordDict, source: DataSource = DataSource()) -> None:
        self.config, self.data, self.pools, self.trainer, self.strategy = _experiment(config_json, cid, source)
        self.cid = cid
        self.state = state

    @property
    def labeled(self) -> np.ndarray:
        """int64 positions (node index space) labeled so far, in labeling order (the initial random draw until the
        first selection)."""
        record = self.state.config_records.get(LABELED_RECORD)
        if record is None:
            return initial_labeled(self.pools, self.config.active.initial_fraction, self.config.seed)[self.cid]
        ids = np.frombuffer(record["indices"], dtype=np.int64)
        positions = np.searchsorted(self.data.index, ids)
        if np.any(positions >= len(self.data.index)) or np.any(self.data.index[np.minimum(
                positions, len(self.data.index) - 1)] != ids):
            raise InputError("the node state's labeled set names samples this node does not hold (data changed "
                             "during the run?)", client=self.cid, field=LABELED_RECORD)
        return positions.astype(np.int64)

    def _cycle(self, record: Mapping[str, object], round_id: int | None = None) -> Cycle:
        return Cycle(int_field(record, "cycle", cid=self.cid, round_id=round_id), self.config.seed, None)

    def _global_model(self, cycle: int, raw: object, round_id: int | None = None, field: str = "global"):
        """(the cycle's model architecture holding the state ``raw``, float64 bytes in StateVector order: the
        broadcast global model, or ``field``; its StateVector)."""
        model = self.trainer.fresh_model(derive_seed(self.config.seed, "init", cycle))
        layout = StateVector(model)
        layout.set(model, array_field(raw, np.float64, (layout.length,), cid=self.cid, field=field,
                                      round_id=round_id))
        return model, layout

    def _use_global(self, cycle: Cycle, raw: object, round_id: int | None = None) -> None:
        self.strategy.use_global_model(cycle, self._global_model(cycle.index, raw, round_id)[0])

    def round_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """This client's input to a FedAvg or gamma sum, by the workload's ``kind`` (``client_app.round_input``
        checks kind and length; k-means and ownership inputs need no model: ``candidates``)."""
        return {"fedavg": self.fedavg_input, "gamma": self.gamma_input}[workload["kind"]](spec, workload)

    def fedavg_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """Train from the broadcast global model; return [n_k * delta / T, n_k / T] (float64, (L + 1,);
        ``secagg.weighted.weighted_input``, T the workload's public 'weight-total'), or under differential privacy
        delta (L,), which the DP layer clips (``envelope.protocol_input``), as ``train_federated`` does."""
        cycle = int_field(workload, "cycle", cid=self.cid, round_id=spec.round_id)
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
        trained = layout.get(model)
        if isinstance(self.strategy, FinalLocalsStrategy) and r == self.config.training.rounds - 1:
            # KAFAL, IFAL query with this model later: it stays in the node state, never leaves the node
            self.state.config_records[FINAL_LOCAL_RECORD] = ConfigRecord({"cycle": cycle, "state": trained.tobytes()})
        delta = trained - global_vec
        if self.config.privacy.enabled:
            return delta
        worst = int(np.argmax(np.abs(delta)))
        if not abs(delta[worst]) <= fed.update_bound:
            raise InputError(f"FedAvg round {r + 1}: update {delta[worst]!r} exceeds update_bound {fed.update_bound}",
                             client=self.cid, round_id=spec.round_id, field=layout.name_at(worst))
        total = workload.get("weight-total")
        if not isinstance(total, float) or not total >= len(y):
            raise MessageError(f"workload needs a float 'weight-total' >= this client's sample count, got {total!r}",
                               client=self.cid, round_id=spec.round_id, field="workload.weight-total")
        return weighted_input(delta, float(len(y)), total)

    def gamma_input(self, spec: RoundSpec, workload: Mapping[str, object]) -> np.ndarray:
        """FairFAL: [gamma_k, 1] of this client under the broadcast global model."""
        strategy = self._strategy(FairFAL, spec.round_id)
        self._use_global(self._cycle(workload, spec.round_id), workload.get("global"), spec.round_id)
        return gamma_input(self.cid, strategy.client_gamma(self.labeled))

    def _strategy(self, cls: type, round_id: int | None = None):
        if not isinstance(self.strategy, cls):
            raise MessageError(f"this experiment runs {self.strategy.name!r}, not {cls.name!r}", client=self.cid,
                               round_id=round_id, field="workload.kind")
        return self.strategy

    def _candidates(self, record: Mapping[str, object], round_id: int | None = None) -> Candidates:
        """The candidates kept for the record's cycle, as torch tensors on the trainer's device."""
        positions, points, weights = kept_candidates(self.state, record, self.cid, round_id)
        device = self.trainer.device
        return Candidates(positions, torch.from_numpy(points).to(device), torch.from_numpy(weights).to(device))

    def select(self, content: RecordDict) -> RecordDict:
        """Answer a selection request (see the module docstring); reply {"cycle", "selected"}.

        A repeated ``select`` for a cycle already done is answered again without selecting twice.
        """
        record = content.config_records.get(SELECT_RECORD)
        if record is None:
            raise MessageError("selection request without its record", client=self.cid, field=SELECT_RECORD)
        cycle = self._cycle(record)
        budget, step = int_field(record, "budget", cid=self.cid), record.get("step")
        labeled = self.labeled
        budget = min(budget, len(self.pools.pools[self.cid]) - len(labeled))
        if step == "candidates":
            strategy = self._strategy(FALGlobal)
            self._use_global(cycle, record.get("global"))
            kept = strategy.candidates(self.cid, labeled, budget)
            keep_candidates(self.state, cycle.index, kept.positions, kept.points.detach().cpu().numpy(),
                            kept.weights.detach().cpu().numpy())
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
            {"indices": self.data.index[labeled].tobytes(), "cycle": cycle.index, "selected": int(len(picks))})
        self.state.config_records.pop(CANDIDATES_RECORD, None)
        return RecordDict({SELECT_RECORD: ConfigRecord({"cycle": cycle.index, "selected": int(len(picks))})})

    def _picks(self, cycle: Cycle, record: Mapping[str, object], labeled: np.ndarray, budget: int) -> np.ndarray:
        """This client's new positions (node index space), chosen by the strategy's per-client code."""
        strategy = self.strategy
        if isinstance(strategy, FALGlobal):
            candidates = self._candidates(record)
            centroids = centres_field(record, "centroids", candidates.points.shape[1], cid=self.cid, field="centroids")
            if strategy.quota:
                chosen = candidates.quota_choice(centroids, budget)
            elif self.cid in (record.get("owners-members") or []):
                owner_threshold = array_field(record.get("owner-threshold"), np.int64, (len(centroids),), cid=self.cid,
                                              field="owner-threshold")
                keys = ownership_keys_of(candidates.points.detach().cpu().numpy(), centroids, record, self.cid)
                chosen = candidates.owned_choice(centroids, owned_items(keys, owner_threshold))
            else:  # it dropped out of the ownership rounds: it owns nothing
                chosen = np.empty(0, dtype=np.int64)
            return candidates.positions[chosen]
        self._use_global(cycle, record.get("global"))
        if isinstance(strategy, FairFAL):
            gamma_bar = record.get("gamma-bar")
            if not isinstance(gamma_bar, float) or not 0 < gamma_bar <= 1:
                raise MessageError(f"expected a float gamma-bar in (0, 1], got {gamma_bar!r}", client=self.cid,
                                   field="gamma-bar")
            return strategy.select_on_client(cycle, self.cid, labeled, budget, gamma_bar)[0]
        if isinstance(strategy, FinalLocalsStrategy):
            strategy.use_final_local(self.cid, self._final_local(cycle.index))
        if isinstance(strategy, (LocalQueryStrategy, OwnRuleStrategy)):
            return strategy.select_on_client(cycle, self.cid, labeled, budget)
        raise MessageError(f"strategy {strategy.name!r} does not run over Flower", client=self.cid, field="strategy")

    def _final_local(self, cycle: int):
        """This client's local model of cycle ``cycle``'s last FedAvg round, from the node state (KAFAL, IFAL)."""
        kept = self.state.config_records.get(FINAL_LOCAL_RECORD)
        if kept is None or kept.get("cycle") != cycle:
            raise MessageError(f"no local model of the last FedAvg round of cycle {cycle} on this node (it did not "
                               "train in that round)", client=self.cid, field=FINAL_LOCAL_RECORD)
        return self._global_model(cycle, kept["state"], field=FINAL_LOCAL_RECORD)[0]
