"""A run's differential-privacy settings and budget: what every noised release is calibrated with and charged to.

One ``PrivacySession`` spans a whole run (every cycle's ``Aggregator`` shares it), so the accountant composes every
release of the run. Statistics declare themselves with a ``Statistic`` (kind and L2 bound); the session turns a
kind and length into a ``Calibration`` (the same for every release of that kind and length) and charges each
release's RDP curve before the aggregator hands the sum out.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .accountant import epsilon, rdp_curve
from .mechanisms import DISTRIBUTED, MECHANISMS, Calibration, PrivacyError, calibrate
from .samplers import NoiseSource

KINDS = {
    "fedavg-update": "the new global model (the mean of the contributors' updates)",
    "kmeans-stats": "per-cluster weighted counts, sums and sums of squares; the centroids derived from them "
                    "(sent to every client)",
    "ownership-count": "per centroid, how many clients have a candidate under the probed threshold; the owner "
                       "thresholds derived from them (sent to every client)",
    "gamma": "the sum of gamma_k and the contributor count; gamma_bar derived from them",
}
"""Statistic kind -> what the server derives from its sums (recorded in the ledger)."""


@dataclass(frozen=True)
class Statistic:
    """How a caller of ``Aggregator.sum`` declares what it sums.

    Attributes:
        kind: one of ``KINDS`` (the accountant reports epsilon per kind).
        l2_bound: L2 norm bound of one client's vector (input units); inputs are clipped to it under DP. None: the
            session's ``clip_norm`` (the FedAvg update, whose bound is a tuning choice).
        exact: the consumer needs the exact sum (secure ownership counts); a DP session refuses such a sum.
    """

    kind: str
    l2_bound: float | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown statistic kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.l2_bound is not None and not (self.l2_bound > 0 and math.isfinite(self.l2_bound)):
            raise ValueError(f"statistic {self.kind!r}: l2_bound must be positive and finite, got {self.l2_bound!r}")


@dataclass(frozen=True)
class DPSettings:
    """Differential privacy of a run.

    Attributes:
        noise_multiplier: z: every release's noise has std z times its L2 sensitivity (``calibrate``).
        delta: the delta of the (epsilon, delta) reported.
        mechanism: 'ddg' (distributed discrete Gaussian), 'skellam', or 'central-gaussian' (plaintext only).
        clip_norm: L2 bound of one client's FedAvg update (input units).
        bits: the distributed mechanisms' modulus 2^bits (bits per coordinate of the sum).
        headroom: standard deviations of the noisy sum the modulus covers.
        min_contributors: fewest contributors the noise is calibrated for; a sum with fewer is withheld.
        max_contributors: the number of clients.
        noise_seed: None: every noise share from a fresh OS key; an int: keys derived from it (reproducible runs and
            tests; anyone who knows the seed can subtract the noise).
        epsilon_budget: when set, a release that would take the run's epsilon above it is refused.
    """

    noise_multiplier: float
    max_contributors: int
    delta: float = 1e-5
    mechanism: str = "ddg"
    clip_norm: float = 1.0
    bits: int = 20
    headroom: float = 4.0
    min_contributors: int | None = None
    noise_seed: int | None = None
    epsilon_budget: float | None = None

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise PrivacyError(f"unknown mechanism {self.mechanism!r}; choose one of {', '.join(MECHANISMS)}")
        if not self.noise_multiplier > 0:
            raise PrivacyError(f"noise_multiplier must be > 0, got {self.noise_multiplier!r}")
        if not 0 < self.delta < 1:
            raise PrivacyError(f"delta must be in (0, 1), got {self.delta!r}")
        if not 1 <= self.contributors_floor <= self.max_contributors:
            raise PrivacyError(f"min_contributors must be in [1, {self.max_contributors}], got {self.min_contributors}")

    @property
    def contributors_floor(self) -> int:
        """t: ``min_contributors``, or every client when unset."""
        return self.max_contributors if self.min_contributors is None else self.min_contributors


class PrivacySession:
    """Calibrations, noise keys and the budget of one run (shared by every cycle's Aggregator).

    Attributes:
        settings: the DPSettings.
        releases: (kind, Calibration) of every release charged so far, in order.
    """

    def __init__(self, settings: DPSettings) -> None:
        self.settings = settings
        self.releases: list[tuple[str, Calibration]] = []
        self._calibrations: dict[tuple[str, int, float], Calibration] = {}
        self._curves: dict[str, np.ndarray] = {}          # kind -> summed RDP curve of its releases

    @property
    def distributed(self) -> bool:
        """True for the mechanisms whose clients add noise shares (ddg, skellam)."""
        return self.settings.mechanism in DISTRIBUTED

    def clip_for(self, statistic: Statistic) -> float:
        """The L2 bound c a client's vector of ``statistic`` is clipped to (input units)."""
        return self.settings.clip_norm if statistic.l2_bound is None else statistic.l2_bound

    def calibration(self, statistic: Statistic, length: int) -> Calibration:
        """The calibration of ``statistic`` on vectors of ``length`` values (cached: the same for the whole run)."""
        s = self.settings
        key = (statistic.kind, length, self.clip_for(statistic))
        if key not in self._calibrations:
            self._calibrations[key] = calibrate(
                s.mechanism, length=length, clip=key[2], noise_multiplier=s.noise_multiplier, bits=s.bits,
                min_contributors=s.contributors_floor, max_contributors=s.max_contributors, headroom=s.headroom)
        return self._calibrations[key]

    def charge(self, kind: str, cal: Calibration, round_id: int) -> None:
        """Record one release; raises PrivacyError (naming round and kind, before anything is released) when it
        would take the run's epsilon above the budget."""
        budget = self.settings.epsilon_budget
        curve = rdp_curve(cal)
        if budget is not None:
            after = epsilon([*self._curves.values(), curve], self.settings.delta)
            if after > budget * (1 + 1e-9):
                raise PrivacyError(f"this release would raise the run's epsilon to {after:.4g}, over the budget "
                                   f"{budget:g} by {after - budget:.4g}; refused", round_id=round_id, field=kind)
        self._add(kind, cal, curve)

    def _add(self, kind: str, cal: Calibration, curve: np.ndarray) -> None:
        self.releases.append((kind, cal))
        self._curves[kind] = self._curves.get(kind, 0) + curve

    def restore(self, entries: list[dict]) -> None:
        """Charge the releases of ledger entries written before (a resumed run), without the budget check."""
        for e in entries:
            if e.get("calibration") is not None:
                cal = Calibration.from_dict(e["calibration"])
                self._add(e["kind"], cal, rdp_curve(cal))

    def spent(self) -> dict:
        """{"total": epsilon of every release so far, "per_kind": {kind: epsilon of that kind's releases alone},
        "releases": count, "delta": delta}."""
        delta = self.settings.delta
        return {"total": epsilon(self._curves.values(), delta),
                "per_kind": {k: epsilon([c], delta) for k, c in sorted(self._curves.items())},
                "releases": len(self.releases), "delta": delta}

    def noise_source(self, label: int, round_id: int, client: int) -> NoiseSource:
        """This run's noise source of one client in one round (``noise_source`` with the settings' noise seed)."""
        return noise_source(self.settings.noise_seed, label, round_id, client)


SERVER = -1
"""The client id of the server's own noise source (central-gaussian)."""


def noise_source(noise_seed: int | None, label: int, round_id: int, client: int) -> NoiseSource:
    """The ChaCha20 source of one client's noise share and rounding in round ``round_id`` of the session named
    ``label`` (``dp_label``), or the server's (client ``SERVER``, for central-gaussian): a fresh OS key, or one
    derived from ``noise_seed`` (the same in process and over Flower)."""
    if noise_seed is None:
        return NoiseSource()
    material = f"secure_fal.dp/{noise_seed}/{label}/{round_id}/{client}".encode()
    return NoiseSource(hashlib.blake2b(material, digest_size=32).digest())


def dp_label(seed: int) -> int:
    """The public 64-bit name of a secure-aggregation session seeded ``seed`` in the DP rotation and in noise keys
    derived from a ``noise_seed``: the same in process (``Aggregator(seed=...)``) and over Flower, so runs noise
    alike under every protocol and engine."""
    return int.from_bytes(hashlib.blake2b(f"secure_fal.dp.label/{seed}".encode(), digest_size=8).digest(), "big")


def rotation_seed(session: int, round_id: int) -> int:
    """Public seed of a round's random rotation (every client and the server derive the same)."""
    return int.from_bytes(hashlib.blake2b(f"secure_fal.dp.rotation/{session}/{round_id}".encode(),
                                          digest_size=8).digest(), "little")
