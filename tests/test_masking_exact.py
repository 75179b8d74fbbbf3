"""The masking protocol returns exactly what the plaintext protocol returns (protocols/masking.md §Result)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_fal.secagg import Aggregator, secure_sum
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.plaintext import PlaintextProtocol


def inputs(n: int, length: int, bound: float, seed: int = 0, ids=None) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = range(n) if ids is None else ids
    xs = {c: rng.uniform(-bound, bound, length) for c in ids}
    first = next(iter(xs))
    xs[first][0] = bound      # the extremes of the public bound are allowed
    xs[first][-1] = -bound
    return xs


def plaintext_sum(xs, contributors, bound, frac_bits=24) -> np.ndarray:
    sub = {c: xs[c] for c in contributors}
    return secure_sum(PlaintextProtocol(), sub, bound=bound, frac_bits=frac_bits).total


def check_exact(xs, bound, *, frac_bits=24, **kw):
    res = secure_sum(MaskingProtocol(**kw), xs, bound=bound, frac_bits=frac_bits)
    assert res.contributors == tuple(sorted(xs))
    expected = plaintext_sum(xs, res.contributors, bound, frac_bits)
    # masking.md §Result: bit for bit the plaintext protocol's result
    assert res.total.dtype == np.float64 and res.total.shape == expected.shape
    assert np.array_equal(res.total, expected)
    # and within n * 2^-(f+1) of the float sum
    assert np.max(np.abs(res.total - sum(xs.values()))) <= len(xs) * 2.0 ** -(frac_bits + 1)
    return res


@pytest.mark.parametrize("length", [1, 2, 3, 17, 1000, 100_000])
def test_exact_for_many_lengths(length):
    check_exact(inputs(3, length, 1.0, seed=length), 1.0)


def test_exact_for_a_million_values_complete_and_sparse():
    xs = inputs(4, 1_000_000, 50.0, seed=1)
    check_exact(xs, 50.0)
    check_exact(xs, 50.0, neighbours=2)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 31])
def test_exact_for_many_clients_complete_graph(n):
    check_exact(inputs(n, 50, 3.0, seed=n), 3.0)


@pytest.mark.parametrize("neighbours", [2, 4, "log"])
def test_exact_for_100_clients(neighbours):
    check_exact(inputs(100, 8, 1.0, seed=100), 1.0, neighbours=neighbours)


def test_exact_for_100_clients_complete_graph():
    check_exact(inputs(100, 4, 1.0, seed=101), 1.0)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 40), length=st.integers(1, 20), neighbours=st.sampled_from([None, 2, 3, "log"]),
       bound=st.sampled_from([1e-3, 1.0, 1e4]), frac_bits=st.sampled_from([0, 8, 24, 30]),
       threshold=st.sampled_from([None, 0.75, 1.0]), seed=st.integers(0, 2**16))
def test_exact_hypothesis(n, length, neighbours, bound, frac_bits, threshold, seed):
    ids = sorted(np.random.default_rng(seed).choice(2**31 - 1, size=n, replace=False).tolist())
    check_exact(inputs(n, length, bound, seed=seed, ids=ids), bound, frac_bits=frac_bits, neighbours=neighbours,
                threshold=threshold)


def test_integer_inputs_and_clipping_match_plaintext():
    xs = {0: np.array([5, -7, 2]), 1: np.array([1, 1, 1]), 2: np.array([-3, 0, 9])}
    check_exact(xs, 10.0)
    wild = {0: np.array([100.0, -0.5]), 1: np.array([-100.0, 0.25]), 2: np.array([0.1, 3.0])}
    got = secure_sum(MaskingProtocol(), wild, bound=1.0, clip=True).total
    want = secure_sum(PlaintextProtocol(), wild, bound=1.0, clip=True).total
    assert np.array_equal(got, want) and np.allclose(got, [0.1, 0.75], rtol=0, atol=3 * 2.0**-25)


def test_a_session_of_several_rounds_with_changing_members():
    agg = Aggregator(MaskingProtocol(neighbours="log"), range(12), seed=3)
    ref = Aggregator(PlaintextProtocol(), range(12), seed=3)
    for r, members in enumerate([range(12), range(0, 12, 2), [1, 5, 7], range(12)]):
        xs = inputs(12, 30, 2.0, seed=r, ids=list(members))
        assert np.array_equal(agg.sum(xs, bound=2.0).total, ref.sum(xs, bound=2.0).total)
    assert agg.round_id == 4 and agg.totals.rounds == 4


def test_weighted_mean_through_masking():
    xs = inputs(5, 20, 1.0, seed=9)
    w = {c: float(c + 1) for c in xs}
    mean, total_w, _ = Aggregator(MaskingProtocol(), xs).weighted_mean(xs, w, bound=1.0, weight_bound=10.0)
    ref_mean, ref_w, _ = Aggregator(PlaintextProtocol(), xs).weighted_mean(xs, w, bound=1.0, weight_bound=10.0)
    assert np.array_equal(mean, ref_mean) and total_w == ref_w == 15.0
    assert np.allclose(mean, sum(w[c] * xs[c] for c in xs) / 15.0, atol=1e-6)


def test_registered_under_its_name_with_default_settings():
    agg = Aggregator("masking", [0, 1, 2])
    assert isinstance(agg.protocol, MaskingProtocol) and agg.name == "masking"
    xs = inputs(3, 5, 1.0)
    assert np.array_equal(agg.sum(xs, bound=1.0).total, plaintext_sum(xs, [0, 1, 2], 1.0))
