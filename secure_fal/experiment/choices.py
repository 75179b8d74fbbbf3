"""The names a config may choose, known without importing torch.

The registries themselves (``secure_fal.data.LOADERS``, ``secure_fal.models.MODEL_NAMES``,
``secure_fal.sampling.SAMPLERS``, ``secure_fal.strategies.STRATEGIES``) live in modules that import torch, which
costs seconds; checking a config against these copies keeps ``secure-fal run`` fast to refuse a bad one.
``tests/test_choices.py`` checks that every copy equals its registry: a new dataset, model, sampler or strategy
is added here too.
"""

from __future__ import annotations

from dataclasses import dataclass

DATASETS = ("digits", "fmnist", "mnist", "cifar10", "cifar100", "npz", "folder")
"""Built-in dataset loaders (``data.dataset``); a ``module:function`` plug-in is accepted besides."""

MODELS = ("cnn", "mlp", "resnet18")
"""Built-in models (``training.model``); a ``module:function`` plug-in is accepted besides."""

SAMPLERS = ("random", "margin", "entropy", "least-confidence", "kcenter", "badge", "iwkmeans", "fairfal")
"""Client-local samplers (``active.sampler``)."""

ALONE_SCHEDULES = ("reference", "fixed")
"""How a local-only model trains (``training.alone_schedule``; ``strategies.training.ALONE_SCHEDULES``)."""

PRIOR_ESTIMATES = ("oversample", "exact")
"""FairFAL's class-prior estimate (``active.prior_estimate``; ``strategies.fairfal.PRIOR_ESTIMATES``)."""

GRADIENT_MODELS = ("reference", "global")
"""FairFAL's gradient-embedding model (``active.gradient_model``; ``strategies.fairfal.GRADIENT_MODELS``)."""

DP_MECHANISMS = ("ddg", "skellam", "central-gaussian")
"""Differential-privacy mechanisms (``privacy.mechanism``; ``secagg.privacy.MECHANISMS``)."""


@dataclass(frozen=True)
class StrategyChoice:
    """What the config needs to know of a strategy class (its class attributes of the same names).

    Attributes:
        default_sampler: the sampler used when ``active.sampler`` is omitted (None: the strategy selects by its
            own rule and takes no sampler).
        samplers: the samplers it accepts (None: any).
        federated: False for the bounds that never aggregate across clients.
    """

    default_sampler: str | None = "margin"
    samplers: frozenset[str] | None = None
    federated: bool = True


STRATEGIES: dict[str, StrategyChoice] = {
    "s-al": StrategyChoice(),
    "f-al": StrategyChoice(),
    "fal-local": StrategyChoice(),
    "fal-global": StrategyChoice(samplers=frozenset({"margin", "entropy", "least-confidence"})),
    "fairfal": StrategyChoice("fairfal", frozenset({"fairfal"})),
    "logo": StrategyChoice(None),
    "kafal": StrategyChoice(None),
    "ifal": StrategyChoice(None),
    "centralized": StrategyChoice(federated=False),
    "client-alone": StrategyChoice(federated=False),
}
"""Strategies (``active.strategy``) by name."""
