"""Deterministic synthetic client inputs, so a networked run can be replayed in-process.

Phase 1 of the Flower integration sums made-up vectors instead of model updates or k-means statistics:
each client derives its vector from public numbers only (seed, client id, round), and a test or
benchmark recomputes exactly the same vectors to check the networked sum against ``Aggregator.sum``.
"""

from __future__ import annotations

import numpy as np


def synthetic_input(seed: int, cid: int, round_id: int, length: int, bound: float) -> np.ndarray:
    """The input of client ``cid`` in round ``round_id``: float64 (length,), uniform in [-bound, bound).

    Args:
        seed: session seed (non-negative int); the same seed gives the same vectors everywhere.
        cid: client id (>= 0).
        round_id: aggregation round (>= 1, as numbered by ``Aggregator``).
        length: number of values L (>= 1).
        bound: public bound on every |value| (> 0), the ``bound`` passed to the secure sum.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if not bound > 0:
        raise ValueError(f"bound must be > 0, got {bound}")
    rng = np.random.default_rng([seed, cid, round_id])
    return rng.uniform(-bound, bound, size=length)
