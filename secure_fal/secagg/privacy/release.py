"""One noised release, split into what each party does (protocols/dp.md): the single code path of the in-process
``Aggregator`` and of the Flower apps.

    server    ``open_release``: check the statistic, calibrate, charge the run's budget (refusing a release over it)
              -> a ``Release``, the public parameters every contributor needs (sent in the round's opening over
              Flower); ``Release.round_shape``: what the protocol then sums; ``Release.server_total``: the released
              sum from the protocol's sum (decoding; central-gaussian: the server's noise).
    client    ``NodePrivacy.check``: a node compares the server's ``Release`` with what its own settings give, and
              refuses weaker noise; ``Release.client_input``: clip, rotate, round and add this client's noise share
              (``mechanisms.Calibration.encode``), with the noise source ``NodePrivacy.noise_source`` gives it.

The noise key of client k in round r of a session labelled ``label`` is ``noise_source(noise_seed, label, r, k)``:
a fresh OS key, or (``noise_seed`` set: reproducible runs and tests) one derived from the seed, the same in process
and over Flower.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError
from .mechanisms import DISTRIBUTED, Calibration, PrivacyError, calibrate, clip_l2, rotation_signs
from .samplers import NoiseSource
from .session import DPSettings, PrivacySession, Statistic, noise_source, rotation_seed


@dataclass(frozen=True)
class Release:
    """The public parameters of one noised secure sum.

    Attributes:
        calibration: the mechanism's parameters (``mechanisms.Calibration``) for this statistic and length.
        kind: the statistic kind (``session.KINDS``).
        label: the session's public name (``dp_label``).
        round_id: the round of the sum (rotation and noise keys depend on it).
        bound: the caller's public bound on every |value| of a raw input (input units; an input source may use it).
    """

    calibration: Calibration
    kind: str
    label: int
    round_id: int
    bound: float

    @property
    def signs(self) -> np.ndarray:
        """(padded,) random signs of the round's rotation (public)."""
        return rotation_signs(rotation_seed(self.label, self.round_id), self.calibration.padded)

    def round_shape(self, frac_bits: int) -> tuple[int, float, int]:
        """(length, public bound, fractional bits) of the protocol round that carries the release: the clipped
        inputs on the session's grid (central-gaussian), else the rotated integers in [-2^(bits-1), 2^(bits-1))."""
        cal = self.calibration
        if cal.mechanism in DISTRIBUTED:
            return cal.padded, float(2 ** (cal.bits - 1)), 0
        return cal.length, cal.clip, frac_bits

    @property
    def sum_bound(self) -> float | None:
        """The round's ``FixedPoint.sum_bound``: 2^(bits-1) - 1 for the distributed mechanisms, whose sum is taken
        modulo 2^bits by the mechanism itself (the protocol's ring is Z_{2^bits}, wrapping allowed), else None."""
        return float(2 ** (self.calibration.bits - 1) - 1) if self.calibration.mechanism in DISTRIBUTED else None

    def client_input(self, x: np.ndarray, src: NoiseSource, client: int) -> np.ndarray:
        """What client ``client`` feeds the protocol for raw input x (float (length,)): its L2-clipped input
        (central-gaussian), else its encoded input with its noise share. InputError naming the client, round and
        field on a non-finite value or a wrong length (the clip bounds every finite input)."""
        x = np.asarray(x, dtype=np.float64)
        cal = self.calibration
        if x.shape != (cal.length,):
            raise InputError(f"input has shape {x.shape}, the release is over {cal.length} values", client=client,
                             round_id=self.round_id, field="vector")
        bad = np.flatnonzero(~np.isfinite(x))
        if len(bad):
            raise InputError(f"non-finite value at index {int(bad[0])}", client=client, round_id=self.round_id,
                             field="vector")
        if cal.mechanism not in DISTRIBUTED:
            return clip_l2(x, cal.clip)
        return cal.encode(x, self.signs, src, client=client, round_id=self.round_id)

    def server_total(self, total: np.ndarray, contributors: Sequence[int], src: NoiseSource) -> np.ndarray:
        """The released float64 (length,) sum from the protocol's sum over ``contributors``; ``src``: the server's
        noise source (central-gaussian only). PrivacyError (round, field 'contributors') when fewer contributed
        than the noise is calibrated for: the sum is withheld."""
        cal = self.calibration
        if len(contributors) < cal.min_contributors:
            raise PrivacyError(f"{len(contributors)} contributors, fewer than the {cal.min_contributors} the noise "
                               "is calibrated for; the sum is withheld", round_id=self.round_id, field="contributors")
        if cal.mechanism in DISTRIBUTED:
            return cal.decode(total, self.signs)
        seed = int(src.words(1)[0])
        return np.asarray(total, dtype=np.float64) + np.random.default_rng(seed).normal(0.0, cal.noise_std,
                                                                                        cal.length)

    def to_json(self) -> str:
        return json.dumps({"calibration": self.calibration.to_dict(), "kind": self.kind, "label": f"{self.label:016x}",
                           "round": self.round_id, "bound": self.bound}, sort_keys=True)

    @classmethod
    def from_json(cls, text: object, *, client: int | None = None, round_id: int | None = None) -> Release:
        """Parse a release a server sent; PrivacyError naming the client, round and field 'dp' when malformed."""
        try:
            d = json.loads(text)  # type: ignore[arg-type]
            release = cls(Calibration.from_dict(d["calibration"]), str(d["kind"]), int(d["label"], 16),
                          int(d["round"]), float(d["bound"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PrivacyError(f"malformed release parameters: {exc!r}", client=client, round_id=round_id,
                               field="dp") from None
        if round_id is not None and release.round_id != round_id:
            raise PrivacyError(f"release of round {release.round_id} in the opening of round {round_id}",
                               client=client, round_id=round_id, field="dp")
        return release


def noised_mean(total: np.ndarray, n_contributors: int, clip: float) -> np.ndarray:
    """The unweighted mean of a noised sum of ``n_contributors`` inputs clipped to L2 norm ``clip``, projected onto
    that ball: the exact mean of the clipped inputs lies in it, so the projection (post-processing, no privacy
    cost) never moves the noised mean away from it. float64 (length,)."""
    return clip_l2(np.asarray(total, dtype=np.float64) / n_contributors, clip)


def open_release(privacy: PrivacySession, statistic: Statistic | None, length: int, protocol: str, label: int,
                 round_id: int, bound: float) -> Release:
    """The server's side before a noised sum: check the statistic, calibrate it and charge the release to the run's
    budget (PrivacyError naming round and kind, before anything is sent, when it would go over).

    Raises:
        InputError: no statistic declared (field 'statistic').
        PrivacyError: a statistic that needs the exact sum, central-gaussian under another protocol than plaintext,
            or a release over the budget.
    """
    if statistic is None:
        raise InputError("a differentially private session needs every sum to declare its statistic "
                         "(Statistic(kind, l2_bound))", round_id=round_id, field="statistic")
    if statistic.exact:
        raise PrivacyError("this statistic needs the exact sum and cannot be noised (FAL-Global without quota: use "
                           "quota = true under DP)", round_id=round_id, field=statistic.kind)
    cal = privacy.calibration(statistic, length)
    if cal.mechanism not in DISTRIBUTED and protocol != "plaintext":
        raise PrivacyError(f"central-gaussian adds the noise at the server and only runs under the plaintext "
                           f"protocol, not {protocol}", round_id=round_id, field="mechanism")
    privacy.charge(statistic.kind, cal, round_id)
    return Release(cal, statistic.kind, label, round_id, bound)


@dataclass(frozen=True)
class NodePrivacy:
    """What a node requires of every noised sum it takes part in, and where its noise comes from.

    Attributes:
        mechanism, bits, headroom: as ``DPSettings``; a release must use the same.
        min_contributors: the fewest contributors the node lets its noise share be calibrated for (its share is
            then at least 1 / min_contributors of the noise the sum needs).
        max_contributors: the number of clients (sets the headroom).
        noise_multiplier: the least noise multiplier z the node accepts; None: the server's (a run configured by a
            target epsilon only: its z comes from the server's plan).
        noise_seed: as ``DPSettings.noise_seed`` (None: fresh OS keys).
    """

    mechanism: str
    max_contributors: int
    bits: int = 20
    headroom: float = 4.0
    min_contributors: int | None = None
    noise_multiplier: float | None = None
    noise_seed: int | None = None

    @classmethod
    def of(cls, settings: DPSettings) -> NodePrivacy:
        """What a node requires when it agreed on the run's ``settings``: the same mechanism, bits, headroom and
        contributor floor, at least their noise multiplier, and their noise seed."""
        return cls(settings.mechanism, settings.max_contributors, settings.bits, settings.headroom,
                   settings.contributors_floor, settings.noise_multiplier, settings.noise_seed)

    @property
    def contributors_floor(self) -> int:
        return self.max_contributors if self.min_contributors is None else self.min_contributors

    def noise_source(self, release: Release, client: int) -> NoiseSource:
        """This node's noise source for ``release`` (``noise_source``)."""
        return noise_source(self.noise_seed, release.label, release.round_id, client)

    def check(self, release: Release, *, client: int) -> None:
        """PrivacyError naming the client, round and field when ``release`` is weaker than this node requires: another
        mechanism, a smaller noise multiplier, or a calibration other than the one the node computes itself from
        its own settings and the release's length, clip and noise multiplier (e.g. a smaller noise share, fewer
        bits, a lower contributor floor)."""
        cal, r = release.calibration, release.round_id
        if cal.mechanism != self.mechanism:
            raise PrivacyError(f"release uses mechanism {cal.mechanism!r}, this node requires {self.mechanism!r}",
                               client=client, round_id=r, field="mechanism")
        if self.noise_multiplier is not None and not cal.noise_multiplier >= self.noise_multiplier * (1 - 1e-12):
            raise PrivacyError(f"release has noise multiplier {cal.noise_multiplier:g}, below this node's "
                               f"{self.noise_multiplier:g}", client=client, round_id=r, field="noise_multiplier")
        if not (cal.clip > 0 and math.isfinite(cal.clip) and cal.length >= 1):
            raise PrivacyError(f"release has clip {cal.clip!r} on {cal.length} values", client=client, round_id=r,
                               field="clip")
        want = _calibration(self.mechanism, cal.length, cal.clip, cal.noise_multiplier, self.bits,
                            self.contributors_floor, self.max_contributors, self.headroom)
        if want != cal:
            fields = sorted(k for k, v in asdict(want).items() if getattr(cal, k) != v)
            raise PrivacyError(f"release calibration differs from this node's in {', '.join(fields)}", client=client,
                               round_id=r, field="dp")


@functools.lru_cache(maxsize=64)
def _calibration(mechanism: str, length: int, clip: float, z: float, bits: int, t: int, n: int,
                 headroom: float) -> Calibration:
    return calibrate(mechanism, length=length, clip=clip, noise_multiplier=z, bits=bits, min_contributors=t,
                     max_contributors=n, headroom=headroom)
