"""CKKS parameters for an addition-only secure sum, the per-round plan derived from them, and its error bound.

Units. A client's quantized input q (int64, |q| <= M, M = the round's ``FixedPoint.max_abs_int``) enters CKKS
as y = q / M, so every value holds a number in [-1, 1] whatever the round's bound, and a sum of n inputs stays
in [-n, n]. Packing: a ciphertext carries N values, two per complex slot (values i and N/2 + i of a chunk are
the real and the imaginary part of slot i), so a slot's magnitude is at most sqrt(2). After decryption the
decryptor multiplies by M and rounds to the nearest integer: when the CKKS error (in units of y) times M is
below 1/2, that integer is exactly sum_k q_k and the result is bitwise equal to the plaintext protocol's.

Error sources per slot of a sum of n ciphertexts (Delta = the encoding scale, N = poly_modulus_degree):

- encryption noise e (per coefficient |e| <= E): symmetric encryption c = (-a*s - e + m, a) decrypts to
  m - e, so E = 21, the range of SEAL's noise sampler (centred binomial of 21+21 bits; the clipped normal
  build option clips at 6 * 3.2 = 19.2). Public-key encryption decrypts to m + e0 + e1*s - e_pk*u with
  ternary s, u, so E = 21 * (2N + 1) + (N + 1) / 2 (the last term: SEAL's modulus switch after encrypting at
  the key level);
- encoding: every coefficient is rounded to an integer, at most 1/2;
- a slot is a sum of N coefficients times roots of unity, so each coefficient error reaches a slot at most
  once: |slot error| <= sum of |coefficient errors| <= n * N * (E + 1/2) / Delta, a bound on the complex
  magnitude, hence on the error of the real and of the imaginary part (the two values of the slot);
- double-precision round-off of the encoder's and decoder's FFTs: at most 8 * N * log2(N) * 2^-53 per
  transform relative to its largest coefficient (a standard FFT round-off bound with a generous constant;
  measured more than 10^4 times smaller), i.e. n * 8 * N * log2(N) * 2^-53 * (2 + (E + 1) / Delta).

Spec and measurements: protocols/ckks.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import tenseal.sealapi as sa

from ..machine import RoundSpec

NOISE_MAX = 21
"""Largest |coefficient| of SEAL's encryption noise (centred binomial distribution, 21 + 21 bits)."""

FFT_ROUNDOFF = 8
"""Constant of the double-precision FFT round-off bound (see the module docstring)."""


@functools.cache
def _data_primes(poly_modulus_degree: int, coeff_mod_bit_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The primes SEAL picks for these sizes, less the special prime (the last one) when there are several."""
    primes = tuple(m.value() for m in sa.CoeffModulus.Create(poly_modulus_degree, list(coeff_mod_bit_sizes)))
    return primes[:-1] if len(primes) > 1 else primes


def _slot_peak(delta: int) -> int:
    """ceil(sqrt(2) * delta), exactly (integers): the largest |slot| of an encoding at scale delta."""
    root = math.isqrt(2 * delta * delta)
    return root if root * root == 2 * delta * delta else root + 1


@dataclass(frozen=True)
class CKKSParams:
    """Public CKKS parameters of a session.

    Attributes:
        poly_modulus_degree: N, a power of two in [1024, 32768]; a ciphertext holds N values (two per slot).
        coeff_mod_bit_sizes: bit sizes of the coefficient-modulus primes (each <= 60). With one prime there is
            no key switching (not needed to add); with several, the last is SEAL's special prime and the others
            form the data modulus q that ciphertexts live in. The total must stay within the 128-bit-security
            limit of HomomorphicEncryption.org for N (SEAL's ``CoeffModulus.MaxBitCount``: 2048 -> 54,
            4096 -> 109, 8192 -> 218 bits).
        scale_bits: log2 of the encoding scale Delta; None (default) picks, per round, the largest Delta that
            cannot overflow q for the round's number of clients.
        symmetric: encrypt with the secret key (True, default; the ciphertext's random half is sent as a seed,
            halving its size) or with a public key (False, TenSEAL's default).

    Default: N = 4096, one 60-bit prime, automatic scale, symmetric (justification: protocols/ckks.md).
    """

    poly_modulus_degree: int = 4096
    coeff_mod_bit_sizes: tuple[int, ...] = (60,)
    scale_bits: int | None = None
    symmetric: bool = True

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        bits = self.coeff_mod_bit_sizes
        if n < 1024 or n > 32768 or n & (n - 1):
            raise ValueError(f"poly_modulus_degree must be a power of two in [1024, 32768], got {n}")
        if not bits or any(not 1 <= b <= 60 for b in bits):
            raise ValueError(f"coeff_mod_bit_sizes must be 1 to 60 bits each, got {bits}")
        limit = sa.CoeffModulus.MaxBitCount(n, sa.SEC_LEVEL_TYPE.TC128)
        if sum(bits) > limit:
            raise ValueError(f"coeff_mod_bit_sizes {bits} total {sum(bits)} bits, more than the {limit} bits "
                             f"allowed at 128-bit security for poly_modulus_degree {n}")
        try:
            q_bits = self.data_modulus.bit_length()
        except RuntimeError as exc:  # SEAL: "failed to find enough qualifying primes"
            raise ValueError(f"no primes of {bits} bits for poly_modulus_degree {n}: {exc}") from None
        if self.scale_bits is not None and not 1 <= self.scale_bits < q_bits:
            raise ValueError(f"scale_bits must be in [1, {q_bits}), got {self.scale_bits}")

    @classmethod
    def tenseal_default(cls) -> CKKSParams:
        """TenSEAL's tutorial defaults: N = 8192, primes [60, 40, 40, 60], scale 2^40, public-key encryption."""
        return cls(8192, (60, 40, 40, 60), 40, symmetric=False)

    @property
    def slots(self) -> int:
        """Complex slots per ciphertext: N / 2."""
        return self.poly_modulus_degree // 2

    @property
    def capacity(self) -> int:
        """Real values per ciphertext: N, a real and an imaginary part per slot."""
        return self.poly_modulus_degree

    @property
    def data_modulus(self) -> int:
        """q: the product of the primes a fresh ciphertext lives in."""
        return math.prod(_data_primes(self.poly_modulus_degree, self.coeff_mod_bit_sizes))

    @property
    def noise_max(self) -> float:
        """E: largest |coefficient| of the noise in one fresh ciphertext (see the module docstring)."""
        n = self.poly_modulus_degree
        return NOISE_MAX if self.symmetric else NOISE_MAX * (2 * n + 1) + (n + 1) / 2

    def scale(self, n_clients: int) -> int:
        """Delta for a round of ``n_clients`` inputs in [-1, 1].

        Decryption is correct while every coefficient of the sum stays below q/2 in magnitude; a coefficient
        of one encoded input is at most ceil(sqrt(2) Delta) + E + 1 (a coefficient of the encoding is an average
        over the N conjugate-extended slot values, so at most their largest magnitude, |x + iy| <= sqrt(2) for
        two values in [-1, 1], plus rounding), hence the condition n_clients * (ceil(sqrt(2) Delta) + E + 1)
        < q / 2. Auto: the largest power of two meeting it.

        Raises:
            ValueError: a fixed ``scale_bits`` that would overflow q for this many clients.
        """
        q = self.data_modulus
        headroom = math.ceil(self.noise_max) + 1
        if self.scale_bits is not None:
            delta = 1 << self.scale_bits
            if n_clients * (_slot_peak(delta) + headroom) >= q // 2:
                raise ValueError(f"scale 2^{self.scale_bits} overflows the {q.bit_length()}-bit modulus for "
                                 f"{n_clients} clients")
            return delta
        t = q.bit_length()
        while t > 0 and n_clients * (_slot_peak(1 << t) + headroom) >= q // 2:
            t -= 1
        if t < 1:
            raise ValueError(f"a {q.bit_length()}-bit modulus cannot hold a sum of {n_clients} inputs")
        return 1 << t


@dataclass(frozen=True)
class RoundPlan:
    """Public CKKS quantities of one round, computed alike by the server and every client.

    Attributes:
        params: the session's CKKS parameters.
        chunks: ciphertexts per input: ceil(L / N).
        scale: Delta used to encode every input of the round.
        divisor: M, the integer an input is divided by before encoding (max_abs_int of the round, at least 1).
        frac_bits: fixed-point fractional bits of the round.
    """

    params: CKKSParams
    chunks: int
    scale: int
    divisor: int
    frac_bits: int

    @classmethod
    def for_round(cls, params: CKKSParams, spec: RoundSpec) -> RoundPlan:
        enc = spec.encoding
        return cls(params, -(-spec.length // params.capacity), params.scale(enc.n_clients), max(enc.max_abs_int, 1),
                   enc.frac_bits)

    def slot_error(self, n_inputs: int) -> float:
        """Bound on |decrypted slot - sum of the n_inputs encoded y values| (units of y; see module docstring)."""
        p = self.params
        n, e, delta = p.poly_modulus_degree, p.noise_max, float(self.scale)
        lattice = n * (e + 0.5) / delta
        roundoff = FFT_ROUNDOFF * n * math.log2(n) * 2.0 ** -53 * (2 + (e + 1) / delta)
        return n_inputs * (lattice + roundoff)

    def integer_error(self, n_inputs: int) -> float:
        """The same bound in units of the fixed-point grid (multiply by 2^-frac_bits for input units)."""
        return self.slot_error(n_inputs) * self.divisor

    def exact(self, n_inputs: int) -> bool:
        """True when rounding the decryption to the grid is guaranteed to give the exact integer sum."""
        return self.integer_error(n_inputs) < 0.5

    def error_bound(self, n_inputs: int) -> float:
        """Largest |result - exact sum of the float inputs| per coordinate (input units).

        Input rounding n * 2^-(f+1) as in every protocol; plus, only when ``exact`` does not hold, the CKKS
        error and half a grid step from rounding the decryption to the grid.
        """
        step = 2.0 ** -self.frac_bits
        quantization = n_inputs * step / 2
        if self.exact(n_inputs):
            return quantization
        return quantization + (self.integer_error(n_inputs) + 0.5) * step
