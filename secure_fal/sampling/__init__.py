"""Client-local active-learning samplers (torch, any device) and the registry that names them.

>>> sampler = get_sampler("margin")
>>> # pool = pool_view(model, x, labeled_mask, needs=sampler.needs)
>>> # picked = sampler.select(pool, budget=100, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from .badge import BadgeSampler
from .base import PoolView, Sampler
from .fairfal import FairFALSampler, class_quotas, prototype_pseudo_labels
from .inference import model_outputs, pool_view
from .iwkmeans import IWKMeansSampler
from .kcenter import KCenterSampler
from .space import badge_grad_embeddings
from .uncertainty import (EntropySampler, LeastConfidenceSampler, MarginSampler, RandomSampler,
                          entropy_score, least_confidence_score, margin_score)

_REGISTRY: dict[str, type[Sampler]] = {cls.name: cls for cls in (
    RandomSampler, MarginSampler, EntropySampler, LeastConfidenceSampler, KCenterSampler,
    BadgeSampler, IWKMeansSampler, FairFALSampler)}

SAMPLERS: tuple[str, ...] = tuple(_REGISTRY)
"""Registered sampler names."""


def get_sampler(name: str, **kwargs) -> Sampler:
    """Sampler registered as ``name`` (one of :data:`SAMPLERS`), built with ``kwargs``."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}") from None
    return cls(**kwargs)


__all__ = [
    "SAMPLERS", "PoolView", "Sampler", "get_sampler", "pool_view", "model_outputs", "class_quotas",
    "prototype_pseudo_labels", "badge_grad_embeddings", "margin_score", "entropy_score",
    "least_confidence_score", "RandomSampler", "MarginSampler", "EntropySampler",
    "LeastConfidenceSampler", "KCenterSampler", "BadgeSampler", "IWKMeansSampler", "FairFALSampler",
]
