"""Bad, replayed, tampered and out-of-order messages, and the honest client's refusals
(protocols/masking.md §Errors and §Honest client checks).

Most tests drive one round by hand: at a chosen message they first deliver a corrupted copy, which must
be rejected with the documented error, then the original, after which the round must still finish with
the exact sum (a rejected message is never half-applied).
"""

import dataclasses
import os
from collections import deque

import numpy as np
import pytest

from secure_fal.secagg import Aggregator, Faults, secure_sum
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.errors import (DecryptionError, DropoutError, InputError, MessageError, OutOfOrderError,
                                      ReplayError)
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.masking.messages import (KINDS, PROTOCOL_ID, Advertise, AdvertiseRequest, MaskedInput,
                                                PeerKeys, RelayedShares, Shares, Unmask, UnmaskRequest)
from secure_fal.secagg.messages import SERVER, decode, encode, peek_header
from secure_fal.secagg.plaintext import PlaintextProtocol
from secure_fal.secagg.masking.shamir import P

SESSION = 0x0123456789ABCDEF


class Round:
    """One masking round driven by hand, first in first out."""

    def __init__(self, n=5, length=16, protocol=None, round_id=1):
        self.protocol = protocol or MaskingProtocol()
        rng = np.random.default_rng(round_id)
        self.xs = {c: rng.uniform(-1, 1, length) for c in range(n)}
        self.spec = RoundSpec(SESSION, round_id, tuple(range(n)), length, FixedPoint(1.0, 24, n))
        self.server = self.protocol.server(self.spec)
        self.clients = {c: self.protocol.client(c, self.spec, x) for c, x in self.xs.items()}
        self.queue = deque(self.server.start())
        self.silenced: set[int] = set()   # clients whose messages are discarded (dropped out)

    def machine(self, data):
        recipient = peek_header(data).recipient
        return self.server if recipient == SERVER else self.clients[recipient]

    def deliver(self, data):
        self.queue.extend(self.machine(data).receive(data))

    def step(self):
        data = self.queue.popleft()
        if peek_header(data).sender in self.silenced:
            return
        self.deliver(data)

    def until(self, kind, sender=None, recipient=None):
        """Step until a message of ``kind`` is at the head of the queue; pop and return it."""
        while True:
            if not self.queue:
                assert not self.server.done, f"no {kind.__name__} left to intercept"
                self.queue.extend(self.server.on_timeout())
            h = peek_header(self.queue[0])
            if (h.kind == kind.KIND and (sender is None or h.sender == sender)
                    and (recipient is None or h.recipient == recipient) and h.sender not in self.silenced):
                return self.queue.popleft()
            self.step()

    def finish(self):
        while not self.server.done:
            if self.queue:
                self.step()
            else:
                self.queue.extend(self.server.on_timeout())
        want = tuple(c for c in self.server.spec.clients if c in self.server.masked)
        assert self.server.contributors == want
        plain = secure_sum(PlaintextProtocol(), {c: self.xs[c] for c in want}, bound=1.0).total
        assert np.array_equal(self.server.result, plain)


def reheader(data, **changes):
    header, msg = decode(data, KINDS, PROTOCOL_ID)
    return encode(dataclasses.replace(header, **changes), msg)


def repayload(data, **changes):
    header, msg = decode(data, KINDS, PROTOCOL_ID)
    return encode(header, dataclasses.replace(msg, **changes))


def payload(data):
    return decode(data, KINDS, PROTOCOL_ID)[1]


def patch(data, offset, value):
    raw = bytearray(data)
    raw[offset] = value
    return bytes(raw)


# -- every message kind x every header-level corruption -------------------------------------------------

ALL_KINDS = [AdvertiseRequest, Advertise, PeerKeys, Shares, RelayedShares, MaskedInput, UnmaskRequest, Unmask]
HEADER_FAULTS = {
    "truncated": (lambda d: d[:-1], MessageError),
    "payload cut": (lambda d: d[:30] if len(d) > 30 else d[:29], MessageError),
    "padded": (lambda d: d + b"\0", MessageError),
    "garbage": (lambda d: os.urandom(len(d)), MessageError),
    "not bytes": (lambda d: list(d), MessageError),
    "bad magic": (lambda d: b"XX" + d[2:], MessageError),
    "wire version": (lambda d: patch(d, 2, 9), MessageError),
    "other protocol": (lambda d: patch(d, 3, 1), MessageError),
    "unknown kind": (lambda d: patch(d, 4, 99), MessageError),
    "reserved flags": (lambda d: patch(d, 5, 1), MessageError),
    "earlier round": (lambda d: reheader(d, round_id=0), ReplayError),
    "later round": (lambda d: reheader(d, round_id=2), ReplayError),
    "other session": (lambda d: reheader(d, session=SESSION ^ 1), ReplayError),
    "misaddressed": (lambda d: reheader(d, recipient=(peek_header(d).recipient + 1) % 5
                                        if peek_header(d).recipient != SERVER else 3), MessageError),
}


@pytest.mark.parametrize("fault", list(HEADER_FAULTS))
@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_corrupted_message_is_rejected_and_the_round_still_finishes(kind, fault):
    # masking.md §Errors: rejected with the documented error; the machine keeps its state
    corrupt, error = HEADER_FAULTS[fault]
    r = Round()
    data = r.until(kind, sender=None if kind.KIND % 2 else 2)   # even kinds are client -> server
    target = r.machine(data)
    with pytest.raises(error):
        target.receive(corrupt(data))
    r.deliver(data)
    r.finish()


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.__name__)
def test_a_repeated_message_is_rejected(kind):
    # masking.md §Errors: a second copy is a ReplayError while its phase is open, OutOfOrderError after
    r = Round()
    data = r.until(kind, sender=None if kind.KIND % 2 else 2)
    r.deliver(data)
    with pytest.raises((ReplayError, OutOfOrderError)):
        r.machine(data).receive(data)
    r.finish()


def test_second_message_of_a_client_in_an_open_phase_is_a_replay():
    r = Round()
    data = r.until(Advertise, sender=0)
    r.deliver(data)
    with pytest.raises(ReplayError, match="second Advertise") as err:
        r.server.receive(data)
    assert err.value.client == 0 and err.value.round_id == 1
    r.finish()


def test_messages_from_strangers_and_from_clients_that_missed_a_phase():
    r = Round()
    data = r.until(Advertise, sender=1)
    with pytest.raises(MessageError, match="not a client of this round") as err:
        r.server.receive(reheader(data, sender=77))
    assert err.value.client == 77
    r.silenced.add(1)   # client 1 never advertises ...
    shares = r.until(Shares, sender=0)
    # ... so a Shares message in its name is out of order
    with pytest.raises(OutOfOrderError, match="did not complete phase 'advertise'"):
        r.server.receive(reheader(shares, sender=1))
    r.deliver(shares)
    r.finish()


@pytest.mark.parametrize("early", [Shares, MaskedInput, Unmask])
def test_messages_of_a_later_phase_are_out_of_order_at_the_server(early):
    r = Round()
    r.until(Advertise, sender=0)
    forged = r.clients[0].send(SERVER, early({}, b"") if early is Shares else
                               early(b"") if early is MaskedInput else early({}, {}))
    with pytest.raises(OutOfOrderError, match="not accepted in phase 'advertise'"):
        r.server.receive(forged)


@pytest.mark.parametrize("early", [PeerKeys, RelayedShares, UnmaskRequest])
def test_messages_of_a_later_phase_are_out_of_order_at_a_client(early):
    r = Round()
    data = r.until(AdvertiseRequest, recipient=0)
    forged = r.server.send(0, early({}) if early is not UnmaskRequest else early((0,), (), {}))
    with pytest.raises(OutOfOrderError, match="not accepted in phase 'advertise'"):
        r.clients[0].receive(forged)
    with pytest.raises(MessageError, match="from the server only"):
        r.clients[0].receive(reheader(data, sender=3))
    r.deliver(data)
    r.finish()


def test_done_machines_accept_nothing():
    r = Round()
    last = r.until(Unmask, sender=4)
    r.deliver(last)
    assert r.server.done
    with pytest.raises(OutOfOrderError):
        r.server.receive(last)
    assert r.server.on_timeout() == []


# -- content checks at the server -----------------------------------------------------------------------

def _drop_one(d):
    return dict(list(d.items())[1:])


SERVER_CONTENT_FAULTS = [
    (Shares, lambda m: {"ciphertexts": _drop_one(m.ciphertexts)}, MessageError, "ciphertexts"),
    (Shares, lambda m: {"ciphertexts": {**m.ciphertexts, 2: bytes(82)}}, MessageError, "ciphertexts"),
    (Shares, lambda m: {"ciphertexts": {v: c[:-1] for v, c in m.ciphertexts.items()}}, MessageError,
     "ciphertexts"),
    (MaskedInput, lambda m: {"values": m.values[:-4]}, MessageError, "values"),
    (MaskedInput, lambda m: {"values": m.values + b"\0"}, MessageError, "values"),
    (MaskedInput, lambda m: {"values": b""}, MessageError, "values"),
    (Unmask, lambda m: {"b_shares": _drop_one(m.b_shares)}, MessageError, "b_shares"),
    (Unmask, lambda m: {"s_shares": {0: bytes(33)}}, MessageError, "s_shares"),
    (Unmask, lambda m: {"b_shares": {v: s[1:] for v, s in m.b_shares.items()}}, MessageError, "b_shares"),
    (Unmask, lambda m: {"b_shares": {v: P.to_bytes(33, "big") for v in m.b_shares}}, MessageError, "b_shares"),
]


@pytest.mark.parametrize("kind,change,error,field", SERVER_CONTENT_FAULTS)
def test_server_rejects_bad_content_and_keeps_its_state(kind, change, error, field):
    r = Round()
    data = r.until(kind, sender=2)
    with pytest.raises(error) as err:
        r.server.receive(repayload(data, **change(payload(data))))
    assert err.value.client == 2 and err.value.round_id == 1 and err.value.field == field
    r.deliver(data)
    r.finish()


@pytest.mark.parametrize("change,field", [
    (lambda m: {"c_pk": m.c_pk[:31]}, "c_pk"), (lambda m: {"s_pk": m.s_pk + b"\0"}, "s_pk"),
    (lambda m: {"c_pk": bytes(32)}, "c_pk"), (lambda m: {"s_pk": (1).to_bytes(32, "little")}, "s_pk"),
    (lambda m: {"s_pk": (2**255 - 19 + 9).to_bytes(32, "little")}, "s_pk"),   # non-canonical 9
])
def test_a_refused_advertised_key_excludes_its_client_not_the_round(change, field):
    # masking.md §Errors: short, low-order or non-canonical keys are refused at Advertise; the round goes on
    r = Round()
    data = r.until(Advertise, sender=2)
    r.server.receive(repayload(data, **change(payload(data))))
    refused = r.server.excluded[2]
    assert (refused.client, refused.round_id, refused.field) == (2, 1, field)
    with pytest.raises(ReplayError):
        r.server.receive(data)
    r.silenced.add(2)
    r.finish()
    assert 2 not in r.server.contributors and len(r.server.contributors) == 4


def _deliver_all_but_last_unmask(r, last):
    while True:
        data = r.until(Unmask)
        if peek_header(data).sender == last:
            return data
        r.deliver(data)


def test_an_altered_revealed_share_is_outvoted_and_its_holder_named():
    # masking.md §Verifiable reconstruction: with t + 1 shares of b_u a consistent t-subset whose secret matches
    # the commitment is found; the sum is exact and the holder whose share is off is named
    r = Round()   # n = 5, t = 4: five holders of every self-mask seed
    last = _deliver_all_but_last_unmask(r, last=4)
    msg = payload(last)
    bad = dict(msg.b_shares)
    bad[0] = ((int.from_bytes(bad[0], "big") + 1) % P).to_bytes(33, "big")
    r.server.receive(repayload(last, b_shares=bad))
    assert r.server.faulty == {4: (0,)}
    r.finish()


def test_altered_key_share_is_detected_against_the_advertised_public_key():
    r = Round()
    r.until(MaskedInput, sender=2)   # taken off the wire: client 2 drops after sharing, so the server must
    r.silenced.add(2)                # recover s_sk_2 from exactly t = 4 shares
    last = _deliver_all_but_last_unmask(r, last=4)
    msg = payload(last)
    assert set(msg.s_shares) == {2}
    bad = {2: ((int.from_bytes(msg.s_shares[2], "big") + 1) % P).to_bytes(33, "big")}
    with pytest.raises(MessageError, match="cannot reconstruct a verified mask key") as err:
        r.server.receive(repayload(last, s_shares=bad))
    assert err.value.client == 2 and err.value.field == "s_shares"
    r.deliver(last)
    r.finish()
    assert r.server.contributors == (0, 1, 3, 4)


# -- content checks at the clients ----------------------------------------------------------------------

def test_tampered_share_ciphertext_fails_authentication_naming_sender_receiver_and_round():
    # masking.md §Errors: AES-GCM failure -> DecryptionError(client=sender, field='ciphertexts')
    r = Round()
    data = r.until(RelayedShares, recipient=3)
    cts = dict(payload(data).ciphertexts)
    cts[1] = patch(cts[1], 5, cts[1][5] ^ 0x01)
    with pytest.raises(DecryptionError, match="from client 1 to client 3 in round 1") as err:
        r.clients[3].receive(repayload(data, ciphertexts=cts))
    assert err.value.client == 1 and err.value.round_id == 1 and err.value.field == "ciphertexts"
    r.deliver(data)
    r.finish()


def test_a_ciphertext_sealed_for_another_client_does_not_open():
    # masking.md §Keys: the associated data binds sender and recipient
    r = Round()
    shares = r.until(Shares, sender=1)
    r.deliver(shares)
    data = r.until(RelayedShares, recipient=3)
    cts = dict(payload(data).ciphertexts)
    cts[1] = payload(shares).ciphertexts[2]   # client 1's ciphertext for client 2, relayed to client 3 instead
    with pytest.raises(DecryptionError, match="from client 1 to client 3"):
        r.clients[3].receive(repayload(data, ciphertexts=cts))
    r.deliver(data)
    r.finish()


def test_shares_from_another_round_do_not_open():
    # the AES-GCM key and associated data bind session and round: a ciphertext replayed into a round
    # with the same parties fails authentication
    old = Round(round_id=1)
    old_ct = payload(old.until(RelayedShares, recipient=3)).ciphertexts[1]
    r = Round(round_id=2)
    data = r.until(RelayedShares, recipient=3)
    cts = {**payload(data).ciphertexts, 1: old_ct}
    with pytest.raises(DecryptionError, match="from client 1 to client 3 in round 2"):
        r.clients[3].receive(repayload(data, ciphertexts=cts))
    r.deliver(data)
    r.finish()


CLIENT_CONTENT_FAULTS = [
    (PeerKeys, lambda m: {"keys": {**m.keys, 0: m.keys[1]}}, MessageError, "keys"),              # itself
    (PeerKeys, lambda m: {"keys": {**m.keys, 9: m.keys[1]}}, MessageError, "keys"),              # not a client
    (PeerKeys, lambda m: {"keys": {**m.keys, 1: m.keys[1][:63]}}, MessageError, "keys"),
    (PeerKeys, lambda m: {"keys": {**m.keys, 1: bytes(32) + m.keys[1][32:]}}, MessageError, "c_pk"),
    (PeerKeys, lambda m: {"keys": {**m.keys, 1: m.keys[1][:32] + bytes(32)}}, MessageError, "s_pk"),
    (PeerKeys, lambda m: {"keys": {1: m.keys[1]}}, DropoutError, "keys"),
    (RelayedShares, lambda m: {"ciphertexts": {**m.ciphertexts, 9: bytes(82)}}, MessageError, "ciphertexts"),
    (RelayedShares, lambda m: {"ciphertexts": {v: c[:-1] for v, c in m.ciphertexts.items()}}, DecryptionError,
     "ciphertexts"),
    (RelayedShares, lambda m: {"ciphertexts": {1: m.ciphertexts[1]}}, DropoutError, "ciphertexts"),
]


@pytest.mark.parametrize("kind,change,error,field", CLIENT_CONTENT_FAULTS)
def test_client_rejects_bad_content_and_keeps_its_state(kind, change, error, field):
    r = Round()
    data = r.until(kind, recipient=0)
    with pytest.raises(error) as err:
        r.clients[0].receive(repayload(data, **change(payload(data))))
    assert err.value.round_id == 1 and err.value.field == field
    assert r.clients[0].phase == {PeerKeys: "share", RelayedShares: "masked_input"}[kind]
    r.deliver(data)
    r.finish()


def test_secagg_plus_client_rejects_keys_of_non_neighbours():
    r = Round(n=12, protocol=MaskingProtocol(neighbours=2))
    stranger = next(c for c in range(12) if c != 0 and c not in r.clients[0].graph.of(0))
    data = r.until(PeerKeys, recipient=0)
    keys = payload(data).keys
    with pytest.raises(MessageError, match="not neighbours") as err:
        r.clients[0].receive(repayload(data, keys={**keys, stranger: next(iter(keys.values()))}))
    assert err.value.client == stranger
    r.deliver(data)
    r.finish()


# -- the honest client's refusals in the unmask phase ---------------------------------------------------

REFUSALS = [
    ((0, 1, 2, 3, 4), (1,), MessageError, "both as survivor and as dropped"),
    ((1, 2, 3, 4), (), MessageError, "not listed as a survivor"),
    ((1, 2, 3, 4), (0,), MessageError, "not listed as a survivor"),
    ((0, 1, 2, 3, 4, 7), (), MessageError, "holds no shares of client 7"),
    ((0, 1, 2, 3), (7,), MessageError, "holds no shares of client 7"),
    ((0, 0, 1, 2, 3), (), MessageError, "listed twice"),
    ((0, 1, 2), (), DropoutError, "only 3 survivors"),
    ((0, 1, 2), (3, 4), DropoutError, "only 3 survivors"),
]


@pytest.mark.parametrize("survivors,dropped,error,match", REFUSALS)
def test_honest_client_refuses_requests_that_could_reveal_its_input(survivors, dropped, error, match):
    # masking.md §Honest client checks
    r = Round()
    data = r.until(UnmaskRequest, recipient=0)
    with pytest.raises(error, match=match):
        r.clients[0].receive(r.server.send(0, UnmaskRequest(survivors, dropped, {})))
    assert r.clients[0].phase == "unmask"
    r.deliver(data)
    r.finish()


def test_client_answers_one_unmask_request_only():
    # masking.md §Honest client checks: once it revealed b-shares, no later request gets s_sk-shares
    r = Round()
    data = r.until(UnmaskRequest, recipient=0)
    r.deliver(data)
    with pytest.raises(OutOfOrderError):
        r.clients[0].receive(r.server.send(0, UnmaskRequest((0, 2, 3, 4), (1,), {})))


def test_secagg_plus_client_refuses_to_reveal_shares_of_non_neighbours():
    r = Round(n=12, protocol=MaskingProtocol(neighbours=2))
    g = r.clients[0].graph
    stranger = next(c for c in range(12) if c != 0 and c not in g.of(0))
    data = r.until(UnmaskRequest, recipient=0)
    asked = payload(data)
    with pytest.raises(MessageError, match=f"holds no shares of client {stranger}"):
        r.clients[0].receive(r.server.send(0, UnmaskRequest(asked.survivors + (stranger,), (), {})))
    r.deliver(data)
    r.finish()


# -- faults injected by the transport -------------------------------------------------------------------

def _tamper_shares_of(sender):
    def hook(header, data):
        if header.kind == Shares.KIND and header.sender == sender:
            cts = {v: patch(c, 0, c[0] ^ 0x80) for v, c in payload(data).ciphertexts.items()}
            return [repayload(data, ciphertexts=cts)]
        return [data]
    return hook


def test_in_flight_tampering_of_shares_stops_the_round():
    xs = {c: np.ones(8) for c in range(4)}
    agg = Aggregator(MaskingProtocol(), range(4), seed=1)
    with pytest.raises(DecryptionError, match="from client 2 to client 0") as err:
        agg.sum(xs, bound=1.0, faults=Faults(in_flight=_tamper_shares_of(2)))
    assert err.value.client == 2


def test_in_flight_replay_of_an_earlier_round_is_rejected():
    agg = Aggregator(MaskingProtocol(), range(4), seed=2)
    xs = {c: np.full(8, 0.5) for c in range(4)}
    recorded = []
    agg.sum(xs, bound=1.0, faults=Faults(in_flight=lambda h, d: recorded.append(d) or [d]))
    old_advertise = next(d for d in recorded if peek_header(d).kind == Advertise.KIND)

    def replay(header, data):
        return [old_advertise, data] if header.kind == Advertise.KIND and header.sender == 0 else [data]

    with pytest.raises(ReplayError, match="round 1, this is session"):
        agg.sum(xs, bound=1.0, faults=Faults(in_flight=replay))


@pytest.mark.parametrize("mangle", [lambda d: d[:len(d) // 2], lambda d: b"\x00" * 40, lambda d: d[:29]])
def test_in_flight_garbage_is_a_message_error(mangle):
    def hook(header, data):
        return [mangle(data)] if header.kind == MaskedInput.KIND and header.sender == 1 else [data]
    with pytest.raises(MessageError):
        Aggregator(MaskingProtocol(), range(3)).sum({c: np.zeros(4) for c in range(3)}, bound=1.0,
                                                    faults=Faults(in_flight=hook))


def test_in_flight_reordering_across_phases_is_out_of_order():
    held = []

    def hook(header, data):   # hold client 1's Advertise back and deliver it after the next message
        if header.kind == Advertise.KIND and header.sender == 1 and not held:
            held.append(data)
            return []
        if held and header.kind == Shares.KIND:
            return [data, held.pop()]
        return [data]

    with pytest.raises(OutOfOrderError, match="Advertise not accepted in phase 'share'"):
        Aggregator(MaskingProtocol(threshold=2), range(3)).sum({c: np.zeros(4) for c in range(3)}, bound=1.0,
                                                               faults=Faults(in_flight=hook))


# -- bad inputs (checked by ClientMachine before anything is sent) --------------------------------------

@pytest.mark.parametrize("cid,vector,field,match", [
    (1, np.zeros(15), "vector", "shape"),
    (1, np.zeros((16, 1)), "vector", "shape"),
    (1, np.full(16, np.nan), "vector", "non-finite"),
    (1, np.full(16, np.inf), "vector", "non-finite"),
    (1, np.full(16, 1.5), "vector", "outside"),
    (1, np.array(["a"] * 16), "vector", "not numeric"),
    (9, np.zeros(16), "cid", "not a client"),
])
def test_bad_inputs_are_refused_naming_client_round_and_field(cid, vector, field, match):
    spec = RoundSpec(SESSION, 3, tuple(range(5)), 16, FixedPoint(1.0, 24, 5))
    with pytest.raises(InputError, match=match) as err:
        MaskingProtocol().client(cid, spec, vector)
    assert (err.value.client, err.value.round_id, err.value.field) == (cid, 3, field)
