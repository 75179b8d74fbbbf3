"""The [privacy] section at run level: plan every release of the run before it starts, calibrate the noise to
the budget (or refuse a config that would exceed it), and summarise what was spent.

The plan is the worst case the config allows, known before any data: FedAvg's ``rounds`` sums per cycle (every
federated strategy trains one FedAvg model per cycle), FairFAL's one gamma sum at its first query, and FAL-Global's
k-means sums per selection with every Lloyd iteration run (``FederatedKMeans.round_sizes``, k = the cycle budget,
the first cycle's split of it). Each release's noise scales with its own sensitivity, so its RDP curve hardly
depends on the bound it declares; the aggregator charges every actual release and refuses one over the budget.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch

from ..federated.fedavg import UPDATE_STATISTIC, StateVector
from ..secagg.privacy import DPSettings, PrivacyError, PrivacySession, Statistic
from ..secagg.privacy.accountant import calibrate_noise, epsilon, rdp_curve
from ..secagg.privacy.mechanisms import calibrate
from ..strategies import Trainer
from ..strategies.fairfal import GAMMA_STATISTIC
from ..strategies.fal_global import stage2_kmeans
from .config import ConfigError, ExperimentConfig
from .dp_settings import dp_settings

Plan = list[tuple[Statistic, int, int]]
"""(statistic, values per client, number of releases) of every kind of release the run may make."""


def release_plan(config: ExperimentConfig, trainer: Trainer, shares: Sequence[int], sample: torch.Tensor) -> Plan:
    """Worst-case releases of the run (module docstring); ``shares``: the first cycle's per-client budgets,
    ``sample``: one input (its embedding's dimension sizes the k-means sums)."""
    model = trainer.fresh_model(0)
    cycles, strategy = config.active.cycles, config.active.strategy
    plan: Plan = [(UPDATE_STATISTIC, StateVector(model).length, config.training.rounds * cycles)]
    if strategy == "fairfal" and cycles > 1:
        plan.append((GAMMA_STATISTIC, 2, 1))
    if strategy == "fal-global" and cycles > 1:
        kmeans = stage2_kmeans(list(shares), config.active.beta)
        with torch.no_grad():
            model.eval()
            dim = int(model.embed(sample.to(trainer.device)).shape[1])
        sizes: dict[int, int] = {}
        for m in kmeans.round_sizes():
            sizes[m] = sizes.get(m, 0) + cycles - 1
        plan += [(kmeans.statistic, m + 2 * m * dim, count) for m, count in sizes.items()]
    return plan


def planned_epsilon(settings: DPSettings, plan: Plan) -> float:
    """Epsilon the plan spends under ``settings``."""
    curves = []
    for statistic, length, count in plan:
        cal = calibrate(settings.mechanism, length=length, clip=statistic.l2_bound or settings.clip_norm,
                        noise_multiplier=settings.noise_multiplier, bits=settings.bits,
                        min_contributors=settings.contributors_floor, max_contributors=settings.max_contributors,
                        headroom=settings.headroom)
        curves.append(count * rdp_curve(cal))
    return epsilon(curves, settings.delta)


def build_privacy(config: ExperimentConfig, trainer: Trainer, shares: Sequence[int],
                  sample: torch.Tensor) -> PrivacySession | None:
    """The run's PrivacySession (None when [privacy] is off), calibrated before the run starts (``release_plan``'s
    arguments: the first cycle's per-client budgets and one input).

    Raises:
        ConfigError: the planned releases would spend more than ``privacy.epsilon`` at the given noise multiplier
            (the message says by how much and what noise multiplier would do), or the bits cannot hold the noise.
    """
    p = config.privacy
    if not p.enabled:
        return None
    plan = release_plan(config, trainer, shares, sample)
    settings = functools.partial(dp_settings, config)
    try:
        if p.noise_multiplier is None:
            z = calibrate_noise(lambda z: planned_epsilon(settings(z), plan), p.epsilon)
        else:
            z = p.noise_multiplier
            spent = planned_epsilon(settings(z), plan)
            if p.epsilon is not None and spent > p.epsilon:
                need = calibrate_noise(lambda z: planned_epsilon(settings(z), plan), p.epsilon)
                raise ConfigError(
                    f"privacy: the run's {sum(c for _, _, c in plan)} planned releases spend epsilon {spent:.4g} at "
                    f"noise_multiplier {z:g}, over privacy.epsilon {p.epsilon:g} by {spent - p.epsilon:.4g}; "
                    f"a noise_multiplier of at least {need:.4g} (or fewer rounds or cycles) fits the budget")
        return PrivacySession(settings(z))
    except PrivacyError as exc:
        raise ConfigError(f"privacy: {exc}") from None


def privacy_summary(config: ExperimentConfig, session: PrivacySession | None) -> dict:
    """The results' "privacy" field: enabled, the settings used and the epsilon spent (per kind and total)."""
    if session is None:
        return {"enabled": False}
    s = session.settings
    return {"enabled": True, "mechanism": s.mechanism, "noise_multiplier": s.noise_multiplier, "delta": s.delta,
            "epsilon_budget": s.epsilon_budget, "clip_norm": s.clip_norm, "bits": s.bits,
            "min_contributors": s.contributors_floor, "epsilon_spent": session.spent(),
            "holds_against_server": config.secure.protocol != "plaintext" or s.mechanism == "central-gaussian"}
