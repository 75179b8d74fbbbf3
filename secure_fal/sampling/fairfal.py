"""FairFAL class-balanced sampling (Zong et al., CVPR 2026): prototype pseudo-labels, per-class
quotas, entropy candidates, then k-center in BADGE gradient-embedding space."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import PoolView, Sampler, top_indices
from .kcenter import farthest_first
from .space import gradient_space, segment_sum
from .uncertainty import entropy_score


def class_quotas(budget: int, available: Sequence[int]) -> list[int]:
    """Split ``budget`` evenly over classes, within what each class has available.

    Rule (that of the FairFAL reference code), with K = ``len(available)`` classes:

    1. every class gets ``budget // K``; the ``budget % K`` remaining go one each to the classes
       with the most available samples (ties: lower position first);
    2. each quota is capped at the class's availability; the total removed is the leftover;
    3. the leftover is handed out one at a time, round-robin over the classes in the same order
       (most available first), skipping classes whose quota already equals their availability.

    Parameters
    ----------
    budget : int
        0 <= budget <= sum(available).
    available : sequence of int
        Number of candidates (unlabeled samples pseudo-labelled) per class, K >= 1.

    Returns
    -------
    list of int
        Quota per class, same order as ``available``; sums to ``budget``.

    Examples
    --------
    >>> class_quotas(10, [100, 2, 50])  # 4, 3, 3 -> class 1 capped at 2 -> leftover 1 to class 0
    [5, 2, 3]
    """
    available = [int(a) for a in available]
    if not available or min(available) < 0:
        raise ValueError(f"available must be a non-empty list of counts >= 0, got {available}")
    if not 0 <= budget <= sum(available):
        raise ValueError(f"budget {budget} is not within [0, {sum(available)}] (the available samples)")
    k = len(available)
    order = sorted(range(k), key=lambda c: (-available[c], c))
    quotas = [budget // k] * k
    for c in order[: budget % k]:
        quotas[c] += 1
    leftover = sum(max(0, q - a) for q, a in zip(quotas, available))
    quotas = [min(q, a) for q, a in zip(quotas, available)]
    while leftover:
        for c in order:
            if leftover and quotas[c] < available[c]:
                quotas[c] += 1
                leftover -= 1
    return quotas


def prototype_pseudo_labels(embeddings: torch.Tensor, labeled_embeddings: torch.Tensor,
                            labeled_labels: torch.Tensor) -> torch.Tensor:
    """Nearest class prototype by cosine similarity.

    The prototype of class c is the mean of the L2-normalised embeddings of the labeled samples of
    class c, renormalised; only classes present in ``labeled_labels`` compete.

    Parameters
    ----------
    embeddings : Tensor of shape (N, D)
        Samples to pseudo-label (features of the global model).
    labeled_embeddings : Tensor of shape (L, D), L >= 1
    labeled_labels : Tensor of shape (L,), int64

    Returns
    -------
    Tensor of shape (N,), int64
        Class id (a value of ``labeled_labels``) of the most similar prototype; ties to the lower id.
    """
    classes, position = torch.unique(labeled_labels, return_inverse=True)
    sums = segment_sum(F.normalize(labeled_embeddings, dim=1), position, len(classes))
    prototypes = F.normalize(sums, dim=1).to(embeddings.dtype)
    return classes[(F.normalize(embeddings, dim=1) @ prototypes.T).argmax(dim=1)]


class FairFALSampler(Sampler):
    """FairFAL two-stage class-balanced sampler.

    1. Pseudo-label the unlabeled samples with :func:`prototype_pseudo_labels` (prototypes from the
       labeled samples' ``embeddings`` and ``labels``), over the classes present among the labeled.
    2. Quotas per pseudo-class by :func:`class_quotas` (availability = unlabeled samples with that
       pseudo-label).
    3. Stage 1, per class c with quota q_c > 0: candidates = its ``ceil(kappa * q_c)`` unlabeled
       samples of highest normalised entropy of ``probs`` (all of them if fewer).
    4. Stage 2: greedy k-center (:func:`~secure_fal.sampling.kcenter.farthest_first`) on the
       candidates in BADGE gradient-embedding space, picking q_c of them; initial centres are the
       labeled samples of class c (true labels). Pseudo-classes are classes present among the
       labeled samples, so there is always at least one (the reference's fallback, seeding with the
       most uncertain candidate, cannot arise).

    Which model fills which field (FairFAL): ``probs`` from the query model (global or local, by
    the adaptive model selection), ``embeddings`` from the global model. The gradient embeddings are
    those of the global model: ``pool.grad_embeddings`` when given (required when ``probs`` come
    from the local model), otherwise derived from ``probs`` and ``embeddings``.

    Parameters
    ----------
    kappa : float, default=4
        Candidate pool size per class as a multiple of its quota, >= 1.

    Notes
    -----
    :meth:`select` returns the picks grouped by class (increasing class id), in pick order within
    a class. The generator is not used: the selection is deterministic.
    """

    name = "fairfal"
    needs = frozenset({"probs", "embeddings", "labels"})

    def __init__(self, kappa: float = 4.0) -> None:
        if not kappa >= 1:
            raise ValueError(f"kappa must be >= 1, got {kappa}")
        self.kappa = kappa

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled, labeled = pool.unlabeled_indices(), pool.labeled_indices()
        if not len(labeled):
            raise ValueError("fairfal needs labeled samples to build class prototypes; "
                             "query the first batch with 'random'")
        y = pool.labels[labeled]
        if int(y.min()) < 0 or int(y.max()) >= pool.n_classes:
            raise ValueError(f"labels of labeled samples must lie in [0, {pool.n_classes})")
        classes = torch.unique(y)
        pseudo = prototype_pseudo_labels(pool.embeddings[unlabeled], pool.embeddings[labeled], y)
        position = torch.searchsorted(classes, pseudo)
        available = torch.bincount(position, minlength=len(classes)).tolist()
        quotas = class_quotas(budget, available)

        # Unlabeled samples grouped by pseudo-class, most uncertain first within a class.
        order = top_indices(entropy_score(pool.probs[unlabeled]), len(unlabeled))
        order = order[torch.sort(position[order], stable=True).indices]
        starts = [0, *torch.tensor(available).cumsum(0).tolist()]

        space = gradient_space(pool)
        picks = []
        for c, q in enumerate(quotas):
            if q == 0:
                continue
            n_candidates = min(math.ceil(self.kappa * q), available[c])
            candidates = unlabeled[order[starts[c]: starts[c] + n_candidates]]
            points = space.rows(candidates)
            anchors = space.rows(labeled[y == classes[c]])
            picks.append(candidates[farthest_first(points, q, min_sq_dist=points.nearest(anchors)[0])])
        return torch.cat(picks)
