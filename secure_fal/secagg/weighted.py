"""What a weighted mean sums, and the public bounds that size its ring (protocols/masking.md §Ring sizing).

A weighted mean sum_k w_k x_k / sum_k w_k (FedAvg: x_k the update, w_k the labeled count) is one secure sum of
the vectors [w_k x_k / T, w_k / T], T a public power of two with sum_k w_k <= T (the weight total). The
normalised weights sum to at most 1, so every coordinate of the sum is bounded by max(bound, 1) whatever the
number of clients n: the ring needs log2(max(bound, 1)) + frac_bits + 1 bits (sign), plus at most one for the rounding of
n inputs, instead of log2(n * bound * weight_bound) + frac_bits + 1 for [w_k x_k, w_k]. The grid step stays
2^-frac_bits on the normalised values; the weight coordinate w_k / T is exact on it for integer weights and
T <= 2^frac_bits, so the mean's error per coordinate is at most n * 2^-(frac_bits+1) * T / sum_k w_k,
against n * 2^-(frac_bits+1) / sum_k w_k before the normalisation.

The server learns the two sums divided by the public T, i.e. exactly what it learned before (sum_k w_k x_k and
sum_k w_k over the contributors); T itself is public (FAL: a power of two above the train-set size, which
bounds every labeled total).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError


def power_of_two_above(x: float) -> float:
    """The smallest power of two >= x (1.0 for x <= 1)."""
    return float(2 ** math.ceil(math.log2(x))) if x > 1 else 1.0


def weighted_input(x: np.ndarray, weight: float, weight_total: float) -> np.ndarray:
    """One client's input [w x / T, w / T] (float64, (L + 1,)) for x (L,), its weight w and the weight total T.

    Every party computes it with this function, so the in-process and Flower runs sum the same floats."""
    return np.append(np.asarray(x, dtype=np.float64) * weight / weight_total, weight / weight_total)


def weighted_bounds(bound: float, weight_bound: float, weight_total: float, n_inputs: int,
                    frac_bits: int) -> tuple[float, float]:
    """(per-input bound, sum bound) of ``weighted_input`` vectors, for ``Aggregator.sum(bound=, sum_bound=)``.

    Args:
        bound: public bound on every |x| coordinate.
        weight_bound: public bound on one weight.
        weight_total: T, public bound on the sum of the weights (a power of two: the scaling is then exact).
        n_inputs: most inputs in the sum.
        frac_bits: the sum's fractional bits (each input's rounding adds up to 2^-(frac_bits+1) to the sum).
    Raises:
        InputError (field 'weight_total') unless T is a power of two.
    """
    if not (weight_total >= 1 and power_of_two_above(weight_total) == weight_total):
        raise InputError(f"weight_total must be a power of two >= 1, got {weight_total!r}", field="weight_total")
    per_input = max(bound, 1.0) * min(weight_bound, weight_total) / weight_total
    return per_input, min(n_inputs * per_input, max(bound, 1.0) + n_inputs * 2.0 ** -(frac_bits + 1))

