"""The in-band CKKS key distribution (secure_fal/secagg/ckks/keys.py; protocols/ckks.md §Key distribution):
machines in-process, with deterministic drops, tampering and replays."""

import pickle

import numpy as np
import pytest

from secure_fal.secagg import (Aggregator, DecryptionError, DropoutError, Faults, InputError, MessageError,
                               OutOfOrderError, ReplayError, Report)
from secure_fal.secagg.ckks.protocol import CKKSProtocol
from secure_fal.secagg.ckks.context import CKKSContext
from secure_fal.secagg.ckks.key_messages import (CLIENT_PHASES, KINDS, PHASE_OF_KIND, PROTOCOL_ID, SETUP_ROUND,
                                                 DealtKeys, KeyRequest, KeySetup, MemberKey, MemberKeys,
                                                 SealedContext)
from secure_fal.secagg.ckks.keys import KeyClient, KeyServer, distribute_keys
from secure_fal.secagg.ckks.params import CKKSParams
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.messages import HEADER_BYTES, SERVER, Header, decode, encode
from secure_fal.secagg.transport import run_round

SESSION = 0x5E55
MEMBERS = (0, 1, 2, 3)


def spec_of(members=MEMBERS, dealer=None, params=None, session=SESSION):
    return KeySetup(session, tuple(members), min(members) if dealer is None else dealer, params or CKKSParams())


def rewrite(kind, change, only_to=None):
    """In-flight hook: replace the payload of every message of ``kind`` (to ``only_to``, if given) by
    change(header, msg)."""
    def hook(header, data):
        if header.kind == kind and only_to in (None, header.recipient):
            h, msg = decode(data, KINDS, PROTOCOL_ID)
            return [encode(h, change(h, msg))]
        return [data]
    return hook


def same_key(a: CKKSContext, b: CKKSContext) -> bool:
    """b decrypts what a encrypted."""
    x, scale = np.linspace(-1, 1, 50), CKKSParams().scale(1)
    return np.abs(b.decrypt(b.load_ciphertext(a.encrypt(x, scale), scale))[:50] - x).max() < 1e-9


# -- the flow ------------------------------------------------------------------------------------------------

def test_every_member_gets_the_dealers_key_and_the_server_only_the_parameters():
    seen = []

    def record(header, data):
        seen.append(data)
        return [data]

    out = distribute_keys(spec_of(), Faults(in_flight=record))
    server = out.server
    assert server.done and server.key_holders == MEMBERS and out.report.dropped == ()
    assert not server.public_context.is_private() and server.public_context.params == CKKSParams()
    contexts = out.contexts
    assert sorted(contexts) == list(MEMBERS) and all(c.is_private() for c in contexts.values())
    assert all(same_key(contexts[0], contexts[m]) for m in MEMBERS[1:])
    secret = contexts[0].serialize()
    sk_blob = secret[-1000:]                                    # a piece of the serialized secret key
    assert not any(sk_blob in data for data in seen)           # only sealed contexts cross the server
    kinds = [decode(d, KINDS, PROTOCOL_ID)[0] for d in seen]
    assert {h.round_id for h in kinds} == {SETUP_ROUND} and {h.session for h in kinds} == {SESSION}
    sealed = [decode(d, KINDS, PROTOCOL_ID)[1].sealed for d in seen if decode(d, KINDS, PROTOCOL_ID)[0].kind == 5]
    assert len(sealed) == 3 and len(set(sealed)) == 3           # one distinct ciphertext per member
    assert {len(s) for s in sealed} == {len(secret) + 16}      # AES-GCM: plaintext + 16-byte tag


def test_message_sizes_and_who_sends_what():
    out = distribute_keys(spec_of())
    secret = len(out.contexts[0].serialize())
    public = len(out.server.public_context.serialize())
    n = len(MEMBERS)
    key_request = HEADER_BYTES + 4 + 8 * n + 8
    member_key = HEADER_BYTES + 4 + 32
    member_keys = HEADER_BYTES + 4 + (n - 1) * (8 + 4 + 32)
    dealt = HEADER_BYTES + 4 + public + 4 + (n - 1) * (8 + 4 + secret + 16)
    sealed = HEADER_BYTES + 4 + 32 + 4 + secret + 16
    assert out.report.bytes_up == {0: member_key + dealt, **{m: member_key + HEADER_BYTES for m in MEMBERS[1:]}}
    assert out.report.bytes_down == {0: key_request + member_keys, **{m: key_request + sealed for m in MEMBERS[1:]}}


def test_dealer_option_and_bad_choices():
    assert CKKSProtocol(mode="dealer", dealer=2).key_setup(1, [3, 2, 1]) == KeySetup(1, (1, 2, 3), 2, CKKSParams())
    assert CKKSProtocol(mode="dealer").key_setup(1, [3, 2]).dealer == 2
    out = distribute_keys(CKKSProtocol(mode="dealer", dealer=2).key_setup(SESSION, MEMBERS))
    assert out.server.key_holders == MEMBERS and same_key(out.contexts[2], out.contexts[0])
    with pytest.raises(ValueError, match="not a member"):
        CKKSProtocol(mode="dealer", dealer=7).key_setup(1, [0, 1])
    with pytest.raises(ValueError, match="needs one"):
        CKKSProtocol(mode="dealer", key_authority=True).key_setup(1, [0, 1])
    with pytest.raises(ValueError, match="sorted"):
        KeySetup(1, (1, 0), 0, CKKSParams())
    with pytest.raises(ValueError, match="not a member"):
        KeyClient(5, spec_of())


def test_keys_from_the_distribution_run_rounds_on_separate_objects():
    """One protocol object per party, as over Flower: the rounds equal the plaintext sums."""
    out = distribute_keys(spec_of())
    server_side = CKKSProtocol(mode="dealer")
    server_side.install_server_keys(out.server.public_context, out.server.key_holders, 0)
    client_side = {m: CKKSProtocol(mode="dealer") for m in MEMBERS}
    for m, proto in client_side.items():
        proto.load_client_keys(m, out.contexts[m].serialize())
    rng = np.random.default_rng(1)
    xs = {m: rng.uniform(-1, 1, 30) for m in MEMBERS}
    spec = RoundSpec(SESSION, 1, MEMBERS, 30, FixedPoint(1.0, 24, len(MEMBERS)))
    server = server_side.server(spec)
    assert not server.context.is_private()
    report = Report("ckks", 1, 30, MEMBERS)
    run_round(server, {m: client_side[m].client(m, spec, xs[m]) for m in MEMBERS}, report,
              CKKSProtocol.PHASE_OF_KIND, CKKSProtocol.CLIENT_PHASES)
    want = Aggregator("plaintext", MEMBERS).sum(xs, bound=1.0).total
    assert np.array_equal(server.result, want)
    with pytest.raises(InputError, match="holds no key") as err:
        server_side.client(0, spec, xs[0])              # the server's object has no secret key to give
    assert err.value.client == 0


def test_install_checks():
    keys = CKKSContext.generate(CKKSParams())
    proto = CKKSProtocol(mode="dealer")
    with pytest.raises(ValueError, match="must not hold the secret key"):
        proto.install_server_keys(keys, [0, 1], 0)
    with pytest.raises(ValueError, match="parameters"):
        proto.install_server_keys(CKKSContext.generate(CKKSParams(2048, (54,))).make_public(), [0, 1], 0)
    with pytest.raises(ValueError, match="not among the key holders"):
        proto.install_server_keys(keys.make_public(), [0, 1], 2)
    with pytest.raises(InputError, match="no secret key") as err:
        proto.install_client_key(4, keys.make_public())
    assert (err.value.client, err.value.field) == (4, "context")
    with pytest.raises(InputError, match="parameters"):
        proto.install_client_key(4, CKKSContext.generate(CKKSParams(2048, (54,))))
    with pytest.raises(InputError, match="unusable"):
        proto.load_client_keys(4, b"junk")
    assert CKKSProtocol(mode="dealer", params={"poly_modulus_degree": 2048, "coeff_mod_bit_sizes": [54]}).params == \
        CKKSParams(2048, (54,))


def test_rounds_refuse_a_client_that_holds_no_key():
    out = distribute_keys(spec_of(), Faults(drop={3: "key"}))
    proto = CKKSProtocol(mode="dealer")
    proto.install_server_keys(out.server.public_context, out.server.key_holders, 0)
    with pytest.raises(InputError, match="may only include the key holders") as err:
        proto.server(RoundSpec(SESSION, 1, MEMBERS, 5, FixedPoint(1.0, 24, 4)))
    assert (err.value.client, err.value.round_id, err.value.field) == (3, 1, "clients")
    assert proto.server(RoundSpec(SESSION, 1, (0, 1, 2), 5, FixedPoint(1.0, 24, 3))) is not None
    with pytest.raises(ValueError, match="no CKKS keys"):
        CKKSProtocol(mode="dealer").server(RoundSpec(SESSION, 1, (0, 1), 5, FixedPoint(1.0, 24, 2)))


# -- dropout -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("drop, holders", [
    ({2: "key"}, (0, 1, 3)),                  # silent from the start: never sent a sealed context
    ({1: "ack", 3: "key"}, (0, 2)),           # got its context but never acknowledged
    ({1: "key", 2: "key", 3: "key"}, (0,)),   # the dealer alone
])
def test_a_silent_non_dealer_is_not_a_key_holder(drop, holders):
    out = distribute_keys(spec_of(), Faults(drop=drop))
    assert out.server.key_holders == holders and out.report.dropped == tuple(sorted(drop))
    assert all(same_key(out.contexts[0], out.contexts[m]) for m in holders)
    key_request = HEADER_BYTES + 4 + 8 * len(MEMBERS) + 8
    for m, phase in drop.items():                       # silent from "key" on: sent nothing but the request
        assert (out.report.bytes_down[m] == key_request) == (phase == "key")


@pytest.mark.parametrize("phase", ["key", "deal"])
def test_a_silent_dealer_means_no_session(phase):
    with pytest.raises(DropoutError, match="dealer") as err:
        distribute_keys(spec_of(dealer=1), Faults(drop={1: phase}))
    assert (err.value.client, err.value.round_id) == (1, SETUP_ROUND)


def test_phases_name_the_exchanges():
    assert CLIENT_PHASES == ("key", "deal", "ack")
    assert [PHASE_OF_KIND[k.KIND] for k in (MemberKey, DealtKeys)] == ["key", "deal"]


# -- bad input -----------------------------------------------------------------------------------------------

def flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def test_tampered_sealed_context_is_caught_by_its_member():
    hook = rewrite(SealedContext.KIND, lambda h, m: SealedContext(m.dealer_key, flip_last_byte(m.sealed)), only_to=2)
    with pytest.raises(DecryptionError, match="dealer 0 to client 2 failed authentication") as err:
        distribute_keys(spec_of(), Faults(in_flight=hook))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, SETUP_ROUND, "sealed")


def test_a_context_sealed_for_another_member_or_session_does_not_open():
    spec = spec_of()
    dealer, member = KeyClient(0, spec), KeyClient(1, spec)
    request = KeyServer(spec).send(0, KeyRequest(MEMBERS, 0))
    dealer_key = decode(dealer.receive(request)[0], KINDS, PROTOCOL_ID)[1].public_key
    server = KeyServer(spec)
    to_member = server.send(1, KeyRequest(MEMBERS, 0))
    member_key = decode(member.receive(to_member)[0], KINDS, PROTOCOL_ID)[1].public_key
    (dealt,) = dealer.receive(server.send(0, MemberKeys({1: member_key, 2: member_key})))
    sealed = decode(dealt, KINDS, PROTOCOL_ID)[1].sealed
    with pytest.raises(DecryptionError) as err:             # the blob sealed for member 2 (same X25519 key!)
        member.receive(server.send(1, SealedContext(dealer_key, sealed[2])))
    assert (err.value.client, err.value.field) == (0, "sealed")
    other = KeyClient(1, spec_of(session=SESSION + 1))
    other.receive(KeyServer(other.spec).send(1, KeyRequest(MEMBERS, 0)))
    other._sk = member._sk                                   # same key pair, other session: bound by HKDF + AAD
    with pytest.raises(DecryptionError):
        other.receive(KeyServer(other.spec).send(1, SealedContext(dealer_key, sealed[1])))
    assert member.phase == "sealed"                          # nothing changed; the right blob still opens
    (ack,) = member.receive(server.send(1, SealedContext(dealer_key, sealed[1])))
    assert member.done and same_key(dealer.context, member.context)
    assert decode(ack, KINDS, PROTOCOL_ID)[0].recipient == SERVER


def test_member_refuses_a_context_with_other_parameters():
    spec = spec_of()
    wrong = KeySetup(SESSION, MEMBERS, 0, CKKSParams(2048, (54,)))
    dealer, member = KeyClient(0, wrong), KeyClient(1, spec)
    (advertised,) = dealer.receive(KeyServer(wrong).send(0, KeyRequest(MEMBERS, 0)))
    dealer_key = decode(advertised, KINDS, PROTOCOL_ID)[1].public_key
    member_key = decode(member.receive(KeyServer(spec).send(1, KeyRequest(MEMBERS, 0)))[0], KINDS,
                        PROTOCOL_ID)[1].public_key
    dealt = decode(dealer.receive(KeyServer(wrong).send(0, MemberKeys({1: member_key})))[0], KINDS, PROTOCOL_ID)[1]
    with pytest.raises(MessageError, match="parameters") as err:
        member.receive(KeyServer(spec).send(1, SealedContext(dealer_key, dealt.sealed[1])))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, SETUP_ROUND, "params")
    assert not member.done


@pytest.mark.parametrize("public, match", [
    (lambda ctx: b"junk", "bad public context"),
    (lambda ctx: ctx.serialize(), "holds a secret key"),
    (lambda ctx: CKKSContext.generate(CKKSParams(2048, (54,))).make_public().serialize(), "parameters"),
])
def test_server_refuses_a_bad_public_context(public, match):
    other = CKKSContext.generate(CKKSParams())
    hook = rewrite(DealtKeys.KIND, lambda h, m: DealtKeys(public(other), m.sealed))
    with pytest.raises(MessageError, match=match) as err:
        distribute_keys(spec_of(), Faults(in_flight=hook))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, SETUP_ROUND, "public_context")


def test_server_refuses_sealed_contexts_for_the_wrong_members():
    hook = rewrite(DealtKeys.KIND, lambda h, m: DealtKeys(m.public_context, {**m.sealed, 9: m.sealed[1]}))
    with pytest.raises(MessageError, match="expected one for each") as err:
        distribute_keys(spec_of(), Faults(in_flight=hook))
    assert (err.value.client, err.value.field) == (0, "sealed")


def test_dealer_refuses_keys_of_non_members_or_its_own_and_unusable_keys():
    spec = spec_of()
    server = KeyServer(spec)
    for keys, bad, field in [({1: b"\x01" * 32, 9: b"\x01" * 32}, 9, "keys"), ({0: b"\x01" * 32}, 0, "keys"),
                             ({1: bytes(32)}, 1, "keys[1]"), ({2: b"\x01" * 31}, 2, "keys[2]")]:
        dealer = KeyClient(0, spec)
        dealer.receive(server.send(0, KeyRequest(MEMBERS, 0)))
        with pytest.raises(MessageError) as err:
            dealer.receive(server.send(0, MemberKeys(keys)))
        assert (err.value.client, err.value.round_id, err.value.field) == (bad, SETUP_ROUND, field)
        assert dealer.phase == "deal" and dealer.context is None


def test_member_checks_the_key_request():
    spec = spec_of()
    server = KeyServer(spec)
    for request, field in [(KeyRequest((0, 1), 0), "members"), (KeyRequest(MEMBERS, 1), "dealer")]:
        member = KeyClient(2, spec)
        with pytest.raises(MessageError) as err:
            member.receive(server.send(2, request))
        assert (err.value.client, err.value.field) == (2, field) and member.phase == "key"


def test_unknown_sender_replay_and_out_of_order():
    spec = spec_of()
    server = KeyServer(spec)
    server.start()
    member = KeyClient(1, spec)
    (key,) = member.receive(server.send(1, KeyRequest(MEMBERS, 0)))
    h, msg = decode(key, KINDS, PROTOCOL_ID)
    stranger = encode(Header(PROTOCOL_ID, MemberKey.KIND, SESSION, SETUP_ROUND, 9, SERVER), msg)
    with pytest.raises(MessageError, match="not a member") as err:
        server.receive(stranger)
    assert (err.value.client, err.value.round_id) == (9, SETUP_ROUND)
    server.receive(key)
    with pytest.raises(ReplayError, match="second MemberKey") as err:
        server.receive(key)
    assert (err.value.client, err.value.field) == (1, "public_key")
    old_session = encode(Header(PROTOCOL_ID, MemberKey.KIND, SESSION - 1, SETUP_ROUND, 2, SERVER), msg)
    with pytest.raises(ReplayError, match="session"):
        server.receive(old_session)
    a_round = encode(Header(PROTOCOL_ID, MemberKey.KIND, SESSION, 1, 2, SERVER), msg)
    with pytest.raises(ReplayError, match="round 1"):
        server.receive(a_round)
    with pytest.raises(OutOfOrderError):
        member.receive(server.send(1, KeyRequest(MEMBERS, 0)))      # a second request
    low_order = encode(Header(PROTOCOL_ID, MemberKey.KIND, SESSION, SETUP_ROUND, 2, SERVER), MemberKey(bytes(32)))
    with pytest.raises(MessageError, match="unusable") as err:
        server.receive(low_order)
    assert (err.value.client, err.value.field) == (2, "public_key")
    assert sorted(server.public_keys) == [1]                          # rejected messages changed nothing


def test_client_machine_survives_pickling_between_messages():
    spec = spec_of(members=(0, 1))
    server = KeyServer(spec)
    parties = {m: KeyClient(m, spec) for m in spec.members}
    queue = server.start()
    while queue:
        data = queue.pop(0)
        recipient = decode(data, KINDS, PROTOCOL_ID)[0].recipient
        if recipient == SERVER:
            queue += server.receive(data)
        else:
            parties[recipient] = pickle.loads(pickle.dumps(parties[recipient]))   # a fresh process per message
            queue += parties[recipient].receive(data)
    assert server.key_holders == (0, 1) and same_key(parties[0].context, parties[1].context)
    assert parties[1]._sk is None and parties[0]._sk is None               # X25519 keys forgotten once used


def test_two_distributions_give_independent_keys():
    a, b = distribute_keys(spec_of()), distribute_keys(spec_of())
    assert a.contexts[0].serialize() != b.contexts[0].serialize()
    assert not same_key(a.contexts[0], b.contexts[1])
