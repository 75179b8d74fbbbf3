"""A lying server (issue 12, attacks 1-5 on masking; attack 2 over Flower openings and 6 on CKKS are in
test_node_policy.py and test_ckks.py) and malicious clients, against active-mode masking (protocols/masking.md
§Active mode, §Threat model). Each attack is refused with the named error, and what the server collects never
contains both secrets of one honest client."""

import dataclasses
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_fal.secagg import (Aggregator, DecryptionError, DropoutError, Faults, MessageError, ReplayError,
                               SecAggError, secure_sum)
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.messages import (KINDS, PROTOCOL_ID, Advertise, ConsistencyRequest, MaskedInput,
                                                PeerKeys, RelayedShares, Shares, Unmask, UnmaskRequest)
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.masking.shamir import P
from secure_fal.secagg.messages import SERVER, decode, encode, peek_header

SESSION = 0xAC71FE


def payload(data):
    """The message in ``data``."""
    return decode(data, KINDS, PROTOCOL_ID)[1]


def repayload(data, **changes):
    header, msg = decode(data, KINDS, PROTOCOL_ID)
    return encode(header, dataclasses.replace(msg, **changes))


class ActiveRound:
    """One active-mode masking round driven by hand (FIFO) so a test can play the lying server."""

    def __init__(self, n=10, threshold=None, neighbours=None, length=8):
        self.protocol = MaskingProtocol(threshold=threshold, neighbours=neighbours, active=True)
        self.protocol.setup(range(n), None)
        rng = np.random.default_rng(n)
        self.xs = {c: rng.uniform(-1, 1, length) for c in range(n)}
        self.spec = RoundSpec(SESSION, 1, tuple(range(n)), length, FixedPoint(1.0, 24, n))
        self.server = self.protocol.server(self.spec)
        self.clients = {c: self.protocol.client(c, self.spec, x) for c, x in self.xs.items()}
        self.queue = deque(self.server.start())

    def deliver(self, data):
        recipient = peek_header(data).recipient
        target = self.server if recipient == SERVER else self.clients[recipient]
        self.queue.extend(target.receive(data))

    def until(self, kind, recipient=None):
        while True:
            if not self.queue:
                self.queue.extend(self.server.on_timeout())
            h = peek_header(self.queue[0])
            if h.kind == kind.KIND and (recipient is None or h.recipient == recipient):
                return self.queue.popleft()
            self.deliver(self.queue.popleft())

    def finish(self):
        while not self.server.done:
            self.deliver(self.queue.popleft()) if self.queue else self.queue.extend(self.server.on_timeout())


def exact(xs, contributors, bound=1.0):
    return secure_sum("plaintext", {c: xs[c] for c in contributors}, bound=bound).total


# -- attack 1: lying about who survived ----------------------------------------------------------------------

def test_attack_1_relaying_only_t_minus_1_partners_then_listing_them_as_dropped_is_refused():
    # n = 10 complete graph, t = 6: the server relays to victim 0 the shares of 1..5 only, so y_0 is masked with
    # them alone; to unmask y_0 it needs b_0 (0 listed as a survivor) and s_sk of 1..5 (listed as dropped)
    r = ActiveRound(n=10, threshold=6)
    partners = {1, 2, 3, 4, 5}
    data = r.until(RelayedShares, recipient=0)
    r.deliver(repayload(data, ciphertexts={v: c for v, c in payload(data).ciphertexts.items() if v in partners}))
    to_victim = r.until(ConsistencyRequest, recipient=0)
    with pytest.raises(MessageError, match="never received") as err:   # the true U3: 6..9 never shared with 0
        r.clients[0].receive(to_victim)
    assert (err.value.client, err.value.round_id, err.value.field) == (6, 1, "survivors")
    # the only U3 the victim signs is {0..5}: its partners are then survivors, so no honest client reveals their
    # s_sk; the others (6..9) are outside it, refuse to sign it, and so never reach the unmask phase
    u3 = (0, 1, 2, 3, 4, 5)
    signatures = {}
    for c in range(10):
        forged = r.server.send(c, ConsistencyRequest(u3))
        if c in u3:
            signatures[c] = payload(r.clients[c].receive(forged)[0]).signature
        else:
            with pytest.raises(MessageError, match="not in U3"):
                r.clients[c].receive(forged)
    revealed_s, refused = set(), set()
    for c in range(10):   # ask every client for b_0 and the s_sk of the partners, with the 6 valid signatures
        ask = UnmaskRequest(tuple(sorted({0, c} & set(u3))), tuple(sorted(partners - {c})), signatures)
        try:
            answer = payload(r.clients[c].receive(r.server.send(c, ask))[0])
            revealed_s |= set(answer.s_shares)
        except SecAggError:   # 0..5: not what the signed U3 implies; 6..9: never signed (out of order)
            refused.add(c)
    assert refused == set(range(10))
    assert not revealed_s & partners   # not one share of a partner's s_sk: y_0 stays masked


def test_attack_1_two_views_of_u3_cannot_both_gather_t_signatures():
    # the server shows U3 = all to half the clients and U3' = all but 9 to the others, to get b_9 from the first
    # and s_sk_9 from the second: with t = 6 of 10, each view has at most 5 honest signers
    r = ActiveRound(n=10, threshold=6)
    r.until(ConsistencyRequest, recipient=0)
    views = {c: tuple(range(10)) if c < 5 else tuple(range(9)) for c in range(10)}
    sigs = {c: payload(r.clients[c].receive(r.server.send(c, ConsistencyRequest(views[c])))[0]).signature
            for c in range(9)}
    for c in range(9):
        others = {s: sig for s, sig in sigs.items() if views[s] == views[c]}   # at most 5 valid per view
        u3 = set(views[c])
        ask = UnmaskRequest(tuple(sorted(u3)), () if 9 in u3 else (9,), others)
        with pytest.raises(MessageError, match="valid signatures on U3") as err:
            r.clients[c].receive(r.server.send(c, ask))
        assert err.value.field == "signatures"


# -- attack 3: replaying a finished round to difference two sums ---------------------------------------------

def test_attack_3_a_replayed_session_round_is_refused_by_every_client():
    r = ActiveRound(n=5)
    r.finish()
    for c in range(5):
        with pytest.raises(ReplayError) as err:
            r.protocol.client(c, r.spec, r.xs[c])
        assert (err.value.client, err.value.round_id, err.value.field) == (c, 1, "round")


# -- attack 4: a wrong sum from an altered share --------------------------------------------------------------

def _alter_first_share(msg):
    shares = dict(msg.b_shares)
    v = min(shares)
    shares[v] = ((int.from_bytes(shares[v], "big") + 1) % P).to_bytes(33, "big")
    return shares


@pytest.mark.parametrize("active", [False, True])
def test_attack_4_an_altered_share_never_yields_a_wrong_sum(active):
    # n = 5, t = 4, nobody drops; client 1 alters one b-share. With all 5 Unmasks the lie is outvoted and named;
    # with only t (the honest last one lost) no consistent subset checks and nothing is released
    n = 5
    xs = {c: np.random.default_rng(c).uniform(-1, 1, 6) for c in range(n)}

    def alter(header, data):
        if header.kind == Unmask.KIND and header.sender == 1:
            return [repayload(data, b_shares=_alter_first_share(payload(data)))]
        return [data]

    agg = Aggregator(MaskingProtocol(active=active), range(n))
    res = agg.sum(xs, bound=1.0, faults=Faults(in_flight=alter))
    assert np.array_equal(res.total, exact(xs, range(n)))
    phases = agg.protocol.CLIENT_PHASES
    with pytest.raises(MessageError, match="cannot reconstruct a verified self-mask seed") as err:
        agg.sum(xs, bound=1.0, faults=Faults(drop={4: phases[-1]}, in_flight=alter))
    assert err.value.round_id == 2 and err.value.field == "b_shares" and "holders [0, 1, 2, 3]" in str(err.value)


def test_attack_4_the_faulty_holder_is_named():
    r = ActiveRound(n=5)
    while True:
        data = r.until(Unmask)
        if peek_header(data).sender == 1:
            break
        r.deliver(data)
    r.deliver(repayload(data, b_shares=_alter_first_share(payload(data))))
    r.finish()
    assert r.server.faulty == {1: (0,)} and np.array_equal(r.server.result, exact(r.xs, range(5)))


# -- attack 5: a low-order key to abort every round -----------------------------------------------------------

@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("key", [bytes(32), (1).to_bytes(32, "little"), (2**255 - 19).to_bytes(32, "little")])
def test_attack_5_a_bad_key_excludes_its_client_and_the_round_finishes(active, key):
    xs = {c: np.full(4, 0.125 * c) for c in range(6)}

    def poison(header, data):
        if header.kind == Advertise.KIND and header.sender == 3:
            return [repayload(data, c_pk=key)]
        return [data]

    res = Aggregator(MaskingProtocol(active=active), range(6)).sum(xs, bound=1.0, faults=Faults(in_flight=poison))
    assert res.contributors == (0, 1, 2, 4, 5) and np.array_equal(res.total, exact(xs, res.contributors))


# -- malicious clients -------------------------------------------------------------------------------------

def test_a_forged_advertise_signature_excludes_the_sender_and_a_forged_peer_key_is_refused():
    xs = {c: np.full(4, 0.25) for c in range(5)}

    def forge(header, data):
        if header.kind == Advertise.KIND and header.sender == 2:
            return [repayload(data, signature=bytes(64))]
        return [data]

    res = Aggregator(MaskingProtocol(active=True), range(5)).sum(xs, bound=1.0, faults=Faults(in_flight=forge))
    assert res.contributors == (0, 1, 3, 4)
    r = ActiveRound(n=5)   # a man in the middle swapping client 2's key in PeerKeys is caught by its signature
    data = r.until(PeerKeys, recipient=0)
    keys = dict(payload(data).keys)
    keys[2] = keys[3][:64] + keys[2][64:]
    with pytest.raises(MessageError, match="invalid signature") as err:
        r.clients[0].receive(repayload(data, keys=keys))
    assert (err.value.client, err.value.field) == (2, "keys")


def test_a_client_corrupting_its_shares_is_caught_by_the_recipient_or_outvoted():
    # shares sealed for another key do not open (DecryptionError naming the sender); a client that seals
    # garbage shares properly is outvoted at reconstruction once it is a holder among more than t
    r = ActiveRound(n=6)
    data = r.until(Shares)
    sender = peek_header(data).sender
    cts = {v: bytes([c[0] ^ 1]) + c[1:] for v, c in payload(data).ciphertexts.items()}
    r.deliver(repayload(data, ciphertexts=cts))
    to = r.until(RelayedShares, recipient=(sender + 1) % 6)
    with pytest.raises(DecryptionError) as err:
        r.clients[(sender + 1) % 6].receive(to)
    assert err.value.client == sender


def test_a_corrupted_masked_input_moves_only_that_clients_contribution():
    # no protocol can stop a client lying about its own input; it cannot touch anyone else's
    n = 5
    xs = {c: np.random.default_rng(c).uniform(-1, 1, 6) for c in range(n)}
    delta = np.arange(6, dtype=np.uint64) + np.uint64(1)
    enc = FixedPoint(1.0, 24, n)

    def shift(header, data):
        if header.kind == MaskedInput.KIND and header.sender == 2:
            y = enc.unpack(payload(data).values, 6)
            return [repayload(data, values=enc.pack((y + delta) & enc.ring_mask))]
        return [data]

    res = Aggregator(MaskingProtocol(active=True), range(n)).sum(xs, bound=1.0, faults=Faults(in_flight=shift))
    assert np.array_equal(res.total, exact(xs, range(n)) + enc.dequantize(delta.astype(np.int64)))


# -- every released sum is the exact integer sum over its contributors ------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 9), active=st.booleans(), session_mode=st.booleans(), seed=st.integers(0, 2**16),
       drop=st.dictionaries(st.integers(0, 8), st.sampled_from(["masked_input", "consistency", "unmask"]),
                            max_size=2))
def test_every_released_sum_is_the_exact_sum_over_its_contributors(n, active, session_mode, seed, drop):
    proto = MaskingProtocol(active=active, rounds_per_setup=2 if session_mode else None)
    rng = np.random.default_rng(seed)
    xs = {c: rng.integers(-2**20, 2**20, 5) * 2.0 ** -24 for c in range(n)}
    drop = {c: p for c, p in drop.items() if c < n and p in proto.CLIENT_PHASES}
    try:
        res = Aggregator(proto, range(n)).sum(xs, bound=1.0, faults=Faults(drop=drop))
    except DropoutError:
        return
    q = sum(np.rint(xs[c] * 2**24).astype(np.int64) for c in res.contributors)
    assert np.array_equal(np.rint(res.total * 2**24).astype(np.int64), q)
    assert set(res.contributors) >= set(range(n)) - set(drop)


# -- attack 6: CKKS, a decryptor that decrypts whatever it is sent ---------------------------------------------

def test_attack_6_the_ckks_decryptor_checks_count_freshness_and_the_signed_contributor_list():
    pytest.importorskip("tenseal")
    from secure_fal.secagg.ckks.messages import KINDS as CKKS_KINDS, PROTOCOL_ID as CKKS_ID, DecryptRequest
    from secure_fal.secagg.ckks.protocol import CKKSProtocol

    n, length = 3, 10
    proto = CKKSProtocol(mode="dealer", active=True, min_contributors=2)
    proto.setup(range(n), None)
    xs = {c: np.full(length, 0.25 * (c + 1)) for c in range(n)}
    requests = {}
    for round_id in (1, 2):
        spec = RoundSpec(SESSION, round_id, tuple(range(n)), length, FixedPoint(1.0, 24, n))
        server = proto.server(spec)
        clients = {c: proto.client(c, spec, xs[c]) for c in range(n)}
        queue = deque(server.start())
        while not (queue and peek_header(queue[0]).kind == DecryptRequest.KIND):
            data = queue.popleft()
            recipient = peek_header(data).recipient
            queue.extend(server.receive(data) if recipient == SERVER else clients[recipient].receive(data))
        requests[round_id] = (queue.popleft(), clients)
    (old, _), (new, clients) = requests[1], requests[2]
    decryptor = clients[peek_header(new).recipient]
    header, fresh = decode(new, CKKS_KINDS, CKKS_ID)
    _, stale = decode(old, CKKS_KINDS, CKKS_ID)
    cases = [(DecryptRequest(stale.contributors, stale.chunks, stale.inputs), "invalid signature", "inputs"),
             (DecryptRequest((0, 1), fresh.chunks, {0: fresh.inputs[0]}), "do not match", "inputs"),
             (DecryptRequest((1,), fresh.chunks, {1: fresh.inputs[1]}), "needs at least 2", "contributors")]
    for request, match, field in cases:          # a round-1 sum in round 2; an unsigned contributor; a sum of one
        with pytest.raises(MessageError, match=match) as err:
            decryptor.receive(encode(header, request))
        assert err.value.field == field
    answer = decryptor.receive(new)              # the genuine request is still answered, once
    assert len(answer) == 1
    with pytest.raises(ReplayError):             # the round cannot be re-opened on the decryptor
        proto.client(decryptor.me, decryptor.spec, xs[decryptor.me])
