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

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..secagg import Aggregator, Statistic

SCORE_BITS = 24   # resolution of the quantized score in [0, score_bound]


def ownership_statistic(m: int) -> Statistic:
    """The declaration of a bisection sum over ``m`` items: 0/1 indicators (L2 norm at most sqrt(m)), needed exact."""
    return Statistic("ownership-count", math.sqrt(m), exact=True)


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


CountUnder = Callable[[tuple[int, ...], np.ndarray, np.ndarray], tuple[np.ndarray, tuple[int, ...]]]
"""(members, thresholds (m,) int64, active (m,) bool) -> (secure sum over the members of ``under_threshold``,
contributors): one round of the bisection. Each member computes its keys with its rank among ``members``."""


def under_threshold(keys: np.ndarray, thresholds: np.ndarray, active: np.ndarray) -> np.ndarray:
    """One client's input to a bisection round: 1.0 where its key <= the threshold on an active item, (m,)."""
    return ((keys <= thresholds) & active).astype(np.float64)


def owned_items(keys: np.ndarray, owner_threshold: np.ndarray) -> np.ndarray:
    """A client's own (m,) bool mask of the items it owns, from its keys and the public resolved thresholds."""
    return (keys <= owner_threshold) & (owner_threshold >= 0)


def owner_thresholds(members: Sequence[int], m: int, count_under: CountUnder, *,
                     max_restarts: int = 3) -> tuple[np.ndarray, tuple[int, ...]]:
    """The server side of secure ownership: bisection rounds until every item is resolved.

    Args:
        members: ids of the clients taking part (keys are built with their rank in the sorted list).
        m: number of items.
        count_under: runs one round (see ``CountUnder``).
        max_restarts: a dropout changes the set of contributors; the bisection then restarts with the
            survivors, at most this many times.
    Returns:
        (owner_threshold (m,) int64: per item a threshold with exactly one key under it, -2 for items no client
        has a finite score for; the members whose keys it applies to). Each member then computes
        ``owned_items(its keys, owner_threshold)`` on its own.
    """
    members = tuple(sorted(members))
    for _ in range(max_restarts + 1):
        result = _bisect(members, m, count_under)
        if isinstance(result, np.ndarray):
            return result, members
        members = tuple(c for c in members if c in result)
    raise RuntimeError(f"ownership: contributors kept changing after {max_restarts} restarts")


def secure_owners(scores: Mapping[int, np.ndarray], aggregator: Aggregator, *, score_bound: float,
                  max_restarts: int = 3) -> dict[int, np.ndarray]:
    """Decide per item which client has the smallest score, without revealing scores or the owner to the server.

    Runs ``owner_thresholds`` over clients simulated in this process.

    Args:
        scores: client id -> (m,) scores (smaller wins; +inf = no candidate). The same m for all clients.
        aggregator: the session's Aggregator (any protocol).
        score_bound: public bound on finite scores.
        max_restarts: see ``owner_thresholds``.
    Returns:
        client id -> (m,) bool mask of the items that client owns (each item owned by exactly one
        surviving client, none by a client that dropped out; items for which no client has a finite score
        are owned by nobody). In a deployment each client computes only its own mask; the server's view is
        the list of counts.
    """
    m = len(next(iter(scores.values())))

    def keys_of(members: tuple[int, ...]) -> dict[int, np.ndarray]:
        return {cid: ownership_keys(np.asarray(scores[cid], dtype=np.float64), rank, len(members), score_bound)
                for rank, cid in enumerate(members)}

    def count_under(members, thresholds, active):
        res = aggregator.sum({c: under_threshold(k, thresholds, active) for c, k in keys_of(members).items()},
                             bound=1.0, statistic=ownership_statistic(m))
        return res.total, res.contributors

    owner_threshold, members = owner_thresholds(tuple(scores), m, count_under, max_restarts=max_restarts)
    keys = keys_of(members)
    return {c: owned_items(keys[c], owner_threshold) if c in keys else np.zeros(m, dtype=bool) for c in scores}


def _bisect(members: tuple[int, ...], m: int, count_under: CountUnder) -> np.ndarray | set[int]:
    """Bisection over the key space: the owner thresholds, or the contributors if they were not all members."""
    no_candidate = (1 << SCORE_BITS) * len(members)          # keys >= this mean "no finite score"
    lo = np.zeros(m, dtype=np.int64)
    hi = np.full(m, no_candidate - 1, dtype=np.int64)
    owner_threshold = np.full(m, -1, dtype=np.int64)   # resolved items: a threshold with exactly one key under it
    thresholds = hi.copy()   # first round: does anyone have a candidate, and is it already unique?
    while True:
        active = owner_threshold < 0
        counts, contributors = count_under(members, thresholds, active)
        if set(contributors) != set(members):
            return set(contributors)
        counts = np.rint(counts).astype(np.int64)
        hit = active & (counts == 1)
        owner_threshold[hit] = thresholds[hit]
        empty = active & (counts == 0) & (thresholds == no_candidate - 1)
        owner_threshold[empty] = -2                      # nobody has a candidate for these items
        going = active & ~hit & ~empty
        if not going.any():
            return owner_threshold
        # counts >= 2: the minimum is <= threshold, narrow from above; counts == 0: it is above, narrow from below.
        many = going & (counts >= 2)
        none = going & (counts == 0)
        hi[many] = thresholds[many]
        lo[none] = thresholds[none] + 1
        thresholds = np.where(going, (lo + hi) // 2, thresholds)
