"""Differential privacy behind Aggregator.sum (secure_fal.secagg.api + privacy): the same noised sum under every
protocol, exact sums kept with DP off, withheld and refused releases, and the ledger of every sum."""

import numpy as np
import pytest

from secure_fal.secagg import (Aggregator, DPSettings, Faults, InputError, PrivacyError, PrivacySession, Statistic)

from .conftest import protocol_or_skip

N_CLIENTS, LENGTH = 5, 300
UPDATE = Statistic("fedavg-update")


def inputs(scale=0.05):
    rng = np.random.default_rng(1)
    return {c: rng.normal(0, scale, LENGTH) for c in range(N_CLIENTS)}


def session(mechanism="ddg", seed=7, **kw):
    return PrivacySession(DPSettings(noise_multiplier=1.0, max_contributors=N_CLIENTS, mechanism=mechanism,
                                     noise_seed=seed, clip_norm=1.0, **kw))


@pytest.mark.parametrize("mechanism", ["ddg", "skellam"])
def test_same_noised_sum_under_every_protocol(mechanism):
    totals = {}
    for protocol in ("plaintext", "masking", "ckks"):
        agg = Aggregator(protocol_or_skip(protocol), range(N_CLIENTS), seed=3, privacy=session(mechanism))
        totals[protocol] = agg.sum(inputs(), bound=1.0, statistic=UPDATE).total
    assert np.array_equal(totals["plaintext"], totals["masking"])
    assert np.array_equal(totals["plaintext"], totals["ckks"])
    exact = sum(inputs().values())
    noise_std = session(mechanism).calibration(UPDATE, LENGTH).noise_std
    # the noise has the calibrated std (tolerance: 5 standard errors of a sample std over LENGTH values)
    assert abs(np.std(totals["plaintext"] - exact) / noise_std - 1) < 5 / np.sqrt(2 * LENGTH)


def test_a_noised_sum_costs_the_modulus_bits_per_coordinate():
    """The mechanism sums in Z_{2^bits}: the protocol's ring is that ring, so each coordinate travels as 20 bits,
    whatever the number of clients (docs/dp.md)."""
    cal = session().calibration(UPDATE, LENGTH)
    res = Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=session()).sum(inputs(), bound=1.0,
                                                                                    statistic=UPDATE)
    assert cal.bits == 20 and cal.padded == 512
    for c in range(N_CLIENTS):   # 30-byte header, 4-byte length, 512 values of 20 bits = 1,280 bytes
        assert res.report.bytes_up[c] == 30 + 4 + 1280


def test_same_noised_sum_with_a_dropout_under_masking():
    drop = Faults(drop={2: "masked_input"})
    masked = Aggregator("masking", range(N_CLIENTS), seed=3, privacy=session(min_contributors=4))
    res = masked.sum(inputs(), bound=1.0, statistic=UPDATE, faults=drop)
    assert res.contributors == (0, 1, 3, 4)
    plain = Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=session(min_contributors=4))
    survivors = {c: x for c, x in inputs().items() if c != 2}
    assert np.array_equal(res.total, plain.sum(survivors, bound=1.0, statistic=UPDATE).total)


def test_fewer_contributors_than_calibrated_are_withheld():
    agg = Aggregator("masking", range(N_CLIENTS), seed=3, privacy=session())       # calibrated for all 5
    with pytest.raises(PrivacyError, match=r"round 1, field 'contributors': 4 contributors, fewer than the 5"):
        agg.sum(inputs(), bound=1.0, statistic=UPDATE, faults=Faults(drop={2: "masked_input"}))


def test_dp_off_sums_stay_exact_and_bit_identical():
    totals = []
    for protocol in ("plaintext", "masking"):
        agg = Aggregator(protocol, range(N_CLIENTS), seed=3)
        totals.append(agg.sum(inputs(), bound=1.0, statistic=UPDATE).total)
        assert agg.ledger[0]["mechanism"] == "none" and agg.ledger[0]["noise"] is None
    assert np.array_equal(totals[0], totals[1])
    q = {c: np.rint(x * 2.0 ** 24) for c, x in inputs().items()}
    assert np.array_equal(totals[0], sum(q.values()) / 2.0 ** 24)


def test_unseeded_noise_differs_between_runs():
    a, b = (Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=session(seed=None)).sum(
        inputs(), bound=1.0, statistic=UPDATE).total for _ in range(2))
    assert not np.array_equal(a, b)


def test_clipping_bounds_what_one_client_can_move():
    """One client's input scaled 1e6-fold moves the release by at most 2 clip norms (its two clipped versions): the
    server's noise is identical (the same keys), so only the clipped contribution differs."""
    huge = dict(inputs())
    huge[0] = huge[0] * 1e6
    s = session("central-gaussian")
    a = Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=s).sum(inputs(), bound=1e9, statistic=UPDATE)
    b = Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=session("central-gaussian")).sum(
        huge, bound=1e9, statistic=UPDATE)
    assert np.linalg.norm(a.total - b.total) <= 2 * 1.0 + 1e-6


def test_budget_and_declarations_are_enforced_before_release():
    agg = Aggregator("plaintext", range(N_CLIENTS), seed=3, privacy=session(epsilon_budget=6.0))
    agg.sum(inputs(), bound=1.0, statistic=UPDATE)                    # one release of z = 1: epsilon ~ 4.7
    with pytest.raises(PrivacyError, match=r"round 2, field 'fedavg-update': .* over the budget 6 by"):
        agg.sum(inputs(), bound=1.0, statistic=UPDATE)
    assert len(agg.ledger) == 1 and agg.privacy.spent()["releases"] == 1
    with pytest.raises(InputError, match="field 'statistic'"):
        agg.sum(inputs(), bound=1.0)
    with pytest.raises(PrivacyError, match="needs the exact sum"):
        agg.sum(inputs(), bound=1.0, statistic=Statistic("ownership-count", 1.0, exact=True))
    masked = Aggregator("masking", range(N_CLIENTS), seed=3, privacy=session("central-gaussian"))
    with pytest.raises(PrivacyError, match="only runs under the plaintext protocol"):
        masked.sum(inputs(), bound=1.0, statistic=UPDATE)


def test_weighted_mean_under_dp_is_unweighted_and_within_the_clip_ball():
    agg = Aggregator("masking", range(N_CLIENTS), seed=3, privacy=session())
    mean, weight, res = agg.weighted_mean(inputs(), {c: 10.0 * (c + 1) for c in range(N_CLIENTS)}, bound=1.0,
                                          weight_bound=64.0, statistic=UPDATE)
    assert weight == N_CLIENTS and np.linalg.norm(mean) <= 1.0 + 1e-12
    assert agg.ledger[0]["shape"] == [LENGTH]                          # no weight coordinate is released


def test_ledger_lists_every_sum_with_what_the_server_learned():
    agg = Aggregator("masking", range(N_CLIENTS), seed=3, privacy=session(min_contributors=4))
    agg.sum(inputs(), bound=1.0, statistic=UPDATE)
    agg.sum({c: np.array([0.5, 1.0]) for c in range(N_CLIENTS)}, bound=1.0, statistic=Statistic("gamma", 2 ** 0.5),
            faults=Faults(drop={1: "masked_input"}))
    first, second = agg.ledger
    assert (first["round"], first["kind"], first["shape"], first["protocol"]) == (1, "fedavg-update", [LENGTH],
                                                                                   "masking")
    assert first["mechanism"] == "ddg" and first["learned"].startswith("sum of 5 inputs + noise of std")
    assert second["contributors"] == [0, 2, 3, 4] and second["learned"].startswith("sum of 4 inputs")
    plain = Aggregator("plaintext", range(N_CLIENTS), seed=3)
    plain.sum(inputs(), bound=1.0)
    assert plain.ledger[0]["learned"] == "every input (5)" and plain.ledger[0]["kind"] == "undeclared"


def test_a_node_takes_its_own_release_and_refuses_a_weaker_one():
    # secagg.privacy.release: what a Flower node checks before it adds its share (protocols/dp.md, "Over Flower")
    from dataclasses import replace

    from secure_fal.secagg.privacy.release import NodePrivacy, open_release

    settings = session().settings
    release = open_release(PrivacySession(settings), UPDATE, LENGTH, "masking", 11, 1, 1.0)
    NodePrivacy.of(settings).check(release, client=2)
    for node, field in [(replace(settings, noise_multiplier=1.5), "noise_multiplier"),
                        (replace(settings, mechanism="skellam"), "mechanism"),
                        (replace(settings, bits=24), "dp"), (replace(settings, min_contributors=2), "dp")]:
        with pytest.raises(PrivacyError, match=f"client 2.*round 1.*field '{field}'"):
            NodePrivacy.of(node).check(release, client=2)
