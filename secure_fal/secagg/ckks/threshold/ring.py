"""Arithmetic in R_q = Z_q[X]/(X^N + 1) in RNS form, in numpy: q is a product of primes p < 2^26 with
p = 1 (mod 2N) (SEAL's ``CoeffModulus.Create``), so a product of two residues fits a uint64 (and, balanced, a
float64 mantissa) and every prime has the 2N-th roots of unity of a negacyclic number-theoretic transform (NTT).

Shapes: a polynomial in RNS form is a uint64 array (..., k, N) of residues (k primes, N coefficients), leading
axes for blocks. ``ntt`` / ``intt`` map coefficients to evaluations at the odd powers of a primitive 2N-th root
psi (in a fixed order) and back, so a negacyclic product is a pointwise product of evaluations; they run as
two float64 matrix products per prime (four-step NTT, exact: see ``RNSRing.ntt``). Also: the cryptographic samplers
(ternary secrets, centred binomial errors, uniform smudging noise: all from ``os.urandom``), the public uniform
polynomials derived from a seed (SHAKE-256), bit-precise packing of residues, and the CRT back to integers.
"""

from __future__ import annotations

import hashlib
import math
import os
import numpy as np

NOISE_ETA = 21
"""Centred binomial error: sum of 21 bits minus sum of 21 bits, |e| <= 21, sigma = sqrt(21/2) ~ 3.24 (as SEAL)."""

_LIMB = 30  # bits per limb when sampling wide uniform integers


def _psi(p: int, n: int) -> int:
    """A primitive 2N-th root of unity mod p (psi^N = -1)."""
    for g in range(2, p):
        psi = pow(g, (p - 1) // (2 * n), p)
        if pow(psi, n, p) == p - 1:
            return psi
    raise ValueError(f"{p} has no primitive {2 * n}-th root of unity")


_SPLIT = float(1 << 12)
"""A fixed transform matrix W is stored as W_hi * 2^12 + W_lo (|W_lo| <= 2^11), so W @ M is exact in float64."""


def _powers(base: int, count: int, p: int) -> np.ndarray:
    """base^e mod p for e < count, int64."""
    out, acc = np.empty(count, dtype=np.int64), 1
    for e in range(count):
        out[e] = acc
        acc = acc * base % p
    return out


def _balanced(values: np.ndarray, p: int) -> np.ndarray:
    """Residues mod p as float64 in [-(p - 1)/2, (p - 1)/2]."""
    v = np.asarray(values, dtype=np.int64) % p
    return np.where(v > p // 2, v - p, v).astype(np.float64)


class _PrimeTransform:
    """The four-step negacyclic NTT tables of one prime p for N = n1 * n2 (n1 = 2^floor(log2 N / 2)).

    Forward: twist by psi^j, then the cyclic transform of omega = psi^2 as two matrix products over the
    (n2, n1) view of the vector (row j2, column j1 holds entry j1 + n1 j2): B = W2 @ M (W2[k2, j2] =
    omega^(n1 j2 k2)), B *= T (T[k2, j1] = omega^(j1 k2)), X = B @ W1 (W1[j1, k1] = omega^(n2 j1 k1)); X[k2, k1]
    is the evaluation at psi * omega^(k2 + n2 k1), stored at k2 n1 + k1. Inverse: the same steps backwards
    with inverse roots and N^-1.
    """

    def __init__(self, n: int, p: int) -> None:
        n1 = 1 << ((n.bit_length() - 1) // 2)
        n2 = n // n1
        psi = _psi(p, n)
        omega, inverse = psi * psi % p, pow(psi * psi % p, -1, p)
        self.p, self.n1, self.n2 = float(p), n1, n2
        psi_powers = _powers(psi, 2 * n, p)
        n_inv = pow(n, -1, p)
        self.twist = _balanced(psi_powers[:n], p)
        self.untwist = _balanced(psi_powers[(2 * n - np.arange(n)) % (2 * n)] * n_inv % p, p)
        fwd, inv = _powers(omega, n, p), _powers(inverse, n, p)

        def matrix(table: np.ndarray, rows: int, cols: int, step: int) -> np.ndarray:
            return _balanced(table[(step * np.outer(np.arange(rows), np.arange(cols))) % n], p)

        def split(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            hi = np.round(w / _SPLIT)
            return hi, w - hi * _SPLIT

        self.w2, self.w1 = split(matrix(fwd, n2, n2, n1)), split(matrix(fwd, n1, n1, n2))
        self.t = matrix(fwd, n2, n1, 1)
        self.iw2, self.iw1 = split(matrix(inv, n2, n2, n1)), split(matrix(inv, n1, n1, n2))
        self.it = matrix(inv, n2, n1, 1)

    def reduce(self, x: np.ndarray) -> np.ndarray:
        """x (integer-valued float64, |x| < 2^52) mod p, in place, to |x| <= p/2 + 1 (balanced)."""
        x -= np.round(x * (1.0 / self.p)) * self.p
        return x

    def left(self, w: tuple[np.ndarray, np.ndarray], m: np.ndarray) -> np.ndarray:
        """(W @ M) mod p (balanced); M (..., r, c) integer-valued float64, |M| < 2^26."""
        out = self.reduce(w[0] @ m)
        out *= _SPLIT
        out += w[1] @ m
        return self.reduce(out)

    def right(self, m: np.ndarray, w: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """(M @ W) mod p (balanced); M (..., r, c) integer-valued float64, |M| < 2^26."""
        out = self.reduce(m @ w[0])
        out *= _SPLIT
        out += m @ w[1]
        return self.reduce(out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Residues (..., N) -> evaluations (..., N), float64 in [0, p)."""
        a = x.astype(np.float64) * self.twist
        b = self.left(self.w2, self.reduce(a).reshape(*x.shape[:-1], self.n2, self.n1))
        b *= self.t
        out = self.right(self.reduce(b), self.w1).reshape(x.shape)
        out += self.p * (out < 0)
        return out

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Evaluations (..., N) -> residues (..., N), float64 in [0, p)."""
        b = self.right(y.astype(np.float64).reshape(*y.shape[:-1], self.n2, self.n1), self.iw1)
        b *= self.it
        a = self.left(self.iw2, self.reduce(b)).reshape(y.shape)
        a *= self.untwist
        out = self.reduce(a)
        out += self.p * (out < 0)
        return out


class RNSRing:
    """R_q for one N and a chain of primes (the first k of which a round may use).

    Args:
        n: N, a power of two.
        primes: distinct primes p < 2^26, each = 1 (mod 2N).
    """

    def __init__(self, n: int, primes: tuple[int, ...]) -> None:
        if n < 2 or n & (n - 1):
            raise ValueError(f"N must be a power of two, got {n}")
        if any(p >= 2**26 or (p - 1) % (2 * n) for p in primes):
            raise ValueError(f"every prime must be < 2^26 and = 1 mod {2 * n}: {primes}")
        self.n, self.primes = n, tuple(primes)
        self._transforms = [_PrimeTransform(n, p) for p in primes]

    def moduli(self, k: int) -> np.ndarray:
        """The first k primes as a (k, 1) uint64 column (broadcasts against (..., k, N))."""
        return np.array(self.primes[:k], dtype=np.uint64)[:, None]

    def ntt(self, x: np.ndarray) -> np.ndarray:
        """Coefficients (..., k, N) -> evaluations at the N odd powers of psi (in the fixed order of
        ``_PrimeTransform``); residues in, residues out (uint64).

        Exact in float64: every operand is a residue (|r| < p < 2^26; balanced, |r| <= p/2 + 1, after each
        reduction) or half of a split matrix entry (|W_hi| <= 2^13 + 1, |W_lo| <= 2^11), so each product and each
        partial sum of a matrix product (at most n2 <= 2^8 terms for N <= 2^16) stays below 2^47, and a product of
        two residues below 2^51: integers that float64 represents exactly, whatever order the BLAS adds them in.
        The reduction x - round(x / p) p misses round(x / p) by at most one (x < 2^52), so its result stays
        balanced within one. 3-4x faster than a radix-2 numpy NTT here (N = 8192, 4 primes,
        14 blocks: 13-16 ms vs 47-58 ms CPU)."""
        out = np.empty(x.shape, dtype=np.uint64)
        for i in range(x.shape[-2]):
            out[..., i, :] = self._transforms[i].forward(x[..., i, :])
        return out

    def intt(self, x: np.ndarray) -> np.ndarray:
        """Inverse of ``ntt``."""
        out = np.empty(x.shape, dtype=np.uint64)
        for i in range(x.shape[-2]):
            out[..., i, :] = self._transforms[i].inverse(x[..., i, :])
        return out

    def residues(self, values: np.ndarray, k: int) -> np.ndarray:
        """int64 coefficients (..., N) -> residues (..., k, N)."""
        p = np.array(self.primes[:k], dtype=np.int64)[:, None]
        return (np.asarray(values, dtype=np.int64)[..., None, :] % p).astype(np.uint64)

    def scaled_residues(self, values: np.ndarray, scale: int, k: int) -> np.ndarray:
        """Residues of scale * values (scale may exceed 2^63: reduced per prime first)."""
        r = self.residues(values, k)
        s = np.array([scale % p for p in self.primes[:k]], dtype=np.uint64)[:, None]
        return r * s % self.moduli(k)

    def to_integers(self, x: np.ndarray) -> np.ndarray:
        """Residues (..., k, N) -> the centred integers in (-q/2, q/2), q = product of the k primes, as a numpy
        object array (..., N) of Python ints (mixed-radix / Garner reconstruction, exact)."""
        k = x.shape[-2]
        primes = self.primes[:k]
        digits = [x[..., 0, :].astype(np.uint64)]
        for i in range(1, k):
            p = np.uint64(primes[i])
            # digit_i = (x_i - (d_0 + d_1 p_0 + ...)) / (p_0 ... p_{i-1}) mod p_i
            acc = np.zeros_like(digits[0])
            radix = 1
            for j, d in enumerate(digits):
                acc = (acc + d % p * np.uint64(radix % primes[i])) % p
                radix *= primes[j]
            diff = (x[..., i, :] + p - acc) % p
            digits.append(diff * np.uint64(pow(radix, -1, primes[i])) % p)
        out = np.zeros(x.shape[:-2] + (self.n,), dtype=object)
        radix = 1
        for i, d in enumerate(digits):
            out = out + d.astype(object) * radix
            radix *= primes[i]
        half = radix // 2
        return np.where(out > half, out - radix, out)


def sample_ternary(n: int) -> np.ndarray:
    """N coefficients uniform in {-1, 0, 1} (int64), from os.urandom (rejection of bytes >= 255: unbiased)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        b = np.frombuffer(os.urandom(2 * n), dtype=np.uint8)
        out = np.concatenate([out, (b[b < 255] % 3).astype(np.int64) - 1])
    return out[:n]


def sample_error(shape: tuple[int, ...]) -> np.ndarray:
    """Centred binomial errors (eta = 21) of the given shape (int64, |e| <= 21), from os.urandom."""
    count = math.prod(shape)
    bits = np.unpackbits(np.frombuffer(os.urandom(-(-count * 2 * NOISE_ETA // 8)), dtype=np.uint8))
    bits = bits[:count * 2 * NOISE_ETA].reshape(count, 2, NOISE_ETA).sum(axis=2, dtype=np.int64)
    return (bits[:, 0] - bits[:, 1]).reshape(shape)


def sample_uniform_residues(ring: RNSRing, k: int, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """Residues (shape..., k, N) of integers uniform in [-2^(bits-1), 2^(bits-1)) (the smudging noise), drawn from
    os.urandom as ceil(bits / 30) limbs of 30 bits, reduced per prime without forming the wide integer."""
    limbs = -(-bits // _LIMB)
    count = math.prod(shape) * ring.n
    raw = np.frombuffer(os.urandom(count * limbs * 4), dtype=np.uint32).reshape(limbs, count).astype(np.uint64)
    raw[:-1] &= np.uint64((1 << _LIMB) - 1)
    raw[-1] &= np.uint64((1 << (bits - _LIMB * (limbs - 1))) - 1)
    p = ring.moduli(k)
    acc = np.zeros((k, count), dtype=np.uint64)
    for i in range(limbs):
        weight = np.array([pow(2, _LIMB * i, q) for q in ring.primes[:k]], dtype=np.uint64)[:, None]
        acc = (acc + raw[i][None, :] % p * weight) % p
    offset = np.array([pow(2, bits - 1, q) for q in ring.primes[:k]], dtype=np.uint64)[:, None]
    acc = (acc + p - offset) % p
    return np.moveaxis(acc.reshape(k, *shape, ring.n), 0, -2)


def _uniform_mod_primes(ring: RNSRing, k: int, count: int, stream) -> np.ndarray:
    """(k, count) residues uniform mod each prime, by rejection of ``prime_bits``-bit words from ``stream(i, j)``
    (bytes for prime i, attempt j)."""
    out = np.empty((k, count), dtype=np.uint64)
    for i, p in enumerate(ring.primes[:k]):
        mask, got, attempt = (1 << p.bit_length()) - 1, np.empty(0, dtype=np.uint64), 0
        while got.size < count:
            words = np.frombuffer(stream(i, attempt, 8 * count), dtype=">u4").astype(np.uint64) & np.uint64(mask)
            got = np.concatenate([got, words[words < p]])
            attempt += 1
        out[i] = got[:count]
    return out


def derive_uniform(ring: RNSRing, k: int, label: bytes) -> np.ndarray:
    """A public polynomial (k, N) uniform mod each prime, expanded from ``label`` by SHAKE-256 (any party derives
    the same one)."""
    return _uniform_mod_primes(ring, k, ring.n, lambda i, j, size: hashlib.shake_256(
        label + bytes([i]) + j.to_bytes(4, "big")).digest(size))


def random_residues(ring: RNSRing, k: int, count: int) -> np.ndarray:
    """(k, count) residues uniform mod each prime, from os.urandom (Shamir coefficients)."""
    return _uniform_mod_primes(ring, k, count, lambda i, j, size: os.urandom(size))


def pack_residues(x: np.ndarray, width: int) -> bytes:
    """Residues < 2^width (width <= 32; any shape), ``width`` bits each, most significant bit first, no gaps:
    ceil(count * width / 8) bytes. Eight residues fill exactly ``width`` bytes, assembled in four uint64 words."""
    flat = x.reshape(-1).astype(np.uint64)
    count = flat.size
    groups = -(-count // 8)
    v = np.zeros(groups * 8, dtype=np.uint64)
    v[:count] = flat
    v = v.reshape(groups, 8)
    words = np.zeros((groups, 4), dtype=np.uint64)
    for i in range(8):
        word, shift = divmod(i * width, 64)
        end = shift + width
        if end <= 64:
            words[:, word] |= v[:, i] << np.uint64(64 - end)
        else:
            words[:, word] |= v[:, i] >> np.uint64(end - 64)
            words[:, word + 1] |= v[:, i] << np.uint64(128 - end)
    out = words.astype(">u8").view(np.uint8).reshape(groups, 32)[:, :width]
    return out.tobytes()[:-(-count * width // 8)]


def unpack_residues(data: bytes, width: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``pack_residues``; ValueError when ``data`` is not exactly the packed size of ``shape``."""
    count = math.prod(shape)
    if len(data) != -(-count * width // 8):
        raise ValueError(f"{len(data)} bytes, expected {-(-count * width // 8)} for {count} residues of {width} bits")
    groups = -(-count // 8)
    raw = np.zeros((groups, 32), dtype=np.uint8)
    padded = np.zeros(groups * width, dtype=np.uint8)
    padded[:len(data)] = np.frombuffer(data, dtype=np.uint8)
    raw[:, :width] = padded.reshape(groups, width)
    words = raw.view(">u8").astype(np.uint64)
    mask = np.uint64((1 << width) - 1)
    v = np.empty((groups, 8), dtype=np.uint64)
    for i in range(8):
        word, shift = divmod(i * width, 64)
        end = shift + width
        if end <= 64:
            v[:, i] = (words[:, word] >> np.uint64(64 - end)) & mask
        else:
            v[:, i] = ((words[:, word] << np.uint64(end - 64)) | (words[:, word + 1] >> np.uint64(128 - end))) & mask
    return v.reshape(-1)[:count].reshape(shape)
