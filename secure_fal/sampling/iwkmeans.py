"""IWKMeans: margin pre-selection, then weighted k-means around the labeled set (Abraham et al.)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from .badge import kmeans_pp
from .base import PoolView, Sampler, top_indices
from .space import FeatureSpace, segment_sum
from .uncertainty import margin_score


class IWKMeansSampler(Sampler):
    """Incremental weighted k-means sampler.

    1. Candidates: the ``beta * budget`` unlabeled samples of largest :func:`margin_score` (all of
       them if fewer).
    2. Weighted k-means on the candidates' embeddings, sample weight = margin score, with the
       labeled samples' embeddings as FIXED centres plus ``budget`` new centres. The new centres are
       initialised by weighted k-means++ among the candidates (D² counted from the fixed centres too),
       then at most ``max_iter`` Lloyd iterations move them (a candidate joins a new centre only if
       strictly closer than every fixed one; a new centre left with zero weight stays put); Lloyd stops
       early once the squared centre shift sums to at most ``tol`` times the mean per-feature variance
       of the candidates (the scikit-learn convention).
    3. One distinct candidate per new centre: the minimum-cost assignment
       (:func:`scipy.optimize.linear_sum_assignment`, on the CPU) of new centres to candidates under
       Euclidean distance.

    Parameters
    ----------
    beta : int, default=10
        Candidate pool size as a multiple of the budget.
    max_iter : int, default=10
        Maximum number of Lloyd iterations.
    tol : float, default=1e-4
        Relative tolerance on the centre shift.

    Notes
    -----
    The assignment takes a dense (budget, beta * budget) float64 matrix on the CPU: 720 MB for a
    budget of 3000.
    """

    name = "iwkmeans"
    needs = frozenset({"probs", "embeddings"})

    def __init__(self, beta: int = 10, max_iter: int = 10, tol: float = 1e-4) -> None:
        if beta < 1 or max_iter < 0 or tol < 0:
            raise ValueError(f"need beta >= 1, max_iter >= 0, tol >= 0; got {beta}, {max_iter}, {tol}")
        self.beta = beta
        self.max_iter = max_iter
        self.tol = tol

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled = pool.unlabeled_indices()
        labeled = pool.labeled_indices()
        score = margin_score(pool.probs[unlabeled])
        keep = top_indices(score, min(self.beta * budget, len(unlabeled)))
        candidates, weight = unlabeled[keep], score[keep]
        x = pool.embeddings[candidates]
        points = FeatureSpace.dense(x)
        if len(labeled):
            fixed_sq_dist = points.nearest(FeatureSpace.dense(pool.embeddings[labeled]))[0]
        else:
            fixed_sq_dist = torch.full_like(weight, torch.inf)
        seeds = kmeans_pp(points, budget, generator, weights=weight,
                          min_sq_dist=fixed_sq_dist if len(labeled) else None)
        centres = self._lloyd(x, weight, fixed_sq_dist, x[seeds])
        cost = torch.cdist(centres, x).cpu().double().numpy()
        return candidates[torch.as_tensor(linear_sum_assignment(cost)[1], device=pool.device)]

    def _lloyd(self, x: torch.Tensor, weight: torch.Tensor, fixed_sq_dist: torch.Tensor,
               centres: torch.Tensor) -> torch.Tensor:
        """Weighted Lloyd iterations moving only the new ``centres`` (K, D); returns them.

        After the first assignment, a point is compared with every centre only if its own centre
        moved; otherwise its nearest centre is either unchanged or one of the centres that moved,
        which is all that is computed (exact, and most centres stop moving after a few steps)."""
        if self.max_iter == 0:
            return centres
        points, k = FeatureSpace.dense(x), len(centres)
        tol = self.tol * float(x.var(dim=0, unbiased=False).mean())
        weighted = torch.cat([weight[:, None] * x, weight[:, None]], dim=1)  # (M, D + 1)
        sq_dist, nearest = points.nearest(FeatureSpace.dense(centres))
        for step in range(self.max_iter):
            mine = sq_dist < fixed_sq_dist
            sums = segment_sum(weighted[mine], nearest[mine], k)
            mass = sums[:, -1:]
            moved = torch.where(mass > 0, sums[:, :-1] / mass.clamp_min(1e-300), centres.double()).to(x.dtype)
            changed = (moved != centres).any(dim=1)
            shift = float(((moved - centres) ** 2).sum())
            centres = moved
            if shift <= tol or step + 1 == self.max_iter:
                break
            sq_dist, nearest = _reassign(points, FeatureSpace.dense(centres), changed, sq_dist, nearest)
        return centres


def _reassign(points: FeatureSpace, centres: FeatureSpace, changed: torch.Tensor, sq_dist: torch.Tensor,
              nearest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centre of every point after the centres flagged ``changed`` (K,) moved, given the
    previous ``sq_dist`` and ``nearest`` (M,); ties go to the lower centre index."""
    sq_dist, nearest = sq_dist.clone(), nearest.clone()
    stale = changed[nearest]
    redo = torch.nonzero(stale).flatten()
    if len(redo):
        sq_dist[redo], nearest[redo] = points.rows(redo).nearest(centres)
    keep, moved = torch.nonzero(~stale).flatten(), torch.nonzero(changed).flatten()
    if len(keep) and len(moved):
        d, j = points.rows(keep).nearest(centres.rows(moved))
        j = moved[j]
        better = (d < sq_dist[keep]) | ((d == sq_dist[keep]) & (j < nearest[keep]))
        sq_dist[keep[better]], nearest[keep[better]] = d[better], j[better]
    return sq_dist, nearest
