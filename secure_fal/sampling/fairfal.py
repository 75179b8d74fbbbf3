"""FairFAL class-balanced sampling (Zong et al., CVPR 2026): prototype pseudo-labels, per-class
quotas, entropy candidates, then k-center in BADGE gradient-embedding space (reference behaviour,
with the budget split over the locally present classes as a named variant)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import PoolView, Sampler, top_indices
from .kcenter import farthest_first
from .space import gradient_space, labeled_gradient_space, segment_sum
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


QUOTA_CLASSES = ("all", "present")
"""How :class:`FairFALSampler` splits the budget: over all C classes (reference) or over the classes
present among the labeled samples."""


class FairFALSampler(Sampler):
    """FairFAL two-stage class-balanced sampler, as the reference code (chenchenzong/FairFAL,
    ``query_strategies/fairfal_sampling.py``, commit ca14e07) runs it.

    1. Pseudo-label the unlabeled samples with :func:`prototype_pseudo_labels` (prototypes from the
       labeled samples' ``embeddings`` and ``labels``), over the classes present among the labeled.
    2. Quotas per class by :func:`class_quotas`, availability = unlabeled samples with that
       pseudo-label. ``quota_classes="all"`` (reference): over all C classes, so the base share is
       ``budget // C`` and absent classes (availability 0) hand theirs round-robin to the others;
       ``"present"``: over the present classes only (base share ``budget // C_present``; differs
       by +-1 per class in about a quarter of random cases).
    3. Stage 1, per class c with quota q_c > 0: candidates = its ``max(1, floor(kappa * q_c))``
       unlabeled samples of highest normalised entropy of ``probs`` (all of them if fewer).
    4. Stage 2: greedy k-center (:func:`~secure_fal.sampling.kcenter.farthest_first`, squared
       Euclidean) on the candidates in BADGE gradient-embedding space, picking q_c of them. The
       initial centres are the labeled samples of class c, embedded at their TRUE label
       (:func:`~secure_fal.sampling.space.labeled_gradient_space`, the reference's
       ``get_grad_embedding_v2``); candidates at their predicted label. Only classes present among
       the labeled samples receive pseudo-labels, so every class with a quota has anchors (the
       reference's fallback, seeding with the most uncertain candidate, cannot arise).

    Which model fills which field (FairFAL): ``probs`` from the query model (global or local, by
    the adaptive model selection), ``embeddings`` from the global model, ``grad_probs`` from the
    model of the gradient embeddings (``probs`` when None).

    Parameters
    ----------
    kappa : float, default=4
        Candidate pool size per class as a multiple of its quota, >= 1.
    quota_classes : {"all", "present"}, default="all"
        Classes the budget is split over (step 2).

    Notes
    -----
    :meth:`select` returns the picks grouped by class (increasing class id), in pick order within
    a class. The generator is not used: the selection is deterministic.
    """

    name = "fairfal"
    needs = frozenset({"probs", "embeddings", "labels"})

    def __init__(self, kappa: float = 4.0, quota_classes: str = "all") -> None:
        if not kappa >= 1:
            raise ValueError(f"kappa must be >= 1, got {kappa}")
        if quota_classes not in QUOTA_CLASSES:
            raise ValueError(f"quota_classes must be one of {QUOTA_CLASSES}, got {quota_classes!r}")
        self.kappa = kappa
        self.quota_classes = quota_classes

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled, labeled = pool.unlabeled_indices(), pool.labeled_indices()
        if not len(labeled):
            raise ValueError("fairfal needs labeled samples to build class prototypes; "
                             "query the first batch with 'random'")
        y = pool.labels[labeled]
        if int(y.min()) < 0 or int(y.max()) >= pool.n_classes:
            raise ValueError(f"labels of labeled samples must lie in [0, {pool.n_classes})")
        pseudo = prototype_pseudo_labels(pool.embeddings[unlabeled], pool.embeddings[labeled], y)
        groups = torch.arange(pool.n_classes, device=pool.device) if self.quota_classes == "all" else torch.unique(y)
        position = torch.searchsorted(groups, pseudo)
        available = torch.bincount(position, minlength=len(groups)).tolist()
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
            n_candidates = min(max(1, math.floor(self.kappa * q)), available[c])
            candidates = unlabeled[order[starts[c]: starts[c] + n_candidates]]
            points = space.rows(candidates)
            anchors = labeled_gradient_space(pool, labeled[y == groups[c]])
            picks.append(candidates[farthest_first(points, q, min_sq_dist=points.nearest(anchors)[0])])
        return torch.cat(picks)
