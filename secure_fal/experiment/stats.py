"""Paired statistics of a method against a baseline over the same seeds.

- ``wilcoxon``: the two-sided Wilcoxon signed-rank test of the paired differences (``scipy.stats.wilcoxon``, its
  default exact distribution for small samples without ties). With n pairs the smallest two-sided p-value is
  2 / 2^n: 0.25 for 3 seeds, 0.0625 for 5, 0.002 for 10; fewer than 6 seeds can never reach p < 0.05.
- ``hodges_lehmann``: the Hodges-Lehmann estimate of the shift for PAIRED data: the median of the Walsh averages
  (d_i + d_j) / 2, i <= j, of the differences d = method - baseline (the one-sample estimator that goes with the
  signed-rank test; not the two-sample median of all x_i - y_j, which ignores the pairing by seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Paired:
    """A method against the baseline on one metric, over the seeds both ran.

    Attributes:
        n: number of pairs.
        shift: Hodges-Lehmann estimate of method - baseline (units of the metric).
        p_value: two-sided Wilcoxon signed-rank p-value (1.0 when every difference is 0, nan for n < 1).
    """

    n: int
    shift: float
    p_value: float


def hodges_lehmann(x: Sequence[float], y: Sequence[float]) -> float:
    """Median of the Walsh averages (d_i + d_j) / 2, i <= j, of d = x - y (paired, equal lengths)."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if d.size == 0:
        return math.nan
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def wilcoxon(x: Sequence[float], y: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the pairs (x_i, y_i); 1.0 when x == y everywhere."""
    from scipy.stats import wilcoxon as scipy_wilcoxon

    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if d.size == 0:
        return math.nan
    if not np.any(d):
        return 1.0
    return float(scipy_wilcoxon(d).pvalue)


def paired(x: Sequence[float], y: Sequence[float]) -> Paired:
    """``Paired`` of method values ``x`` against baseline values ``y`` (same seeds, same order)."""
    return Paired(len(x), hodges_lehmann(x, y), wilcoxon(x, y))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
