"""The shared aggregation framework: wire codec, message checks, input checks, transport, faults, reports,
Aggregator. Message-level checks live in the base machines, so they are run against every protocol."""

import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from secure_fal.secagg import (Aggregator, Faults, InputError, MessageError, OutOfOrderError, ReplayError,
                               SecAggError, secure_sum)
from secure_fal.secagg.api import SecureSumProtocol
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import ClientMachine, RoundSpec, ServerMachine
from secure_fal.secagg.messages import (HEADER_BYTES, SERVER, WIRE_VERSION, Header, Message, decode, encode,
                                        peek_header)
from secure_fal.secagg.plaintext import Input, PlaintextProtocol, Request
from .conftest import PROTOCOLS, protocol_or_skip

# header layout (messages.py): magic 0-1, version 2, protocol 3, kind 4, flags 5, session 6-13, round 14-17,
# sender 18-21, recipient 22-25, payload length 26-29
ROUND_AT, SENDER_AT = 14, 18


@dataclass(frozen=True)
class Everything(Message):
    """A message with one field of every supported type."""

    KIND = 7
    i: int
    f: float
    b: bytes
    s: str
    t: tuple[int, ...]
    d: dict[int, bytes]


KINDS = {Everything.KIND: Everything}
HEADER = Header(protocol=9, kind=Everything.KIND, session=0xDEADBEEF, round_id=3, sender=4, recipient=SERVER)
SAMPLE = Everything(-5, 2.5, b"\x00\xff", "héllo", (1, -2, 2**62), {3: b"abc", -1: b""})

i64 = st.integers(-2**63, 2**63 - 1)


def patch(data: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# -- codec ------------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(i=i64, f=st.floats(allow_nan=False), b=st.binary(max_size=300), s=st.text(max_size=50),
       t=st.lists(i64, max_size=20).map(tuple), d=st.dictionaries(i64, st.binary(max_size=40), max_size=8),
       session=st.integers(0, 2**64 - 1), round_id=st.integers(0, 2**32 - 1),
       sender=st.integers(-1, 2**31 - 1), recipient=st.integers(-1, 2**31 - 1))
def test_codec_round_trips_every_field_type(i, f, b, s, t, d, session, round_id, sender, recipient):
    header = Header(9, Everything.KIND, session, round_id, sender, recipient)
    msg = Everything(i, f, b, s, t, d)
    data = encode(header, msg)
    assert peek_header(data) == header
    assert decode(data, KINDS, 9) == (header, msg)
    assert len(data) == HEADER_BYTES + 8 + 8 + 4 + len(b) + 4 + len(s.encode()) + 4 + 8 * len(t) + 4 + sum(
        12 + len(v) for v in d.values())


def test_codec_keeps_special_floats():
    for value in (math.inf, -math.inf, -0.0):
        _, back = decode(encode(HEADER, Everything(0, value, b"", "", (), {})), KINDS, 9)
        assert back.f == value and math.copysign(1, back.f) == math.copysign(1, value)
    _, back = decode(encode(HEADER, Everything(0, math.nan, b"", "", (), {})), KINDS, 9)
    assert math.isnan(back.f)


def test_encode_refuses_a_header_of_another_kind():
    with pytest.raises(ValueError, match="kind"):
        encode(Header(9, 1, 0, 0, 0, SERVER), SAMPLE)


GOOD = encode(HEADER, SAMPLE)


@pytest.mark.parametrize("name, data, match", [
    ("empty", b"", "truncated"),
    ("header only, cut", GOOD[:HEADER_BYTES - 1], "truncated"),
    ("truncated payload", GOOD[:-1], "payload length"),
    ("padded payload", GOOD + b"\x00", "payload length"),
    ("garbage", bytes(range(7, 107)), "magic"),
    ("wrong magic", b"XX" + GOOD[2:], "magic"),
    ("wrong version", patch(GOOD, 2, ">B", WIRE_VERSION + 1), "version"),
    ("reserved flags", patch(GOOD, 5, ">B", 1), "flags"),
    ("other protocol", patch(GOOD, 3, ">B", 8), "protocol"),
    ("unknown kind", patch(GOOD, 4, ">B", 99), "unknown message kind"),
])
def test_malformed_bytes_raise_message_error(name, data, match):
    with pytest.raises(MessageError, match=match):
        decode(data, KINDS, 9)


def test_lying_inner_length_names_the_field():
    # the bytes field b declares 2 bytes; claim 1000 while the header's payload length stays consistent
    bad = patch(GOOD, HEADER_BYTES + 16, ">I", 1000)
    with pytest.raises(MessageError, match="cannot decode") as err:
        decode(bad, KINDS, 9)
    assert err.value.field == "b" and err.value.client == 4 and err.value.round_id == 3


def test_trailing_bytes_inside_a_consistent_payload():
    extra = bytearray(GOOD + b"\x01\x02")
    struct.pack_into(">I", extra, 26, len(extra) - HEADER_BYTES)
    with pytest.raises(MessageError, match="trailing"):
        decode(bytes(extra), KINDS, 9)


def test_invalid_utf8_is_a_message_error():
    msg = Everything(0, 0.0, b"", "ab", (), {})
    data = bytearray(encode(HEADER, msg))
    s_at = HEADER_BYTES + 8 + 8 + 4 + 4
    data[s_at:s_at + 2] = b"\xff\xfe"
    with pytest.raises(MessageError) as err:
        decode(bytes(data), KINDS, 9)
    assert err.value.field == "s"


def test_peek_header_rejects_non_bytes():
    with pytest.raises(MessageError, match="expected bytes"):
        peek_header("not bytes")


# -- message checks of the machines, for every protocol ------------------------------------------------------

def xs_for(n=3, length=5, seed=0, bound=1.0):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-bound, bound, length) for c in range(n)}


def first_client_message(protocol: str, seed: int, **kw) -> bytes:
    """The first client -> server message of a (finished) one-round session."""
    seen = []

    def hook(header, data):
        if header.sender != SERVER and not seen:
            seen.append(data)
        return [data]

    Aggregator(protocol, [0, 1, 2], seed=seed).sum(xs_for(), bound=1.0, faults=Faults(in_flight=hook), **kw)
    return seen[0]


def rewriting(target, rewrite):
    """A hook that rewrites the first client message it sees (others pass)."""
    done = []

    def hook(header, data):
        if header.sender != SERVER and not done and target(header):
            done.append(True)
            return rewrite(data)
        return [data]

    return hook


def is_client(header):
    return True


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_replay_from_an_earlier_round_is_rejected(protocol):
    protocol_or_skip(protocol)
    agg = Aggregator(protocol, [0, 1, 2], seed=1)
    old = []

    def record(header, data):
        if header.sender != SERVER and not old:
            old.append(data)
        return [data]

    agg.sum(xs_for(), bound=1.0, faults=Faults(in_flight=record))
    with pytest.raises(ReplayError) as err:
        agg.sum(xs_for(), bound=1.0, faults=Faults(in_flight=rewriting(is_client, lambda d: [old[0], d])))
    assert err.value.round_id == 1 and err.value.client == peek_header(old[0]).sender


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_replay_from_another_session_is_rejected(protocol):
    protocol_or_skip(protocol)
    foreign = first_client_message(protocol, seed=2)
    agg = Aggregator(protocol, [0, 1, 2], seed=3)
    assert agg.session != peek_header(foreign).session
    with pytest.raises(ReplayError, match="session"):
        agg.sum(xs_for(), bound=1.0, faults=Faults(in_flight=rewriting(is_client, lambda d: [foreign, d])))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_duplicate_message_from_the_same_client_is_rejected(protocol):
    protocol_or_skip(protocol)
    with pytest.raises(ReplayError) as err:
        Aggregator(protocol, [0, 1, 2], seed=4).sum(
            xs_for(), bound=1.0, faults=Faults(in_flight=rewriting(is_client, lambda d: [d, d])))
    assert err.value.client == 0 and err.value.round_id == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_sender_is_rejected(protocol):
    protocol_or_skip(protocol)
    spoof = rewriting(is_client, lambda d: [patch(d, SENDER_AT, ">i", 77)])
    with pytest.raises(MessageError, match="not a client") as err:
        Aggregator(protocol, [0, 1, 2], seed=5).sum(xs_for(), bound=1.0, faults=Faults(in_flight=spoof))
    assert err.value.client == 77


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tampered_round_number_is_a_replay(protocol):
    protocol_or_skip(protocol)
    future = rewriting(is_client, lambda d: [patch(d, ROUND_AT, ">I", 9)])
    with pytest.raises(ReplayError):
        Aggregator(protocol, [0, 1, 2], seed=6).sum(xs_for(), bound=1.0, faults=Faults(in_flight=future))


def test_out_of_order_messages_raise_out_of_order_error():
    spec = RoundSpec(11, 1, (0, 1), 3, FixedPoint(1.0, 24, 2))
    proto = PlaintextProtocol()
    server, client = proto.server(spec), proto.client(0, spec, np.zeros(3))
    request = server.start()[0]
    client.receive(request)
    with pytest.raises(OutOfOrderError) as err:      # a Request (a server's message kind) sent to the server
        server.receive(client.send(SERVER, Request()))
    with pytest.raises(OutOfOrderError):              # a second request after the client answered
        client.receive(request)
    with pytest.raises(OutOfOrderError):              # an Input (a client's message kind) sent to a client
        proto.client(1, spec, np.zeros(3)).receive(client.send(1, Input(b"")))
    assert err.value.round_id == 1


def test_message_for_another_recipient_is_rejected():
    spec = RoundSpec(11, 1, (0, 1), 3, FixedPoint(1.0, 24, 2))
    proto = PlaintextProtocol()
    to_client_1 = proto.server(spec).start()[1]
    with pytest.raises(MessageError, match="addressed to 1"):
        proto.client(0, spec, np.zeros(3)).receive(to_client_1)


def test_rejected_message_leaves_the_server_unchanged():
    spec = RoundSpec(11, 1, (0, 1), 3, FixedPoint(1.0, 24, 2))
    proto = PlaintextProtocol()
    server = proto.server(spec)
    requests = server.start()
    good = proto.client(0, spec, np.array([0.5, 0.25, -1.0])).receive(requests[0])[0]
    with pytest.raises(MessageError):
        server.receive(good[:-1])
    server.receive(good)
    server.receive(proto.client(1, spec, np.array([0.5, 0.0, 0.0])).receive(requests[1])[0])
    assert np.array_equal(server.result, [1.0, 0.25, -1.0]) and server.contributors == (0, 1)


# -- input checks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, np.nan, 0.0, 0.0, 0.0]), "non-finite"),
    (np.array([0.0, 0.0, np.inf, 0.0, 0.0]), "non-finite"),
    (np.array([0.0, 0.0, 0.0, -np.inf, 0.0]), "non-finite"),
    (np.array([0.0, 0.0, 0.0, 0.0, 1.5]), "outside"),
    (np.zeros(4), "shape"),
    (np.zeros(6), "shape"),
    (np.zeros((5, 1)), "shape"),
    (np.array(["a"] * 5), "numeric|shape|could not"),
])
def test_bad_input_raises_input_error_naming_client_and_round(protocol, bad, match):
    protocol_or_skip(protocol)
    agg = Aggregator(protocol, [0, 1, 2], seed=7)
    agg.sum(xs_for(), bound=1.0)
    xs = xs_for()
    xs[2] = bad
    with pytest.raises(InputError, match=match) as err:
        agg.sum(xs, bound=1.0)
    assert err.value.client == 2 and err.value.round_id == 2
    assert "client 2" in str(err.value) and "round 2" in str(err.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clip_true_clips_to_the_bound(protocol):
    protocol_or_skip(protocol)
    xs = {0: np.array([3.0, -0.5, -9.0]), 1: np.array([0.25, 2.0, -0.25]), 2: np.array([0.5, 0.5, 0.5])}
    res = Aggregator(protocol, [0, 1, 2], seed=8).sum(xs, bound=1.0, clip=True)
    assert np.array_equal(res.total, [1.75, 1.0, -0.75])


def test_aggregator_rejects_unknown_clients_empty_rounds_and_bad_shapes():
    agg = Aggregator("plaintext", [0, 1], seed=0)
    with pytest.raises(InputError, match="not a client") as err:
        agg.sum({0: np.zeros(2), 5: np.zeros(2)}, bound=1.0)
    assert err.value.client == 5 and err.value.round_id == 1
    with pytest.raises(InputError, match="no inputs"):
        agg.sum({}, bound=1.0)
    with pytest.raises(InputError, match="shape") as err:
        agg.sum({0: np.zeros(2), 1: np.zeros(3)}, bound=1.0)
    assert err.value.client == 1
    with pytest.raises(InputError):
        agg.sum({0: np.zeros(0), 1: np.zeros(0)}, bound=1.0)
    assert agg.round_id == 0  # nothing above started a round


def test_unknown_protocol_name():
    with pytest.raises(ValueError, match="unknown protocol"):
        Aggregator("rot13", [0, 1])


# -- encoding ---------------------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(bound=st.floats(1e-3, 1e6), frac_bits=st.integers(0, 30), n=st.integers(1, 1000), seed=st.integers(0, 99))
def test_fixed_point_ring_round_trip_and_headroom(bound, frac_bits, n, seed):
    assume(n * math.floor(bound * 2.0 ** frac_bits + 0.5) <= 2 ** 53)   # beyond: refused (test_hardening)
    enc = FixedPoint(bound, frac_bits, n)
    rng = np.random.default_rng(seed)
    q = rng.integers(-enc.max_abs_int, enc.max_abs_int + 1, size=(n, 4))
    q[0, 0] = enc.max_abs_int
    assert np.array_equal(enc.unpack(enc.pack(enc.to_ring(q[0])), 4), enc.to_ring(q[0]))
    total = np.zeros(4, dtype=np.uint64)
    for row in q:
        total += enc.to_ring(row)
    assert np.array_equal(enc.from_ring(total), q.sum(axis=0))  # the sum of n inputs never wraps
    assert (n * enc.max_abs_int).bit_length() + 1 == enc.ring_bits   # no bit more than the sum needs


def test_fixed_point_rejects_what_does_not_fit():
    with pytest.raises(ValueError, match="2\\^53"):
        FixedPoint(1e12, 30, 100)
    with pytest.raises(ValueError):
        FixedPoint(0.0, 24, 3)
    with pytest.raises(ValueError):
        FixedPoint(1.0, 24, 0)
    with pytest.raises(ValueError, match="expected"):
        FixedPoint(1.0, 24, 3).unpack(b"\x00" * 8, 2)     # 2 values of 27 bits are 7 bytes
    with pytest.raises(ValueError, match="padding"):
        FixedPoint(1.0, 24, 3).unpack(b"\x00" * 6 + b"\x40", 2)   # bit 54 set, after the 54 bits of the values
    with pytest.raises(ValueError, match="sum_bound"):
        FixedPoint(1.0, 24, 3, sum_bound=0.0)


@pytest.mark.parametrize("k", list(range(2, 56)))
def test_pack_puts_k_bit_values_back_to_back(k):
    """Value i occupies bits i k .. i k + k - 1 of the little-endian byte string (checked against Python ints), for
    lengths around the 64-value groups of ``pack``."""
    enc = FixedPoint(2.0 ** (k - 2), 0, 1)
    assert enc.ring_bits == k
    rng = np.random.default_rng(k)
    for length in (1, 7, 63, 64, 65, 200):
        r = rng.integers(0, 2 ** 63, size=length, dtype=np.uint64) & enc.ring_mask
        data = enc.pack(r)
        assert len(data) == enc.packed_bytes(length) == math.ceil(length * k / 8)
        assert int.from_bytes(data, "little") == sum(int(v) << (i * k) for i, v in enumerate(r))
        assert np.array_equal(enc.unpack(data, length), r)


def test_sum_bound_sizes_the_ring_from_what_is_summed():
    # 100 inputs of |x| <= 16 need 4 + 24 + 7 bits + sign; a sum known to stay within 16 (+ rounding) needs 30
    assert FixedPoint(16.0, 24, 100).ring_bits == 36
    enc = FixedPoint(16.0, 24, 100, sum_bound=16.0 + 100 * 2.0 ** -25)
    assert enc.ring_bits == 30 and enc.max_abs_sum == 2 ** 28 + 50
    assert FixedPoint(2.0 ** 19, 0, 200, sum_bound=2.0 ** 19 - 1).ring_bits == 20   # the DP modulus 2^20


# -- transport, faults and reports --------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_report_bytes_are_the_lengths_of_the_messages_sent(protocol):
    protocol_or_skip(protocol)
    up, down = {}, {}

    def count(header, data):
        if header.sender == SERVER:
            down[header.recipient] = down.get(header.recipient, 0) + len(data)
        else:
            up[header.sender] = up.get(header.sender, 0) + len(data)
        return [data]

    agg = Aggregator(protocol, [0, 1, 2, 3], seed=9)
    res = agg.sum(xs_for(4, 300), bound=1.0, faults=Faults(in_flight=count))
    report = res.report
    assert dict(report.bytes_up) == up and dict(report.bytes_down) == down
    assert report.total_bytes == sum(up.values()) + sum(down.values())
    assert report.server_bytes_in == sum(up.values()) and report.server_bytes_out == sum(down.values())
    assert set(report.server_seconds) and all(s >= 0 for s in report.server_seconds.values())
    protocol_object = agg.protocol
    for cid in range(4):
        assert set(report.client_seconds[cid]) <= set(protocol_object.CLIENT_PHASES)
    assert report.dropped == () and report.protocol == protocol and report.length == 300
    d = report.to_dict()
    assert d["total_bytes"] == report.total_bytes and d["bytes_up"] == {str(k): v for k, v in sorted(up.items())}
    assert agg.totals.total_bytes == report.total_bytes and agg.totals.rounds == 1 and agg.totals.values == 300


def test_plaintext_bytes_are_header_plus_packed_values():
    xs = xs_for(3, 1000)
    res = Aggregator("plaintext", [0, 1, 2], seed=0).sum(xs, bound=1.0)
    enc = FixedPoint(1.0, 24, 3)
    for cid in range(3):   # 1000 values of k = 27 bits back to back: 3,375 bytes
        assert res.report.bytes_up[cid] == HEADER_BYTES + 4 + enc.packed_bytes(1000) == HEADER_BYTES + 4 + 3375
        assert res.report.bytes_down[cid] == HEADER_BYTES


def test_totals_accumulate_over_rounds_with_increasing_round_ids():
    agg = Aggregator("plaintext", [0, 1, 2], seed=0)
    r1 = agg.sum(xs_for(3, 10), bound=1.0)
    r2 = agg.sum({0: np.ones(4), 2: np.ones(4)}, bound=1.0)
    assert (r1.report.round_id, r2.report.round_id) == (1, 2) and agg.reports == [r1.report, r2.report]
    assert r2.contributors == (0, 2) and r2.report.clients == (0, 2)
    assert agg.totals.rounds == 2 and agg.totals.values == 14
    assert agg.totals.total_bytes == r1.report.total_bytes + r2.report.total_bytes


def test_unknown_dropout_phase_is_rejected():
    with pytest.raises(ValueError, match="unknown phase"):
        Aggregator("plaintext", [0, 1], seed=0).sum(xs_for(2), bound=1.0, faults=Faults(drop={0: "nap"}))


def test_in_flight_hook_can_drop_a_message():
    drop_first_input = rewriting(is_client, lambda d: [])
    res = Aggregator("plaintext", [0, 1, 2], seed=0).sum(xs_for(), bound=1.0,
                                                         faults=Faults(in_flight=drop_first_input))
    assert res.contributors == (1, 2) and res.report.dropped == (0,)


class _NeverDone(SecureSumProtocol):
    """A broken protocol whose server never finishes: the transport must give up."""

    NAME = "never"
    CLIENT_PHASES = ("input",)
    PHASE_OF_KIND = {}

    class Server(ServerMachine):
        PROTOCOL, KINDS = 99, {}

        def start(self):
            return []

        def receive(self, data):
            return []

        def on_timeout(self):
            self.timeouts = getattr(self, "timeouts", 0) + 1
            return []

    class Client(ClientMachine):
        PROTOCOL, KINDS = 99, {}

        def receive(self, data):
            return []

    def server(self, spec):
        return self.Server(spec)

    def client(self, cid, spec, vector):
        return self.Client(cid, spec, vector)


def test_a_stalled_round_raises_instead_of_spinning():
    with pytest.raises(SecAggError, match="stalled") as err:
        secure_sum(_NeverDone(), xs_for(3), bound=1.0)
    assert err.value.round_id == 1


# -- weighted mean --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_weighted_mean(protocol):
    protocol_or_skip(protocol)
    rng = np.random.default_rng(10)
    vectors = {c: rng.uniform(-2, 2, 50) for c in range(5)}
    weights = {0: 10, 1: 0, 2: 250, 3: 7, 4: 1000}
    agg = Aggregator(protocol, range(5), seed=10)
    mean, total_weight, res = agg.weighted_mean(vectors, weights, bound=2.0, weight_bound=1000)
    want = sum(weights[c] * vectors[c] for c in vectors) / sum(weights.values())
    assert total_weight == 1267 and res.contributors == tuple(range(5))
    # the inputs are [w x / T, w / T] with T = 2048 (the power of two above 1267): each w x / T is rounded once
    # (<= 2^-25), each w / T is on the grid: the mean is off by at most 5 x 2^-25 x T / 1267
    assert np.max(np.abs(mean - want)) <= 5 * 2.0 ** -25 * 2048 / 1267 + 1e-15
    # the ring holds the normalised sum (|.| <= 2 + rounding): 2 + 24 bits + sign, whatever n; 50 values + the weight
    assert res.report.bytes_up[0] >= ((51 * 27 + 7) // 8) and FixedPoint(2.0, 24, 5, 2.0 + 5 * 2.0 ** -25).ring_bits == 27


def test_weighted_mean_with_a_public_weight_total():
    vectors = {0: np.full(3, 1.0), 1: np.full(3, -0.5)}
    agg = Aggregator("plaintext", [0, 1], seed=0)
    mean, total_weight, res = agg.weighted_mean(vectors, {0: 3, 1: 1}, bound=1.0, weight_bound=4, weight_total=8.0)
    assert total_weight == 4 and np.allclose(mean, (3 - 0.5) / 4, atol=2 * 2.0 ** -25 * 8 / 4)
    with pytest.raises(InputError, match="sum to more") as err:
        agg.weighted_mean(vectors, {0: 3, 1: 1}, bound=1.0, weight_bound=4, weight_total=2.0)
    assert err.value.field == "weight_total" and "3" not in str(err.value)   # no weight in the message
    with pytest.raises(InputError, match="power of two"):
        agg.weighted_mean(vectors, {0: 3, 1: 1}, bound=1.0, weight_bound=4, weight_total=6.0)


def test_weighted_mean_rejects_bad_weights_and_zero_total():
    agg = Aggregator("plaintext", [0, 1], seed=0)
    with pytest.raises(InputError, match="weight") as err:
        agg.weighted_mean({0: np.ones(2), 1: np.ones(2)}, {0: 1, 1: 11}, bound=1.0, weight_bound=10)
    assert err.value.client == 1 and err.value.field == "weight"
    with pytest.raises(InputError, match="total weight"):
        agg.weighted_mean({0: np.ones(2), 1: np.ones(2)}, {0: 0, 1: 0}, bound=1.0, weight_bound=10)


def test_weighted_mean_over_survivors_only():
    vectors = {0: np.full(3, 1.0), 1: np.full(3, -1.0), 2: np.full(3, 0.5)}
    weights = {0: 1, 1: 3, 2: 2}
    mean, total_weight, res = Aggregator("plaintext", [0, 1, 2], seed=0).weighted_mean(
        vectors, weights, bound=1.0, weight_bound=3, faults=Faults(drop={1: "input"}))
    assert res.contributors == (0, 2) and total_weight == 3
    assert np.allclose(mean, (1.0 + 2 * 0.5) / 3, atol=1e-7)


def test_session_fault_plan_applies_to_sums_without_their_own_faults():
    plan = {2: Faults(drop={1: "input"})}
    agg = Aggregator("plaintext", range(3), seed=0, fault_plan=plan.get)
    inputs = {c: np.full(4, float(c + 1)) for c in range(3)}
    first, second = agg.sum(inputs, bound=8.0), agg.sum(inputs, bound=8.0)
    explicit = agg.sum(inputs, bound=8.0, faults=Faults(drop={2: "input"}))  # round 3: its own plan wins
    assert first.contributors == (0, 1, 2) and np.array_equal(first.total, np.full(4, 6.0))
    assert second.contributors == (0, 2) and np.array_equal(second.total, np.full(4, 4.0))
    assert explicit.contributors == (0, 1)
