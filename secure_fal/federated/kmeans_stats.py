"""What a client computes from its points and public centres, in numpy alone: k-means statistics and distances.

Both the in-process strategies (``kmeans.cluster_stats``, ``fal_global.Candidates``) and a Flower node answering a
k-means or ownership sum (``flower.fal.candidates``, which must not import torch) call these, so the two give the
same floats. Distances are computed one centre at a time as sqrt(sum((p - c)^2)) in float64: exact to rounding, no
(m, n, d) temporary.
"""

from __future__ import annotations

import numpy as np

DISTANCE_BOUND = 2.0
"""Public bound on the distance between a centroid (inside the unit ball) and an L2-normalised embedding: FAL-Global's
ownership scores."""


def centre_distances(centres: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(m, n) float64 Euclidean distances from each of m centres (m, d) to each of n points (n, d)."""
    centres = np.asarray(centres, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    out = np.empty((len(centres), len(points)))
    for j, c in enumerate(centres):
        out[j] = np.sqrt(np.square(points - c).sum(axis=1))
    return out


def cluster_stats(points: np.ndarray, weights: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One client's k-means contribution: [n (m), S (m*d), Q (m*d)] as a flat float64 vector.

    Args:
        points: (n, d) the client's points. weights: (n,) non-negative sample weights. centres: (m, d).
    Returns:
        per cluster j (points assigned to their nearest centre, the first on ties): the weighted count n_j, the
        weighted sum S_j (d values) and the weighted sum of squares Q_j (d values), (m + 2 m d,).
    """
    points = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    m, d = np.shape(centres)
    idx = centre_distances(centres, points).argmin(axis=0) if len(points) else np.empty(0, dtype=np.int64)
    counts = np.bincount(idx, weights=w, minlength=m).astype(np.float64)
    sums, squares = np.zeros((m, d)), np.zeros((m, d))
    np.add.at(sums, idx, points * w[:, None])
    np.add.at(squares, idx, points * points * w[:, None])
    return np.concatenate([counts, sums.ravel(), squares.ravel()])
