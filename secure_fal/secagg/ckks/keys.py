"""In-band distribution of a CKKS session's keys: the dealer seals the secret context for each member, the
server relays what it cannot read (spec: protocols/ckks.md §Key distribution).

Flow (protocol id 4; every header carries round id ``SETUP_ROUND`` = 0, rounds count from 1):

    server -> every member     KeyRequest(members, dealer)
    member -> server           MemberKey(public_key)         a fresh X25519 public key (the dealer's too)
    server -> dealer           MemberKeys(keys)              the keys of the other members that answered
    dealer -> server           DealtKeys(public_context, sealed)
                                  the dealer generated the CKKS keys (``CKKSContext.generate``); sealed[m] is
                                  its serialized secret context under AES-256-GCM, for member m
    server -> member m         SealedContext(dealer_key, sealed)    dealer_key: the dealer's X25519 public key
    member -> server           KeyAck()                      it decrypted, checked and kept the context

Sealing: key_m = HKDF-SHA256(ikm = X25519(dealer, m), salt = none, length = 32, info = LABEL + session(8) +
dealer(4) + m(4)); nonce = dealer(4) || m(4) || 0(4); associated data = LABEL + session(8) + dealer(4) + m(4).
Both X25519 key pairs are fresh for the session and each key_m seals exactly one plaintext, so no key/nonce
pair is ever reused; the associated data makes a sealed context of another session, dealer or recipient fail.

Outcome: on the server ``KeyServer.public_context`` (parameters only, no key) and ``key_holders`` (the dealer
and the members that acknowledged); on a member ``KeyClient.context`` (the private context).

The machines follow the interface of ``machine.py`` (``start``/``receive``/``on_timeout``, ``phase``, ``done``,
``spec.round_id``, ``contributors`` = the key holders), so the in-process transport (``run_round``) drives them
(``distribute_keys``), and so does the Flower layer (``secure_fal/flower/carrier/session_keys.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..masking.keys import check_public_key
from ..errors import DecryptionError, DropoutError, MessageError, OutOfOrderError, ReplayError
from ..messages import SERVER, Header, Message, decode, encode
from ..report import Report
from ..transport import Faults, run_round
from .context import CKKSContext
from .key_messages import (CLIENT_PHASES, KEY_BYTES, KINDS, PHASE_OF_KIND, PROTOCOL_ID, SETUP_ROUND, TAG_BYTES,
                           DealtKeys, KeyAck, KeyRequest, KeySetup, MemberKey, MemberKeys, SealedContext)

LABEL = b"secure_fal/ckks-keys/v1/"
_BINDING = struct.Struct(">Qii")


def _binding(session: int, dealer: int, recipient: int) -> bytes:
    return LABEL + _BINDING.pack(session, dealer, recipient)


def seal_key(sk: X25519PrivateKey, peer_pk: bytes, session: int, dealer: int, recipient: int) -> bytes:
    """The 32-byte AES key of the context sealed by ``dealer`` for ``recipient`` (either end computes it).

    Raises ValueError when peer_pk is not 32 bytes or is a low-order point (all-zero shared secret).
    """
    if len(peer_pk) != KEY_BYTES:
        raise ValueError(f"public key must be {KEY_BYTES} bytes, got {len(peer_pk)}")
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_binding(session, dealer, recipient)).derive(shared)


def _nonce(dealer: int, recipient: int) -> bytes:
    return struct.pack(">iiI", dealer, recipient, 0)


class SetupParty:
    """Message coding bound to one key distribution (its session and ``SETUP_ROUND``; subclasses of another
    protocol set PROTOCOL and KINDS). ``spec`` needs a ``session``."""

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: KeySetup, me: int) -> None:
        self.spec = spec
        self.me = me
        self.phase = "init"

    def send(self, recipient: int, msg: Message) -> bytes:
        return encode(Header(self.PROTOCOL, msg.KIND, self.spec.session, SETUP_ROUND, self.me, recipient), msg)

    def accept(self, data: bytes, allowed: tuple[type[Message], ...]) -> tuple[Header, Message]:
        """Decode ``data``; check session, round, recipient and phase (as ``machine._Party.accept``)."""
        header, msg = decode(data, self.KINDS, self.PROTOCOL)
        who = None if header.sender == SERVER else header.sender
        if header.session != self.spec.session or header.round_id != SETUP_ROUND:
            raise ReplayError(f"message from session {header.session:#x} round {header.round_id}, this is the key "
                              f"setup (round {SETUP_ROUND}) of session {self.spec.session:#x}", client=who,
                              round_id=header.round_id)
        if header.recipient != self.me:
            raise MessageError(f"message addressed to {header.recipient}, delivered to {self.me}", client=who,
                               round_id=SETUP_ROUND)
        if not isinstance(msg, allowed):
            raise OutOfOrderError(f"{type(msg).__name__} not accepted in phase {self.phase!r}", client=who,
                                  round_id=SETUP_ROUND)
        return header, msg

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def accept_from_member(self, data: bytes, allowed: tuple[type[Message], ...]) -> tuple[int, Message]:
        """Server side: ``accept`` plus the sender is a member (MessageError naming it); (sender, message)."""
        header, msg = self.accept(data, allowed)
        if header.sender not in self.spec.members:
            raise MessageError("sender is not a member of this setup", client=header.sender, round_id=SETUP_ROUND)
        return header.sender, msg

    def store_member_key(self, sender: int, msg: MemberKey) -> bool:
        """Server side: keep ``sender``'s X25519 key in ``self.public_keys`` (ReplayError for a second one,
        MessageError for an unusable one, field 'public_key'); True once every member has sent one."""
        if sender in self.public_keys:
            raise ReplayError("second MemberKey", client=sender, round_id=SETUP_ROUND, field="public_key")
        try:
            check_public_key(msg.public_key)
        except ValueError as exc:
            raise MessageError(f"unusable X25519 public key: {exc}", client=sender, round_id=SETUP_ROUND,
                               field="public_key") from None
        self.public_keys[sender] = msg.public_key
        return len(self.public_keys) == len(self.spec.members)


class KeyServer(SetupParty):
    """Relays keys between the members; never sees a secret key.

    Phases: "keys" (a MemberKey from each member), "deal" (DealtKeys from the dealer), "ack" (a KeyAck from each
    member that got a sealed context), "done". Timeouts: in "keys", the members that answered go on (a silent
    dealer: DropoutError); in "deal", DropoutError; in "ack", the members that acknowledged are the key
    holders with the dealer.

    Attributes (once ``done``): public_context (CKKSContext, parameters only), key_holders (sorted ids).
    """

    def __init__(self, spec: KeySetup) -> None:
        super().__init__(spec, SERVER)
        self.public_keys: dict[int, bytes] = {}
        self.sealed: dict[int, bytes] = {}
        self.acked: dict[int, None] = {}
        self.public_context: CKKSContext | None = None
        self.key_holders: tuple[int, ...] = ()

    @property
    def contributors(self) -> tuple[int, ...]:
        """The key holders (the name the in-process transport reads)."""
        return self.key_holders

    def start(self) -> list[bytes]:
        self.phase = "keys"
        request = KeyRequest(self.spec.members, self.spec.dealer)
        return [self.send(m, request) for m in self.spec.members]

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"keys": (MemberKey,), "deal": (DealtKeys,), "ack": (KeyAck,)}.get(self.phase, ())
        sender, msg = self.accept_from_member(data, allowed)
        if isinstance(msg, MemberKey):
            return self._on_member_key(sender, msg)
        if isinstance(msg, DealtKeys):
            return self._on_dealt_keys(sender, msg)
        return self._on_ack(sender)

    def on_timeout(self) -> list[bytes]:
        dealer = self.spec.dealer
        if self.phase == "keys":
            if dealer not in self.public_keys:
                raise DropoutError("the dealer did not answer the key request: the session has no keys",
                                   client=dealer, round_id=SETUP_ROUND)
            return self._ask_dealer()
        if self.phase == "deal":
            raise DropoutError("the dealer did not deal the keys: the session has no keys", client=dealer,
                               round_id=SETUP_ROUND)
        if self.phase == "ack":
            self._finish()
        return []

    def _on_member_key(self, sender: int, msg: MemberKey) -> list[bytes]:
        return self._ask_dealer() if self.store_member_key(sender, msg) else []

    def _ask_dealer(self) -> list[bytes]:
        self.phase = "deal"
        others = {m: pk for m, pk in sorted(self.public_keys.items()) if m != self.spec.dealer}
        return [self.send(self.spec.dealer, MemberKeys(others))]

    def _on_dealt_keys(self, sender: int, msg: DealtKeys) -> list[bytes]:
        dealer = self.spec.dealer
        if sender != dealer:
            raise MessageError(f"DealtKeys from a member that is not the dealer ({dealer})", client=sender,
                               round_id=SETUP_ROUND, field="sealed")
        expected = sorted(m for m in self.public_keys if m != dealer)
        if sorted(msg.sealed) != expected:
            raise MessageError(f"sealed contexts for {sorted(msg.sealed)}, expected one for each of {expected}",
                               client=sender, round_id=SETUP_ROUND, field="sealed")
        short = [m for m, blob in msg.sealed.items() if len(blob) <= TAG_BYTES]
        if short:
            raise MessageError(f"sealed context for member {short[0]} is only {len(msg.sealed[short[0]])} bytes",
                               client=sender, round_id=SETUP_ROUND, field="sealed")
        try:
            public = CKKSContext.from_bytes(msg.public_context)
        except ValueError as exc:
            raise MessageError(f"bad public context: {exc}", client=sender, round_id=SETUP_ROUND,
                               field="public_context") from None
        if public.is_private():
            raise MessageError("the public context holds a secret key: the server must not get it", client=sender,
                               round_id=SETUP_ROUND, field="public_context")
        if public.params != self.spec.params:
            raise MessageError(f"public context has parameters {public.params}, the session's are "
                               f"{self.spec.params}", client=sender, round_id=SETUP_ROUND, field="public_context")
        self.public_context = public
        self.sealed = dict(msg.sealed)
        self.phase = "ack"
        if not self.sealed:
            self._finish()
            return []
        dealer_key = self.public_keys[dealer]
        return [self.send(m, SealedContext(dealer_key, self.sealed[m])) for m in sorted(self.sealed)]

    def _on_ack(self, sender: int) -> list[bytes]:
        if sender not in self.sealed:
            raise MessageError("KeyAck from a member that was sent no sealed context", client=sender,
                               round_id=SETUP_ROUND)
        if sender in self.acked:
            raise ReplayError("second KeyAck", client=sender, round_id=SETUP_ROUND)
        self.acked[sender] = None
        if len(self.acked) == len(self.sealed):
            self._finish()
        return []

    def _finish(self) -> None:
        self.key_holders = tuple(sorted([self.spec.dealer, *self.acked]))
        self.phase = "done"


class KeyClient(SetupParty):
    """A member: makes an X25519 key pair, then deals the CKKS keys (the dealer) or receives them (the others).

    Phases: "key" (waiting for KeyRequest), then "deal" for the dealer (waiting for MemberKeys) or "sealed" for
    the others (waiting for SealedContext), then "done" with ``context`` (the private CKKSContext). The X25519
    private key is forgotten once used. Picklable (keys as raw bytes), so a Flower node can keep it in its state.
    """

    def __init__(self, cid: int, spec: KeySetup) -> None:
        if cid not in spec.members:
            raise ValueError(f"client {cid} is not a member of the key setup {spec.members}")
        super().__init__(spec, cid)
        self.phase = "key"
        self._sk: X25519PrivateKey | None = None
        self.context: CKKSContext | None = None

    def keys(self) -> bytes:
        """The private context's bytes (what ``CKKSProtocol.load_client_keys`` reads), once ``done``."""
        if self.context is None:
            raise ValueError(f"client {self.me} holds no CKKS keys: the key distribution has not finished")
        return self.context.serialize()

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"key": (KeyRequest,), "deal": (MemberKeys,), "sealed": (SealedContext,)}.get(self.phase, ())
        header, msg = self.accept(data, allowed)
        if header.sender != SERVER:
            raise MessageError(f"client {self.me} accepts messages from the server only", client=header.sender,
                               round_id=SETUP_ROUND)
        if isinstance(msg, KeyRequest):
            return self._on_request(msg)
        if isinstance(msg, MemberKeys):
            return self._deal(msg)
        return self._on_sealed(msg)

    def _fail(self, cls: type, what: str, client: int | None, field: str) -> Exception:
        return cls(what, client=client, round_id=SETUP_ROUND, field=field)

    def _on_request(self, msg: KeyRequest) -> list[bytes]:
        if msg.members != self.spec.members:
            raise self._fail(MessageError, f"KeyRequest lists members {msg.members}, this session's are "
                             f"{self.spec.members}", self.me, "members")
        if msg.dealer != self.spec.dealer:
            raise self._fail(MessageError, f"KeyRequest names dealer {msg.dealer}, this session's is "
                             f"{self.spec.dealer}", self.me, "dealer")
        self._sk = X25519PrivateKey.generate()
        self.phase = "deal" if self.me == self.spec.dealer else "sealed"
        return [self.send(SERVER, MemberKey(self._sk.public_key().public_bytes_raw()))]

    def _deal(self, msg: MemberKeys) -> list[bytes]:
        spec = self.spec
        strangers = sorted(set(msg.keys) - set(spec.members) | ({spec.dealer} & set(msg.keys)))
        if strangers:
            raise self._fail(MessageError, f"keys of {strangers}: not members other than the dealer", strangers[0],
                             "keys")
        aes_keys = {}
        for m, pk in sorted(msg.keys.items()):
            try:
                aes_keys[m] = seal_key(self._sk, pk, spec.session, spec.dealer, m)
            except ValueError as exc:
                raise self._fail(MessageError, f"unusable X25519 public key: {exc}", m, f"keys[{m}]") from None
        keys = CKKSContext.generate(spec.params)
        secret = keys.serialize()
        sealed = {m: AESGCM(k).encrypt(_nonce(spec.dealer, m), secret, _binding(spec.session, spec.dealer, m))
                  for m, k in aes_keys.items()}
        self.context, self._sk = keys, None
        self.phase = "done"
        return [self.send(SERVER, DealtKeys(keys.make_public().serialize(), sealed))]

    def _on_sealed(self, msg: SealedContext) -> list[bytes]:
        spec, me, dealer = self.spec, self.me, self.spec.dealer
        try:
            key = seal_key(self._sk, msg.dealer_key, spec.session, dealer, me)
        except ValueError as exc:
            raise self._fail(MessageError, f"unusable dealer X25519 public key: {exc}", dealer, "dealer_key") from None
        try:
            secret = AESGCM(key).decrypt(_nonce(dealer, me), msg.sealed, _binding(spec.session, dealer, me))
        except InvalidTag:
            raise self._fail(DecryptionError, f"sealed context from dealer {dealer} to client {me} failed "
                             "authentication (altered, or sealed for another session, dealer or recipient)",
                             dealer, "sealed") from None
        try:
            context = CKKSContext.from_bytes(secret)
        except ValueError as exc:
            raise self._fail(MessageError, f"sealed context does not hold a CKKS context: {exc}", dealer,
                             "sealed") from None
        if not context.is_private():
            raise self._fail(MessageError, "the dealt context holds no secret key", dealer, "sealed")
        if context.params != spec.params:
            raise self._fail(MessageError, f"the dealt context has parameters {context.params}, the session's are "
                             f"{spec.params}", dealer, "params")
        self.context, self._sk = context, None
        self.phase = "done"
        return [self.send(SERVER, KeyAck())]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_sk"] = None if self._sk is None else self._sk.private_bytes_raw()
        state["context"] = None if self.context is None else self.context.serialize()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if state["_sk"] is not None:
            state["_sk"] = X25519PrivateKey.from_private_bytes(state["_sk"])
        if state["context"] is not None:
            state["context"] = CKKSContext.from_bytes(state["context"])
        self.__dict__.update(state)


@dataclass
class KeyDistribution:
    """Outcome of an in-process key distribution.

    Attributes:
        server: the finished server machine (``public_context``, ``key_holders``).
        contexts: key holder id -> its private CKKSContext, as the members' machines ended up with it.
        report: bytes per member up/down and seconds per phase (round id ``SETUP_ROUND``, length 0;
            ``dropped`` = the members that hold no key).
    """

    server: KeyServer
    contexts: dict[int, CKKSContext] = field(default_factory=dict)
    report: Report | None = None


def distribute_keys(spec: KeySetup, faults: Faults | None = None) -> KeyDistribution:
    """Run the key distribution in-process (``run_round``); ``faults`` drops members at a phase of
    ``CLIENT_PHASES`` or rewrites messages in flight. Raises DropoutError when the dealer drops, and whatever
    a machine raises on a bad message."""
    server = KeyServer(spec)
    clients = {m: KeyClient(m, spec) for m in spec.members}
    report = Report("ckks-keys", SETUP_ROUND, 0, spec.members)
    run_round(server, clients, report, PHASE_OF_KIND, CLIENT_PHASES, faults)
    contexts = {m: clients[m].context for m in server.key_holders}
    return KeyDistribution(server, contexts, report)
