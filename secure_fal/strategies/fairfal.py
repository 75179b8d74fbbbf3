"""FairFAL (Zong et al., CVPR 2026): adaptive query-model choice, then class-balanced two-stage sampling.

Per query, on client k (only gamma_k ever leaves a client, and only at the first query, through a secure
sum; spec and leakage: protocols/fairfal-gamma.md):

- B_k: a class-rebalanced copy of k's labeled set (every present class oversampled to the largest class).
  ``balanced_mean_probs`` returns the mean softmax over B_k in expectation: the mean over present classes of
  each class's mean softmax, which is exact and needs no random oversampling.
- gamma_k = min_c / max_c of the global model's mean softmax over B_k, c over the classes present on k.
  gamma_bar = mean of gamma_k over the clients, from ONE secure sum of the vectors [gamma_k, 1] at the first
  FairFAL query, then kept (``state_dict``).
- d_k = (1/C) sum_c |pg_c - pl_c| / (pg_c + pl_c), over all C classes, pg / pl the global / local-only
  model's mean softmax over B_k (as in the reference implementation).
- s_k = 1 - (d_k + gamma_bar) / 2; the query model is the global one if s_k > threshold (0.75), else the
  local-only one.
- ``FairFALSampler``: uncertainty (entropy) from the query model; prototypes and the BADGE gradient space from
  the global model.

The initial labeled set (random, per client) is FairFAL's first, random query, as in the paper and its
reference code; every later query is a FairFAL query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..sampling import PoolView, Sampler, pool_view
from ..secagg import Aggregator, Faults, Statistic
from .base import ClientPools, Cycle, GlobalModelStrategy, Selection
from .training import Trainer


@torch.no_grad()
def balanced_mean_probs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                        batch_size: int = 512) -> np.ndarray:
    """Mean softmax of ``model`` over a class-balanced copy of (x, y), as a (C,) float64 distribution.

    Equal to the expected mean over the labeled set with every present class oversampled to the size of the
    largest: the average, over the classes present in ``y``, of the mean softmax of that class's samples.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        probs = torch.cat([torch.softmax(model(x[s:s + batch_size].to(device)).double(), dim=1).cpu()
                           for s in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    classes = torch.unique(y)
    per_class = torch.stack([probs[y == c].mean(dim=0) for c in classes])
    out = per_class.mean(dim=0).numpy()
    if out.shape != (num_classes,):
        raise ValueError(f"model gives {out.shape[0]} classes, expected {num_classes}")
    return out


def imbalance_ratio(mean_probs: np.ndarray, present: Sequence[int]) -> float:
    """gamma = min / max of ``mean_probs`` over the ``present`` classes, in [0, 1] (0 only when a probability underflows)."""
    values = np.asarray(mean_probs, dtype=np.float64)[np.asarray(present, dtype=np.int64)]
    return float(values.min() / values.max())


def prior_divergence(global_probs: np.ndarray, local_probs: np.ndarray) -> float:
    """d = (1/C) sum_c |pg_c - pl_c| / (pg_c + pl_c) in [0, 1] (a class where both are 0 counts 0)."""
    pg = np.asarray(global_probs, dtype=np.float64)
    pl = np.asarray(local_probs, dtype=np.float64)
    total = pg + pl
    terms = np.divide(np.abs(pg - pl), total, out=np.zeros_like(total), where=total > 0)
    return float(terms.mean())


def gamma_input(cid: int, gamma: float) -> np.ndarray:
    """Client ``cid``'s input to the gamma sum: [gamma_k, 1]; ValueError if gamma_k is outside [0, 1] (0: a present
    class's mean probability underflowed, e.g. under a heavily noised global model)."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"client {cid}: gamma_k = {gamma} outside [0, 1]")
    return np.array([gamma, 1.0])


def mean_gamma(total: np.ndarray) -> float:
    """gamma_bar from the secure sum of the [gamma_k, 1]: sum of gamma_k / number of contributors (the rounded
    count, at least 1: under differential privacy both entries are noisy)."""
    return float(total[0]) / max(1, round(float(total[1])))


def secure_mean_gamma(gammas: Mapping[int, float], aggregator: Aggregator, *,
                      faults: Faults | None = None) -> tuple[float, tuple[int, ...]]:
    """gamma_bar = (sum_k gamma_k) / (number of contributors), from one secure sum of [gamma_k, 1].

    Both entries lie in [0, 1] (public bound 1). A client that drops out of the round is in neither sum, so the
    result is the mean over the contributors.

    Args:
        gammas: client id -> gamma_k in [0, 1].
        faults: optional dropout / message-fault plan for the round (tests).
    Returns:
        (gamma_bar, ids of the contributing clients).
    """
    inputs = {cid: gamma_input(cid, g) for cid, g in gammas.items()}
    res = aggregator.sum(inputs, bound=1.0, faults=faults, statistic=Statistic("gamma", math.sqrt(2.0)))
    return mean_gamma(res.total), res.contributors


class FairFAL(GlobalModelStrategy):
    """FedAvg, then per client the adaptive query model and FairFAL's class-balanced sampler.

    Args:
        threshold: delta; the global model queries on client k when s_k > threshold (default 0.75).

    State (checkpointed): ``gamma_bar``, set at the first query.
    Selection details recorded per cycle: ``model_choice`` ('global' or 'local' per client), ``s`` and ``d``
    per client, ``gamma_bar``. In a deployment d_k, s_k and the choice stay on client k; the results file is
    the experimenter's view, not the server's.
    """

    name = "fairfal"
    default_sampler = "fairfal"
    samplers = frozenset({"fairfal"})

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: Sampler, *, threshold: float = 0.75) -> None:
        super().__init__(pools, trainer, sampler)
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self.gamma_bar: float | None = None

    def state_dict(self) -> dict:
        return {"gamma_bar": self.gamma_bar}

    def load_state_dict(self, state: dict) -> None:
        unknown = set(state) - {"gamma_bar"}
        if unknown:
            raise ValueError(f"fairfal state: unknown keys {sorted(unknown)}")
        self.gamma_bar = state.get("gamma_bar")

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        if self.gamma_bar is None:
            gammas = {k: self.client_gamma(lab) for k, lab in enumerate(labeled)}
            self.gamma_bar, _ = secure_mean_gamma(gammas, cycle.require_aggregator(self.name))
        picks, choice, s, d = [], [], [], []
        for k, budget in enumerate(budgets):
            picked, facts = self.select_on_client(cycle, k, labeled[k], budget, self.gamma_bar)
            picks.append(picked)
            choice.append(facts["model_choice"])
            s.append(facts["s"])
            d.append(facts["d"])
        return Selection(picks, {"gamma_bar": self.gamma_bar, "model_choice": choice, "s": s, "d": d})

    def client_gamma(self, labeled: np.ndarray) -> float:
        """gamma_k of a client with labeled set ``labeled``: the global model's imbalance over its balanced set."""
        x, y = self.pools.labeled_data(labeled)
        pg = balanced_mean_probs(self._model, x, y, self.pools.num_classes, batch_size=self.trainer.inference_batch_size)
        return imbalance_ratio(pg, torch.unique(y).tolist())

    def select_on_client(self, cycle: Cycle, client: int, labeled: np.ndarray, budget: int,
                         gamma_bar: float) -> tuple[np.ndarray, dict]:
        """One client's query: its local-only model, the choice of query model, then ``budget`` picks.

        Returns:
            (int64 train indices picked, {"model_choice": 'global' | 'local', "s": s_k, "d": d_k}); the facts
            stay on the client in a deployment.
        """
        self._check_trained(cycle)
        n_classes, batch = self.pools.num_classes, self.trainer.inference_batch_size
        x, y = self.pools.labeled_data(labeled)
        local = self._alone_model(cycle, labeled, client)
        d = prior_divergence(balanced_mean_probs(self._model, x, y, n_classes, batch_size=batch),
                             balanced_mean_probs(local, x, y, n_classes, batch_size=batch))
        s = 1.0 - (d + gamma_bar) / 2.0
        use_global = s > self.threshold
        facts = {"model_choice": "global" if use_global else "local", "s": s, "d": d}
        if budget == 0:
            return np.empty(0, dtype=np.int64), facts
        view = self._pool(client, labeled, None if use_global else local)
        chosen = self.sampler.select(view, int(budget), cycle.generator("select", client))
        return self.pools.pools[client][chosen.cpu().numpy()], facts

    def _pool(self, k: int, labeled: np.ndarray, local: nn.Module | None) -> PoolView:
        """Client k's pool: global features, labels and BADGE space; probabilities of the query model
        (the global one when ``local`` is None)."""
        x, mask = self.pools.pool_inputs(k), self.pools.labeled_mask(k, labeled)
        labels, batch = self.pools.pool_labels(k, labeled), self.trainer.inference_batch_size
        needs = set(self.sampler.needs) | ({"grad_embeddings"} if local is not None else set())
        view = pool_view(self._model, x, mask, labels, needs=needs, batch_size=batch)
        if local is None:
            return view
        probs = pool_view(local, x, mask, needs={"probs"}, batch_size=batch, device=view.device).probs
        return PoolView(probs=probs, embeddings=view.embeddings, labeled_mask=view.labeled_mask, labels=view.labels,
                        grad_embeddings=view.grad_embeddings)
