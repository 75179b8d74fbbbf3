"""Uncertainty samplers, and the random baseline they are compared with.

An uncertainty sampler scores every unlabeled sample from its softmax and takes the top ``budget``;
all scores lie in [0, 1] and grow with uncertainty; ties go to the lower pool index.
"""

from __future__ import annotations

import math

import torch

from .base import PoolView, Sampler, top_indices


def margin_score(probs: torch.Tensor) -> torch.Tensor:
    """``1 - (p1 - p2)`` with p1 >= p2 the two largest probabilities; (N, C) -> (N,)."""
    top2 = torch.topk(probs, 2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy_score(probs: torch.Tensor) -> torch.Tensor:
    """Normalised entropy ``H(p) / log C`` (with 0 log 0 = 0); (N, C) -> (N,)."""
    return -torch.special.xlogy(probs, probs).sum(dim=1) / math.log(probs.shape[1])


def least_confidence_score(probs: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p_c``; (N, C) -> (N,)."""
    return 1.0 - probs.max(dim=1).values


class _ScoreSampler(Sampler):
    """Top-``budget`` unlabeled samples by ``_score(pool.probs)``."""

    needs = frozenset({"probs"})

    @staticmethod
    def _score(probs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled = pool.unlabeled_indices()
        return unlabeled[top_indices(self._score(pool.probs[unlabeled]), budget)]


class MarginSampler(_ScoreSampler):
    """Smallest margin between the two most probable classes (score :func:`margin_score`)."""

    name = "margin"
    _score = staticmethod(margin_score)


class EntropySampler(_ScoreSampler):
    """Highest normalised predictive entropy (score :func:`entropy_score`)."""

    name = "entropy"
    _score = staticmethod(entropy_score)


class LeastConfidenceSampler(_ScoreSampler):
    """Lowest top-class probability (score :func:`least_confidence_score`)."""

    name = "least-confidence"
    _score = staticmethod(least_confidence_score)


class RandomSampler(Sampler):
    """Uniformly random distinct unlabeled samples (a permutation drawn from the CPU generator)."""

    name = "random"

    def _select(self, pool: PoolView, budget: int, generator: torch.Generator) -> torch.Tensor:
        unlabeled = pool.unlabeled_indices()
        order = torch.randperm(len(unlabeled), generator=generator)[:budget]
        return unlabeled[order.to(pool.device)]
