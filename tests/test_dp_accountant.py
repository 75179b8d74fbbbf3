"""DP accounting (secure_fal.secagg.privacy.accountant) against dp-accounting's own results, and the mechanisms'
calibration (grid step, headroom, clipping and conditional rounding)."""

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import RdpAccountant

from secure_fal.secagg.privacy import Calibration, PrivacyError
from secure_fal.secagg.privacy.accountant import ORDERS, calibrate_noise, epsilon, rdp_curve
from secure_fal.secagg.privacy.mechanisms import (calibrate, clip_l2, conditional_round, headroom_std, rotate,
                                                  rotation_signs, rounded_l2_bound, unrotate)
from secure_fal.secagg.privacy.samplers import NoiseSource

DELTA = 1e-5


def dp_accounting_epsilon(event, count: int) -> float:
    acc = RdpAccountant(orders=list(ORDERS))
    acc.compose(event, count)
    return acc.get_epsilon(DELTA)


@pytest.mark.parametrize("z, releases", [(1.0, 1), (1.1, 100), (4.0, 60)])
def test_central_gaussian_equals_dp_accounting(z, releases):
    cal = calibrate("central-gaussian", length=10, clip=2.0, noise_multiplier=z, bits=20, min_contributors=3,
                    max_contributors=5)
    ours = epsilon([releases * rdp_curve(cal)], DELTA)
    assert ours == pytest.approx(dp_accounting_epsilon(dp_accounting.GaussianDpEvent(z), releases), rel=1e-9)


def test_distributed_discrete_gaussian_tends_to_the_zcdp_of_its_sensitivity():
    """With large shares the KLS tau terms vanish: each release is rho = Delta_2^2 / (2 t s^2)-zCDP, which
    dp-accounting composes as a ZCDpEvent."""
    cal = calibrate("ddg", length=1000, clip=1.0, noise_multiplier=2.0, bits=20, min_contributors=4,
                    max_contributors=6)
    rho = cal.delta2 ** 2 / (2 * cal.min_contributors * cal.share_variance)
    assert rho == pytest.approx(1 / (2 * 2.0 ** 2), rel=1e-3)        # noise std = z * Delta_2 (shares rounded up)
    ours = epsilon([50 * rdp_curve(cal)], DELTA)
    assert ours == pytest.approx(dp_accounting_epsilon(dp_accounting.ZCDpEvent(rho), 50), rel=1e-6)


def test_small_shares_cost_more_than_the_gaussian_bound():
    """KLS's tau and Skellam's second term only add: a release with tiny shares spends more than rho-zCDP."""
    for mech, variance in (("ddg", 0.2), ("skellam", 2.0)):      # shares of variance 0.2 and Sk(1)
        cal = Calibration(mech, length=4, padded=4, clip=1.0, noise_multiplier=1.0, gamma=1.0, bits=12, delta2=2.0,
                          delta1=4.0, share_variance=variance, share_params=(), min_contributors=4,
                          max_contributors=8, beta=0.5)
        gauss = ORDERS * cal.delta2 ** 2 / (2 * cal.min_contributors * cal.share_variance)
        assert np.all(rdp_curve(cal) >= gauss - 1e-12) and np.any(rdp_curve(cal) > gauss * 1.01)


def test_worst_case_is_the_fewest_contributors():
    few = calibrate("skellam", length=64, clip=1.0, noise_multiplier=1.0, bits=20, min_contributors=3,
                    max_contributors=9)
    assert np.all(rdp_curve(few) >= rdp_curve(few.__class__(**{**few.__dict__, "min_contributors": 9})))
    assert few.noise_std == pytest.approx(math.sqrt(3 * few.share_variance) * few.gamma)


def test_calibrate_noise_finds_the_smallest_multiplier():
    def plan(z):
        return epsilon([200 * ORDERS / (2 * z * z)], DELTA)

    z = calibrate_noise(plan, 4.0)
    assert plan(z) <= 4.0 < plan(z / 1.002)
    with pytest.raises(PrivacyError, match="cannot be met"):
        calibrate_noise(plan, 1e-6, hi=10.0)


def test_grid_fits_the_bits_with_headroom_and_refuses_too_few():
    cal = calibrate("ddg", length=5000, clip=1.0, noise_multiplier=1.0, bits=16, min_contributors=7,
                    max_contributors=10, headroom=4.0)
    std = headroom_std(cal.gamma, cal.clip, cal.padded, 10, cal.share_variance)
    assert 2 * 4.0 * std <= 2 ** 16 < 2 * 4.0 * std * 1.01            # the finest grid that fits
    with pytest.raises(PrivacyError, match=r"bits=8 .* needs at least \d+ bits"):
        calibrate("ddg", length=5000, clip=1.0, noise_multiplier=10.0, bits=8, min_contributors=7,
                  max_contributors=10)


def test_clipping_and_rounding_bound_the_sensitivity():
    rng = np.random.default_rng(0)
    d, clip, gamma, beta = 256, 1.0, 0.01, math.exp(-0.5)
    signs = rotation_signs(7, d)
    bound = rounded_l2_bound(clip / gamma, d, beta)
    src = NoiseSource(bytes(32))
    for scale in (1e-3, 1.0, 1e6):                                    # inputs far beyond the clip norm included
        x = rng.normal(0, scale, 200)
        y = rotate(clip_l2(x, clip), signs)
        assert np.linalg.norm(y) <= clip * (1 + 1e-12)                # rotation keeps the norm
        assert np.allclose(unrotate(y, signs, 200), clip_l2(x, clip))
        q = conditional_round(y / gamma, bound, src)
        assert np.linalg.norm(q) <= bound
    # rounding is unbiased: the mean of many roundings approaches y / gamma (tolerance: 5 std of the mean)
    y = rotate(clip_l2(rng.normal(0, 1, 200), clip), signs) / gamma
    reps = 2000
    mean = np.mean([conditional_round(y, np.inf, src) for _ in range(reps)], axis=0)
    assert np.all(np.abs(mean - y) <= 5 * 0.5 / math.sqrt(reps))
