"""Exact integer noise samplers from a cryptographic source: discrete Gaussian and Skellam.

No floating-point arithmetic decides any outcome (floating-point samplers leak through their irregular support:
Mironov, CCS 2012). Randomness is a ChaCha20 keystream (``NoiseSource``); every Bernoulli trial compares
uniform integers.

- ``discrete_gaussian``: Canonne, Kamath and Steinke (NeurIPS 2020), Algorithm 3: a discrete Laplace proposal of
  scale t accepted with probability exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2)), vectorised over lanes. The variance
  parameter is sigma^2 = t * u with integers t, u (``gaussian_variance``), so every Bernoulli(exp(-gamma)) has a
  rational gamma whose numerator and denominator fit in 64 bits (sigma^2 < 2^40).
- ``skellam``: Poisson(lam) - Poisson(lam) with an integer lam, the symmetric Skellam of variance 2 lam. Each Poisson
  draw is an exact inversion: a 64-bit uniform integer U against floor(2^64 F(k)) of the CDF F, tabulated with
  Python integers in fixed point (``PoissonTable``); when U lands on (or next to) a table entry, or in a tail
  outside the table, the lane continues with more random bits against F computed by mpmath at growing precision,
  so the outcome has exactly the Poisson distribution.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

BLOCK = 4
"""Bernoulli(exp(-1)) trials drawn per lane at once in the loops that run until a lane's first failure."""

MAX_GAUSSIAN_VARIANCE = 2 ** 40
"""Largest sigma^2 (grid units^2) ``discrete_gaussian`` accepts: keeps 2 t u and (X - u)^2 within 64 bits."""


class NoiseSource:
    """A ChaCha20 keystream read as uniform 64-bit words.

    Args:
        key: 32 bytes, or None for a fresh key from the OS's cryptographic RNG (``os.urandom``).
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = os.urandom(32) if key is None else key
        if len(key) != 32:
            raise ValueError(f"a noise key has 32 bytes, got {len(key)}")
        self._stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()

    def words(self, n: int) -> np.ndarray:
        """(n,) uint64 uniform words."""
        return np.frombuffer(self._stream.update(bytes(8 * n)), dtype="<u8").astype(np.uint64)

    def below(self, bound: np.ndarray) -> np.ndarray:
        """(len(bound),) uint64, entry i uniform in [0, bound[i]); bound: uint64 array of values >= 1.

        Rejection: a word r is kept when r >= 2^64 mod b, then r mod b is uniform (the kept range is a multiple of b).
        """
        bound = np.asarray(bound, dtype=np.uint64)
        out = np.empty(len(bound), dtype=np.uint64)
        pending = np.arange(len(bound))
        while len(pending):
            b = bound[pending]
            r = self.words(len(pending))
            ok = r >= (np.uint64(2 ** 64 - 1) % b + np.uint64(1)) % b          # 2^64 mod b
            out[pending[ok]] = r[ok] % b[ok]
            pending = pending[~ok]
        return out


def _bernoulli_frac(src: NoiseSource, n: np.ndarray, d: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Bernoulli(n / (d k)) per lane (n <= d k): u < q or (u == q and v < r), with q, r = divmod(n, k),
    u uniform below d and v below k; no product d k is formed."""
    q, r = np.divmod(n, k)
    u = src.below(d)
    out = u < q
    tie = np.flatnonzero(u == q)
    if len(tie):
        out[tie] = src.below(k[tie]) < r[tie]
    return out


def _bernoulli_exp01(src: NoiseSource, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bernoulli(exp(-n/d)) per lane for n/d in [0, 1] (CKS Algorithm 1): K = 1; while Bernoulli(n/(d K)): K += 1;
    the outcome is K odd."""
    k = np.ones(len(n), dtype=np.uint64)
    active = np.arange(len(n))
    while len(active):
        a = _bernoulli_frac(src, n[active], d[active], k[active])
        k[active[a]] += np.uint64(1)
        active = active[a]
    return (k & np.uint64(1)).astype(bool)


def _bernoulli_exp1(src: NoiseSource, count: int) -> np.ndarray:
    """(count,) i.i.d. Bernoulli(exp(-1))."""
    one = np.ones(count, dtype=np.uint64)
    return _bernoulli_exp01(src, one, one)


def _bernoulli_exp(src: NoiseSource, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Bernoulli(exp(-n/d)) per lane for any n/d >= 0 (CKS Algorithm 2): floor(n/d) successes of
    Bernoulli(exp(-1)), then Bernoulli(exp(-(n mod d)/d))."""
    whole, rest = np.divmod(n, d)
    alive = np.ones(len(n), dtype=bool)
    lanes = np.flatnonzero(whole > 0)
    need = whole[lanes]
    while len(lanes):                                  # BLOCK trials per lane at a time; stop at a failure
        ok = _bernoulli_exp1(src, len(lanes) * BLOCK).reshape(len(lanes), BLOCK)
        done = np.minimum(need, np.uint64(BLOCK)).astype(np.int64)
        failed = (~ok & (np.arange(BLOCK) < done[:, None])).any(axis=1)
        alive[lanes[failed]] = False
        need = need - done.astype(np.uint64)
        more = ~failed & (need > 0)
        lanes, need = lanes[more], need[more]
    lanes = np.flatnonzero(alive)
    alive[lanes] = _bernoulli_exp01(src, rest[lanes], d[lanes])
    return alive


def gaussian_variance(variance: float) -> tuple[int, int]:
    """(t, u) with t = floor(sqrt(v)) + 1 and u = ceil(v / t): the smallest sigma^2 = t u >= ``variance`` that
    ``discrete_gaussian`` samples exactly (grid units^2)."""
    if not 0 < variance <= MAX_GAUSSIAN_VARIANCE:
        raise ValueError(f"discrete Gaussian variance must be in (0, 2^40], got {variance}")
    t = math.isqrt(math.ceil(variance)) + 1
    return t, math.ceil(variance / t)


def discrete_gaussian(src: NoiseSource, size: int, t: int, u: int) -> np.ndarray:
    """(size,) int64 i.i.d. from the discrete Gaussian N_Z(0, sigma^2), P(x) proportional to exp(-x^2 / (2 sigma^2)),
    with sigma^2 = t * u (``gaussian_variance``), by CKS Algorithm 3 with Laplace scale t.

    Candidates are drawn in batches (about 2.5 per missing value: the acceptance rate is about 0.4) and the accepted
    ones fill the output in candidate order, which keeps them i.i.d.
    """
    if t * u > MAX_GAUSSIAN_VARIANCE or t < 1 or u < 1:
        raise ValueError(f"need integers t, u >= 1 with t u <= 2^40, got t={t}, u={u}")
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        accepted = _gaussian_candidates(src, max(64, (5 * (size - filled)) // 2), t, u)
        take = accepted[:size - filled]
        out[filled:filled + len(take)] = take
        filled += len(take)
    return out


def _gaussian_candidates(src: NoiseSource, m: int, t: int, u: int) -> np.ndarray:
    """The accepted values (int64, in candidate order) of m independent candidates of CKS Algorithm 3."""
    tt, uu = np.uint64(t), np.uint64(u)
    x = src.below(np.full(m, tt))                                            # U uniform in [0, t)
    keep = _bernoulli_exp(src, x, np.full(m, tt))                            # Bernoulli(exp(-U/t))
    lanes = np.flatnonzero(keep)
    while len(lanes):                         # V ~ Geometric(1 - e^-1): successes of Bernoulli(e^-1) before a failure
        ok = _bernoulli_exp1(src, len(lanes) * BLOCK).reshape(len(lanes), BLOCK)
        run = np.where(ok.all(axis=1), BLOCK, np.argmin(ok, axis=1))
        x[lanes] += tt * run.astype(np.uint64)
        lanes = lanes[run == BLOCK]
    negative = (src.words(m) & np.uint64(1)).astype(bool)
    keep &= ~(negative & (x == 0))
    lanes = np.flatnonzero(keep)
    diff = np.where(x[lanes] >= uu, x[lanes] - uu, uu - x[lanes])            # | |Y| - sigma^2/t |, sigma^2/t = u
    big = diff >= np.uint64(2 ** 31)
    small = lanes[~big]
    keep[small] = _bernoulli_exp(src, diff[~big] * diff[~big], np.full(len(small), np.uint64(2 * t * u)))
    for lane, dv in zip(lanes[big], diff[big]):                              # far tail: the same test in Python ints
        whole, rest = divmod(int(dv) ** 2, 2 * t * u)
        ok = True
        for _ in range(whole):                                               # ends at the first failure
            if not _bernoulli_exp1(src, 1)[0]:
                ok = False
                break
        keep[lane] = ok and bool(_bernoulli_exp01(src, np.array([rest], np.uint64),
                                                  np.array([2 * t * u], np.uint64))[0])
    value = x.astype(np.int64)
    return np.where(negative, -value, value)[keep]


class PoissonTable:
    """floor(2^64 F(k)) of the Poisson(lam) CDF F for k in [lo, hi], lam a positive integer.

    The window covers lam +- (12 sqrt(lam) + 12); the pmf is carried in fixed point with ``FRACTION_BITS`` bits by
    the recurrence p(k+1) = p(k) lam / (k+1) (each step floors, error far below 2^-64 after the window's worst
    amplification, about e^72), starting from p(lo) and F(lo - 1) computed by mpmath.
    """

    FRACTION_BITS = 384

    def __init__(self, lam: int) -> None:
        if lam < 1:
            raise ValueError(f"Poisson mean must be an integer >= 1, got {lam}")
        self.lam = lam
        half = 12 * math.isqrt(lam) + 12
        self.lo, self.hi = max(0, lam - half), lam + half
        bits = self.FRACTION_BITS
        import mpmath  # imported on first use: ~40 ms that every import of secure_fal.secagg would pay

        with mpmath.workprec(bits + 64):
            below = _poisson_cdf(lam, self.lo - 1)
            p = int(mpmath.floor(mpmath.exp(-lam + self.lo * mpmath.log(lam) - mpmath.loggamma(self.lo + 1))
                                 * mpmath.mpf(2) ** bits))
            total = int(mpmath.floor(below * mpmath.mpf(2) ** bits))
        shift = bits - 64
        self.below = total >> shift                                          # floor(2^64 F(lo - 1))
        entries = []
        for k in range(self.lo, self.hi + 1):
            total += p
            entries.append(min(total >> shift, 2 ** 64 - 1))
            p = p * lam // (k + 1)
        self.table = np.array(entries, dtype=np.uint64)


@functools.lru_cache(maxsize=16)
def poisson_table(lam: int) -> PoissonTable:
    """The (cached) ``PoissonTable`` of Poisson(lam)."""
    return PoissonTable(lam)


def _poisson_cdf(lam: int, k: int):
    """P(Poisson(lam) <= k) as an ``mpmath.mpf`` at mpmath's working precision (0 for k < 0)."""
    import mpmath

    if k < 0:
        return mpmath.mpf(0)
    return mpmath.gammainc(k + 1, lam, mpmath.inf, regularized=True)


def poisson(src: NoiseSource, size: int, lam: int) -> np.ndarray:
    """(size,) int64 i.i.d. Poisson(lam), lam a positive integer, by exact inversion (``PoissonTable``)."""
    tab = poisson_table(lam)
    u = src.words(size)
    idx = np.searchsorted(tab.table, u, side="right")
    out = tab.lo + idx.astype(np.int64)
    below_ok = u > np.uint64(tab.below) if tab.below < 2 ** 64 - 1 else np.zeros(size, bool)
    unsure = ~below_ok | (idx >= len(tab.table))
    inside = np.flatnonzero(~unsure)
    # a word within 1 of a table entry (an entry may be 1 off its exact floor) is decided by more bits
    with np.errstate(over="ignore"):
        prev = np.where(idx[inside] > 0, tab.table[np.maximum(idx[inside] - 1, 0)], np.uint64(tab.below))
        nxt = tab.table[np.minimum(idx[inside], len(tab.table) - 1)]
        w = u[inside]
        unsure[inside] = (w == prev) | (w == prev + np.uint64(1)) | (w + np.uint64(1) == nxt)
    for lane in np.flatnonzero(unsure):
        out[lane] = _poisson_refine(src, lam, int(u[lane]), int(out[lane]))
    return out


def _poisson_refine(src: NoiseSource, lam: int, word: int, guess: int) -> int:
    """The Poisson outcome of a lane whose first 64 uniform bits ``word`` did not decide it: more bits of the same
    uniform W are drawn until W is separated from every CDF value F(k) near it (mpmath, precision growing with W)."""
    import mpmath

    bits = 64
    while True:
        word = (word << 64) | int(src.words(1)[0])
        bits += 64
        with mpmath.workprec(bits + 64):
            scale = mpmath.mpf(2) ** bits
            lo_w, hi_w = mpmath.mpf(word) / scale, mpmath.mpf(word + 1) / scale
            margin = mpmath.mpf(2) ** -(bits + 32)
            k = max(guess, 0)
            while k > 0 and _poisson_cdf(lam, k - 1) > lo_w:
                k -= 1
            while _poisson_cdf(lam, k) <= lo_w:
                k += 1
            below, at = _poisson_cdf(lam, k - 1), _poisson_cdf(lam, k)
            if at > hi_w + margin and below + margin < lo_w:
                return k
            guess = k


def skellam(src: NoiseSource, size: int, lam: int) -> np.ndarray:
    """(size,) int64 i.i.d. symmetric Skellam: Poisson(lam) - Poisson(lam), variance 2 lam. The sum of n such
    draws is Skellam with parameter n lam."""
    return poisson(src, size, lam) - poisson(src, size, lam)
