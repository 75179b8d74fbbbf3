"""The CKKS protocol (protocols/ckks.md): keys, message flow, sizes, decryptor choice, dropout, message checks."""

import random

import numpy as np
import pytest

from secure_fal.secagg import (Aggregator, DecryptionError, DropoutError, Faults, InputError, MessageError,
                               OutOfOrderError, ReplayError, secure_sum)
from secure_fal.secagg.ckks.messages import KINDS, PROTOCOL_ID, DecryptedSum, DecryptRequest, EncryptedInput, Request
from secure_fal.secagg.ckks.machines import CKKSServer
from secure_fal.secagg.ckks.protocol import CKKSProtocol
from secure_fal.secagg.ckks.context import CKKSContext
from secure_fal.secagg.ckks.params import CKKSParams, RoundPlan
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.messages import HEADER_BYTES, SERVER, decode, encode

SLOTS = CKKSParams().capacity  # values per ciphertext (two per complex slot)


def inputs(n, length, bound=1.0, seed=0, ids=None):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-bound, bound, length) for c in (range(n) if ids is None else ids)}


def plaintext(xs, contributors, bound=1.0, frac_bits=24):
    return secure_sum("plaintext", {c: xs[c] for c in contributors}, bound=bound, frac_bits=frac_bits).total


def session(clients, **kw):
    proto = CKKSProtocol(mode="dealer", **kw)
    proto.setup(clients, random.Random(0))
    return proto


def spec_for(clients, length, bound=1.0, frac_bits=24, round_id=1):
    return RoundSpec(0x5E55, round_id, tuple(clients), length, FixedPoint(bound, frac_bits, len(clients)))


def machines(proto, xs, spec):
    return proto.server(spec), {c: proto.client(c, spec, xs[c]) for c in spec.clients}


def decryptor_of(report):
    """The client whose decryption was delivered: it uploaded its input and the sum."""
    return max(report.bytes_up, key=report.bytes_up.get)


# -- keys ----------------------------------------------------------------------------------------------------

def test_server_context_is_public_and_clients_are_private():
    proto = session([0, 1, 2])
    spec = spec_for([0, 1, 2], 5)
    server, clients = machines(proto, inputs(3, 5), spec)
    assert not server.context.is_private()
    with pytest.raises(ValueError, match="no secret key"):
        server.context.secret_key()
    for client in clients.values():
        assert client.context.is_private() and client.context.secret_key() is not None
    with pytest.raises(ValueError, match="must not hold the secret key"):
        CKKSServer(spec, clients[0].context, 0)


def test_setup_cost_and_contexts():
    proto = session([4, 2, 9])
    cost = proto.setup_cost
    assert proto.dealer == 2 and cost.dealer == 2
    keys = CKKSContext.generate(proto.params)
    assert cost.secret_context_bytes == len(keys.serialize())          # same parameters, same sizes
    assert cost.public_context_bytes == len(keys.make_public().serialize())
    assert cost.public_context_bytes < 64 < 30_000 < cost.secret_context_bytes < 40_000
    assert cost.bytes_sent == 2 * cost.secret_context_bytes + cost.public_context_bytes
    authority = session([4, 2, 9], key_authority=True)
    assert authority.dealer is None
    assert authority.setup_cost.bytes_sent == 3 * authority.setup_cost.secret_context_bytes + cost.public_context_bytes


def test_context_serialization_round_trip_and_checks():
    keys = CKKSContext.generate(CKKSParams())
    data = keys.serialize()
    back = CKKSContext.from_bytes(data)
    assert back.is_private() and back.params == keys.params
    x, scale = np.linspace(-1, 1, 100), CKKSParams().scale(1)
    assert np.abs(back.decrypt(back.load_ciphertext(keys.encrypt(x, scale), scale))[:100] - x).max() < 1e-9
    public = CKKSContext.from_bytes(keys.make_public().serialize())
    assert not public.is_private() and len(keys.make_public().serialize()) == 13
    with pytest.raises(ValueError, match="holds no key"):
        public.encrypt(x, scale)
    with pytest.raises(ValueError, match="no secret key"):
        public.decrypt(public.load_ciphertext(keys.encrypt(x, scale), scale))
    key_at = 12 + 1 + 4                         # context header, one prime size, key length
    for bad, match in [(data[:10], "truncated"), (data[:-1], "truncated"), (data + b"\0", "trailing"),
                       (b"XXXX" + data[4:], "not a CKKS context"),
                       (data[:key_at] + b"\0" + data[key_at + 1:], "invalid key")]:
        with pytest.raises(ValueError, match=match):
            CKKSContext.from_bytes(bad)
    asym = CKKSContext.from_bytes(CKKSContext.generate(CKKSParams(4096, (60,), symmetric=False)).serialize())
    assert asym.is_private() and len(asym.encrypt(x, scale)) > 60_000     # public-key ciphertexts: no seed


def test_bad_setups():
    with pytest.raises(ValueError, match="not a client"):
        session([0, 1], dealer=5)
    with pytest.raises(ValueError, match="not both"):
        CKKSProtocol(mode="dealer", dealer=0, key_authority=True)
    with pytest.raises(ValueError, match="setup"):
        CKKSProtocol(mode="dealer").server(spec_for([0, 1], 3))
    proto = session([0, 1])
    with pytest.raises(InputError, match="no key") as err:
        proto.client(2, spec_for([0, 1, 2], 3), np.zeros(3))
    assert err.value.client == 2 and err.value.round_id == 1


def test_a_ciphertext_under_another_key_is_caught_by_the_decryptor():
    # well-formed, so the server (holding no key) cannot tell; the decryption is then garbage
    other_key = CKKSContext.generate(CKKSParams())
    swap = rewrite_input(2, lambda c: {0: other_key.encrypt(np.zeros(40), CKKSParams().scale(3))})
    with pytest.raises(DecryptionError, match="wrong key or corrupted") as err:
        secure_sum("ckks", inputs(3, 40, seed=1), bound=1.0, faults=Faults(in_flight=swap), mode="dealer")
    assert err.value.round_id == 1 and err.value.field == "chunks[0]" and "decryptor client 0" in str(err.value)


# -- flow, result, sizes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, SLOTS - 1, SLOTS, SLOTS + 1, 3 * SLOTS + 5])
def test_message_flow_chunks_and_result(length):
    xs = inputs(3, length, seed=length)
    proto = session([0, 1, 2])
    spec = spec_for([0, 1, 2], length)
    server, clients = machines(proto, xs, spec)
    chunks = -(-length // SLOTS)
    requests = server.start()
    assert all(isinstance(decode(r, KINDS, PROTOCOL_ID)[1], Request) for r in requests)
    out = []
    for cid, request in zip(spec.clients, requests):
        (reply,) = clients[cid].receive(request)
        header, msg = decode(reply, KINDS, PROTOCOL_ID)
        assert isinstance(msg, EncryptedInput) and sorted(msg.chunks) == list(range(chunks))
        assert {len(b) for b in msg.chunks.values()} == {32_972}     # seeded: one polynomial of 4096 x 8 bytes
        out += server.receive(reply)
    (to_decryptor,) = out
    header, request = decode(to_decryptor, KINDS, PROTOCOL_ID)
    assert header.recipient == 0 and isinstance(request, DecryptRequest)       # the dealer (smallest id)
    assert request.contributors == (0, 1, 2) and len(request.chunks) == chunks
    (reply,) = clients[0].receive(to_decryptor)
    _, summed = decode(reply, KINDS, PROTOCOL_ID)
    enc = spec.encoding
    exact = sum(np.rint(x * 2**24).astype(np.int64) for x in xs.values())
    # what the decryptor returns (and the server learns) is the integer sum itself, no CKKS noise in it
    assert summed.values == enc.pack(enc.to_ring(exact))
    assert server.receive(reply) == [] and server.done and server.contributors == (0, 1, 2)
    assert np.array_equal(server.result, plaintext(xs, (0, 1, 2)))


def test_aggregator_by_name_uses_the_defaults_and_matches_plaintext_bitwise():
    xs = inputs(5, 300, bound=4.0, seed=2)
    agg = Aggregator("ckks", list(xs), seed=3, mode="dealer")
    assert isinstance(agg.protocol, CKKSProtocol) and agg.protocol.params == CKKSParams()
    res = agg.sum(xs, bound=4.0)
    assert np.array_equal(res.total, plaintext(xs, range(5), bound=4.0))
    res2 = agg.sum(xs, bound=4.0)      # second round, same keys
    assert np.array_equal(res2.total, res.total) and res2.report.round_id == 2


def test_bytes_per_value_within_four_point_one_float32():
    length = 4 * SLOTS
    res = secure_sum("ckks", inputs(3, length, seed=4), bound=1.0, mode="dealer")
    up = res.report.bytes_up[2]                 # client 2 only sends its input (client 0 decrypts)
    assert up == HEADER_BYTES + 4 + 4 * (12 + 32_972) + 4      # + the empty signature of honest-but-curious mode
    assert up / length < 4.1 * 4                # <= 8 x float32 asked; 4.02 x measured


def test_decryptor_answer_does_not_depend_on_the_encryption_randomness():
    xs = inputs(3, 50, seed=5)
    seen = []

    def record(header, data):
        if header.kind == DecryptedSum.KIND:
            seen.append(data)
        return [data]

    for seed in (1, 2):
        secure_sum("ckks", xs, bound=1.0, seed=seed, faults=Faults(in_flight=record), mode="dealer")
    assert decode(seen[0], KINDS, PROTOCOL_ID)[1] == decode(seen[1], KINDS, PROTOCOL_ID)[1]


# -- decryptor choice and dropout -----------------------------------------------------------------------------

def test_chosen_dealer_decrypts():
    xs = inputs(4, 20, seed=6)
    agg = Aggregator("ckks", range(4), seed=0, dealer=3, mode="dealer")
    res = agg.sum(xs, bound=1.0)
    assert agg.protocol.dealer == 3 and decryptor_of(res.report) == 3
    assert np.array_equal(res.total, plaintext(xs, range(4)))


def test_key_authority_session_decrypts_at_the_smallest_contributor():
    xs = inputs(4, 20, seed=7)
    agg = Aggregator("ckks", range(4), seed=0, key_authority=True, mode="dealer")
    res = agg.sum(xs, bound=1.0, faults=Faults(drop={0: "input"}))
    assert decryptor_of(res.report) == 1 and res.contributors == (1, 2, 3)


def test_dropped_clients_are_left_out():
    xs = inputs(5, 30, seed=8)
    res = secure_sum("ckks", xs, bound=1.0, faults=Faults(drop={1: "input", 3: "input"}), mode="dealer")
    assert res.contributors == (0, 2, 4) and res.report.dropped == (1, 3)
    assert np.array_equal(res.total, plaintext(xs, (0, 2, 4)))


def test_dealer_dropped_before_input_next_contributor_decrypts():
    xs = inputs(4, 30, seed=9)
    res = secure_sum("ckks", xs, bound=1.0, faults=Faults(drop={0: "input"}), mode="dealer")
    assert decryptor_of(res.report) == 1 and res.contributors == (1, 2, 3)
    assert np.array_equal(res.total, plaintext(xs, (1, 2, 3)))


def test_dealer_dropped_while_decrypting_next_contributor_decrypts_and_dealer_input_stays():
    xs = inputs(4, 30, seed=10)
    res = secure_sum("ckks", xs, bound=1.0, faults=Faults(drop={0: "decrypt", 1: "decrypt"}), mode="dealer")
    assert res.contributors == (0, 1, 2, 3) and res.report.dropped == ()
    assert res.report.bytes_down[2] > 1000 and res.report.bytes_up.get(0, 0) > 1000
    assert np.array_equal(res.total, plaintext(xs, range(4)))


def test_many_failed_decryptors_in_a_row():
    xs = inputs(12, 10, seed=11)
    drop = {c: "decrypt" for c in range(10)}
    res = secure_sum("ckks", xs, bound=1.0, faults=Faults(drop=drop), mode="dealer")
    assert decryptor_of(res.report) == 10
    assert np.array_equal(res.total, plaintext(xs, range(12)))


def test_no_decryptor_left_raises_dropout_error():
    xs = inputs(3, 10, seed=12)
    with pytest.raises(DropoutError, match="no contributing key holder") as err:
        secure_sum("ckks", xs, bound=1.0, faults=Faults(drop={0: "decrypt", 1: "input", 2: "decrypt"}),
                   mode="dealer")
    assert err.value.round_id == 1


def test_no_input_raises_dropout_error():
    with pytest.raises(DropoutError, match="no client"):
        secure_sum("ckks", inputs(2, 10), bound=1.0, faults=Faults(drop={0: "input", 1: "input"}), mode="dealer")


# -- message checks ---------------------------------------------------------------------------------------------

def rewrite_input(cid, change):
    """In-flight hook: replace client cid's EncryptedInput chunks by change(chunks)."""
    def hook(header, data):
        if header.sender == cid and header.kind == EncryptedInput.KIND:
            h, msg = decode(data, KINDS, PROTOCOL_ID)
            return [encode(h, EncryptedInput(change(dict(msg.chunks)), b""))]
        return [data]
    return hook


def other_params_ciphertext(_):
    params = CKKSParams(2048, (54,))
    return CKKSContext.generate(params).encrypt(np.zeros(10), params.scale(3))


def wrong_scale_ciphertext(_):
    return CKKSContext.generate(CKKSParams()).encrypt(np.zeros(10), 2**40)


@pytest.mark.parametrize("name, change, field, match", [
    ("garbage", lambda c: {**c, 1: bytes(range(256)) * 40}, "chunks[1]", "SEAL"),
    ("truncated", lambda c: {**c, 0: c[0][:-1]}, "chunks[0]", "truncated or padded"),
    ("padded", lambda c: {**c, 0: c[0] + b"\x00"}, "chunks[0]", "truncated or padded"),
    ("too big", lambda c: {**c, 0: c[0] * 3}, "chunks[0]", "more than"),
    ("too short", lambda c: {**c, 0: b"\x5e\xa1"}, "chunks[0]", "shorter than a SEAL header"),
    ("missing chunk", lambda c: {0: c[0]}, "chunks", "expected chunks 0..1"),
    ("extra chunk", lambda c: {**c, 2: c[0]}, "chunks", "expected chunks 0..1"),
    ("other parameters", lambda c: {**c, 0: other_params_ciphertext(c)}, "chunks[0]", "SEAL rejects"),
    ("other scale", lambda c: {**c, 0: wrong_scale_ciphertext(c)}, "chunks[0]", "scale"),
])
def test_bad_ciphertexts_raise_message_error_naming_client_round_field(name, change, field, match):
    xs = inputs(3, SLOTS + 1, seed=13)
    with pytest.raises(MessageError, match=match) as err:
        secure_sum("ckks", xs, bound=1.0, faults=Faults(in_flight=rewrite_input(2, change)), mode="dealer")
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, field)


def test_rejected_input_leaves_the_running_sum_unchanged():
    xs = inputs(3, SLOTS + 1, seed=14)
    proto = session([0, 1, 2])
    spec = spec_for([0, 1, 2], SLOTS + 1)
    server, clients = machines(proto, xs, spec)
    requests = server.start()
    good = clients[2].receive(requests[2])[0]
    h, msg = decode(good, KINDS, PROTOCOL_ID)
    with pytest.raises(MessageError):
        server.receive(encode(h, EncryptedInput({0: msg.chunks[0], 1: b"junk" * 10}, b"")))
    server.receive(good)                        # the same client may still send a good one
    server.receive(clients[1].receive(requests[1])[0])
    (to_decryptor,) = server.receive(clients[0].receive(requests[0])[0])
    server.receive(clients[0].receive(to_decryptor)[0])
    assert np.array_equal(server.result, plaintext(xs, range(3)))


def test_decryptor_checks_the_request():
    xs = inputs(3, 10, seed=15)
    proto = session([0, 1, 2])
    spec = spec_for([0, 1, 2], 10)
    server, clients = machines(proto, xs, spec)
    requests = server.start()
    for cid in (1, 2):
        server.receive(clients[cid].receive(requests[cid])[0])
    (to_decryptor,) = server.receive(clients[0].receive(requests[0])[0])
    h, request = decode(to_decryptor, KINDS, PROTOCOL_ID)
    with pytest.raises(MessageError, match="SEAL") as err:
        clients[0].receive(encode(h, DecryptRequest(request.contributors, {0: b"\x00" * 100}, {})))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, "chunks[0]")
    with pytest.raises(MessageError, match="not a set") as err:
        clients[0].receive(encode(h, DecryptRequest((0, 7), request.chunks, {})))
    assert err.value.field == "contributors"
    with pytest.raises(MessageError, match="needs at least 2") as err:   # a sum of one is that input
        clients[0].receive(encode(h, DecryptRequest((1,), request.chunks, {})))
    assert (err.value.client, err.value.field) == (0, "contributors")
    with pytest.raises(ReplayError):            # a second machine of the same round: refused by the registry
        proto.client(1, spec, xs[1])
    with pytest.raises(OutOfOrderError):        # a decryption request before the client has sent its input
        machines(session([0, 1, 2]), xs, spec)[1][0].receive(encode(h, request))
    clients[0].receive(to_decryptor)            # the checks above left the client able to answer
    with pytest.raises(OutOfOrderError):        # and only once
        clients[0].receive(to_decryptor)


def test_server_checks_the_decrypted_sum():
    xs = inputs(3, 10, seed=16)
    proto = session([0, 1, 2])
    spec = spec_for([0, 1, 2], 10)
    server, clients = machines(proto, xs, spec)
    requests = server.start()
    late = clients[2].receive(requests[2])[0]
    server.receive(clients[1].receive(requests[1])[0])
    (to_decryptor,) = server.receive(clients[0].receive(requests[0])[0]) or server.on_timeout()
    assert server.phase == "decrypt"
    with pytest.raises(OutOfOrderError):        # input after the collection closed
        server.receive(late)
    enc = spec.encoding
    with pytest.raises(MessageError, match="not asked") as err:
        server.receive(clients[1].send(SERVER, DecryptedSum(b"\x00" * enc.packed_bytes(10))))
    assert err.value.client == 1
    with pytest.raises(MessageError, match="expected") as err:
        server.receive(clients[0].send(SERVER, DecryptedSum(b"\x00" * enc.packed_bytes(9))))
    assert (err.value.client, err.value.field) == (0, "values")
    too_big = enc.pack(enc.to_ring(np.full(10, 3 * enc.max_abs_int, dtype=np.int64)))
    with pytest.raises(MessageError, match="exceeds"):
        server.receive(clients[0].send(SERVER, DecryptedSum(too_big)))
    server.receive(clients[0].receive(to_decryptor)[0])
    assert server.contributors == (0, 1) and np.array_equal(server.result, plaintext(xs, (0, 1)))


# -- other parameters ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [CKKSParams.tenseal_default(), CKKSParams(2048, (54,)),
                                    CKKSParams(4096, (60,), symmetric=False), CKKSParams(4096, (40, 20), 30)])
def test_other_parameters_work_within_their_error_bound(params):
    xs = inputs(4, 700, bound=2.0, seed=17)
    agg = Aggregator(CKKSProtocol(params, mode="dealer"), range(4), seed=0)
    res = agg.sum(xs, bound=2.0)
    spec = spec_for(range(4), 700, bound=2.0)
    assert np.max(np.abs(res.total - sum(xs.values()))) <= agg.protocol.error_bound(spec, 4)
    if RoundPlan.for_round(params, spec).exact(4):
        assert np.array_equal(res.total, plaintext(xs, range(4), bound=2.0))
