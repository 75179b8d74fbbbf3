"""Shamir secret sharing of 32-byte secrets over the prime field GF(P), P = 2^256 + 297.

A secret s (32 bytes, read big-endian as an integer < 2^256 < P) is the constant term of a random
polynomial f of degree t-1 over GF(P); the share of the party at x-coordinate x != 0 is f(x). Any t
shares determine f and so s = f(0) (Lagrange interpolation); any t-1 shares are consistent with every
secret, each with the same number of polynomials, so they reveal nothing about s. Shares travel as
ELEMENT_BYTES = 33 big-endian bytes. Parties are client ids c >= 0 at x = c + 1 (see ``x_of``).

P = 2^256 + 297 is the smallest prime above 2^256 (checked with sympy.isprime and by the tests'
Miller-Rabin check), so every 32-byte string is a field element and no secret is reduced.
"""

from __future__ import annotations

import secrets
import itertools
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache

P = 2**256 + 297
ELEMENT_BYTES = 33
SECRET_BYTES = 32


def x_of(party: int) -> int:
    """x-coordinate of a party (client id >= 0): party + 1, never 0 (f(0) is the secret)."""
    if party < 0:
        raise ValueError(f"party ids must be >= 0, got {party}")
    return party + 1


def split(secret: bytes, threshold: int, parties: Iterable[int]) -> dict[int, int]:
    """t-out-of-n shares of a 32-byte secret.

    Args:
        secret: exactly 32 bytes.
        threshold: t, 1 <= t <= number of parties; any t shares reconstruct, t-1 reveal nothing.
        parties: distinct party ids (>= 0); party c gets f(c + 1).
    Returns:
        party id -> share (int in [0, P)).
    Coefficients come from ``secrets.randbelow``, the OS's cryptographic RNG.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    parties = list(parties)
    if len(set(parties)) != len(parties):
        raise ValueError(f"party ids must be distinct, got {parties}")
    if not 1 <= threshold <= len(parties):
        raise ValueError(f"threshold must be in [1, {len(parties)}] for {len(parties)} parties, got {threshold}")
    coeffs = [int.from_bytes(secret, "big")] + [secrets.randbelow(P) for _ in range(threshold - 1)]
    return {c: _evaluate(coeffs, x_of(c)) for c in parties}


def reconstruct(shares: Mapping[int, int], threshold: int) -> bytes:
    """The secret from at least t shares (party id -> share); 32 bytes.

    Uses the t shares of the smallest party ids. When more are given, the share of the next party is
    checked against the polynomial through those t: a single altered share among the t + 1 is always
    detected. Raises ValueError when there are fewer than t shares, a share is not in [0, P), the check
    fails, or the interpolated value is not a 32-byte secret (shares from different secrets).
    """
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    for c, y in shares.items():
        if not 0 <= y < P:
            raise ValueError(f"share of party {c} is not a field element")
    used = sorted(shares)[:threshold + 1]
    basis = tuple(x_of(c) for c in used[:threshold])
    values = [shares[c] for c in used[:threshold]]
    secret = _combine(_lagrange(basis, 0), values)
    if len(used) > threshold:
        check = _combine(_lagrange(basis, x_of(used[-1])), values)
        if check != shares[used[-1]]:
            raise ValueError(f"shares are inconsistent: party {used[-1]}'s share is not on the polynomial through "
                             f"parties {used[:threshold]}")
    if secret >= 2 ** (8 * SECRET_BYTES):
        raise ValueError("interpolated value is not a 32-byte secret (shares of different secrets?)")
    return secret.to_bytes(SECRET_BYTES, "big")


def reconstruct_verified(shares: Mapping[int, int], threshold: int, check: Callable[[bytes], bool],
                         max_tries: int = 4096) -> tuple[bytes, tuple[int, ...]]:
    """The secret that ``check`` accepts (e.g. it matches a commitment), rebuilt from a consistent subset of
    ``shares`` (party id -> share), and the parties whose shares are off the polynomial that gives it (sorted).

    Tries the t smallest ids first, then t-subsets that leave out 1, 2, ... parties, at most ``max_tries``
    interpolations (every subset when fewer). Raises ValueError when there are fewer than t shares, a share is
    not in [0, P), or no tried subset yields a secret ``check`` accepts: then nothing is known to be right.
    """
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    for c, y in shares.items():
        if not 0 <= y < P:
            raise ValueError(f"share of party {c} is not a field element")
    parties = sorted(shares)
    tries = 0
    for left_out in range(len(parties) - threshold + 1):
        for out in itertools.combinations(reversed(parties), left_out):
            if tries >= max_tries:
                raise ValueError(f"no subset of the first {tries} tried reconstructs a secret that checks")
            tries += 1
            used = [c for c in parties if c not in out][:threshold]
            basis = tuple(x_of(c) for c in used)
            values = [shares[c] for c in used]
            secret = _combine(_lagrange(basis, 0), values)
            if secret >= 2 ** (8 * SECRET_BYTES) or not check(secret.to_bytes(SECRET_BYTES, "big")):
                continue
            off = tuple(c for c in parties if c not in used
                        and _combine(_lagrange(basis, x_of(c)), values) != shares[c])
            return secret.to_bytes(SECRET_BYTES, "big"), off
    raise ValueError(f"no subset of the {len(parties)} shares reconstructs a secret that checks")


def encode_share(y: int) -> bytes:
    """A share as ELEMENT_BYTES big-endian bytes."""
    return y.to_bytes(ELEMENT_BYTES, "big")


def decode_share(data: bytes) -> int:
    """Inverse of encode_share; raises ValueError on a wrong length or a value >= P."""
    if len(data) != ELEMENT_BYTES:
        raise ValueError(f"share must be {ELEMENT_BYTES} bytes, got {len(data)}")
    y = int.from_bytes(data, "big")
    if y >= P:
        raise ValueError("share is not a field element (>= P)")
    return y


def _evaluate(coeffs: list[int], x: int) -> int:
    acc = 0
    for a in reversed(coeffs):
        acc = (acc * x + a) % P
    return acc


def _combine(weights: tuple[int, ...], values: list[int]) -> int:
    return sum(w * v for w, v in zip(weights, values)) % P


@lru_cache(maxsize=4096)
def _lagrange(xs: tuple[int, ...], target: int) -> tuple[int, ...]:
    """Weights w_i with f(target) = sum_i w_i f(xs[i]) for every f of degree < len(xs).

    w_i = prod_{j != i} (target - x_j) / (x_i - x_j). The x are small integers, so numerators and
    denominators are exact integer products; one modular inversion per weight. Cached: the same
    holders reconstruct many secrets.
    """
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num *= target - xj
                den *= xi - xj
        weights.append(num % P * pow(den % P, -1, P) % P)
    return tuple(weights)
