"""Renyi-DP accounting of every noised release, composed with Google's dp-accounting.

One release = one noised secure sum, described by its ``Calibration``. Its RDP curve eps(alpha), on ``ORDERS``:

- ddg: Kairouz, Liu and Steinke (ICML 2021), Proposition 14 (the sum of m discrete Gaussians of variance s^2, grid
  units): with l2 = Delta_2 / sqrt(m s^2), l1 = Delta_1 / sqrt(m s^2), tau = 10 sum_{k=1}^{m-1}
  exp(-2 pi^2 s^2 k / (k+1)),
  eps(alpha) = min(alpha/2 l2^2 + tau d, alpha/2 (l2^2 + 2 l1 tau + tau^2 d), alpha/2 (l2 + sqrt(d) tau)^2),
  maximised over m from min_contributors to max_contributors (the worst case dropouts allow);
- skellam: Agarwal, Kairouz and Liu (NeurIPS 2021), Theorem 3.5 with central variance V = m * share variance:
  eps(alpha) = alpha Delta_2^2 / (2 V) + min(((2 alpha - 1) Delta_2^2 + 6 Delta_1) / (4 V^2), 3 Delta_1 / (2 V)),
  worst at m = min_contributors;
- central-gaussian: the Gaussian mechanism, alpha / (2 z^2) (dp-accounting's ``GaussianDpEvent``).

dp-accounting has no event for the first two, so their curves are summed here and converted to (epsilon, delta)
by dp-accounting's ``compute_epsilon`` (the RDP-to-DP conversion of its ``RdpAccountant``). Neighbouring runs
differ in one client's data (client level): every statistic's sensitivity is one client's whole contribution.
No subsampling amplification is claimed: every client takes part in every release.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from .mechanisms import Calibration, PrivacyError

ORDERS = np.concatenate([np.linspace(1.1, 10.9, 99), np.arange(11.0, 64.0), [64.0, 80.0, 96.0, 128.0, 192.0, 256.0,
                                                                              512.0, 1024.0]])
"""RDP orders alpha the curves are evaluated on."""


def _ddg_curve(cal: Calibration, m: int) -> np.ndarray:
    s2, d = cal.share_variance, cal.padded
    central = math.sqrt(m * s2)
    l2, l1 = cal.delta2 / central, cal.delta1 / central
    tau = 10 * sum(math.exp(-2 * math.pi ** 2 * s2 * k / (k + 1)) for k in range(1, m))
    a = ORDERS
    return np.minimum.reduce([a / 2 * l2 ** 2 + tau * d, a / 2 * (l2 ** 2 + 2 * l1 * tau + tau ** 2 * d),
                              a / 2 * (l2 + math.sqrt(d) * tau) ** 2])


def _skellam_curve(cal: Calibration, m: int) -> np.ndarray:
    v, a = m * cal.share_variance, ORDERS
    return (a * cal.delta2 ** 2 / (2 * v)
            + np.minimum(((2 * a - 1) * cal.delta2 ** 2 + 6 * cal.delta1) / (4 * v * v), 3 * cal.delta1 / (2 * v)))


def rdp_curve(cal: Calibration) -> np.ndarray:
    """eps(alpha) on ``ORDERS`` of one release calibrated by ``cal`` (module docstring), worst case over the
    number of contributors."""
    if cal.mechanism == "central-gaussian":
        return ORDERS / (2 * cal.noise_multiplier ** 2)
    curve = _ddg_curve if cal.mechanism == "ddg" else _skellam_curve
    return np.max([curve(cal, m) for m in range(cal.min_contributors, cal.max_contributors + 1)], axis=0)


def epsilon(curves: Iterable[np.ndarray], delta: float) -> float:
    """(epsilon, delta)-DP epsilon of the composition of releases with the given RDP curves (0 for none)."""
    total = np.zeros_like(ORDERS)
    for c in curves:
        total = total + c
    if not total.any():
        return 0.0
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon   # absl & co. only when accounting

    return float(compute_epsilon(ORDERS, total, delta)[0])


def calibrate_noise(plan_epsilon: Callable[[float], float], target: float, *, lo: float = 0.05,
                    hi: float = 1e4) -> float:
    """The smallest noise multiplier z in [lo, hi] (to 0.1 %) whose planned epsilon, ``plan_epsilon(z)``, is <=
    ``target``: doubling from ``lo``, then bisection.

    Raises PrivacyError when even z = ``hi`` spends more than the target (or when ``plan_epsilon`` raises it for
    the z the target needs, e.g. too few bits for that noise).
    """
    if plan_epsilon(lo) <= target:
        return lo
    z = lo
    while plan_epsilon(z) > target:
        if z >= hi:
            raise PrivacyError(f"epsilon {target} cannot be met: even noise multiplier {hi:g} spends "
                               f"{plan_epsilon(hi):.3g}")
        z = min(2 * z, hi)
    low, high = z / 2, z
    while high / low > 1.001:
        mid = math.sqrt(low * high)
        if plan_epsilon(mid) <= target:
            high = mid
        else:
            low = mid
    return high
