"""Fixed-point encoding shared by every protocol: floats <-> signed integers in the ring Z_{2^k}.

Every protocol aggregates the same thing: the exact sum of the clients' inputs rounded to a public grid
of step 2^-frac_bits. A value x in [-bound, bound] becomes q = round(x * 2^frac_bits), an integer with
|q| <= bound * 2^frac_bits. The ring is sized from what is summed: S, a public bound on |sum_k q_k| in grid
units, is n * round(bound * 2^frac_bits) by default, or floor(sum_bound * 2^frac_bits) when the caller knows a
tighter bound on the sum of the rounded inputs (FedAvg's normalised weights sum to at most 1:
``Aggregator.weighted_mean``; the DP mechanisms sum modulo 2^bits and reduce the sum themselves). k is the
smallest number of bits with S < 2^(k-1) (two's complement), any k, not only multiples of 8, and a vector of
L values travels as ceil(L k / 8) bytes: the values' k-bit residues back to back, least significant bit
first (``pack``). Decoding the ring sum is exact whenever |sum| <= S: the only error is the rounding of each
input, at most 2^-(frac_bits+1) per client and coordinate, hence at most n * 2^-(frac_bits+1) on the sum.

Exactness has one more condition: the decoded sum is returned as float64, which holds every integer up to
2^53 and no more. A configuration whose largest possible sum n * round(bound * 2^frac_bits) exceeds
MAX_EXACT = 2^53 grid units is refused (InputError, field 'bound'), so every decoded sum is exact; so are
integer inputs, compared with the bound as integers (an int64 above 2^53 is never rounded through a float).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError

MAX_EXACT = 2**53  # largest |sum| in grid units that float64 holds exactly


@dataclass(frozen=True)
class FixedPoint:
    """Public encoding parameters of one aggregation round.

    Attributes:
        bound: largest allowed |x| of any input coordinate (same units as the inputs).
        frac_bits: fractional bits; the grid step is 2^-frac_bits.
        n_clients: most inputs that can enter the sum (sets the headroom).
        sum_bound: public bound on |sum of the rounded inputs| per coordinate, same units as bound (None:
            n_clients * bound). A sum beyond it wraps around modulo 2^k, which only a caller that reduces its
            sums modulo 2^k itself may allow (the DP mechanisms).
    """

    bound: float
    frac_bits: int
    n_clients: int
    sum_bound: float | None = None

    def __post_init__(self) -> None:
        """Raises InputError naming the field ('bound', 'frac_bits' or 'n_clients'; no round: ``Aggregator.sum``
        and the Flower round opening add it)."""
        if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) or not (
                self.bound > 0 and math.isfinite(self.bound)):
            raise InputError(f"bound must be a positive finite number, got {self.bound!r}", field="bound")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 52:
            raise InputError(f"frac_bits must be an int in [0, 52], got {self.frac_bits!r}", field="frac_bits")
        if isinstance(self.n_clients, bool) or not isinstance(self.n_clients, int) or self.n_clients < 1:
            raise InputError(f"n_clients must be an int >= 1, got {self.n_clients!r}", field="n_clients")
        if self.sum_bound is not None and (isinstance(self.sum_bound, bool) or not isinstance(
                self.sum_bound, (int, float)) or not (self.sum_bound > 0 and math.isfinite(self.sum_bound))):
            raise InputError(f"sum_bound must be a positive finite number or None, got {self.sum_bound!r}",
                             field="sum_bound")
        if self.n_clients * self.max_abs_int > MAX_EXACT:
            raise InputError(
                f"bound={self.bound}, frac_bits={self.frac_bits}, n_clients={self.n_clients}: a sum can reach "
                f"{self.n_clients * self.max_abs_int} grid units, more than the 2^53 a float64 holds exactly; "
                "lower frac_bits or the bound", field="bound")

    @property
    def max_abs_int(self) -> int:
        """Largest |q| of one encoded input."""
        return math.floor(self.bound * 2.0 ** self.frac_bits + 0.5)

    @property
    def max_abs_sum(self) -> int:
        """S: largest |sum| in grid units the ring holds without wrapping (module docstring)."""
        if self.sum_bound is None:
            return self.n_clients * self.max_abs_int
        return max(1, math.floor(self.sum_bound * 2.0 ** self.frac_bits))

    @property
    def ring_bits(self) -> int:
        """k: bits of the ring Z_{2^k}, the fewest with S < 2^(k-1) (+1: the sign bit)."""
        return self.max_abs_sum.bit_length() + 1

    def packed_bytes(self, length: int) -> int:
        """Bytes of ``length`` packed values on the wire: ceil(length * k / 8)."""
        return (length * self.ring_bits + 7) // 8

    @property
    def max_sum_error(self) -> float:
        """Bound on |decoded sum - true sum| per coordinate: n * 2^-(frac_bits+1)."""
        return self.n_clients * 2.0 ** -(self.frac_bits + 1)

    # -- floats <-> integers --------------------------------------------------------------------------

    def quantize(self, x: np.ndarray, *, clip: bool = False, client: int | None = None,
                 round_id: int | None = None) -> np.ndarray:
        """Round float inputs to the grid: returns int64 array q with x ~= q * 2^-frac_bits.

        Raises InputError (naming client, round, field 'vector' and the index, never the value) for NaN/Inf, or
        for |x| > bound unless clip is True, in which case values are clipped to [-bound, bound] first. Integer
        arrays are compared and scaled as integers.
        """
        x = np.asarray(x)
        if np.issubdtype(x.dtype, np.integer):
            return self._quantize_integers(x, clip, client, round_id)
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise InputError(f"non-finite value at index {bad}", client=client,
                             round_id=round_id, field="vector")
        if clip:
            x = np.clip(x, -self.bound, self.bound)
        else:
            over = np.abs(x) > self.bound
            if over.any():
                bad = int(np.flatnonzero(over)[0])
                raise InputError(f"value at index {bad} outside [-{self.bound}, {self.bound}]"
                                 " (pass clip=True to clip instead)", client=client, round_id=round_id,
                                 field="vector")
        return np.rint(np.ldexp(x, self.frac_bits)).astype(np.int64)

    def _quantize_integers(self, x: np.ndarray, clip: bool, client: int | None, round_id: int | None) -> np.ndarray:
        """Integer inputs, compared with floor(bound) as integers (exact for every int64 and uint64)."""
        limit = math.floor(self.bound)
        over = (x > limit) | (x < -limit)
        if over.any() and not clip:
            bad = int(np.flatnonzero(over)[0])
            raise InputError(f"integer value at index {bad} outside [-{self.bound}, {self.bound}] (pass clip=True "
                             "to clip instead)", client=client, round_id=round_id, field="vector")
        q = np.where(x > limit, limit, np.where(x < -limit, -limit, x)).astype(np.int64)
        return q << np.int64(self.frac_bits)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Integers (int64) -> float64 values q * 2^-frac_bits."""
        return np.ldexp(np.asarray(q, dtype=np.float64), -self.frac_bits)

    # -- integers <-> ring elements <-> bytes ---------------------------------------------------------

    def to_ring(self, q: np.ndarray) -> np.ndarray:
        """Signed int64 -> uint64 residues mod 2^k (two's complement)."""
        return q.astype(np.uint64) & self.ring_mask

    def from_ring(self, r: np.ndarray) -> np.ndarray:
        """uint64 residues mod 2^k -> signed int64 in [-2^(k-1), 2^(k-1))."""
        k = self.ring_bits
        r = r & self.ring_mask
        signed = r.astype(np.int64)
        return np.where(signed >= (1 << (k - 1)), signed - (1 << k), signed)

    @property
    def ring_mask(self) -> np.uint64:
        return np.uint64((1 << self.ring_bits) - 1)

    def pack(self, r: np.ndarray) -> bytes:
        """uint64 ring elements (L,) -> ceil(L k / 8) bytes: each value's k low bits, value 0 first, least
        significant bit first (value i occupies bits i k .. i k + k - 1 of the little-endian byte string)."""
        k, length = self.ring_bits, len(r)
        if k % 8 == 0:      # whole bytes: the low k/8 bytes of each little-endian word
            raw = np.ascontiguousarray(r, dtype="<u8").view(np.uint8).reshape(-1, 8)
            return raw[:, :k // 8].tobytes()
        v = np.zeros(-(-length // 64) * 64, dtype=np.uint64)
        v[:length] = r
        v &= self.ring_mask
        words = np.zeros((k, len(v) // 64), dtype=np.uint64)  # 64 values of k bits fill exactly k 64-bit words
        for j, (w, s, spill) in enumerate(_layout(k)):
            words[w] |= v[j::64] << np.uint64(s)
            if spill:
                words[w + 1] |= v[j::64] >> np.uint64(64 - s)
        return words.T.astype("<u8").tobytes()[:self.packed_bytes(length)]

    def unpack(self, data: bytes, length: int) -> np.ndarray:
        """Inverse of pack -> uint64 (length,); ValueError if data is not exactly ``packed_bytes(length)`` bytes or
        its padding bits (after the last value) are not zero."""
        k, size = self.ring_bits, self.packed_bytes(length)
        if len(data) != size:
            raise ValueError(f"expected {size} bytes for {length} values of {k} bits, got {len(data)}")
        if length * k % 8 and data[-1] >> (length * k % 8):
            raise ValueError(f"padding bits after the last of {length} values of {k} bits are not zero")
        if k % 8 == 0:
            out = np.zeros((length, 8), dtype=np.uint8)
            out[:, :k // 8] = np.frombuffer(data, dtype=np.uint8).reshape(length, k // 8)
            return out.view("<u8").reshape(length).astype(np.uint64)
        groups = -(-length // 64)
        raw = np.zeros(groups * k * 8, dtype=np.uint8)
        raw[:size] = np.frombuffer(data, dtype=np.uint8)
        words = raw.view("<u8").reshape(groups, k).astype(np.uint64)
        out = np.empty(groups * 64, dtype=np.uint64)
        for j, (w, s, spill) in enumerate(_layout(k)):
            out[j::64] = words[:, w] >> np.uint64(s)
            if spill:
                out[j::64] |= words[:, w + 1] << np.uint64(64 - s)
        return out[:length] & self.ring_mask


@lru_cache(maxsize=64)
def _layout(k: int) -> tuple[tuple[int, int, bool], ...]:
    """For value j = 0..63 of a group of 64 k-bit values: (first 64-bit word, bit shift in it, whether it spills
    into the next word)."""
    return tuple(((j * k) // 64, (j * k) % 64, (j * k) % 64 + k > 64) for j in range(64))
