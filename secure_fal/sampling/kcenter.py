"""k-center greedy (core-set) sampling: farthest-first traversal in embedding space."""

from __future__ import annotations

import torch

from .base import PoolView, Sampler
from .space import FeatureSpace


def farthest_first(space: FeatureSpace, n: int, *, min_sq_dist: torch.Tensor | None = None,
                   first: int | None = None) -> torch.Tensor:
    """Greedy farthest-first traversal (Gonzalez), a 2-approximation of k-center.

    Each step picks the point farthest from the current centres (ties to the lower index) and adds
    it to them; one vectorised distance update per step.

    Parameters
    ----------
    space : FeatureSpace
        The M candidate points.
    n : int
        Number of points to pick, n <= M.
    min_sq_dist : Tensor of shape (M,), optional
        Squared distance of every point to the initial centres (e.g. the labeled set).
    first : int, optional
        Index of the first pick when there are no initial centres. Exactly one of ``min_sq_dist``
        and ``first`` must be given.

    Returns
    -------
    Tensor of shape (n,), int64
        Distinct indices into ``space``, in pick order.
    """
    if (min_sq_dist is None) == (first is None):
        raise ValueError("give exactly one of min_sq_dist (initial centres) and first (first pick)")
    if not 0 <= n <= len(space):
        raise ValueError(f"cannot pick {n} of {len(space)} points")
    device = space.sq_norms.device
    picks = torch.empty(n, dtype=torch.long, device=device)
    if first is not None:
        if n == 0:
            return picks
        start = torch.tensor([first], device=device)
        dist = space.sq_dists_to(start)
        dist[start] = -torch.inf
        picks[0] = start[0]
        steps = range(1, n)
    else:
        dist = min_sq_dist.clone()
        steps = range(n)
    for t in steps:
        j = torch.argmax(dist).view(1)
        picks[t] = j[0]
        torch.minimum(dist, space.sq_dists_to(j), out=dist)
        dist[j] = -torch.inf
    return picks


class KCenterSampler(Sampler):
    """Core-set selection by k-center greedy on ``pool.embeddings``.

    The labeled samples are the initial centres; with none labeled the first pick is a uniformly
    random unlabeled sample (from the generator). Distances are Euclidean.
    """

    name = "kcenter"
    needs = frozenset({"embeddings"})

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled = pool.unlabeled_indices()
        labeled = pool.labeled_indices()
        space = FeatureSpace.dense(pool.embeddings[unlabeled])
        if len(labeled):
            min_sq_dist = space.nearest(FeatureSpace.dense(pool.embeddings[labeled]))[0]
            picks = farthest_first(space, budget, min_sq_dist=min_sq_dist)
        else:
            first = int(torch.randint(len(unlabeled), (1,), generator=generator))
            picks = farthest_first(space, budget, first=first)
        return unlabeled[picks]
