"""CKKS parameters: validation, the scale rule, the error bound (measured against), and the parameter table
of protocols/ckks.md (slow: `pytest -m slow tests/test_ckks_params.py -s` prints it)."""

import math
import time

import numpy as np
import pytest
import tenseal as ts

from secure_fal.secagg.ckks.context import CKKSContext
from secure_fal.secagg.ckks.params import NOISE_MAX, CKKSParams, RoundPlan
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec


def plan_for(params, n, length=10, bound=1.0, frac_bits=24):
    spec = RoundSpec(1, 1, tuple(range(n)), length, FixedPoint(bound, frac_bits, n))
    return RoundPlan.for_round(params, spec)


@pytest.mark.parametrize("kw, match", [
    (dict(poly_modulus_degree=3000), "power of two"),
    (dict(poly_modulus_degree=512), "power of two"),
    (dict(coeff_mod_bit_sizes=()), "1 to 60"),
    (dict(coeff_mod_bit_sizes=(61,)), "1 to 60"),
    (dict(poly_modulus_degree=2048, coeff_mod_bit_sizes=(60,)), "128-bit security"),
    (dict(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 50)), "128-bit security"),
    (dict(poly_modulus_degree=8192, coeff_mod_bit_sizes=(14,)), "no primes"),
    (dict(scale_bits=60), "scale_bits"),
])
def test_invalid_parameters_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        CKKSParams(**kw)


def test_security_limits_are_seal_s():
    assert CKKSParams(2048, (54,)).data_modulus.bit_length() == 54
    assert CKKSParams(4096, (60, 49)).data_modulus.bit_length() == 60      # the special prime is not data
    assert CKKSParams(8192, (60, 40, 40, 60)).data_modulus.bit_length() == 140


@pytest.mark.parametrize("params", [CKKSParams(), CKKSParams(2048, (54,)), CKKSParams.tenseal_default(),
                                    CKKSParams(4096, (60,), symmetric=False)])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 100, 1000])
def test_auto_scale_is_the_largest_power_of_two_that_cannot_overflow(params, n):
    q, headroom = params.data_modulus, math.ceil(params.noise_max) + 1

    def peak(delta):  # the smallest integer c with c^2 >= 2 delta^2: a slot x + iy, |x|, |y| <= 1, at scale delta
        return math.isqrt(2 * delta * delta - 1) + 1

    if params.scale_bits is None:
        delta = params.scale(n)
        assert delta & (delta - 1) == 0
        assert n * (peak(delta) + headroom) < q // 2 <= n * (peak(2 * delta) + headroom)
    elif n * (peak(1 << params.scale_bits) + headroom) >= q // 2:
        with pytest.raises(ValueError, match="overflows"):
            params.scale(n)
    else:
        assert params.scale(n) == 2 ** params.scale_bits


def test_default_scale_values():
    # n * sqrt(2) * Delta < 2^59 (one 60-bit prime): log2 Delta < 58.5 - log2 n
    assert [CKKSParams().scale(n).bit_length() - 1 for n in (1, 10, 100, 1000)] == [58, 55, 51, 48]


def test_fixed_scale_that_overflows_is_refused():
    with pytest.raises(ValueError, match="overflows"):
        CKKSParams(4096, (60,), scale_bits=58).scale(4)


def test_noise_max():
    assert CKKSParams().noise_max == NOISE_MAX == 21
    assert CKKSParams(4096, (60,), symmetric=False).noise_max == 21 * 8193 + 4097 / 2


def test_error_bound_regimes():
    exact = plan_for(CKKSParams(), 10)
    assert exact.exact(10) and exact.error_bound(10) == 10 * 2.0**-25
    loose = plan_for(CKKSParams(), 100, bound=1e4)
    assert not loose.exact(100)
    assert loose.error_bound(100) == 100 * 2.0**-25 + (loose.integer_error(100) + 0.5) * 2.0**-24
    # the guarantee grows with the number of inputs and with the bound
    assert plan_for(CKKSParams(), 100).integer_error(100) > plan_for(CKKSParams(), 100).integer_error(10)
    assert loose.integer_error(100) > plan_for(CKKSParams(), 100).integer_error(100)


def raw_error(params, n, seed=0, chunks=2):
    """Max |decrypted - sum of encoded values| in units of y (before rounding), for n clients."""
    ctx = CKKSContext.generate(params)
    delta = params.scale(n)
    rng = np.random.default_rng(seed)
    y = rng.uniform(-1, 1, (n, chunks, params.capacity))
    y[:, 0, :4] = y[:, 0, params.slots:params.slots + 4] = [1, -1, 1, -1]   # slots of magnitude sqrt(2)
    worst = 0.0
    for j in range(chunks):
        total = ctx.load_ciphertext(ctx.encrypt(y[0, j], delta), delta)
        for k in range(1, n):
            ctx.add_inplace(total, ctx.load_ciphertext(ctx.encrypt(y[k, j], delta), delta))
        worst = max(worst, float(np.abs(ctx.decrypt(total) - y[:, j].sum(axis=0)).max()))
    return worst


@pytest.mark.parametrize("params, n", [(CKKSParams(), 2), (CKKSParams(), 60), (CKKSParams(2048, (54,)), 30),
                                       (CKKSParams.tenseal_default(), 5), (CKKSParams(4096, (40, 20), 30), 8)])
def test_measured_error_is_within_the_stated_bound(params, n):
    measured = raw_error(params, n, seed=n)
    bound = plan_for(params, n).slot_error(n)
    assert 0 < measured <= bound


# -- the parameter table (protocols/ckks.md) --------------------------------------------------------------------

N_CLIENTS = 100


def measure_ours(params):
    """(bytes per value of a client ciphertext, of the aggregate, relative error on a 100-client sum, guaranteed
    relative bound, ms to encrypt one ciphertext). Relative: max error / (n * bound)."""
    ctx = CKKSContext.generate(params)
    x = np.random.default_rng(1).uniform(-1, 1, params.capacity)
    t0 = time.perf_counter()
    blob = ctx.encrypt(x, params.scale(N_CLIENTS))
    ms = 1e3 * (time.perf_counter() - t0)
    total = ctx.load_ciphertext(blob, params.scale(N_CLIENTS))
    aggregate = len(ctx.save_ciphertext(total))
    err = raw_error(params, N_CLIENTS, chunks=1) / N_CLIENTS
    guaranteed = plan_for(params, N_CLIENTS).slot_error(N_CLIENTS) / N_CLIENTS
    return len(blob) / params.capacity, aggregate / params.capacity, err, guaranteed, ms


def measure_tenseal_vector(n_poly, bits, scale_bits, encryption):
    """TenSEAL's high-level CKKSVector, for comparison (same columns; no guaranteed bound)."""
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, n_poly, coeff_mod_bit_sizes=list(bits), encryption_type=encryption,
                     n_threads=1)
    slots = n_poly // 2
    y = np.random.default_rng(2).uniform(-1, 1, (N_CLIENTS, slots))
    t0 = time.perf_counter()
    blobs = [ts.ckks_vector(ctx, v.tolist(), 2.0 ** scale_bits).serialize() for v in y]
    ms = 1e3 * (time.perf_counter() - t0) / N_CLIENTS
    total = ts.ckks_vector_from(ctx, blobs[0])
    for b in blobs[1:]:
        total.add_(ts.ckks_vector_from(ctx, b))
    err = float(np.abs(np.array(total.decrypt()) - y.sum(axis=0)).max()) / N_CLIENTS
    return len(blobs[0]) / slots, len(total.serialize()) / slots, err, math.nan, ms


@pytest.mark.slow
def test_parameter_table():
    rows = [
        ("TenSEAL CKKSVector 8192 [60,40,40,60] 2^40 public-key (default)",
         measure_tenseal_vector(8192, (60, 40, 40, 60), 40, ts.ENCRYPTION_TYPE.ASYMMETRIC)),
        ("TenSEAL CKKSVector 8192 [60,40,40,60] 2^40 symmetric",
         measure_tenseal_vector(8192, (60, 40, 40, 60), 40, ts.ENCRYPTION_TYPE.SYMMETRIC)),
        ("TenSEAL CKKSVector 4096 [60,20] 2^51 symmetric",
         measure_tenseal_vector(4096, (60, 20), 51, ts.ENCRYPTION_TYPE.SYMMETRIC)),
        ("ours 8192 [60,40,40,60] 2^40 public-key", measure_ours(CKKSParams.tenseal_default())),
        ("ours 8192 [60,40,40,60] 2^40 symmetric seeded", measure_ours(CKKSParams(8192, (60, 40, 40, 60), 40))),
        ("ours 4096 [60] auto public-key", measure_ours(CKKSParams(4096, (60,), symmetric=False))),
        ("ours 4096 [60] auto symmetric seeded (DEFAULT)", measure_ours(CKKSParams())),
        ("ours 4096 [40] auto symmetric seeded", measure_ours(CKKSParams(4096, (40,)))),
        ("ours 2048 [54] auto symmetric seeded", measure_ours(CKKSParams(2048, (54,)))),
        ("ours 2048 [40] auto symmetric seeded", measure_ours(CKKSParams(2048, (40,)))),
    ]
    print(f"\n{'parameters':66s} {'B/value':>8s} {'x f32':>6s} {'sum B/v':>8s} {'rel err':>9s} "
          f"{'rel bound':>9s} {'enc ms':>7s}")
    for name, (b, agg, err, bound, ms) in rows:
        print(f"{name:66s} {b:8.2f} {b / 4:6.2f} {agg:8.2f} {err:9.1e} {bound:9.1e} {ms:7.2f}")
    default = dict(rows)["ours 4096 [60] auto symmetric seeded (DEFAULT)"]
    assert default[0] / 4 <= 8 and default[2] <= 1e-6 and default[3] <= 1e-6    # the requirements
    assert dict(rows)["TenSEAL CKKSVector 8192 [60,40,40,60] 2^40 public-key (default)"][0] / 4 > 20
