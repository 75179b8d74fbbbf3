"""Secure ownership for FAL-Global without quota (protocols/ownership.md)."""

import numpy as np
import pytest

from secure_fal.federated.ownership import SCORE_BITS, ownership_keys, secure_owners
from secure_fal.secagg import Aggregator, Faults

from .conftest import PROTOCOLS, protocol_or_skip


@pytest.mark.parametrize("seed", range(6))
def test_owner_is_the_client_with_the_smallest_score(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 9)), int(rng.integers(1, 30))
    scores = {c: rng.uniform(0, 2, m) for c in range(n)}
    scores[0][0] = scores[1][0]                      # exact tie: the lower rank wins
    owners = secure_owners(scores, Aggregator("plaintext", range(n), seed=0), score_bound=2.0)
    got = np.stack([owners[c] for c in range(n)])
    assert (got.sum(axis=0) == 1).all()
    assert (got.argmax(axis=0) == np.stack([scores[c] for c in range(n)]).argmin(axis=0)).all()


def test_items_without_candidates_have_no_owner():
    scores = {0: np.array([np.inf, 0.5]), 1: np.array([np.inf, 0.2])}
    owners = secure_owners(scores, Aggregator("plaintext", [0, 1], seed=0), score_bound=1.0)
    assert owners[0].tolist() == [False, False] and owners[1].tolist() == [False, True]


def test_server_sees_only_counts_in_zero_one_range():
    # ownership.md §Leakage: each round's aggregate is a vector of counts of clients under a threshold.
    rng = np.random.default_rng(1)
    scores = {c: rng.uniform(0, 1, 12) for c in range(5)}
    agg = Aggregator("plaintext", range(5), seed=0)
    secure_owners(scores, agg, score_bound=1.0)
    assert agg.round_id <= SCORE_BITS + 3 + 1
    assert all(r.length == 12 for r in agg.reports)


def test_keys_are_distinct_and_order_preserving():
    keys = [ownership_keys(np.array([0.3, np.inf]), rank, 3, 1.0) for rank in range(3)]
    assert len({k[0] for k in keys}) == 3
    assert all(k[1] > k[0] for k in keys)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_same_owners_under_every_protocol(protocol):
    protocol_or_skip(protocol)
    rng = np.random.default_rng(7)
    scores = {c: rng.uniform(0, 1, 8) for c in range(4)}
    want = secure_owners(scores, Aggregator("plaintext", range(4), seed=0), score_bound=1.0)
    got = secure_owners(scores, Aggregator(protocol, range(4), seed=0), score_bound=1.0)
    for c in range(4):
        np.testing.assert_array_equal(got[c], want[c])


def test_dropout_restarts_with_survivors():
    # ownership.md §Dropout: a client lost mid-bisection is left out and the bisection restarts.
    rng = np.random.default_rng(2)
    scores = {c: rng.uniform(0, 1, 6) for c in range(4)}
    agg = Aggregator("plaintext", range(4), seed=0)
    real_sum = agg.sum
    calls = {"n": 0}

    def flaky_sum(inputs, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            kw["faults"] = Faults(drop={3: "input"})
        return real_sum(inputs, **kw)

    agg.sum = flaky_sum
    owners = secure_owners(scores, agg, score_bound=1.0)
    assert set(owners) == {0, 1, 2, 3} and not owners[3].any()  # the dropped client owns nothing
    mat = np.stack([scores[c] for c in range(3)])
    got = np.stack([owners[c] for c in range(3)])
    assert (got.argmax(axis=0) == mat.argmin(axis=0)).all()
