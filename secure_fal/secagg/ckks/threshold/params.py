"""Parameters of threshold CKKS (spec: protocols/ckks.md §Threshold mode) and the per-round plan.

Encoding. A round's quantized inputs (int64 on the fixed-point grid, |m| <= A = ``max_abs_int``) fill the N
coefficients of ceil(L / N) blocks; block b of client i encrypts as c0 = -a_b s_i + e_i + Delta m (mod q), a_b
public and uniform. The aggregate decrypts to Delta M + E + sum of the t smudges, |E| <= 21 n (n contributors,
centred binomial errors), each smudge uniform in [-2^(B-1), 2^(B-1)).

Smudging. Over a round's K = blocks * N coefficients, one honest smudge X hides E: the statistical distance
between X + E and X is at most sum_k |E_k| / 2^B <= K * 21 n / 2^B (uniform noise of 2^B values shifted by |E_k|
differs in |E_k| values), so B = ceil(log2(K * 21 n)) + 40 gives <= 2^-40 per round; over R rounds of a session
the distances add (hybrid argument): <= R * 2^-40.

Exactness. |noise| <= 21 n + t 2^(B-1) =: bound, Delta = 2^D the smallest power of two > 2 bound, so rounding
v / Delta gives M exactly, and q (the first k primes of the chain) > 2 (Delta n A + bound) so v, |v| < q/2, is
recovered exactly from its residues: the result is bit for bit the plaintext protocol's.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import tenseal.sealapi as sa

from ...machine import RoundSpec
from .ring import NOISE_ETA, RNSRing

SD_BITS = 40
"""-log2 of the statistical distance per round that one honest smudge leaves about the decryption error."""


@functools.cache
def _chain(n: int, prime_bits: int) -> tuple[int, ...]:
    """SEAL's primes of ``prime_bits`` bits = 1 mod 2N, as many as N's 128-bit-security budget allows."""
    count = sa.CoeffModulus.MaxBitCount(n, sa.SEC_LEVEL_TYPE.TC128) // prime_bits
    return tuple(m.value() for m in sa.CoeffModulus.Create(n, [prime_bits] * count))


@functools.cache
def ring_of(n: int, prime_bits: int) -> RNSRing:
    """The (cached) RNS ring of N and the prime chain."""
    return RNSRing(n, _chain(n, prime_bits))


def default_threshold(committee: int, corruption: float) -> int:
    """Smallest t with t > b and 2t - m > b, b = floor(corruption * m) corrupted members of a committee of m:
    fewer than t cannot decrypt, and two responder sets of t share an honest member (who answers once per round).
    Raises ValueError when no t <= m meets both."""
    b = math.floor(corruption * committee)
    t = max(b + 1, (committee + b) // 2 + 1)
    if t > committee:
        raise ValueError(f"no threshold for a committee of {committee} with {b} corrupted members")
    return t


def select_committee(session: int, members: Sequence[int], size: int) -> tuple[int, ...]:
    """The decryption committee: the ``size`` members with the smallest SHA-256(label, session, id) (sorted ids).
    Every party computes it from the session id; see the spec on a server that grinds session ids."""
    def rank(cid: int) -> bytes:
        return hashlib.sha256(b"secure_fal/ckks-threshold/committee/v1" + session.to_bytes(8, "big")
                              + cid.to_bytes(4, "big", signed=True)).digest()
    return tuple(sorted(sorted(members, key=rank)[:size]))


@dataclass(frozen=True)
class ThresholdParams:
    """Public parameters of a threshold CKKS session.

    Attributes:
        poly_modulus_degree: N (power of two, >= 1024): coefficients per block = values per ciphertext.
        prime_bits: bits of each RNS prime (SEAL primes = 1 mod 2N, at most 25 so residue arithmetic fits
            uint64 with lazy reduction); the chain holds floor(MaxBitCount(N, TC128) / prime_bits) primes.
        committee: largest decryption committee m (capped at the number of members).
        threshold: t (None: ``default_threshold(m, corruption)``).
        corruption: fraction of committee members assumed to collude with the server (sizes the default t).
    """

    poly_modulus_degree: int = 8192
    prime_bits: int = 25
    committee: int = 10
    threshold: int | None = None
    corruption: float = 0.1

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if n < 1024 or n > 32768 or n & (n - 1):
            raise ValueError(f"poly_modulus_degree must be a power of two in [1024, 32768], got {n}")
        if not 18 <= self.prime_bits <= 25:
            raise ValueError(f"prime_bits must be in [18, 25], got {self.prime_bits}")
        if self.committee < 1:
            raise ValueError(f"committee must be >= 1, got {self.committee}")
        if self.threshold is not None and not 1 <= self.threshold <= self.committee:
            raise ValueError(f"threshold must be in [1, committee={self.committee}], got {self.threshold}")
        if not 0 <= self.corruption < 1:
            raise ValueError(f"corruption must be in [0, 1), got {self.corruption}")

    @property
    def ring(self) -> RNSRing:
        return ring_of(self.poly_modulus_degree, self.prime_bits)

    def committee_and_threshold(self, session: int, members: Sequence[int]) -> tuple[tuple[int, ...], int]:
        """(committee, t) of a setup among ``members``."""
        committee = select_committee(session, members, min(self.committee, len(members)))
        t = self.threshold if self.threshold is not None else default_threshold(len(committee), self.corruption)
        if t > len(committee):
            raise ValueError(f"threshold {t} exceeds the committee of {len(committee)} members")
        return committee, t


@dataclass(frozen=True)
class ThresholdPlan:
    """Public quantities of one round, computed alike by the server and every client.

    Attributes:
        blocks: ciphertext blocks per input, ceil(L / N).
        primes: k, how many primes of the chain the round uses (q = their product).
        smudge_bits: B; each smudge is uniform in [-2^(B-1), 2^(B-1)).
        noise_bound: hard bound on |decrypted - Delta M| per coefficient: 21 n + t 2^(B-1).
        scale_bits: D, Delta = 2^D > 2 noise_bound.
        width: bits per packed residue (the largest prime's bit length).
    """

    blocks: int
    primes: int
    smudge_bits: int
    noise_bound: int
    scale_bits: int
    width: int

    @classmethod
    def for_round(cls, params: ThresholdParams, spec: RoundSpec, threshold: int) -> ThresholdPlan:
        """Raises ValueError when the round's sum cannot fit the chain's modulus (name the bits needed)."""
        ring, enc = params.ring, spec.encoding
        n_coeff, n = ring.n, enc.n_clients
        blocks = -(-spec.length // n_coeff)
        coefficients = blocks * n_coeff
        smudge_bits = math.ceil(math.log2(coefficients * NOISE_ETA * n)) + SD_BITS
        noise_bound = NOISE_ETA * n + threshold * 2 ** (smudge_bits - 1)
        scale_bits = noise_bound.bit_length() + 1
        need = 2 * ((1 << scale_bits) * n * max(enc.max_abs_int, 1) + noise_bound)
        q, k = 1, 0
        while q <= need:
            if k == len(ring.primes):
                raise ValueError(f"a sum of {n} inputs of {enc.max_abs_int} grid units needs a modulus over "
                                 f"{need.bit_length()} bits; N = {n_coeff} allows {sum(p.bit_length() for p in ring.primes)}"
                                 " at 128-bit security (raise poly_modulus_degree)")
            q *= ring.primes[k]
            k += 1
        return cls(blocks, k, smudge_bits, noise_bound, scale_bits, max(p.bit_length() for p in ring.primes[:k]))

    def packed_bytes(self, n_coeff: int) -> int:
        """Bytes of one packed ciphertext or partial decryption: blocks * ceil(k * width * N / 8)."""
        return -(-self.blocks * self.primes * n_coeff * self.width // 8)
