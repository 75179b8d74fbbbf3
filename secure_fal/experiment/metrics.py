"""Numbers derived from a cycle's test results and the split: labeled-class balance, worst-class accuracy, and
each client's accuracy on data distributed like its own pool."""

from __future__ import annotations

import math
from collections.abc import Sequence


def class_balance(histogram: Sequence[int]) -> float:
    """Balance of a class histogram: Shannon entropy of the class shares over log(number of classes), in
    [0, 1]; 1 = every class equally often, 0 = a single class. 0 for an empty histogram."""
    total = sum(histogram)
    if total <= 0 or len(histogram) < 2:
        return 0.0
    entropy = -sum(n / total * math.log(n / total) for n in histogram if n > 0)
    return entropy / math.log(len(histogram))


def worst_class_accuracy(class_accuracies: Sequence[float | None]) -> float:
    """The lowest per-class test accuracy (classes absent from the test set, None, left out)."""
    return min(a for a in class_accuracies if a is not None)


def mix_accuracies(class_accuracies: Sequence[float | None], client_histograms: Sequence[Sequence[int]]) -> list[float]:
    """Per client k: sum over classes c of share_k(c) x accuracy(c), share_k being the class shares of client k's
    pool (over the classes the test set holds): the model's expected accuracy on data distributed like client k's.
    """
    out = []
    for histogram in client_histograms:
        weights = [(n, a) for n, a in zip(histogram, class_accuracies) if a is not None and n > 0]
        total = sum(n for n, _ in weights)
        out.append(sum(n * a for n, a in weights) / total if total else math.nan)
    return out
