"""Secure federated k-means: only per-cluster aggregates, summed securely, ever leave a client.

Every round, each client assigns its points to the current centres and contributes, per cluster j,
the weighted count n_j, the weighted sum S_j (d values) and the weighted sum of squares Q_j (d values)
through ``Aggregator.sum``. The server therefore sees only totals over all clients.

Initialisation (no raw point, no local centre is ever revealed): LBG-style splitting from aggregates.
Start from the global mean; repeatedly split clusters along their coordinate of largest variance
(c -> c -+ sigma * e_dim, the Var-Part rule), the ones with the largest within-cluster sum of squares
first, refining with a few Lloyd rounds after each split, until k centres exist; then Lloyd iterations
until no centre moves more than ``tol`` (or ``max_iter``). Spec and leakage: protocols/kmeans.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..secagg import Aggregator, Statistic
from . import kmeans_stats


@dataclass
class KMeansResult:
    """Outcome of a federated k-means run.

    Attributes:
        centroids: (k, d) float64 global centres.
        counts: (k,) float64 weighted number of points per cluster at the last round.
        inertia: weighted sum of squared distances to the assigned centre at the last round.
        iterations: Lloyd iterations after initialisation.
        rounds: secure sums used in total (initialisation included).
        converged: True if the last Lloyd iteration moved no centre more than ``tol``.
    """

    centroids: np.ndarray
    counts: np.ndarray
    inertia: float
    iterations: int
    rounds: int
    converged: bool


def cluster_stats(x: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor) -> np.ndarray:
    """One client's contribution: [n (m), S (m*d), Q (m*d)] as a flat float64 vector (``kmeans_stats.cluster_stats``
    on the CPU, so a Flower node computes the same floats without torch).

    Args:
        x: (n, d) the client's points. weights: (n,) non-negative sample weights. centres: (m, d).
    """
    def host(t: torch.Tensor) -> np.ndarray:
        return torch.as_tensor(t).detach().to("cpu", torch.float64).numpy()

    return kmeans_stats.cluster_stats(host(x), host(weights), host(centres))


StatsSum = Callable[[np.ndarray], np.ndarray]
"""Centres (m, d) -> the secure sum over the clients of their ``cluster_stats`` for those centres, (m + 2md,)."""


def aggregator_stats_sum(points: Mapping[int, torch.Tensor], weights: Mapping[int, torch.Tensor],
                         aggregator: Aggregator, bound: float, statistic: Statistic) -> StatsSum:
    """The ``StatsSum`` of clients simulated in this process: every client's ``cluster_stats`` through one
    ``aggregator.sum`` per call (public bound ``bound`` per coordinate; ``statistic``: 'kmeans-stats' with the L2
    bound of a client's whole vector, ``FederatedKMeans.statistic``)."""

    def stats_sum(centres: np.ndarray) -> np.ndarray:
        contributions = {}
        for cid, x in points.items():
            c = torch.as_tensor(centres, dtype=torch.float64, device=x.device)
            contributions[cid] = cluster_stats(x, weights[cid], c)
        return aggregator.sum(contributions, bound=bound, statistic=statistic).total

    return stats_sum


class FederatedKMeans:
    """Weighted k-means over points held by many clients, through secure sums only.

    The server side (``fit_sums``) sees only the summed statistics; ``fit`` runs it over clients simulated in
    this process, a deployment (``secure_fal.flower``) over clients on their own nodes.

    Args:
        k: number of clusters.
        aggregator: the session's Aggregator (any protocol); only ``fit`` uses it (None for ``fit_sums``).
        point_bound: public bound on |coordinate| of any point (e.g. 1 for L2-normalised embeddings).
        count_bound: public bound on the total weight one client holds (its number of points for unit weights).
        max_iter: Lloyd iterations after initialisation, at most.
        tol: stop when no centre moves more than tol (Euclidean).
        refine_per_split: Lloyd rounds run after each splitting step of the initialisation.
        split_fraction: each splitting step splits max(1, floor(m * split_fraction)) of the m current
            clusters (largest SSE first). Smaller is more robust, larger needs fewer rounds:
            about log(k) / log(1 + split_fraction) steps.
    """

    def __init__(self, k: int, aggregator: Aggregator | None, *, point_bound: float, count_bound: float,
                 max_iter: int = 30, tol: float = 1e-4, refine_per_split: int = 2, split_fraction: float = 0.25) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.aggregator = aggregator
        self.bound = count_bound * max(1.0, point_bound, point_bound * point_bound)
        # one client's [n, S, Q] with total weight W <= count_bound and ||x|| <= point_bound: ||n|| <= W,
        # ||S|| <= W point_bound, ||Q|| <= W point_bound^2
        self.l2_bound = count_bound * math.sqrt(1 + point_bound ** 2 + point_bound ** 4)
        self.max_iter = max_iter
        self.tol = tol
        self.refine_per_split = refine_per_split
        self.split_fraction = split_fraction
        self.rounds = 0

    def fit(self, points: Mapping[int, torch.Tensor],
            weights: Mapping[int, torch.Tensor] | None = None) -> KMeansResult:
        """Cluster the union of the clients' points.

        Args:
            points: client id -> (n_k, d) tensor (any device; stays there).
            weights: client id -> (n_k,) non-negative weights; default all ones.
        """
        if self.aggregator is None:
            raise ValueError("FederatedKMeans.fit needs an Aggregator; use fit_sums with a StatsSum")
        weights = weights or {c: torch.ones(len(x), device=x.device) for c, x in points.items()}
        d = next(iter(points.values())).shape[1]
        return self.fit_sums(aggregator_stats_sum(points, weights, self.aggregator, self.bound, self.statistic), d)

    @property
    def statistic(self) -> Statistic:
        """The declaration of its sums: 'kmeans-stats' bounded by ``l2_bound``."""
        return Statistic("kmeans-stats", self.l2_bound)

    def round_sizes(self) -> list[int]:
        """The number of centres m of every secure sum ``fit_sums`` makes when Lloyd runs all ``max_iter``
        iterations (the worst case, known before any data: a privacy accountant's plan). Each sum has m + 2 m d
        values."""
        sizes, m = [1], 1
        while m < self.k:
            m += min(max(1, int(m * self.split_fraction)), self.k - m)
            sizes += [m] * (self.refine_per_split + 1)
        return sizes + [self.k] * self.max_iter

    def fit_sums(self, stats_sum: StatsSum, d: int) -> KMeansResult:
        """The server side: cluster from summed statistics only.

        Args:
            stats_sum: centres (m, d) -> summed ``cluster_stats`` of every client, each entry within
                ``self.bound`` per client (the public bound of the secure sum).
            d: dimension of the points.
        """
        centres = np.zeros((1, d))
        counts, sums, squares = self._round(stats_sum, centres)
        if counts[0] <= 0 and not sums.any():
            raise ValueError("federated k-means: the clients hold no points (total weight 0)")
        # a differentially private (noised) total weight can be <= 0: the first centre is then the origin
        centres = sums / counts[:, None] if counts[0] > 0 else np.zeros((1, d))
        while len(centres) < self.k:
            centres = self._split(centres, counts, sums, squares)
            for _ in range(self.refine_per_split):
                counts, sums, squares = self._round(stats_sum, centres)
                centres = _update(centres, counts, sums)
            counts, sums, squares = self._round(stats_sum, centres)
        converged, iterations = False, 0
        while iterations < self.max_iter and not converged:
            new = _update(centres, counts, sums)
            converged = bool(np.max(np.linalg.norm(new - centres, axis=1)) <= self.tol)
            centres = new
            iterations += 1
            counts, sums, squares = self._round(stats_sum, centres)
        inertia = float(np.sum(_sse(centres, counts, sums, squares)))
        return KMeansResult(centres, counts, inertia, iterations, self.rounds, converged)

    def _round(self, stats_sum: StatsSum, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One secure sum of every client's cluster statistics; returns totals (n, S, Q)."""
        m, d = centres.shape
        total = np.asarray(stats_sum(centres), dtype=np.float64)
        if total.shape != (m + 2 * m * d,):
            raise ValueError(f"k-means round {self.rounds + 1}: summed statistics have shape {total.shape}, "
                             f"expected ({m + 2 * m * d},) for {m} centres in {d} dimensions")
        self.rounds += 1
        counts = np.maximum(total[:m], 0.0)
        return counts, total[m:m + m * d].reshape(m, d), total[m + m * d:].reshape(m, d)

    def _split(self, centres, counts, sums, squares) -> np.ndarray:
        """Split the clusters with the largest SSE (all of them while that at most doubles m, up to k)."""
        m = len(centres)
        n_split = min(max(1, int(m * self.split_fraction)), self.k - m)
        sse = _sse(centres, counts, sums, squares)
        order = np.argsort(-sse, kind="stable")[:n_split]
        new = [centres]
        for j in order:
            var = _variance(counts[j], sums[j], squares[j])
            dim = int(np.argmax(var))
            step = np.zeros_like(centres[j])
            step[dim] = np.sqrt(var[dim]) if var[dim] > 0 else 1e-3
            centres[j] = centres[j] - step
            new.append((centres[j] + 2 * step)[None])
        return np.concatenate(new)


def _update(centres: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Lloyd update c_j = S_j / n_j; an empty cluster keeps its previous centre."""
    out = centres.copy()
    full = counts > 0
    out[full] = sums[full] / counts[full, None]
    return out


def _variance(count: float, s: np.ndarray, q: np.ndarray) -> np.ndarray:
    if count <= 0:
        return np.zeros_like(s)
    mean = s / count
    return np.maximum(q / count - mean * mean, 0.0)


def _sse(centres, counts, sums, squares) -> np.ndarray:
    """Per-cluster weighted sum of squared distances to the given centres: sum_i w_i ||x_i - c_j||^2."""
    return np.maximum(np.sum(squares - 2 * centres * sums + counts[:, None] * centres * centres, axis=1), 0.0)
