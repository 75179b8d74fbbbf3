"""BADGE (Ash et al., 2020): k-means++ seeding in gradient-embedding space."""

from __future__ import annotations

import torch

from .base import PoolView, Sampler
from .space import FeatureSpace, gradient_space


def _draw(weights: torch.Tensor, u: float) -> int | None:
    """Index drawn with probability proportional to ``weights`` (>= 0) by inverse CDF at ``u`` in
    [0, 1), or None if all weights are 0. The cumulative sum is taken in float64 on the CPU
    (deterministic, and the same whatever the device of ``weights``)."""
    cdf = weights.to("cpu", torch.float64).cumsum(0)
    total = cdf[-1]
    if not total > 0:
        return None
    last_positive = int(torch.searchsorted(cdf, total))  # first index reaching the total
    return min(int(torch.searchsorted(cdf, u * total, right=True)), last_positive)


def kmeans_pp(space: FeatureSpace, n: int, generator: torch.Generator, *,
              weights: torch.Tensor | None = None, min_sq_dist: torch.Tensor | None = None,
              first: int | None = None) -> torch.Tensor:
    """k-means++ seeding (D² sampling), returning ``n`` distinct points.

    Each step draws a point with probability proportional to ``weight * D²``, D being its distance
    to the closest centre chosen so far, then updates D with one vectorised distance computation.
    Chosen points have D = 0 and are never drawn again; if every remaining ``weight * D²`` is 0
    (duplicates of centres, or zero weights) the step draws uniformly among the points not chosen.

    Parameters
    ----------
    space : FeatureSpace
        The M points to seed from.
    n : int
        Number of seeds, n <= M.
    generator : torch.Generator
        CPU generator; one uniform number is drawn per seed.
    weights : Tensor of shape (M,), optional
        Non-negative sample weights (default: all 1).
    min_sq_dist : Tensor of shape (M,), optional
        Squared distance to fixed initial centres; all ``n`` seeds are then drawn by D² sampling.
    first : int, optional
        First seed when there are no initial centres; default: drawn with probability proportional
        to ``weights``. Not allowed together with ``min_sq_dist``.

    Returns
    -------
    Tensor of shape (n,), int64
        Distinct indices into ``space``, in seeding order.
    """
    if min_sq_dist is not None and first is not None:
        raise ValueError("first is only used when there are no initial centres (min_sq_dist)")
    if not 0 <= n <= len(space):
        raise ValueError(f"cannot seed {n} of {len(space)} points")
    device = space.sq_norms.device
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    u = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
    free = torch.ones(len(space), dtype=torch.bool, device=device)

    def dist_to(j: int) -> torch.Tensor:
        return space.sq_dists_to(torch.tensor([j], device=device))

    picks = []
    if min_sq_dist is None:
        if first is None:
            first = _draw(free if weights is None else weights, u[0])
            if first is None:
                first = _draw(free, u[0])
        picks.append(first)
        free[first] = False
        dist = dist_to(first)
        dist[first] = 0.0  # exactly, whatever the rounding of the distance expansion
    else:
        dist = min_sq_dist.clone()
    for t in range(len(picks), n):
        j = _draw(dist if weights is None else weights * dist, u[t])
        if j is None:
            j = _draw(free, u[t])
        picks.append(j)
        free[j] = False
        if t + 1 < n:
            torch.minimum(dist, dist_to(j), out=dist)
            dist[j] = 0.0
    return torch.tensor(picks, dtype=torch.long, device=device)


class BadgeSampler(Sampler):
    """Batch Active learning by Diverse Gradient Embeddings.

    k-means++ seeding (:func:`kmeans_pp`) on the unlabeled samples' gradient embeddings
    ``g(x) = e(x) ⊗ (onehot(argmax p(x)) - p(x))``; the first seed is the sample of largest gradient
    norm (as in the BADGE reference code), the next ones are D²-sampled. The embeddings are derived
    exactly from ``embeddings`` and ``probs`` (or ``grad_probs`` when given) in factored form (two
    small matrix-vector products per step instead of one over N x D*C).
    """

    name = "badge"
    needs = frozenset({"probs", "embeddings"})

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled = pool.unlabeled_indices()
        space = gradient_space(pool).rows(unlabeled)
        first = int(torch.argmax(space.sq_norms))
        return unlabeled[kmeans_pp(space, budget, generator, first=first)]
