"""Every protocol against numpy: the result is sum_k round(x_k * 2^f) * 2^-f over the surviving clients,
exactly for plaintext and masking (bit for bit the plaintext result), within the stated bound for CKKS (and
bit for bit too whenever its bound guarantees that rounding to the grid removes the CKKS error)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secure_fal.secagg import Aggregator, DropoutError, Faults, MessageError
from secure_fal.secagg.ckks.params import CKKSParams, RoundPlan
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec

from .conftest import protocol_or_skip


def make_inputs(ids, length, bound, seed):
    rng = np.random.default_rng(seed)
    xs = {c: rng.uniform(-bound, bound, length) for c in ids}
    first = ids[0]
    xs[first][0] = bound                       # the public bound itself is allowed, on both sides
    xs[first][-1] = -bound
    return xs


def grid_sum(xs, contributors, frac_bits):
    """numpy reference: the exact sum of the inputs rounded to the grid 2^-frac_bits."""
    q = sum(np.rint(np.ldexp(xs[c], frac_bits)).astype(np.int64) for c in contributors)
    return np.ldexp(q.astype(np.float64), -frac_bits)


def check_round(protocol, xs, bound, frac_bits, seed, drop=None):
    """Run one round; check it against numpy and against the plaintext protocol; return the result. Protocol
    "ckks-dealer" is CKKS in dealer mode ("ckks" is its threshold mode, exact on the grid)."""
    ids = sorted(xs)
    faults = Faults(drop=drop or {})
    if protocol == "ckks-dealer":
        agg = Aggregator("ckks", ids, frac_bits=frac_bits, seed=seed, mode="dealer")
    else:
        agg = Aggregator(protocol, ids, frac_bits=frac_bits, seed=seed)
    res = agg.sum(xs, bound=bound, faults=faults)
    survivors = tuple(c for c in ids if c not in (drop or {}))
    assert res.contributors == survivors and res.total.dtype == np.float64
    n, exact = len(survivors), grid_sum(xs, survivors, frac_bits)
    float_sum = sum(xs[c] for c in survivors)
    spec = RoundSpec(agg.session, 1, tuple(ids), len(xs[ids[0]]), FixedPoint(bound, frac_bits, len(ids)))
    bound_on_error = agg.protocol.error_bound(spec, n)
    assert np.max(np.abs(res.total - float_sum)) <= bound_on_error * (1 + 1e-12)
    if protocol == "plaintext":
        assert np.array_equal(res.total, exact)
        assert bound_on_error == n * 2.0 ** -(frac_bits + 1)
    else:
        plain = Aggregator("plaintext", ids, frac_bits=frac_bits, seed=seed).sum(xs, bound=bound, faults=faults)
        if protocol in ("masking", "ckks") or RoundPlan.for_round(CKKSParams(), spec).exact(n):
            assert np.array_equal(res.total, plain.total)
    return res


ids_strategy = st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=100, unique=True).map(sorted)
common = dict(length=st.integers(1, 2500), bound=st.sampled_from([1e-3, 0.5, 1.0, 7.0, 300.0]),
              frac_bits=st.sampled_from([8, 16, 24]), seed=st.integers(0, 2**16))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=ids_strategy, **common)
def test_plaintext_is_the_exact_grid_sum(ids, length, bound, frac_bits, seed):
    check_round("plaintext", make_inputs(ids, length, bound, seed), bound, frac_bits, seed)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=ids_strategy, **common)
def test_ckks_dealer_within_its_bound_and_bitwise_when_guaranteed(ids, length, bound, frac_bits, seed):
    check_round("ckks-dealer", make_inputs(ids, length, bound, seed), bound, frac_bits, seed)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=12, unique=True).map(sorted), **common)
def test_threshold_ckks_is_bitwise_the_plaintext_result(ids, length, bound, frac_bits, seed):
    check_round("ckks", make_inputs(ids, length, bound, seed), bound, frac_bits, seed)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ids=st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=40, unique=True).map(sorted), **common)
def test_masking_is_bitwise_the_plaintext_result(ids, length, bound, frac_bits, seed):
    protocol_or_skip("masking")
    check_round("masking", make_inputs(ids, length, bound, seed), bound, frac_bits, seed)


@pytest.mark.parametrize("protocol", ["plaintext", "ckks", "masking"])
@pytest.mark.parametrize("n, length", [(2, 100_000), (3, 1_000_000)])
def test_long_vectors(protocol, n, length):
    protocol_or_skip(protocol)
    check_round(protocol, make_inputs(list(range(n)), length, 2.0, seed=length), 2.0, 24, seed=1)


@pytest.mark.parametrize("protocol", ["plaintext", "ckks-dealer", pytest.param("ckks", marks=pytest.mark.slow),
                                      "masking"])
def test_one_hundred_clients(protocol):   # threshold CKKS: ~40 s (100 members deal shares to 10): slow
    protocol_or_skip(protocol.split("-")[0])
    check_round(protocol, make_inputs(list(range(100)), 300, 1.0, seed=100), 1.0, 24, seed=2)


def test_ckks_outside_the_guaranteed_regime_stays_within_its_bound():
    # bound * 2^f large: the guarantee no longer covers rounding, so only the (larger) bound is promised
    ids = list(range(20))
    spec = RoundSpec(0, 1, tuple(ids), 3000, FixedPoint(1e5, 24, 20))
    assert not RoundPlan.for_round(CKKSParams(), spec).exact(20)
    check_round("ckks-dealer", make_inputs(ids, 3000, 1e5, seed=3), 1e5, 24, seed=3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 30), length=st.integers(1, 3000), seed=st.integers(0, 2**16),
       protocol=st.sampled_from(["plaintext", "ckks-dealer"]), data=st.data())
def test_dropout_sums_the_survivors(n, length, seed, protocol, data):
    # at least 2 survivors: a CKKS decryptor refuses to decrypt a "sum" of one input (node policy min-clients 2)
    ids = list(range(n))
    dropped = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=n - 2, unique=True))
    check_round(protocol, make_inputs(ids, length, 1.0, seed), 1.0, 24, seed, drop={c: "input" for c in dropped})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(3, 12), length=st.integers(1, 3000), seed=st.integers(0, 2**16), data=st.data())
def test_threshold_ckks_sums_the_survivors_while_t_committee_members_live(n, length, seed, data):
    ids = list(range(n))
    dropped = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=n - 2, unique=True))
    xs, faults = make_inputs(ids, length, 1.0, seed), Faults(drop={c: "input" for c in dropped})
    agg = Aggregator("ckks", ids, seed=seed)
    try:
        res = agg.sum(xs, bound=1.0, faults=faults)
    except DropoutError as err:       # the shares are dealt before the round: committee and t are known
        assert err.field == "responders"
        assert len(set(agg.protocol.committee) - set(dropped)) < agg.protocol.threshold
    else:
        assert len(set(agg.protocol.committee) - set(dropped)) >= agg.protocol.threshold
        survivors = tuple(c for c in ids if c not in dropped)
        plain = Aggregator("plaintext", ids, seed=seed).sum(xs, bound=1.0, faults=faults)
        assert res.contributors == survivors and np.array_equal(res.total, plain.total)


def test_ckks_refuses_to_decrypt_a_single_survivors_input():
    protocol_or_skip("ckks")
    agg = Aggregator("ckks", [0, 1, 2], frac_bits=24, seed=1, mode="dealer")
    with pytest.raises(MessageError, match="refusing to decrypt a sum of 1 contributors"):
        agg.sum(make_inputs([0, 1, 2], 10, 1.0, seed=1), bound=1.0, faults=Faults(drop={0: "input", 2: "input"}))
