"""FairFAL (Zong et al., CVPR 2026): adaptive query-model choice, then class-balanced two-stage sampling.

Reference: the authors' code, chenchenzong/FairFAL commit ca14e07 (``query_strategies/fairfal_sampling.py``,
``strategy.py``). Per query, on client k (only gamma_k ever leaves a client, and only at the first query,
through a secure sum; spec and leakage: protocols/fairfal-gamma.md):

- B_k: a class-rebalanced copy of k's labeled set (every present class oversampled to the largest class).
  ``prior_estimate="oversample"`` (reference): B_k drawn at random as the reference draws it
  (``oversampled_positions``, NumPy seed 42); ``"exact"``: the expectation over that draw, the mean over
  present classes of each class's mean softmax (no randomness; the model choice flipped in 2 of 900
  measured cases).
- gamma_k = min_c / max_c of the global model's mean softmax over B_k, c over the classes present on k.
  gamma_bar = mean of gamma_k over the clients, from ONE secure sum of the vectors [gamma_k, 1] at the first
  FairFAL query, then kept (``state_dict``).
- d_k = (1/C) sum_c |pg_c - pl_c| / (pg_c + pl_c), over all C classes, pg / pl the global / local-only
  model's mean softmax over B_k. The local-only model is trained by ``Trainer.alone`` (the reference's
  ``training_local_only``: early stop at training accuracy 0.99, lr milestone per batch, under
  ``training.alone_schedule = "reference"``).
- s_k = 1 - (d_k + gamma_bar) / 2; the query model (entropy) is the global one if s_k > threshold (0.75),
  else the local-only one.
- The probabilities inside the BADGE gradient embeddings e_global(x) ⊗ (onehot - p(x)):
  ``gradient_model="reference"``: from the global model iff gamma_bar < 0.5, else from the local-only model
  (a second switch found in the reference code, not in the paper); ``"global"``: always the global model
  (the paper's text). Features e, prototypes and pseudo-labels always come from the global model.
- ``FairFALSampler``: prototypes, per-class quotas, entropy candidates, k-center seeded by the labeled
  samples at their true label.

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


PRIOR_ESTIMATES = ("oversample", "exact")
"""How the mean softmax over the class-rebalanced labeled set is estimated (see the module docstring)."""
GRADIENT_MODELS = ("reference", "global")
"""Which model gives the probabilities of FairFAL's gradient embeddings (see the module docstring)."""
OVERSAMPLE_SEED = 42
"""The reference's fixed seed of the random rebalanced copy (``make_balanced_indices``)."""


def oversampled_positions(y: np.ndarray, seed: int = OVERSAMPLE_SEED) -> np.ndarray:
    """Positions (into ``y``) of a random class-rebalanced copy of a labeled set, drawn as the reference does.

    Classes in increasing order; the largest class (size m) contributes a random permutation of its m
    positions, every other class all of its n positions plus m - n drawn with replacement, all from one
    ``numpy.random.default_rng(seed)``.

    Args:
        y: int (L,) labels, L >= 1.
    Returns:
        int64 (m * number of classes,) positions.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    largest = counts.max()
    parts = []
    for c, n in zip(classes, counts):
        members = np.flatnonzero(y == c)
        if n == largest:
            parts.append(rng.choice(members, size=largest, replace=False))
        else:
            parts.append(np.concatenate([members, rng.choice(members, size=largest - n, replace=True)]))
    return np.concatenate(parts).astype(np.int64)


@torch.no_grad()
def balanced_mean_probs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, *,
                        estimate: str = "exact", batch_size: int = 512) -> np.ndarray:
    """Mean softmax of ``model`` over a class-rebalanced copy of (x, y), as a (C,) float64 distribution.

    Args:
        estimate: "exact": the expected mean over the random copy, i.e. the average over the classes
            present in ``y`` of the mean softmax of that class's samples; "oversample": the mean over the copy
            ``oversampled_positions(y)`` (the reference's random draw).
    """
    if estimate not in PRIOR_ESTIMATES:
        raise ValueError(f"estimate must be one of {PRIOR_ESTIMATES}, got {estimate!r}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        probs = torch.cat([torch.softmax(model(x[s:s + batch_size].to(device)).double(), dim=1).cpu()
                           for s in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    if estimate == "oversample":
        out = probs[torch.as_tensor(oversampled_positions(y.cpu().numpy()))].mean(dim=0).numpy()
    else:
        out = torch.stack([probs[y == c].mean(dim=0) for c in torch.unique(y)]).mean(dim=0).numpy()
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


GAMMA_STATISTIC = Statistic("gamma", math.sqrt(2.0))
"""The gamma sum's declaration: [gamma_k, 1] with both entries in [0, 1] has L2 norm at most sqrt(2)."""


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
    res = aggregator.sum(inputs, bound=1.0, faults=faults, statistic=GAMMA_STATISTIC)
    return mean_gamma(res.total), res.contributors


class FairFAL(GlobalModelStrategy):
    """FedAvg, then per client the adaptive query model and FairFAL's class-balanced sampler.

    Args:
        threshold: delta; the global model queries on client k when s_k > threshold (default 0.75).
        prior_estimate: "oversample" (reference, default) or "exact" (see the module docstring).
        gradient_model: "reference" (default: global iff gamma_bar < 0.5, else local-only) or "global".

    State (checkpointed): ``gamma_bar``, set at the first query.
    Selection details recorded per cycle: ``model_choice`` (query model) and ``gradient_choice`` ('global' or
    'local' per client), ``s`` and ``d`` per client, ``gamma_bar``. In a deployment d_k, s_k and the choices
    stay on client k; the results file is the experimenter's view, not the server's.
    """

    name = "fairfal"
    default_sampler = "fairfal"
    samplers = frozenset({"fairfal"})

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: Sampler, *, threshold: float = 0.75,
                 prior_estimate: str = "oversample", gradient_model: str = "reference") -> None:
        super().__init__(pools, trainer, sampler)
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if prior_estimate not in PRIOR_ESTIMATES:
            raise ValueError(f"prior_estimate must be one of {PRIOR_ESTIMATES}, got {prior_estimate!r}")
        if gradient_model not in GRADIENT_MODELS:
            raise ValueError(f"gradient_model must be one of {GRADIENT_MODELS}, got {gradient_model!r}")
        self.threshold = threshold
        self.prior_estimate = prior_estimate
        self.gradient_model = gradient_model
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
        picks, details = [], {"gamma_bar": self.gamma_bar, "model_choice": [], "gradient_choice": [], "s": [],
                              "d": []}
        for k, budget in enumerate(budgets):
            picked, facts = self.select_on_client(cycle, k, labeled[k], budget, self.gamma_bar)
            picks.append(picked)
            for key, value in facts.items():
                details[key].append(value)
        return Selection(picks, details)

    def _mean_probs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return balanced_mean_probs(model, x, y, self.pools.num_classes, estimate=self.prior_estimate,
                                   batch_size=self.trainer.inference_batch_size)

    def client_gamma(self, labeled: np.ndarray) -> float:
        """gamma_k of a client with labeled set ``labeled``: the global model's imbalance over its balanced set."""
        x, y = self.pools.labeled_data(labeled)
        return imbalance_ratio(self._mean_probs(self._model, x, y), torch.unique(y).tolist())

    def select_on_client(self, cycle: Cycle, client: int, labeled: np.ndarray, budget: int,
                         gamma_bar: float) -> tuple[np.ndarray, dict]:
        """One client's query: its local-only model, the choice of query and gradient model, then ``budget``
        picks.

        Returns:
            (int64 train indices picked, {"model_choice": 'global' | 'local', "gradient_choice": 'global' |
            'local', "s": s_k, "d": d_k}); the facts stay on the client in a deployment.
        """
        self._check_trained(cycle)
        x, y = self.pools.labeled_data(labeled)
        local = self._alone_model(cycle, labeled, client)
        d = prior_divergence(self._mean_probs(self._model, x, y), self._mean_probs(local, x, y))
        s = 1.0 - (d + gamma_bar) / 2.0
        query_global = s > self.threshold
        gradient_global = self.gradient_model == "global" or gamma_bar < 0.5
        facts = {"model_choice": "global" if query_global else "local",
                 "gradient_choice": "global" if gradient_global else "local", "s": s, "d": d}
        if budget == 0:
            return np.empty(0, dtype=np.int64), facts
        view = self._pool(client, labeled, local, query_global, gradient_global)
        chosen = self.sampler.select(view, int(budget), cycle.generator("select", client))
        return self.pools.pools[client][chosen.cpu().numpy()], facts

    def _pool(self, k: int, labeled: np.ndarray, local: nn.Module, query_global: bool,
              gradient_global: bool) -> PoolView:
        """Client k's pool: global features and labels; entropy probabilities of the query model; gradient
        probabilities of the gradient model (given separately only when it differs from the query model)."""
        x, mask = self.pools.pool_inputs(k), self.pools.labeled_mask(k, labeled)
        labels, batch = self.pools.pool_labels(k, labeled), self.trainer.inference_batch_size
        view = pool_view(self._model, x, mask, labels, needs=self.sampler.needs, batch_size=batch)
        if query_global and gradient_global:
            return view
        local_probs = pool_view(local, x, mask, needs={"probs"}, batch_size=batch, device=view.device).probs
        query_probs = view.probs if query_global else local_probs
        gradient_probs = view.probs if gradient_global else local_probs
        return PoolView(probs=query_probs, embeddings=view.embeddings, labeled_mask=view.labeled_mask,
                        labels=view.labels, grad_probs=None if gradient_probs is query_probs else gradient_probs)
