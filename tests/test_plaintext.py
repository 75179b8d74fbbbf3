"""The plaintext reference protocol (protocols/plaintext.md): flow, result, dropout, message checks."""

import numpy as np
import pytest

from secure_fal.secagg import DropoutError, Faults, MessageError, OutOfOrderError, ReplayError, secure_sum
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.messages import HEADER_BYTES, SERVER, decode
from secure_fal.secagg.plaintext import KINDS, PROTOCOL_ID, Input, PlaintextProtocol, Request

PROTO = PlaintextProtocol()


def spec_for(n=3, length=4, bound=1.0, frac_bits=24, round_id=1):
    return RoundSpec(0xABC, round_id, tuple(range(n)), length, FixedPoint(bound, frac_bits, n))


def test_message_flow_and_contents():
    spec = spec_for()
    xs = {0: np.array([0.5, -0.25, 1.0, 0.0]), 1: np.array([0.1, 0.2, 0.3, -1.0]), 2: np.zeros(4)}
    server = PROTO.server(spec)
    requests = server.start()
    assert [decode(r, KINDS, PROTOCOL_ID)[0].recipient for r in requests] == [0, 1, 2]
    assert all(len(r) == HEADER_BYTES and isinstance(decode(r, KINDS, PROTOCOL_ID)[1], Request) for r in requests)
    for cid, request in zip(spec.clients, requests):
        (reply,) = PROTO.client(cid, spec, xs[cid]).receive(request)
        header, msg = decode(reply, KINDS, PROTOCOL_ID)
        assert (header.sender, header.recipient) == (cid, SERVER) and isinstance(msg, Input)
        enc = spec.encoding
        # the server sees the client's quantized input: that is all this protocol hides (nothing)
        assert np.array_equal(enc.from_ring(enc.unpack(msg.values, 4)), np.rint(xs[cid] * 2**24))
        assert server.receive(reply) == []
    assert server.done and server.contributors == (0, 1, 2)
    want = sum(np.rint(x * 2**24) for x in xs.values()) / 2**24
    assert np.array_equal(server.result, want)


@pytest.mark.parametrize("bound, frac_bits", [(1.0, 24), (1e-3, 40), (1e6, 8), (5.0, 0)])
def test_result_is_the_sum_of_the_rounded_inputs(bound, frac_bits):
    rng = np.random.default_rng(int(frac_bits))
    xs = {c: rng.uniform(-bound, bound, 257) for c in range(5)}
    res = secure_sum("plaintext", xs, bound=bound, frac_bits=frac_bits)
    exact = np.ldexp(sum(np.rint(np.ldexp(x, frac_bits)).astype(np.int64) for x in xs.values()).astype(float),
                     -frac_bits)
    assert np.array_equal(res.total, exact)
    assert np.max(np.abs(res.total - sum(xs.values()))) <= PROTO.error_bound(spec_for(5, 257, bound, frac_bits), 5)


def test_dropped_client_is_left_out():
    xs = {c: np.full(3, float(c + 1) / 10) for c in range(4)}
    res = secure_sum("plaintext", xs, bound=1.0, faults=Faults(drop={2: "input"}))
    assert res.contributors == (0, 1, 3) and res.report.dropped == (2,)
    assert np.allclose(res.total, 0.1 + 0.2 + 0.4, atol=3 * 2.0**-25)
    assert 2 not in res.report.bytes_up and res.report.bytes_down[2] == HEADER_BYTES


def test_everyone_dropping_raises_dropout_error():
    xs = {c: np.zeros(3) for c in range(3)}
    with pytest.raises(DropoutError, match="no client") as err:
        secure_sum("plaintext", xs, bound=1.0, faults=Faults(drop={0: "input", 1: "input", 2: "input"}))
    assert err.value.round_id == 1


def test_server_checks_the_packed_length():
    spec = spec_for()
    server = PROTO.server(spec)
    request = server.start()[0]
    client = PROTO.client(0, spec, np.zeros(4))
    client.receive(request)
    short = client.send(SERVER, Input(b"\x00" * spec.encoding.packed_bytes(3)))
    with pytest.raises(MessageError, match="expected") as err:
        server.receive(short)
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, "values")


def test_server_rejects_a_second_input_and_late_kinds():
    spec = spec_for(n=2)
    server = PROTO.server(spec)
    requests = server.start()
    reply = PROTO.client(0, spec, np.zeros(4)).receive(requests[0])[0]
    server.receive(reply)
    with pytest.raises(ReplayError, match="second Input"):
        server.receive(reply)
    with pytest.raises(OutOfOrderError):
        PROTO.client(1, spec, np.zeros(4)).receive(reply[:22] + (1).to_bytes(4, "big", signed=True) + reply[26:])


def test_error_bound_is_the_rounding_of_each_input():
    spec = spec_for(n=7, frac_bits=10)
    assert PROTO.error_bound(spec, 7) == 7 * 2.0**-11
