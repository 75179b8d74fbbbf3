"""The distributed mechanisms: what each client does to its vector before the secure sum, and what the server
does to the sum.

Distributed discrete Gaussian (Kairouz, Liu and Steinke, ICML 2021) and distributed Skellam (Agarwal, Kairouz and
Liu, NeurIPS 2021) share one pipeline; only the noise differs. For client k with x_k of length L:

1. clip: x <- x min(1, c / ||x||_2)  (c: the statistic's L2 bound, input units);
2. rotate: pad to d = 2^ceil(log2 L) and apply the randomized Hadamard transform H D / sqrt(d) (D: random signs
   from the round's public seed, the same for every client), which spreads the norm evenly over the coordinates;
3. scale by 1/gamma and round each coordinate to floor or ceil at random (unbiased), again until the rounded
   vector's L2 norm is at most Delta_2 = ``rounded_l2_bound(c / gamma, d, beta)`` (conditional randomized
   rounding: the sensitivity on the grid is then exactly bounded);
4. add the client's noise share: discrete Gaussian N_Z(0, sigma_k^2) or Skellam Sk(lam) - both exact integer
   samplers (``samplers``);
5. reduce modulo 2^bits into [-2^(bits-1), 2^(bits-1)) (modular clipping).

The protocol sums these integers; the server reduces the sum modulo 2^bits, multiplies by gamma, undoes the
rotation and drops the padding. Reduction modulo 2^bits commutes with the sum, so the result is what summing in
Z_{2^bits} gives; a coordinate whose noisy sum leaves [-2^(bits-1), 2^(bits-1)) wraps around, which ``calibrate``
makes unlikely by choosing gamma so that 2^bits covers ``headroom`` standard deviations of the noisy sum.

``central-gaussian`` is the comparison ceiling, for the plaintext protocol only: the server adds continuous
Gaussian noise of std z c to the exact sum of clipped inputs (a numpy float sampler: a measurement baseline, not a
deployable mechanism).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SecAggError
from .samplers import MAX_GAUSSIAN_VARIANCE, NoiseSource, discrete_gaussian, gaussian_variance, skellam

MECHANISMS = ("ddg", "skellam", "central-gaussian")
DISTRIBUTED = ("ddg", "skellam")
MAX_ROUNDING_TRIES = 1000


class PrivacyError(SecAggError, ValueError):
    """A privacy setting cannot be honoured (too few bits, budget exceeded, too few contributors, ...); names the
    client, round and field where there is one."""


def clip_l2(x: np.ndarray, bound: float) -> np.ndarray:
    """x scaled to L2 norm at most ``bound`` (unchanged when already within it); float64 (L,)."""
    x = np.asarray(x, dtype=np.float64)
    norm = float(np.linalg.norm(x))
    return x * (bound / norm) if norm > bound else x.copy()


def hadamard(x: np.ndarray) -> np.ndarray:
    """Orthonormal Walsh-Hadamard transform H / sqrt(d) of a float64 (d,) vector, d a power of 2 (self-inverse)."""
    d = len(x)
    y = np.array(x, dtype=np.float64)
    h = 1
    while h < d:
        y = y.reshape(-1, 2, h)
        y = np.stack([y[:, 0] + y[:, 1], y[:, 0] - y[:, 1]], axis=1).reshape(d)
        h *= 2
    return y / math.sqrt(d)


def padded_length(length: int) -> int:
    """d = the smallest power of 2 >= ``length``."""
    return 1 << max(0, (length - 1).bit_length())


def rotation_signs(seed: int, d: int) -> np.ndarray:
    """(d,) float64 random signs of the round's rotation, from a public seed (not secret: the rotation only has
    to be independent of the data)."""
    return np.where(np.random.default_rng(seed).integers(0, 2, d) == 1, 1.0, -1.0)


def rotate(x: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """H D x / sqrt(d) of x padded with zeros to len(signs)."""
    y = np.zeros(len(signs))
    y[:len(x)] = x
    return hadamard(signs * y)


def unrotate(y: np.ndarray, signs: np.ndarray, length: int) -> np.ndarray:
    """Inverse of ``rotate``, first ``length`` coordinates."""
    return (signs * hadamard(y))[:length]


def rounded_l2_bound(norm: float, d: int, beta: float) -> float:
    """Delta_2: the L2 norm bound conditional randomized rounding enforces on a d-vector of norm <= ``norm``
    (grid units): min(norm + sqrt(d), sqrt(norm^2 + d/4 + sqrt(2 ln(1/beta)) (norm + sqrt(d)/2))) (KLS 2021,
    Theorem 23); each rounding attempt meets it with probability at least 1 - beta."""
    bound1 = norm + math.sqrt(d)
    bound2 = math.sqrt(norm ** 2 + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (norm + math.sqrt(d) / 2))
    return min(bound1, bound2)


def conditional_round(x: np.ndarray, bound: float, src: NoiseSource, *, client: int | None = None,
                      round_id: int | None = None) -> np.ndarray:
    """Unbiased randomized rounding of float64 x (grid units) to int64, repeated until the L2 norm is <= ``bound``.

    The rounding bits come from ``src``; they only need to be unbiased (privacy rests on the enforced norm bound
    and on the noise). Raises PrivacyError after ``MAX_ROUNDING_TRIES`` attempts (each succeeds with probability
    at least 1 - beta when ||x|| is within the clip bound).
    """
    low = np.floor(x)
    frac = x - low
    for _ in range(MAX_ROUNDING_TRIES):
        up = np.ldexp(src.words(len(x)).astype(np.float64), -64) < frac
        q = (low + up).astype(np.int64)
        if float(np.dot(q.astype(np.float64), q.astype(np.float64))) <= bound * bound:
            return q
    raise PrivacyError(f"conditional rounding found no rounding within the L2 bound in {MAX_ROUNDING_TRIES} tries",
                       client=client, round_id=round_id, field="vector")


def centred_mod(q: np.ndarray, bits: int) -> np.ndarray:
    """int64 q reduced modulo 2^bits into [-2^(bits-1), 2^(bits-1))."""
    half = 1 << (bits - 1)
    return ((np.asarray(q, dtype=np.int64) + half) % (1 << bits)) - half


@dataclass(frozen=True)
class Calibration:
    """The parameters of one kind of release (statistic kind and length), fixed for the whole run.

    Attributes:
        mechanism: 'ddg', 'skellam' or 'central-gaussian'.
        length: L, values per client.
        padded: d, the rotated length (a power of 2; L for central-gaussian).
        clip: c, the L2 bound of one client's input (input units).
        noise_multiplier: z: the noisy sum carries noise of std z * Delta_2 (with ``min_contributors`` shares).
        gamma: grid step (input units per integer); 0 for central-gaussian.
        bits: modulus 2^bits of the sum; 0 for central-gaussian.
        delta2: L2 sensitivity of one client's rounded vector, grid units (central-gaussian: c, input units).
        delta1: L1 sensitivity, grid units (central-gaussian: 0, unused).
        share_variance: variance of one client's noise share, grid units^2 (ddg: t * u; skellam: 2 lam;
            central-gaussian: (z c)^2 of the server's noise, input units^2).
        share_params: (t, u) of ``discrete_gaussian``, (lam,) of ``skellam``, () for central-gaussian.
        min_contributors: fewest contributors the noise is calibrated for (t).
        max_contributors: most contributors (n); sets the headroom.
        beta: conditional rounding's failure probability parameter.
    """

    mechanism: str
    length: int
    padded: int
    clip: float
    noise_multiplier: float
    gamma: float
    bits: int
    delta2: float
    delta1: float
    share_variance: float
    share_params: tuple[int, ...]
    min_contributors: int
    max_contributors: int
    beta: float

    def to_dict(self) -> dict:
        return {"mechanism": self.mechanism, "length": self.length, "padded": self.padded, "clip": self.clip,
                "noise_multiplier": self.noise_multiplier, "gamma": self.gamma, "bits": self.bits,
                "delta2": self.delta2, "delta1": self.delta1, "share_variance": self.share_variance,
                "share_params": list(self.share_params), "min_contributors": self.min_contributors,
                "max_contributors": self.max_contributors, "beta": self.beta}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**{**d, "share_params": tuple(d["share_params"])})

    @property
    def noise_std(self) -> float:
        """Std of the noise in the released sum with ``min_contributors`` shares, input units per coordinate."""
        if self.mechanism == "central-gaussian":
            return math.sqrt(self.share_variance)
        return math.sqrt(self.share_variance * self.min_contributors) * self.gamma

    # -- client side -------------------------------------------------------------------------------------------

    def encode(self, x: np.ndarray, signs: np.ndarray, src: NoiseSource, *, client: int | None = None,
               round_id: int | None = None) -> np.ndarray:
        """One client's input to the secure sum (steps 1-5 of the module docstring): float64 (padded,) of integers
        in [-2^(bits-1), 2^(bits-1))."""
        y = rotate(clip_l2(x, self.clip), signs) / self.gamma
        q = conditional_round(y, self.delta2, src, client=client, round_id=round_id)
        if self.mechanism == "ddg":
            q = q + discrete_gaussian(src, self.padded, *self.share_params)
        else:
            q = q + skellam(src, self.padded, *self.share_params)
        return centred_mod(q, self.bits).astype(np.float64)

    # -- server side -------------------------------------------------------------------------------------------

    def decode(self, total: np.ndarray, signs: np.ndarray) -> np.ndarray:
        """The released float64 (length,) sum from the protocol's integer sum (padded,)."""
        q = centred_mod(np.rint(total).astype(np.int64), self.bits)
        return unrotate(q.astype(np.float64) * self.gamma, signs, self.length)


def headroom_std(gamma: float, clip: float, d: int, n: int, share_variance: float) -> float:
    """Std (grid units) the modulus must cover, worst case: n aligned inputs of norm c spread over d coordinates,
    n roundings (variance 1/4 each) and n noise shares."""
    return math.sqrt((clip / gamma) ** 2 * n * n / d + n / 4 + n * share_variance)


def calibrate(mechanism: str, *, length: int, clip: float, noise_multiplier: float, bits: int,
              min_contributors: int, max_contributors: int, headroom: float = 4.0,
              beta: float = math.exp(-0.5)) -> Calibration:
    """The finest grid gamma for which 2^bits covers ``headroom`` standard deviations of the noisy sum.

    The noise of the sum of ``min_contributors`` shares has variance (z Delta_2(gamma))^2; each share rounds its
    variance up to what the exact sampler draws. Raises PrivacyError when no gamma fits (too few bits for this
    noise in this dimension), naming the bits needed.
    """
    if mechanism not in MECHANISMS:
        raise PrivacyError(f"unknown mechanism {mechanism!r}; choose one of {', '.join(MECHANISMS)}")
    if not 1 <= min_contributors <= max_contributors:
        raise PrivacyError(f"need 1 <= min_contributors <= max_contributors, got {min_contributors}, "
                           f"{max_contributors}")
    z, t = noise_multiplier, min_contributors
    if mechanism == "central-gaussian":
        return Calibration(mechanism, length, length, clip, z, 0.0, 0, clip, 0.0, (z * clip) ** 2, (), t,
                           max_contributors, beta)
    d = padded_length(length)

    def build(gamma: float) -> Calibration:
        delta2 = rounded_l2_bound(clip / gamma, d, beta)
        delta1 = delta2 * min(math.sqrt(d), delta2)
        need = (z * delta2) ** 2 / t
        if mechanism == "ddg":
            tt, u = gaussian_variance(need)
            return Calibration(mechanism, length, d, clip, z, gamma, bits, delta2, delta1, float(tt * u), (tt, u),
                               t, max_contributors, beta)
        lam = max(1, math.ceil(need / 2))
        return Calibration(mechanism, length, d, clip, z, gamma, bits, delta2, delta1, float(2 * lam), (lam,), t,
                           max_contributors, beta)

    def fits(gamma: float) -> bool:
        if (z * rounded_l2_bound(clip / gamma, d, beta)) ** 2 / t > MAX_GAUSSIAN_VARIANCE:
            return False
        cal = build(gamma)
        return 2 * headroom * headroom_std(gamma, clip, d, max_contributors, cal.share_variance) <= 2 ** bits

    coarse = clip * 2.0 ** 20       # the grid is coarser than any input: only rounding and noise remain
    if not fits(coarse):
        floor_std = headroom_std(coarse, clip, d, max_contributors, build(coarse).share_variance)
        need_bits = math.ceil(math.log2(2 * headroom * floor_std))
        raise PrivacyError(f"bits={bits} cannot hold noise multiplier {z:.3g} on {length} values with "
                           f"{max_contributors} contributors and {headroom} std of headroom: needs at least "
                           f"{need_bits} bits (raise privacy.bits or lower the noise)")
    lo, hi = clip * 2.0 ** -40, coarse
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if fits(mid):
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-9:
            break
    return build(hi)
