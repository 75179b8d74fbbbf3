"""FAL-Global (Abraham, Dataiku): diversity decided over ALL clients through a secure federated k-means.

Per cycle, after FedAvg:

1. Stage 1 (local): client k embeds its pool with the global model (L2-normalised penultimate features)
   and keeps as candidates its ``beta * b_k`` unlabeled samples of highest uncertainty (the sampler's score:
   margin by default, entropy or least-confidence), weighted by that score.
2. Stage 2 (global): a secure weighted federated k-means (``secure_fal.federated.kmeans``, spec
   protocols/kmeans.md) over all candidates with k = B, the cycle's global budget, gives B public centroids.
   Only per-cluster weighted counts, sums and sums of squares, securely summed, leave a client.
3. Choice:
   - ``quota=True``: client k picks exactly b_k candidates: the b_k distinct (centroid, candidate) pairs of
     least total Euclidean distance (``least_cost_pairs``), computed locally.
   - ``quota=False``: per centroid, the candidate closest over all clients is labeled. Which client holds it
     is decided by ``secure_owners`` (protocols/ownership.md) on each client's minimum distance per
     centroid (score bound 2: a centroid lies in the unit ball, candidates on the unit sphere). Leakage:
     the server learns, per centroid, only how many clients lie under each probed distance threshold, never
     a distance nor the owner (see protocols/ownership.md, "What each party learns"); it may of course infer
     owners later from who sends labeled data. An owning client labels, for its centroids, distinct
     candidates of least total distance (one per centroid while candidates last).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..federated.kmeans import FederatedKMeans
from ..federated.kmeans_stats import DISTANCE_BOUND, centre_distances
from ..federated.ownership import secure_owners
from ..sampling import Sampler, entropy_score, least_confidence_score, margin_score, pool_view
from ..secagg import Aggregator
from ..sampling.base import top_indices
from .base import ClientPools, Cycle, GlobalModelStrategy, Selection
from .training import Trainer

UNCERTAINTY_SCORES = {"margin": margin_score, "entropy": entropy_score, "least-confidence": least_confidence_score}
"""Sampler name -> stage-1 uncertainty score (N, C) probabilities -> (N,) in [0, 1]."""

def least_cost_pairs(cost: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` distinct (row, column) pairs of least total cost.

    A k-cardinality assignment solved as one square assignment: the (R, M) matrix is padded with M - n dummy
    rows (a column matched to one is left unpicked, cost 0) and R - n dummy columns (a row matched to one is
    left unmatched, cost 0); dummy rows cannot take dummy columns (cost inf), so exactly n real pairs remain.

    Args:
        cost: (R, M) float array, e.g. distances from R centroids to M candidates.
        n: number of pairs, 0 <= n <= min(R, M).
    Returns:
        (rows, cols): int arrays of length n, rows increasing.
    """
    r, m = cost.shape
    if not 0 <= n <= min(r, m):
        raise ValueError(f"cannot pick {n} distinct pairs from a {r} x {m} cost matrix")
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    padded = np.zeros((r + m - n, m + r - n))
    padded[:r, :m] = cost
    padded[r:, m:] = np.inf
    rows, cols = linear_sum_assignment(padded)
    real = (rows < r) & (cols < m)
    return rows[real].astype(np.int64), cols[real].astype(np.int64)


def stage2_kmeans(budgets: Sequence[int], beta: int, aggregator: Aggregator | None = None) -> FederatedKMeans:
    """Stage 2's k-means (the same for a simulation and a deployment's server): k = sum of the budgets; points
    lie in the unit ball; a client's total weight (scores in [0, 1] of at most beta * b_k candidates) is at most
    beta * the largest budget."""
    return FederatedKMeans(int(sum(budgets)), aggregator, point_bound=1.0, count_bound=float(beta * max(budgets)))


class FALGlobal(GlobalModelStrategy):
    """FedAvg, then global diversity by secure federated k-means over all clients' uncertain candidates.

    Args:
        quota: True (default): each client labels exactly its share b_k; False: the global budget falls on
            the clients holding the samples closest to the centroids (see the module docstring).
        beta: candidates per client as a multiple of its budget (default 10).
    """

    name = "fal-global"
    samplers = frozenset(UNCERTAINTY_SCORES)

    def __init__(self, pools: ClientPools, trainer: Trainer, sampler: Sampler, *, quota: bool = True,
                 beta: int = 10) -> None:
        super().__init__(pools, trainer, sampler)
        if beta < 1:
            raise ValueError(f"beta must be >= 1, got {beta}")
        self.quota = quota
        self.beta = beta

    def select(self, cycle: Cycle, labeled: Sequence[np.ndarray], budgets: Sequence[int]) -> Selection:
        self._check_trained(cycle)
        aggregator = cycle.require_aggregator(self.name)
        candidates = [self.candidates(k, labeled[k], budgets[k]) for k in range(self.pools.n_clients)]
        fit = stage2_kmeans(budgets, self.beta, aggregator).fit({k: c.points for k, c in enumerate(candidates)},
                                                   {k: c.weights for k, c in enumerate(candidates)})
        if self.quota:
            chosen = [c.quota_choice(fit.centroids, budgets[k]) for k, c in enumerate(candidates)]
        else:
            closest = {k: c.closest(fit.centroids) for k, c in enumerate(candidates)}
            owned = secure_owners(closest, aggregator, score_bound=DISTANCE_BOUND)
            chosen = [c.owned_choice(fit.centroids, owned[k]) for k, c in enumerate(candidates)]
        picks = [self.pools.pools[k][c.positions[chosen[k]]] for k, c in enumerate(candidates)]
        details = {"kmeans_rounds": fit.rounds, "kmeans_iterations": fit.iterations,
                   "kmeans_converged": fit.converged, "candidates": [len(c.positions) for c in candidates]}
        return Selection(picks, details)

    def candidates(self, client: int, labeled: np.ndarray, budget: int) -> Candidates:
        """Stage 1 on one client: its ``beta * budget`` most uncertain unlabeled samples under the global model."""
        view = pool_view(self._model, self.pools.pool_inputs(client), self.pools.labeled_mask(client, labeled),
                         needs={"probs", "embeddings"}, batch_size=self.trainer.inference_batch_size)
        unlabeled = view.unlabeled_indices()
        scores = UNCERTAINTY_SCORES[self.sampler.name](view.probs[unlabeled])
        keep = top_indices(scores, min(self.beta * int(budget), len(unlabeled)))
        return Candidates(unlabeled[keep].cpu().numpy(), F.normalize(view.embeddings[unlabeled[keep]], dim=1),
                          scores[keep])


@dataclass(frozen=True)
class Candidates:
    """One client's stage-1 candidates and its local stage-3 choices among them.

    Attributes:
        positions: (n,) int64 positions in the client's pool.
        points: (n, d) L2-normalised embeddings (device and dtype of the model's output).
        weights: (n,) uncertainty scores in [0, 1], the k-means weights.
    """

    positions: np.ndarray
    points: torch.Tensor
    weights: torch.Tensor

    def distances(self, centroids: np.ndarray) -> np.ndarray:
        """(m, n) float64 Euclidean distances from the m centroids to the candidates (``kmeans_stats``, as a Flower
        node computes them)."""
        return centre_distances(centroids, self.points.detach().to("cpu", torch.float64).numpy())

    def quota_choice(self, centroids: np.ndarray, budget: int) -> np.ndarray:
        """With quota: sorted indices (into the candidates) of the ``budget`` distinct candidates paired to
        distinct centroids at least total distance."""
        return np.sort(least_cost_pairs(self.distances(centroids), budget)[1])

    def closest(self, centroids: np.ndarray) -> np.ndarray:
        """(m,) distance from each centroid to its closest candidate here (+inf without candidates): this
        client's ownership scores."""
        dist = self.distances(centroids)
        return dist.min(axis=1) if dist.shape[1] else np.full(len(centroids), np.inf)

    def owned_choice(self, centroids: np.ndarray, owned: np.ndarray) -> np.ndarray:
        """Without quota: sorted indices of distinct candidates for the owned centroids (a (m,) bool mask), at
        least total distance, one per owned centroid while candidates last."""
        dist = self.distances(centroids)[np.flatnonzero(owned)]
        return np.sort(linear_sum_assignment(dist)[1])
