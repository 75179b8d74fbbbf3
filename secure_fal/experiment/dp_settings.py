"""The [privacy] section as the DP layer's settings, torch-free: what the server's ``PrivacySession`` runs with
(``dp_settings``) and what a Flower node requires of every noised sum it takes part in (``node_privacy``)."""

from __future__ import annotations

import math

from ..secagg.privacy import DPSettings
from ..secagg.privacy.release import NodePrivacy
from .config import ExperimentConfig


def min_contributors(config: ExperimentConfig) -> int:
    """t: ``privacy.min_contributors``, or under masking with a complete graph its threshold (floor(2n/3) + 1, or
    the configured one), else every client."""
    n, opts = config.data.clients, config.secure.options
    if config.privacy.min_contributors is not None:
        return config.privacy.min_contributors
    if config.secure.protocol == "masking" and opts.get("neighbours") is None:
        t = opts.get("threshold")
        if t is None:
            return min(n, 2 * n // 3 + 1)
        return min(n, math.ceil(t * n) if isinstance(t, float) else int(t))
    return n


def dp_settings(config: ExperimentConfig, noise_multiplier: float) -> DPSettings:
    """The run's DPSettings at noise multiplier z = ``noise_multiplier``."""
    p = config.privacy
    return DPSettings(noise_multiplier=noise_multiplier, max_contributors=config.data.clients, delta=p.delta,
                      mechanism=p.mechanism, clip_norm=p.clip_norm, bits=p.bits, headroom=p.headroom,
                      min_contributors=min_contributors(config), noise_seed=p.noise_seed, epsilon_budget=p.epsilon)


def node_privacy(config: ExperimentConfig) -> NodePrivacy | None:
    """What a client node of this experiment requires of every sum (None when [privacy] is off): the config's
    mechanism, bits, headroom and contributor floor, at least its ``noise_multiplier`` when it sets one, and its
    noise seed."""
    p = config.privacy
    if not p.enabled:
        return None
    return NodePrivacy(p.mechanism, config.data.clients, p.bits, p.headroom, min_contributors(config),
                       p.noise_multiplier, p.noise_seed)
