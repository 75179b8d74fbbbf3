"""Threshold CKKS (protocols/ckks.md §Threshold mode): ring arithmetic, exactness, what t - 1 cannot do, dropouts,
corrupted partials, once-per-round answers, the share distribution."""

import numpy as np
import pytest
import tenseal.sealapi as sa

from secure_fal.secagg import (Aggregator, DecryptionError, DropoutError, Faults, MessageError, OutOfOrderError,
                               ReplayError, run_setup, secure_sum)
from secure_fal.secagg.ckks.protocol import CKKSProtocol
from secure_fal.secagg.ckks.threshold.machines import lagrange_at_zero, public_polynomials
from secure_fal.secagg.ckks.threshold.messages import (KINDS, PROTOCOL_ID, SETUP_KINDS, SETUP_PROTOCOL_ID, Ciphertext,
                                                       InputRequest, Partial, PartialRequest, SealedShares)
from secure_fal.secagg.ckks.threshold.params import ThresholdParams, ThresholdPlan, default_threshold
from secure_fal.secagg.ckks.threshold.protocol import ThresholdCKKSProtocol
from secure_fal.secagg.ckks.threshold.ring import RNSRing, pack_residues, sample_error, unpack_residues
from secure_fal.secagg.ckks.threshold.setup import ThresholdKeys
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.messages import SERVER, Header, decode, encode

SESSION = 0x7E57


def inputs(n, length, bound=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-bound, bound, length) for c in range(n)}


def plaintext(xs, contributors, bound=1.0):
    return secure_sum("plaintext", {c: xs[c] for c in contributors}, bound=bound).total


def dealt(n, **kw):
    """A protocol object after an in-process share distribution among clients 0..n-1."""
    proto = CKKSProtocol(**kw)
    proto.setup(range(n), None)
    run_setup(proto, SESSION, tuple(range(n)), 1)
    return proto


def spec_for(clients, length, bound=1.0, round_id=1):
    return RoundSpec(SESSION, round_id, tuple(clients), length, FixedPoint(bound, 24, len(clients)))


# -- ring --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, bits", [(64, 20), (128, 25), (2048, 25)])   # n1 = n2 and n1 != n2; 25-bit primes
def test_ntt_product_is_the_negacyclic_schoolbook_product(n, bits):
    primes = tuple(m.value() for m in sa.CoeffModulus.Create(n, [bits] * 3))
    ring = RNSRing(n, primes)
    rng = np.random.default_rng(n)
    # full-range residues on one side (what a_{r,b} and the Shamir shares are), small integers on the other
    a, b = rng.integers(-(2**40), 2**40, n), rng.integers(-1000, 1000, n)
    want = np.zeros(n, dtype=object)
    for i in range(n):
        row = int(a[i]) * b.astype(object)
        want[i:] += row[:n - i]
        want[:i] -= row[n - i:]
    got = ring.to_integers(ring.intt(ring.ntt(ring.residues(a, 3)) * ring.ntt(ring.residues(b, 3)) % ring.moduli(3)))
    assert (got == want).all()
    x = rng.integers(0, min(primes), (2, 3, n)).astype(np.uint64)
    x[0, :, :2] = np.array(primes, dtype=np.uint64)[:, None] - 1          # the largest residues
    assert (ring.intt(ring.ntt(x)) == x).all()
    assert (ring.ntt(x) < ring.moduli(3)).all()


def test_packing_is_bit_precise_and_round_trips():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2**25, (3, 4, 8)).astype(np.uint64)
    data = pack_residues(x, 25)
    assert len(data) == 3 * 4 * 8 * 25 // 8
    assert (unpack_residues(data, 25, x.shape) == x).all()
    with pytest.raises(ValueError, match="bytes"):
        unpack_residues(data[:-1], 25, x.shape)


def test_error_sampler_is_centred_binomial():
    e = sample_error((200_000,))
    assert np.abs(e).max() <= 21
    # sigma^2 = 21 / 2; the sample variance's standard error is ~ sigma^2 sqrt(2 / n) ~ 0.033: 6 of them
    assert abs(e.var() - 10.5) < 6 * 10.5 * np.sqrt(2 / e.size)
    assert abs(e.mean()) < 6 * np.sqrt(10.5 / e.size)


# -- parameters --------------------------------------------------------------------------------------------------

def test_default_threshold_gives_privacy_and_quorum_intersection():
    for m in range(1, 40):
        for corruption in (0.0, 0.1, 0.2, 0.3):
            b = int(corruption * m)
            t = default_threshold(m, corruption)
            assert t > b and 2 * t - m > b and t <= m
            assert t == 1 or not (t - 1 > b and 2 * (t - 1) - m > b)   # the smallest such t


def test_plan_noise_stays_below_half_delta_and_sum_fits_the_modulus():
    params = ThresholdParams()
    for n, bound, length in ((2, 1.0, 10), (100, 16 * 1024, 100_000), (10, 1.0, 1_000_000)):
        spec = RoundSpec(1, 1, tuple(range(n)), length, FixedPoint(bound, 24, n))
        plan = ThresholdPlan.for_round(params, spec, 5)
        q = int(np.prod([int(p) for p in params.ring.primes[:plan.primes]], dtype=object))
        delta = 1 << plan.scale_bits
        assert 2 * plan.noise_bound < delta
        assert delta * n * spec.encoding.max_abs_int + plan.noise_bound < q // 2
        assert plan.blocks * params.poly_modulus_degree * 21 * n <= 2.0 ** (plan.smudge_bits - 40)


# -- exactness and dropouts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, bound, length", [(3, 1.0, 10), (6, 100.0, 9000), (4, 16 * 1024.0, 50)])
def test_t_partials_give_the_plaintext_result_bit_for_bit(n, bound, length):
    xs = inputs(n, length, bound, seed=n)
    agg = Aggregator("ckks", range(n), seed=0)
    assert isinstance(agg.protocol, ThresholdCKKSProtocol)
    res = agg.sum(xs, bound=bound)
    assert np.array_equal(res.total, plaintext(xs, range(n), bound)) and res.contributors == tuple(range(n))
    assert len(agg.setup_reports) == 1      # shares once per session
    res2 = agg.sum(xs, bound=bound)
    assert np.array_equal(res2.total, res.total) and len(agg.setup_reports) == 1


def test_no_client_ever_holds_the_secret_key_and_nobody_holds_all_shares_of_others():
    proto = dealt(4)
    secrets = [proto._keys[c].secret for c in range(4)]
    # every client samples its own secret: no two are equal, and none is the sum of all (the decryption key)
    assert len({s.tobytes() for s in secrets}) == 4
    assert all(set(np.unique(s)) <= {-1, 0, 1} for s in secrets)
    assert proto.threshold >= 2 and all(len(proto._keys[c].shares) == 4 for c in proto.committee)


def test_a_committee_smaller_than_the_session_decrypts_for_everyone():
    xs = inputs(7, 40, seed=15)
    agg = Aggregator("ckks", range(7), seed=0, params={"committee": 3})
    res = agg.sum(xs, bound=1.0)
    committee = agg.protocol.committee
    assert len(committee) == 3 and agg.protocol.threshold == 2
    ordinary = [c for c in range(7) if c not in committee]
    assert all(res.report.bytes_down[c] == 30 for c in ordinary)      # one InputRequest, one upload: one-shot
    assert np.array_equal(res.total, plaintext(xs, res.contributors))


def test_contributors_that_encrypted_then_dropped_stay_in_the_sum():
    xs = inputs(6, 30, seed=3)
    agg = Aggregator("ckks", range(6), seed=0)
    res = agg.sum(xs, bound=1.0, faults=Faults(drop={5: "decrypt"}))   # 5 sent c0, then went silent
    t = agg.protocol.threshold
    assert t == 4 and agg.protocol.committee == tuple(range(6))
    assert res.contributors == tuple(range(6)) and np.array_equal(res.total, plaintext(xs, range(6)))


def test_committee_dropouts_down_to_t():
    xs = inputs(6, 30, seed=4)
    agg = Aggregator("ckks", range(6), seed=0)
    res = agg.sum(xs, bound=1.0, faults=Faults(drop={0: "input", 1: "input"}))   # 6 - 2 = t = 4 left
    assert res.contributors == (2, 3, 4, 5) and np.array_equal(res.total, plaintext(xs, (2, 3, 4, 5)))
    with pytest.raises(DropoutError, match="4 are needed") as err:
        agg.sum(xs, bound=1.0, faults=Faults(drop={0: "input", 1: "input", 2: "input"}))
    assert err.value.round_id == 2 and err.value.field == "responders"


def test_a_responder_that_drops_before_its_partial_fails_the_round_without_a_result():
    xs = inputs(6, 30, seed=5)
    agg = Aggregator("ckks", range(6), seed=0)
    with pytest.raises(DropoutError, match="did not answer") as err:
        agg.sum(xs, bound=1.0, faults=Faults(drop={2: "decrypt"}))
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, "partial")


# -- what fewer than t learn ---------------------------------------------------------------------------------------

def run_to_partials(proto, xs, spec):
    """Drive a round by hand up to the partial decryptions: (server, client machines, each responder's Partial
    message, each client's packed c0)."""
    server = proto.server(spec)
    clients = {c: proto.client(c, spec, xs[c]) for c in spec.clients}
    requests, c0 = [], {}
    for data in server.start():
        for out in clients[decode(data, KINDS, PROTOCOL_ID)[0].recipient].receive(data):
            header, msg = decode(out, KINDS, PROTOCOL_ID)
            c0[header.sender] = msg.c0
            requests += server.receive(out)
    partials = {}
    for data in requests:
        j = decode(data, KINDS, PROTOCOL_ID)[0].recipient
        partials[j] = clients[j].receive(data)[0]
    return server, clients, partials, c0


def test_server_with_t_minus_1_members_cannot_decrypt_the_aggregate_or_one_ciphertext():
    xs = inputs(5, 8192, seed=6)
    proto = dealt(5)
    t, committee = proto.threshold, proto.committee
    spec = spec_for(range(5), 8192)
    server, _, _, c0 = run_to_partials(proto, xs, spec)
    ring, plan = proto.params.ring, server.plan
    k, p = plan.primes, ring.moduli(plan.primes)
    delta = 1 << plan.scale_bits

    def decrypt_with(members, c0_hat):
        """What server + ``members`` can compute: their shares, Lagrange-combined as if they were all of T."""
        total = c0_hat
        a = public_polynomials(proto.params, spec, plan)
        for j in members:
            share = sum(proto._keys[j].shares[c][:k] for c in spec.clients) % p
            lam = lagrange_at_zero(ring.primes[:k], tuple(members), j)
            total = (total + a * ring.ntt(share * lam % p) % p) % p
        v = ring.to_integers(ring.intt(total)).reshape(-1)
        return (v + delta // 2) // delta          # the decoded grid integers

    def grid(x):
        return np.rint(np.asarray(x) * 2.0 ** 24).astype(np.int64)

    corrupt = committee[:t - 1]
    assert (decrypt_with(committee[:t], server.total) == grid(plaintext(xs, range(5)))).all()   # t shares decrypt
    # t - 1 shares: the combination leaves a * (a uniform polynomial) in it, so each coefficient is uniform mod q
    # and equals the true one with probability Delta / q (< 2^-25 here): none of the 8192 may match
    assert plan.primes * 25 - plan.scale_bits > 25
    assert (decrypt_with(corrupt, server.total) == grid(plaintext(xs, range(5)))).sum() == 0
    single = unpack_residues(c0[0], plan.width, (plan.blocks, k, ring.n))
    assert (decrypt_with(corrupt, single) == grid(xs[0])).sum() == 0
    assert (decrypt_with(committee[:t], single) == grid(xs[0])).sum() == 0    # nor t shares of the sum's key


def test_t_minus_1_shares_of_a_secret_are_uniform_and_independent_of_it():
    proto = dealt(5)
    ring = proto.params.ring
    corrupt = proto.committee[:proto.threshold - 1]
    secret = proto._keys[0].secret
    for j in corrupt:
        share = proto._keys[j].shares[0][0].astype(np.float64)
        p = ring.primes[0]
        size = share.size
        # uniform on [0, p): mean (p - 1) / 2, standard error p / sqrt(12 size); 6 standard errors
        assert abs(share.mean() - (p - 1) / 2) < 6 * p / np.sqrt(12 * size)
        corr = np.corrcoef(share, secret)[0, 1]
        assert abs(corr) < 6 / np.sqrt(size)


# -- corrupted partials, once per round ----------------------------------------------------------------------------

def rewrite_partial(cid, change):
    def hook(header, data):
        if header.sender == cid and header.kind == Partial.KIND:
            h, msg = decode(data, KINDS, PROTOCOL_ID)
            return [encode(h, Partial(change(msg.partial), msg.signature))]
        return [data]
    return hook


def flip_last_byte(blob):
    return blob[:-1] + bytes([blob[-1] ^ 0x01])


def test_a_corrupted_partial_is_named_in_active_mode_and_never_released():
    xs = inputs(4, 20, seed=7)
    agg = Aggregator("ckks", range(4), seed=0, active=True)
    responder = agg.protocol.committee[0] if agg.protocol.committee else 0
    with pytest.raises(MessageError, match="invalid signature") as err:
        agg.sum(xs, bound=1.0, faults=Faults(in_flight=rewrite_partial(responder, flip_last_byte)))
    assert (err.value.client, err.value.round_id, err.value.field) == (responder, 1, "partial")


def test_a_wrong_partial_fails_the_noise_check_in_honest_but_curious_mode():
    xs = inputs(4, 20, seed=8)
    agg = Aggregator("ckks", range(4), seed=0)
    rng = np.random.default_rng(0)

    def garbage(blob):
        plan = ThresholdPlan.for_round(agg.protocol.params, spec_for(range(4), 20), agg.protocol.threshold)
        shape = (plan.blocks, plan.primes, agg.protocol.params.poly_modulus_degree)
        x = rng.integers(0, 2**24, shape).astype(np.uint64)
        return pack_residues(x, plan.width)

    with pytest.raises(DecryptionError, match="nothing is released") as err:
        agg.sum(xs, bound=1.0, faults=Faults(in_flight=rewrite_partial(0, garbage)))
    assert (err.value.round_id, err.value.field) == (1, "partials")
    assert "0." not in str(err.value)          # no value in the text


def test_a_partial_with_a_residue_beyond_its_prime_is_named():
    xs = inputs(4, 20, seed=9)
    agg = Aggregator("ckks", range(4), seed=0)
    with pytest.raises(MessageError, match="not below its prime") as err:
        agg.sum(xs, bound=1.0, faults=Faults(in_flight=rewrite_partial(1, lambda b: b"\xff" * len(b))))
    assert (err.value.client, err.value.field) == (1, "partial")


def test_a_second_partial_request_for_the_same_round_is_refused():
    xs = inputs(5, 10, seed=10)
    proto = dealt(5)
    spec = spec_for(range(5), 10)
    server, clients, _, _ = run_to_partials(proto, xs, spec)
    j = server.responders[0]
    again = encode_request(spec, j, server.contributors[:2], server.responders)
    with pytest.raises(OutOfOrderError):
        clients[j].receive(again)            # the machine answered: it is done
    with pytest.raises(ReplayError) as err:
        proto.client(j, spec, xs[j])         # a fresh machine for the same (session, round): the registry
    assert (err.value.client, err.value.field) == (j, "round")


def encode_request(spec, recipient, contributors, responders):
    return encode(Header(PROTOCOL_ID, PartialRequest.KIND, spec.session, spec.round_id, SERVER, recipient),
                  PartialRequest(tuple(contributors), tuple(responders), {}))


@pytest.mark.parametrize("contributors, responders, field", [
    ((0,), None, "contributors"),                 # below min-clients: one input would be decrypted
    ((0, 1, 7), None, "contributors"),            # not a client of the round
    (None, "short", "responders"),                # fewer than t: Lagrange over another set
])
def test_a_responder_refuses_requests_it_cannot_safely_answer(contributors, responders, field):
    xs = inputs(5, 10, seed=11)
    proto = dealt(5)
    spec = spec_for(range(5), 10)
    j = proto.committee[0]
    machine = proto.client(j, spec, xs[j])
    machine.receive(encode_request_input(spec, j))
    contributors = contributors or tuple(range(5))
    responders = proto.committee[:proto.threshold] if responders is None else proto.committee[:proto.threshold - 1]
    with pytest.raises(MessageError) as err:
        machine.receive(encode_request(spec, j, contributors, responders))
    assert (err.value.client, err.value.round_id, err.value.field) == (j, 1, field)


def encode_request_input(spec, recipient):
    return encode(Header(PROTOCOL_ID, InputRequest.KIND, spec.session, spec.round_id, SERVER, recipient),
                  InputRequest())


def test_active_mode_responder_refuses_an_unsigned_contributor_list():
    xs = inputs(4, 10, seed=12)
    proto = dealt(4, active=True)
    spec = spec_for(range(4), 10)
    j = proto.committee[0]
    machine = proto.client(j, spec, xs[j])
    machine.receive(encode_request_input(spec, j))
    with pytest.raises(MessageError) as err:
        machine.receive(encode_request(spec, j, tuple(range(4)), proto.committee[:proto.threshold]))
    assert (err.value.client, err.value.field) == (j, "inputs")


# -- share distribution ------------------------------------------------------------------------------------------

def test_setup_with_too_few_committee_members_fails():
    proto = CKKSProtocol()
    proto.setup(range(4), None)
    with pytest.raises(DropoutError, match="threshold"):
        run_setup(proto, SESSION, (0, 1, 2, 3), 1, Faults(drop={0: "key", 1: "key"}))


def test_tampered_sealed_shares_name_the_dealer():
    def tamper(header, data):
        if header.kind == SealedShares.KIND and header.protocol == SETUP_PROTOCOL_ID:
            h, msg = decode(data, SETUP_KINDS, SETUP_PROTOCOL_ID)
            sealed = dict(msg.sealed)
            sealed[2] = flip_last_byte(sealed[2])
            return [encode(h, SealedShares(msg.keys, sealed))]
        return [data]

    proto = CKKSProtocol()
    with pytest.raises(DecryptionError) as err:
        run_setup(proto, SESSION, (0, 1, 2), 1, Faults(in_flight=tamper))
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 0, "sealed")


def test_keys_round_trip_and_never_print_a_secret():
    proto = dealt(3)
    keys = proto._keys[proto.committee[0]]
    data = keys.serialize(proto.params.prime_bits)
    back = ThresholdKeys.from_bytes(data, proto.params.prime_bits)
    assert np.array_equal(back.secret, keys.secret) and back.committee == keys.committee
    assert all(np.array_equal(back.shares[i], keys.shares[i]) for i in keys.shares)
    assert "array" not in repr(keys) and "secret" not in repr(keys)
    with pytest.raises(ValueError, match="length"):
        ThresholdKeys.from_bytes(data + b"\0", proto.params.prime_bits)


def test_dealer_mode_stays_available_by_name():
    xs = inputs(3, 10, seed=13)
    res = secure_sum("ckks", xs, bound=1.0, mode="dealer")
    assert not isinstance(Aggregator("ckks", range(3), mode="dealer").protocol, ThresholdCKKSProtocol)
    assert np.array_equal(res.total, plaintext(xs, range(3)))


def test_wire_sizes_are_bit_packed():
    xs = inputs(3, 10, seed=14)
    agg = Aggregator("ckks", range(3), seed=0)
    res = agg.sum(xs, bound=1.0)
    plan = ThresholdPlan.for_round(agg.protocol.params, spec_for(range(3), 10), agg.protocol.threshold)
    packed = plan.packed_bytes(agg.protocol.params.poly_modulus_degree)
    assert packed == plan.blocks * plan.primes * 8192 * plan.width // 8
    assert min(res.report.bytes_up.values()) == 30 + 4 + packed + 4     # header, c0 (length-prefixed), signature
    assert Ciphertext.KIND in KINDS


@pytest.mark.slow
def test_costs_at_100k_values_against_the_dealer_mode():
    """Measured costs (docs/benchmarks.md): `pytest -m slow tests/test_ckks_threshold.py -s`."""
    import time
    n, length = 10, 100_000
    xs = inputs(n, length, seed=20)
    rows = {}
    for label, kw in (("threshold", {}), ("dealer", {"mode": "dealer"})):
        t0 = time.perf_counter()
        agg = Aggregator("ckks", range(n), seed=0, **kw)
        if agg.protocol.setup_due(1):
            setup = run_setup(agg.protocol, agg.session, agg.clients, 1)
            setup_up = max(setup.bytes_up.values())
            setup_down = max(setup.bytes_down.values())
        else:
            setup_up = setup_down = agg.protocol.setup_cost.secret_context_bytes
        setup_s = time.perf_counter() - t0
        res = agg.sum(xs, bound=1.0)
        assert np.max(np.abs(res.total - plaintext(xs, range(n)))) <= n * 2.0 ** -24
        rep = res.report
        encrypt = np.median([rep.client_seconds[c]["input"] for c in range(n)])
        decrypt = max(rep.client_seconds[c].get("decrypt", 0.0) for c in range(n))
        up = min(rep.bytes_up.values())
        rows[label] = (setup_up, setup_down, setup_s, up / length, encrypt, decrypt, sum(rep.server_seconds.values()))
    print("\nmode | setup up / down B per client (max) | setup s (all, in process) | round up B/value (ordinary "
          "client) | encrypt s (median) | partial/decrypt s (max) | server s")
    for label, row in rows.items():
        print(label, "| %d / %d | %.2f | %.2f | %.3f | %.3f | %.3f" % row)
    # threshold: 13 blocks of 8192 coefficients, 4 primes of 25 bits = 12.5 bytes per coefficient (smudging at
    # 2^-40 and the sum's range, protocols/ckks.md); dealer: 25 seeded SEAL ciphertexts of N = 4096 values (two
    # per complex slot), one 60-bit prime, zstd-compressed: at most 2.1x float32 (issue 16)
    assert rows["threshold"][3] == pytest.approx(13 * 8192 * 12.5 / length, abs=0.01)
    assert rows["dealer"][3] <= 2.1 * 4


def test_active_mode_responder_refuses_a_contributor_list_signed_for_another_round():
    xs = inputs(4, 10, seed=16)
    proto = dealt(4, active=True)
    first = run_to_partials(proto, xs, spec_for(range(4), 10, round_id=1))[0]
    signed_round_1 = {c: first.signed[c] for c in first.contributors}
    spec = spec_for(range(4), 10, round_id=2)
    j = proto.committee[0]
    machine = proto.client(j, spec, xs[j])
    machine.receive(encode_request_input(spec, j))
    stale = encode(Header(PROTOCOL_ID, PartialRequest.KIND, spec.session, 2, SERVER, j),
                   PartialRequest(tuple(range(4)), proto.committee[:proto.threshold], signed_round_1))
    with pytest.raises(MessageError, match="invalid signature") as err:
        machine.receive(stale)
    assert (err.value.round_id, err.value.field) == (2, "inputs")
