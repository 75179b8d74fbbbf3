"""Threshold CKKS share distribution, once per session (spec: protocols/ckks.md §Threshold mode, setup).

Flow (protocol id 7, round id 0):

    server -> every member        ShareRequest(members, committee, t)
    member -> server              MemberKey(public_key)            a fresh X25519 public key
    server -> every member        MemberKeys(keys)                 the committee members' keys (K: those that answered)
    member i -> server            DealtShares(sealed)              i sampled its ternary secret s_i (os.urandom) and
                                                                   sealed to each j in K the Shamir shares f_i(j + 1)
    server -> committee member j  SealedShares(keys, sealed)       from every dealer i: its public key, its sealed shares
    committee member -> server    KeyAck()

Sealing: ``masking.keys.pair_key`` (X25519 + HKDF-SHA256, purpose "ckks-threshold/shares", round 0) and
``masking.keys.seal`` (AES-256-GCM bound to session, round 0, sender, recipient). Shares: per prime p of the chain,
f_i(x) = s_i + c_1 x + ... + c_{t-1} x^(t-1) mod p coefficient-wise, c_d uniform (os.urandom); any t shares give
s_i, t - 1 reveal nothing (one uniform unknown per missing share). The secret s_i never leaves i except as shares.

Outcome: the server's ``key_holders`` (the dealers whose shares every acknowledging committee member holds) and
``committee`` (the members that acknowledged; at least t, else DropoutError); a member's ``ThresholdKeys``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from ...errors import DecryptionError, DropoutError, MessageError, ReplayError
from ...masking.keys import (InvalidTag, new_private_key, open_sealed, pair_key, private_bytes,
                             private_from_bytes, public_bytes, seal)
from ...messages import SERVER
from ..key_messages import SETUP_ROUND, TAG_BYTES, KeyAck, MemberKey, MemberKeys
from ..keys import SetupParty
from .messages import SETUP_KINDS, SETUP_PROTOCOL_ID, DealtShares, SealedShares, ShareRequest
from .params import ThresholdParams, default_threshold
from .ring import pack_residues, random_residues, sample_ternary, unpack_residues

PURPOSE = b"ckks-threshold/shares"
_HEAD = struct.Struct(">QiIIi")  # session, me, N, primes, threshold


@dataclass(frozen=True)
class ShareSetup:
    """Public parameters of one share distribution.

    Attributes:
        session: 64-bit session id. members: sorted ids. committee: the decryption committee (sorted, from
        ``ThresholdParams.committee_and_threshold``). threshold: t. params: the session's ThresholdParams.
        corruption: the fraction a member assumes corrupted (its node's): it refuses a (committee, t) where
            two responder sets could miss every honest member or t - 1 could hold all corrupted ones.
    """

    session: int
    members: tuple[int, ...]
    committee: tuple[int, ...]
    threshold: int
    params: ThresholdParams
    corruption: float = 0.1


@dataclass
class ThresholdKeys:
    """What a member keeps (node state, memory only): its ternary secret (int64 (N,)), the committee it was told,
    t, and, for a committee member, the shares it holds: dealer id -> residues (k_max, N) of f_dealer(me + 1)."""

    session: int
    me: int
    secret: np.ndarray = field(repr=False)
    committee: tuple[int, ...]
    threshold: int
    shares: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"ThresholdKeys(session={self.session:#x}, me={self.me}, shares of {sorted(self.shares)})"

    def serialize(self, width: int) -> bytes:
        """Bytes (what ``CKKSProtocol.load_client_keys`` reads); residues packed at ``width`` bits."""
        k = next(iter(self.shares.values())).shape[0] if self.shares else 0
        out = bytearray(_HEAD.pack(self.session, self.me, self.secret.size, k, self.threshold))
        out += struct.pack(">I", len(self.committee)) + struct.pack(f">{len(self.committee)}i", *self.committee)
        out += (self.secret + 1).astype(np.uint8).tobytes()
        out += struct.pack(">I", len(self.shares))
        for dealer in sorted(self.shares):
            out += struct.pack(">i", dealer) + pack_residues(self.shares[dealer], width)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, width: int) -> ThresholdKeys:
        """Inverse of ``serialize``; ValueError on malformed bytes (the text never holds key material)."""
        try:
            session, me, n, k, t = _HEAD.unpack_from(data)
            pos = _HEAD.size
            (m,) = struct.unpack_from(">I", data, pos)
            committee = struct.unpack_from(f">{m}i", data, pos + 4)
            pos += 4 + 4 * m
            secret = np.frombuffer(data[pos:pos + n], dtype=np.uint8).astype(np.int64) - 1
            if secret.size != n or secret.max(initial=0) > 1:
                raise ValueError("secret is not N ternary coefficients")
            pos += n
            (count,) = struct.unpack_from(">I", data, pos)
            pos += 4
            size = -(-k * n * width // 8)
            shares = {}
            for _ in range(count):
                (dealer,) = struct.unpack_from(">i", data, pos)
                shares[dealer] = unpack_residues(data[pos + 4:pos + 4 + size], width, (k, n))
                pos += 4 + size
        except struct.error:
            raise ValueError("truncated threshold CKKS keys") from None
        if pos != len(data):
            raise ValueError("malformed threshold CKKS keys (length)")
        return cls(session, me, secret, tuple(committee), t, shares)


def share_secret(params: ThresholdParams, secret: np.ndarray, threshold: int,
                 holders: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Shamir shares of ``secret`` (N coefficients) over every prime of the chain: holder j -> (k_max, N)
    residues of f(j + 1), f of degree t - 1 with uniform coefficients (os.urandom)."""
    ring = params.ring
    k, n = len(ring.primes), ring.n
    p = ring.moduli(k)
    coeffs = [ring.residues(secret, k)] + [random_residues(ring, k, n) for _ in range(threshold - 1)]
    out = {}
    for j in holders:
        acc = np.zeros((k, n), dtype=np.uint64)
        for c in reversed(coeffs):  # Horner
            acc = (acc * np.uint64(j + 1) + c) % p
        out[j] = acc
    return out


class ShareServer(SetupParty):
    """Relays X25519 keys and sealed shares; never sees a secret or a share.

    Phases: "keys" (MemberKey from each member), "deal" (DealtShares), "ack" (KeyAck from committee members),
    "done". Timeouts go on with the members that answered; fewer than t committee members: DropoutError.
    """

    PROTOCOL = SETUP_PROTOCOL_ID
    KINDS = SETUP_KINDS

    def __init__(self, spec: ShareSetup) -> None:
        super().__init__(spec, SERVER)
        self.public_keys: dict[int, bytes] = {}
        self.dealt: dict[int, dict[int, bytes]] = {}
        self.acked: dict[int, None] = {}
        self.key_holders: tuple[int, ...] = ()
        self.committee: tuple[int, ...] = ()

    @property
    def contributors(self) -> tuple[int, ...]:
        return self.key_holders

    def _live_committee(self) -> list[int]:
        return [j for j in self.spec.committee if j in self.public_keys]

    def start(self) -> list[bytes]:
        self.phase = "keys"
        request = ShareRequest(self.spec.members, self.spec.committee, self.spec.threshold)
        return [self.send(m, request) for m in self.spec.members]

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"keys": (MemberKey,), "deal": (DealtShares,), "ack": (KeyAck,)}.get(self.phase, ())
        sender, msg = self.accept_from_member(data, allowed)
        if isinstance(msg, MemberKey):
            return self._on_key(sender, msg)
        if isinstance(msg, DealtShares):
            return self._on_dealt(sender, msg)
        return self._on_ack(sender)

    def on_timeout(self) -> list[bytes]:
        if self.phase == "keys":
            return self._ask_deal()
        if self.phase == "deal":
            return self._relay()
        if self.phase == "ack":
            self._finish()
        return []

    def _on_key(self, sender: int, msg: MemberKey) -> list[bytes]:
        return self._ask_deal() if self.store_member_key(sender, msg) else []

    def _ask_deal(self) -> list[bytes]:
        live = self._live_committee()
        if len(live) < self.spec.threshold:
            raise DropoutError(f"{len(live)} committee members answered, the threshold is {self.spec.threshold}: "
                               "no session", round_id=SETUP_ROUND)
        self.phase = "deal"
        keys = MemberKeys({j: self.public_keys[j] for j in live})
        return [self.send(m, keys) for m in sorted(self.public_keys)]

    def _on_dealt(self, sender: int, msg: DealtShares) -> list[bytes]:
        if sender not in self.public_keys:
            raise MessageError("DealtShares from a member that sent no key", client=sender, round_id=SETUP_ROUND,
                               field="sealed")
        if sender in self.dealt:
            raise ReplayError("second DealtShares", client=sender, round_id=SETUP_ROUND, field="sealed")
        live = self._live_committee()
        if sorted(msg.sealed) != live:
            raise MessageError(f"sealed shares for {sorted(msg.sealed)}, expected one for each of {live}",
                               client=sender, round_id=SETUP_ROUND, field="sealed")
        if any(len(blob) <= TAG_BYTES for blob in msg.sealed.values()):
            raise MessageError("sealed shares shorter than a tag", client=sender, round_id=SETUP_ROUND, field="sealed")
        self.dealt[sender] = dict(msg.sealed)
        return self._relay() if len(self.dealt) == len(self.public_keys) else []

    def _relay(self) -> list[bytes]:
        self.phase = "ack"
        dealers = sorted(self.dealt)
        keys = {i: self.public_keys[i] for i in dealers}
        return [self.send(j, SealedShares(keys, {i: self.dealt[i][j] for i in dealers}))
                for j in self._live_committee()]

    def _on_ack(self, sender: int) -> list[bytes]:
        if sender not in self._live_committee():
            raise MessageError("KeyAck from a member that was sent no shares", client=sender, round_id=SETUP_ROUND)
        if sender in self.acked:
            raise ReplayError("second KeyAck", client=sender, round_id=SETUP_ROUND)
        self.acked[sender] = None
        if len(self.acked) == len(self._live_committee()):
            self._finish()
        return []

    def _finish(self) -> None:
        if len(self.acked) < self.spec.threshold:
            raise DropoutError(f"{len(self.acked)} committee members hold shares, the threshold is "
                               f"{self.spec.threshold}: no session", round_id=SETUP_ROUND)
        self.committee = tuple(sorted(self.acked))
        self.key_holders = tuple(sorted(self.dealt))
        self.phase = "done"


class ShareClient(SetupParty):
    """A member: X25519 key, then its secret and sealed shares; a committee member also opens the shares dealt to it.

    Phases: "key" (ShareRequest), "deal" (MemberKeys), "shares" (committee: SealedShares), "done". Picklable.
    """

    PROTOCOL = SETUP_PROTOCOL_ID
    KINDS = SETUP_KINDS

    def __init__(self, cid: int, spec: ShareSetup) -> None:
        if cid not in spec.members:
            raise ValueError(f"client {cid} is not a member of the share setup {spec.members}")
        super().__init__(spec, cid)
        self.phase = "key"
        self._sk: bytes | None = None
        self.state: ThresholdKeys | None = None

    def keys(self) -> bytes:
        if self.state is None or not self.done:
            raise ValueError(f"client {self.me} holds no threshold CKKS keys: the setup has not finished")
        return self.state.serialize(self.spec.params.prime_bits)

    def _fail(self, cls: type, what: str, client: int | None, field: str) -> Exception:
        return cls(what, client=client, round_id=SETUP_ROUND, field=field)

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"key": (ShareRequest,), "deal": (MemberKeys,), "shares": (SealedShares,)}.get(self.phase, ())
        header, msg = self.accept(data, allowed)
        if header.sender != SERVER:
            raise MessageError(f"client {self.me} accepts messages from the server only", client=header.sender,
                               round_id=SETUP_ROUND)
        if isinstance(msg, ShareRequest):
            return self._on_request(msg)
        if isinstance(msg, MemberKeys):
            return self._deal(msg)
        return self._on_shares(msg)

    def _on_request(self, msg: ShareRequest) -> list[bytes]:
        spec = self.spec
        for name, got, want in (("members", msg.members, spec.members), ("committee", msg.committee, spec.committee),
                                ("threshold", msg.threshold, spec.threshold)):
            if got != want:
                raise self._fail(MessageError, f"ShareRequest has {name} {got}, this session's are {want}", self.me,
                                 name)
        needed = default_threshold(len(spec.committee), spec.corruption)
        if spec.threshold < needed:
            raise self._fail(MessageError, f"threshold {spec.threshold} refused for a committee of "
                             f"{len(spec.committee)}: this node assumes corruption {spec.corruption} and needs at "
                             f"least {needed}", self.me, "threshold")
        sk = new_private_key()
        self._sk = private_bytes(sk)
        self.phase = "deal"
        return [self.send(SERVER, MemberKey(public_bytes(sk)))]

    def _deal(self, msg: MemberKeys) -> list[bytes]:
        spec = self.spec
        strangers = sorted(set(msg.keys) - set(spec.committee))
        if strangers:
            raise self._fail(MessageError, f"keys of {strangers}: not committee members", strangers[0], "keys")
        if len(msg.keys) < spec.threshold:
            raise self._fail(MessageError, f"{len(msg.keys)} committee keys, fewer than the threshold "
                             f"{spec.threshold}", self.me, "keys")
        sk = private_from_bytes(self._sk)
        aes = {}
        for j, pk in sorted(msg.keys.items()):
            try:
                aes[j] = pair_key(sk, pk, PURPOSE, spec.session, SETUP_ROUND, self.me, j)
            except ValueError as exc:
                raise self._fail(MessageError, f"unusable X25519 public key: {exc}", j, f"keys[{j}]") from None
        secret = sample_ternary(spec.params.poly_modulus_degree)
        shares = share_secret(spec.params, secret, spec.threshold, tuple(sorted(msg.keys)))
        width = spec.params.prime_bits
        sealed = {j: seal(aes[j], spec.session, SETUP_ROUND, self.me, j, pack_residues(shares[j], width))
                  for j in sorted(aes)}
        self.state = ThresholdKeys(spec.session, self.me, secret, tuple(sorted(msg.keys)), spec.threshold)
        if self.me in msg.keys:
            self.phase = "shares"
        else:
            self.phase, self._sk = "done", None
        return [self.send(SERVER, DealtShares(sealed))]

    def _on_shares(self, msg: SealedShares) -> list[bytes]:
        spec, me = self.spec, self.me
        if sorted(msg.keys) != sorted(msg.sealed) or me not in msg.keys:
            raise self._fail(MessageError, "sealed shares do not match the dealers' keys (or omit this member's own)",
                             me, "sealed")
        sk = private_from_bytes(self._sk)
        k, n = len(spec.params.ring.primes), spec.params.poly_modulus_degree
        shares = {}
        for i in sorted(msg.sealed):
            if i not in spec.members:
                raise self._fail(MessageError, "shares from a non-member", i, "sealed")
            try:
                key = pair_key(sk, msg.keys[i], PURPOSE, spec.session, SETUP_ROUND, me, i)
                blob = open_sealed(key, spec.session, SETUP_ROUND, i, me, msg.sealed[i])
                shares[i] = unpack_residues(blob, spec.params.prime_bits, (k, n))
            except InvalidTag:
                raise self._fail(DecryptionError, f"shares from member {i} to member {me} failed authentication",
                                 i, "sealed") from None
            except ValueError as exc:
                raise self._fail(MessageError, f"unusable shares: {exc}", i, "sealed") from None
            if (shares[i] >= spec.params.ring.moduli(k)).any():
                raise self._fail(MessageError, "a share residue is not below its prime", i, "sealed")
        self.state.shares = shares
        self.phase, self._sk = "done", None
        return [self.send(SERVER, KeyAck())]
