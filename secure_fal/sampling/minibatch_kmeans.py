"""Incremental mini-batch k-means around fixed centres: the clustering of the IWKMeans reference.

The reference is the blog author's OpenAL benchmark (dataiku-research/OpenAL, ``bench/samplers.py``,
``TwoStepIncrementalMiniBatchKMeansSampler``, commit f6b79bd) over cardinal's ``IncrementalMiniBatchKMeans``
(dataiku-research/cardinal, ``cardinal/kmeans.py``, commit 96ee635), itself scikit-learn's MiniBatchKMeans with
fixed centres; OpenAL runs it with ``n_init=1`` and the defaults below. Written here in NumPy (float64, CPU):

1. Seeding: greedy k-means++ WITHOUT sample weights on a random subsample (``init_size`` draws with replacement,
   or all points when that is at least their number), starting from the fixed centres: each new centre is the
   best, by total squared distance, of ``2 + int(log(n_clusters))`` D²-drawn trials.
2. One mini-batch step on a second random subsample (the reference's "validation" batch), then mini-batches of
   ``batch_size`` points drawn with replacement, at most ``max_iter`` passes' worth. A step assigns the batch to
   its nearest centre (fixed ones included) and moves only new centres: c <- (c * w_c + sum w x) / (w_c + sum
   w), w_c the weight the centre has absorbed so far. Every ``10 + int(min w_c)`` steps (every 10 while a fixed
   centre, which never absorbs weight, exists), new centres with w_c < ``reassignment_ratio`` * max w_c jump to
   random points of the batch.
3. Stop after ``max_no_improvement`` steps without a new minimum of the exponentially weighted average of the
   batch inertia (weight min(1, 2 * batch_size / (M + 1))).

Random draws come from a ``numpy.random.Generator``; they follow the reference's order of draws, not its
RandomState streams.
"""

from __future__ import annotations

import math

import numpy as np

BATCH_SIZE = 100
MAX_ITER = 100
MAX_NO_IMPROVEMENT = 10
REASSIGNMENT_RATIO = 0.01


def sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(M, K) squared Euclidean distances, clamped at 0."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centres.T + (centres * centres).sum(1)[None, :]
    return np.maximum(d, 0.0)


def greedy_kmeans_pp(x: np.ndarray, n_new: int, fixed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n_new`` centres by greedy k-means++ (unweighted) on the points ``x`` (M, D), after the fixed ones.

    Without fixed centres (``fixed`` of shape (0, D)) the first centre is a uniformly random point.
    Returns (n_new, D) float64.
    """
    n_clusters = len(fixed) + n_new
    trials = 2 + int(math.log(n_clusters))
    centres = [c for c in fixed]
    if not len(fixed):
        centres.append(x[rng.integers(len(x))])
    closest = sq_distances(x, np.asarray(centres)).min(axis=1)
    potential = closest.sum()
    while len(centres) < n_clusters:
        draws = np.searchsorted(np.cumsum(closest), rng.random(trials) * potential)
        draws = np.minimum(draws, len(x) - 1)
        candidate = np.minimum(closest[None, :], sq_distances(x, x[draws]).T)   # (trials, M)
        best = int(np.argmin(candidate.sum(axis=1)))
        closest, potential = candidate[best], candidate[best].sum()
        centres.append(x[draws[best]])
    return np.asarray(centres[len(fixed):], dtype=np.float64).reshape(n_new, x.shape[1])


def _step(xb: np.ndarray, wb: np.ndarray, centres: np.ndarray, mass: np.ndarray, n_fixed: int,
          rng: np.random.Generator | None, reassignment_ratio: float) -> float:
    """One mini-batch update of ``centres`` (K, D) and their absorbed weight ``mass`` (K,), in place; the new
    centres are rows n_fixed.. . With ``rng``, first reassign light new centres. Returns the batch inertia."""
    d = sq_distances(xb, centres)
    nearest = d.argmin(axis=1)
    inertia = float((wb * d[np.arange(len(xb)), nearest]).sum())
    if rng is not None and reassignment_ratio > 0:
        light = mass < reassignment_ratio * mass.max()
        light[:n_fixed] = False
        if light.sum() > 0.5 * len(xb):
            light[np.argsort(mass, kind="stable")[int(0.5 * len(xb)):]] = False
        if light.any():
            centres[light] = xb[rng.choice(len(xb), size=int(light.sum()), replace=False)]
            mass[light] = mass[~light].min()
    sums = np.zeros_like(centres)
    np.add.at(sums, nearest, wb[:, None] * xb)
    weight = np.bincount(nearest, weights=wb, minlength=len(centres))
    moving = weight > 0
    moving[:n_fixed] = False
    centres[moving] = (centres[moving] * mass[moving, None] + sums[moving]) / (mass[moving] + weight[moving])[:, None]
    mass[moving] += weight[moving]
    return inertia


def incremental_minibatch_kmeans(x: np.ndarray, weight: np.ndarray, fixed: np.ndarray, n_new: int,
                                 rng: np.random.Generator, *, batch_size: int = BATCH_SIZE,
                                 max_iter: int = MAX_ITER, max_no_improvement: int = MAX_NO_IMPROVEMENT,
                                 reassignment_ratio: float = REASSIGNMENT_RATIO) -> np.ndarray:
    """The ``n_new`` new centres of a weighted mini-batch k-means whose other centres are ``fixed``.

    Args:
        x: (M, D) points; weight: (M,) non-negative sample weights; fixed: (L, D) centres that never move.
        n_new: number of new centres, 1 <= n_new <= M.
        rng: the source of every random draw.
        batch_size, max_iter, max_no_improvement, reassignment_ratio: see the module docstring.
    Returns:
        (n_new, D) float64 centres.
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64).reshape(-1, x.shape[1])
    m, n_clusters = len(x), len(fixed) + n_new
    init_size = 3 * batch_size if 3 * batch_size >= n_clusters else 3 * n_clusters
    init_size = min(init_size, m)
    validation = rng.integers(0, m, init_size)
    seed_points = x[rng.integers(0, m, init_size)] if init_size < m else x
    centres = np.vstack([fixed, greedy_kmeans_pp(seed_points, n_new, fixed, rng)])
    mass = np.zeros(n_clusters)
    _step(x[validation], weight[validation], centres, mass, len(fixed), None, reassignment_ratio)

    ewa = ewa_min = None
    no_improvement = 0
    alpha = min(1.0, 2.0 * batch_size / (m + 1))
    for step in range(max_iter * math.ceil(m / batch_size)):
        batch = rng.integers(0, m, batch_size)
        reassign = (step + 1) % (10 + int(mass.min())) == 0
        inertia = _step(x[batch], weight[batch], centres, mass, len(fixed), rng if reassign else None,
                        reassignment_ratio) / batch_size
        ewa = inertia if ewa is None else ewa * (1 - alpha) + inertia * alpha
        if ewa_min is None or ewa < ewa_min:
            ewa_min, no_improvement = ewa, 0
        else:
            no_improvement += 1
            if no_improvement >= max_no_improvement:
                break
    return centres[len(fixed):]
