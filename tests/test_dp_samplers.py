"""Exact integer noise samplers (secure_fal.secagg.privacy.samplers): the distributions of single draws and of the
sum of the clients' noise shares, tested against exact pmfs with chi-square tests (fixed keys, so deterministic;
the tolerance is the test's own sampling distribution at level ALPHA, not a hand-tuned margin)."""

import math

import numpy as np
import pytest
from scipy import stats

from secure_fal.secagg.privacy.samplers import (NoiseSource, PoissonTable, _bernoulli_exp, _poisson_refine,
                                                discrete_gaussian, gaussian_variance, poisson, skellam)

ALPHA = 1e-4          # a correct sampler fails one of these tests with probability about ALPHA per test
N = 40_000


def key(i: int) -> bytes:
    return bytes([i]) * 32


def chi_square_pvalue(samples: np.ndarray, support: np.ndarray, pmf: np.ndarray) -> float:
    """p-value of Pearson's test of ``samples`` against ``pmf`` on ``support``; bins with expected count < 5 are
    merged into the two tails (the tails also take the pmf mass outside ``support``)."""
    pmf = pmf / pmf.sum()
    expected = pmf * len(samples)
    keep = expected >= 5
    lo, hi = support[keep].min(), support[keep].max()
    inner = support[(support >= lo) & (support <= hi)]
    obs = [np.sum(samples < lo)] + [np.sum(samples == v) for v in inner] + [np.sum(samples > hi)]
    exp = [expected[support < lo].sum()] + list(expected[(support >= lo) & (support <= hi)]) + \
          [expected[support > hi].sum()]
    obs, exp = np.array(obs, float), np.array(exp, float)
    mask = exp > 0
    exp = exp[mask] * obs[mask].sum() / exp[mask].sum()
    return float(stats.chisquare(obs[mask], exp).pvalue)


def discrete_gaussian_pmf(variance: float, support: np.ndarray) -> np.ndarray:
    return np.exp(-support.astype(float) ** 2 / (2 * variance))


def test_noise_source_is_uniform_below_any_bound():
    src = NoiseSource(key(1))
    draws = src.below(np.full(N, 7, dtype=np.uint64)).astype(np.int64)
    assert draws.min() >= 0 and draws.max() <= 6
    assert stats.chisquare(np.bincount(draws, minlength=7)).pvalue > ALPHA
    # a key fixes the stream; another key gives another
    assert np.array_equal(NoiseSource(key(1)).words(4), NoiseSource(key(1)).words(4))
    assert not np.array_equal(NoiseSource(key(1)).words(4), NoiseSource(key(2)).words(4))


@pytest.mark.parametrize("n, d", [(1, 3), (3, 2), (7, 5)])
def test_bernoulli_exp_has_probability_exp_minus_n_over_d(n, d):
    hits = int(_bernoulli_exp(NoiseSource(key(n)), np.full(N, n, np.uint64), np.full(N, d, np.uint64)).sum())
    assert stats.binomtest(hits, N, math.exp(-n / d)).pvalue > ALPHA


@pytest.mark.parametrize("variance", [0.5, 6.0, 200.0])
def test_discrete_gaussian_matches_its_pmf(variance):
    t, u = gaussian_variance(variance)
    assert t * u >= variance
    x = discrete_gaussian(NoiseSource(key(3)), N, t, u)
    support = np.arange(-int(12 * math.sqrt(t * u)) - 3, int(12 * math.sqrt(t * u)) + 4)
    assert chi_square_pvalue(x, support, discrete_gaussian_pmf(t * u, support)) > ALPHA


def test_sum_of_discrete_gaussian_shares_is_their_convolution():
    """The server's noise: the sum of n clients' shares N_Z(0, s^2) has the n-fold convolution of that pmf."""
    n, (t, u) = 5, gaussian_variance(3.0)
    shares = [discrete_gaussian(NoiseSource(key(10 + k)), N, t, u) for k in range(n)]
    total = np.sum(shares, axis=0)
    base = np.arange(-40, 41)
    single = discrete_gaussian_pmf(t * u, base)
    single /= single.sum()
    conv = single
    for _ in range(n - 1):
        conv = np.convolve(conv, single)
    support = np.arange(-40 * n, 40 * n + 1)
    assert chi_square_pvalue(total, support, conv) > ALPHA
    # and it is not the pmf of one discrete Gaussian with a visibly different variance
    assert chi_square_pvalue(total, support, discrete_gaussian_pmf(1.3 * n * t * u, support)) < ALPHA


@pytest.mark.parametrize("lam", [1, 7, 300])
def test_poisson_matches_its_pmf(lam):
    x = poisson(NoiseSource(key(4)), N, lam)
    support = np.arange(0, lam + 20 * int(math.sqrt(lam)) + 30)
    assert chi_square_pvalue(x, support, stats.poisson(lam).pmf(support)) > ALPHA


def test_sum_of_skellam_shares_is_skellam_of_the_summed_parameter():
    n, lam = 4, 3
    total = np.sum([skellam(NoiseSource(key(20 + k)), N, lam) for k in range(n)], axis=0)
    support = np.arange(-80, 81)
    assert chi_square_pvalue(total, support, stats.skellam(n * lam, n * lam).pmf(support)) > ALPHA
    assert chi_square_pvalue(total, support, stats.skellam(1.5 * n * lam, 1.5 * n * lam).pmf(support)) < ALPHA


def test_large_parameter_shares_have_the_intended_mean_and_variance():
    """At the scale the mechanisms use (variance ~ 1e9 grid units^2) the sum of shares has mean 0 and the summed
    variance, within what N samples allow (5 standard errors: normal approximation of mean and sample variance)."""
    n, lam = 3, 10 ** 9
    (t, u) = gaussian_variance(2.0 * lam)
    for total, var in [(np.sum([skellam(NoiseSource(key(30 + k)), N, lam) for k in range(n)], axis=0), 2 * n * lam),
                       (np.sum([discrete_gaussian(NoiseSource(key(40 + k)), N, t, u) for k in range(n)], axis=0),
                        n * t * u)]:
        total = total.astype(float)
        assert abs(total.mean()) <= 5 * math.sqrt(var / N)
        assert abs(total.var() / var - 1) <= 5 * math.sqrt(2 / (N - 1))


def test_poisson_table_and_refinement_agree_with_the_cdf():
    lam = 5
    tab = PoissonTable(lam)
    cdf = stats.poisson(lam).cdf(np.arange(tab.lo, tab.hi + 1))
    assert np.all(np.abs(tab.table.astype(float) / 2.0 ** 64 - cdf) < 1e-12)
    # a first word equal to a table entry is undecided: more bits put the outcome on one side of F(k)
    for i in (0, 3, 6):
        outcome = _poisson_refine(NoiseSource(key(50 + i)), lam, int(tab.table[i]), tab.lo + i)
        assert outcome in (tab.lo + i, tab.lo + i + 1)
