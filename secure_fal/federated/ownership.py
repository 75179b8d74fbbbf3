"""Secure ownership: for each of m items, which client holds the smallest score, revealed to that client only.

Used by FAL-Global without quota: per global centroid, the client whose closest unlabeled sample is
globally closest labels it. Clients never send distances. Instead the server runs a bisection on a public
integer key space for all items at once; each round every client contributes, per item, the indicator
[its key <= threshold] through the secure sum, so the server learns only how MANY clients are under each
threshold. Keys are made distinct by appending the client's rank to its quantized score, so the minimum is
unique. An item is resolved as soon as exactly one client is under its threshold; that client (and only it,
since it knows its own key) learns it owns the item. Leakage, dropout and error behaviour:
protocols/ownership.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..secagg import Aggregator

SCORE_BITS = 24   # resolution of the quantized score in [0, score_bound]


def ownership_keys(scores: np.ndarray, rank: int, n_clients: int, score_bound: float) -> np.ndarray:
    """Distinct integer keys for one client: floor(score / score_bound * 2^SCORE_BITS) * n + rank.

    Args:
        scores: (m,) non-negative scores (e.g. distances); +inf means "no candidate for this item".
        rank: the client's position in the sorted list of participating ids (public).
        n_clients: number of participating clients (public).
        score_bound: public upper bound on finite scores; larger finite scores are clipped to it.
    Returns:
        (m,) int64 keys in [0, (2^SCORE_BITS + 1) * n_clients); +inf scores map above every finite score.
    """
    levels = 1 << SCORE_BITS
    q = np.where(np.isfinite(scores), np.floor(np.clip(scores / score_bound, 0.0, 1.0) * (levels - 1)), levels)
    return q.astype(np.int64) * n_clients + rank


def secure_owners(scores: Mapping[int, np.ndarray], aggregator: Aggregator, *, score_bound: float,
                  max_restarts: int = 3) -> dict[int, np.ndarray]:
    """Decide per item which client has the smallest score, without revealing scores or the owner to the server.

    Args:
        scores: client id -> (m,) scores (smaller wins; +inf = no candidate). The same m for all clients.
        aggregator: the session's Aggregator (any protocol).
        score_bound: public bound on finite scores.
        max_restarts: a dropout changes the set of contributors; the bisection then restarts with the
            survivors, at most this many times.
    Returns:
        client id -> (m,) bool mask of the items that client owns (each item owned by exactly one
        surviving client; items for which no client has a finite score are owned by nobody).
        In a deployment each client computes only its own mask; the server's view is the list of counts.
    """
    members = sorted(scores)
    for _ in range(max_restarts + 1):
        keys = {cid: ownership_keys(np.asarray(scores[cid], dtype=np.float64), rank, len(members), score_bound)
                for rank, cid in enumerate(members)}
        result = _bisect(keys, aggregator, len(members))
        if result is not None:
            return result
        survivors = _last_contributors(aggregator)
        members = [c for c in members if c in survivors]
        scores = {c: scores[c] for c in members}
    raise RuntimeError(f"ownership: contributors kept changing after {max_restarts} restarts")


def _last_contributors(aggregator: Aggregator) -> set[int]:
    report = aggregator.reports[-1]
    return set(report.clients) - set(report.dropped)


def _bisect(keys: Mapping[int, np.ndarray], aggregator: Aggregator, n: int) -> dict[int, np.ndarray] | None:
    """Bisection over the key space; None if the set of contributors changed (a dropout)."""
    m = len(next(iter(keys.values())))
    no_candidate = (1 << SCORE_BITS) * n          # keys >= this mean "no finite score"
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, no_candidate - 1, dtype=np.int64)
    owner_threshold = np.full(m, -1, dtype=np.int64)   # resolved items: a threshold with exactly one key under it
    members = set(keys)
    thresholds = hi.copy()   # first round: does anyone have a candidate, and is it already unique?
    while True:
        active = owner_threshold < 0
        counts = aggregator.sum({c: (k <= thresholds).astype(np.float64) * active for c, k in keys.items()},
                                bound=1.0).total
        if _last_contributors(aggregator) != members:
            return None
        counts = np.rint(counts).astype(np.int64)
        hit = active & (counts == 1)
        owner_threshold[hit] = thresholds[hit]
        empty = active & (counts == 0) & (thresholds == no_candidate - 1)
        owner_threshold[empty] = -2                      # nobody has a candidate for these items
        going = active & ~hit & ~empty
        if not going.any():
            break
        # counts >= 2: the minimum is <= threshold, narrow from above; counts == 0: it is above, narrow from below.
        many = going & (counts >= 2)
        none = going & (counts == 0)
        hi[many] = thresholds[many]
        lo[none] = thresholds[none] + 1
        thresholds = np.where(going, (lo + hi) // 2, thresholds)
    return {c: (k <= owner_threshold) & (owner_threshold >= 0) for c, k in keys.items()}
