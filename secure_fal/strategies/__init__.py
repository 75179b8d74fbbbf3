"""FAL strategies and bounds, chosen by name.

>>> cls = get_strategy("f-al")                      # doctest: +SKIP
>>> strategy = cls(pools, trainer, get_sampler(cls.default_sampler))

=============== ============================================================== =========================
name            who trains / who selects                                       reported accuracy
=============== ============================================================== =========================
s-al            each client alone / with its local model                        FedAvg on the union of labels
f-al            FedAvg / each client with the global model                      global model
fal-local       FedAvg / each client with the global model fine-tuned locally   global model
fal-global      FedAvg / secure federated k-means over all clients' candidates  global model
fairfal         FedAvg / adaptive global-or-local model, class-balanced sampler global model
logo            FedAvg / local-only model's clusters, global model's entropy    global model
kafal           FedAvg / last-round local vs global disagreement (KSAS)         global model
ifal            FedAvg / global-local-distilled inconsistency, k-means          global model
centralized     one model on the pooled data / one sampler over the pooled pool that model
client-alone    each client alone / with its local model                        mean of the local models
=============== ============================================================== =========================
"""

from __future__ import annotations

from .base import (ClientLocalStrategy, ClientPools, Cycle, Evaluation, FinalLocalsStrategy, GlobalModelStrategy,
                   LocalQueryStrategy, OwnRuleStrategy, Selection, Strategy, derive_seed, select_locally,
                   select_on_pool)
from .bounds import Centralized, ClientAlone
from .f_al import FAL
from .fairfal import FairFAL
from .fal_global import FALGlobal, least_cost_pairs
from .fal_local import FALLocal
from .ifal import IFAL
from .kafal import KAFAL
from .logo import LoGo
from .s_al import SAL
from .training import Trainer

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    SAL, FAL, FALLocal, FALGlobal, FairFAL, LoGo, KAFAL, IFAL, Centralized, ClientAlone)}
"""Registered strategies by name."""


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered as ``name`` (one of ``STRATEGIES``)."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


__all__ = [
    "STRATEGIES", "get_strategy", "Strategy", "GlobalModelStrategy", "ClientLocalStrategy", "OwnRuleStrategy",
    "FinalLocalsStrategy",
    "LocalQueryStrategy", "ClientPools", "Cycle", "Evaluation", "Selection", "Trainer", "derive_seed", "select_locally",
    "select_on_pool", "least_cost_pairs", "SAL", "FAL", "FALLocal", "FALGlobal", "FairFAL", "LoGo", "KAFAL", "IFAL",
    "Centralized", "ClientAlone",
]
