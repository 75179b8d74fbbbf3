"""Setup of a session-mode masking session (protocols/masking.md §Session mode): every member makes the
secrets of R rounds in advance and Shamir-shares them among its neighbours, so that each of those rounds
needs only the ``masked_input`` and ``unmask`` exchanges.

Flow (protocol id 5; every header carries the round id r0 = ``first_round``, the first of the rounds
r0 .. r0+R-1 the setup covers; j = 0..R-1 indexes them):

    server -> every member   SetupRequest(members, rounds)
    member u -> server       SetupAdvertise(c_pk, s_pks)      c_pk: one X25519 key for share encryption;
                                                              s_pks: s_pk_u(j) for every j, 32 bytes each
    server -> u              SetupPeerKeys(keys)              c_pk_v || s_pks_v of u's neighbours in U1
    u -> server              SetupShares(ciphertexts)         per neighbour v: one AES-GCM ciphertext of
                                                              share_v(b_u(j)) || share_v(s_sk_u(j)) for j = 0..R-1
    server -> u              SetupRelayedShares(ciphertexts)  what u's neighbours in U2 sealed for u
    u -> server              SetupAck()                       u opened them and keeps its session keys

U1 / U2 / U3 = members whose SetupAdvertise / SetupShares / SetupAck arrived; U3 are the key holders, the
only clients that may take part in the session's rounds. The secrets of different rounds are independent
(fresh s_sk_u(j) and b_u(j) per round), so revealing round j's secrets of a client reveals nothing of its
other rounds.

Outcome: on the server ``SetupServer.outcome()`` (``SessionServerKeys``); on a member ``SetupClient.keys()``,
the serialized ``ClientKeys`` a node stores and ``MaskingProtocol.load_client_keys`` reads back.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from . import masking_keys as keys
from . import shamir
from .errors import DecryptionError, InputError, MessageError, ReplayError
from .machine import RoundSpec, ServerMachine, _Party
from .masking_graph import Neighbourhoods, check_holders, check_peer_keys, check_relayed_shares
from .masking_keys import KEY_BYTES, MASK, TAG_BYTES
from .messages import SERVER, Header, Message, decode, encode
from .prg import SEED_BYTES

PROTOCOL_ID = 5
SETUP_SHARE = b"setup-share"   # purpose label of the setup's share-encryption keys (followed by R, 4 bytes)
ROUND_SHARES_BYTES = 2 * shamir.ELEMENT_BYTES   # b-share || s_sk-share of one round: 66


def sealed_bytes(rounds: int) -> int:
    """Bytes of one sealed SetupShares entry: 66 R + 16."""
    return rounds * ROUND_SHARES_BYTES + TAG_BYTES


@dataclass(frozen=True)
class SetupRequest(Message):
    """Server -> member, opens the setup. 8 + 4 + 8 n bytes.

    Attributes:
        members: the session's members (sorted); the neighbour graph is derived from them and the session id.
        rounds: R, the number of rounds the setup covers (from the header's round id on).
    """

    KIND = 1
    members: tuple[int, ...]
    rounds: int


@dataclass(frozen=True)
class SetupAdvertise(Message):
    """Member -> server: fresh X25519 public keys. 8 + 32 (R + 1) bytes.

    Attributes:
        c_pk: 32-byte public key for share encryption (one for the whole setup).
        s_pks: s_pk(j) for j = 0..R-1, 32 bytes each, for the pairwise mask seeds of round r0 + j.
    """

    KIND = 2
    c_pk: bytes
    s_pks: bytes


@dataclass(frozen=True)
class SetupPeerKeys(Message):
    """Server -> member u: the keys of u's neighbours that advertised. 4 + (12 + 32 (R + 1)) per neighbour.

    Attributes:
        keys: neighbour v -> c_pk_v || s_pks_v (32 (R + 1) bytes).
    """

    KIND = 3
    keys: dict[int, bytes]


@dataclass(frozen=True)
class SetupShares(Message):
    """Member u -> server: u's shares of all R rounds for each neighbour, sealed for it.
    4 + (12 + 66 R + 16) per neighbour.

    Attributes:
        ciphertexts: recipient v -> AES-GCM(for j = 0..R-1: share of b_u(j) || share of s_sk_u(j)).
    """

    KIND = 4
    ciphertexts: dict[int, bytes]


@dataclass(frozen=True)
class SetupRelayedShares(Message):
    """Server -> member u: the sealed shares addressed to u, from its neighbours in U2.
    4 + (12 + 66 R + 16) per neighbour that shared.

    Attributes:
        ciphertexts: sender v -> the ciphertext v sealed for u.
    """

    KIND = 5
    ciphertexts: dict[int, bytes]


@dataclass(frozen=True)
class SetupAck(Message):
    """Member -> server: it opened its shares and keeps its session keys (it is a key holder). 0 bytes."""

    KIND = 6


KINDS = {m.KIND: m for m in (SetupRequest, SetupAdvertise, SetupPeerKeys, SetupShares, SetupRelayedShares,
                             SetupAck)}
CLIENT_PHASES = ("advertise", "share", "ack")
"""Phases in which members send during the setup (``Faults.drop`` names them)."""
PHASE_OF_KIND = {SetupAdvertise.KIND: "advertise", SetupShares.KIND: "share", SetupAck.KIND: "ack"}


@dataclass(frozen=True)
class SetupSpec:
    """Public parameters of one setup, known to the server and every member.

    Attributes:
        session: random 64-bit id of the aggregation session.
        members: the clients asked to take part, sorted and distinct, each in [0, 2^31).
        first_round: r0, the first round id the setup covers (the round id of its headers), >= 1.
        rounds: R >= 1; the setup covers rounds r0 .. r0+R-1.
        graph: the session's neighbour graph over ``members`` and the threshold t
            (``masking_graph.session_neighbourhoods``).
    """

    session: int
    members: tuple[int, ...]
    first_round: int
    rounds: int
    graph: Neighbourhoods

    def __post_init__(self) -> None:
        if list(self.members) != sorted(set(self.members)):
            raise ValueError(f"members must be sorted and distinct, got {self.members}")
        if not self.members or self.members[0] < 0 or self.members[-1] >= 2**31:
            raise ValueError("members must be a non-empty set of ids in [0, 2^31)")
        if self.first_round < 1 or self.rounds < 1 or self.first_round + self.rounds > 2**31:
            raise ValueError(f"round range {self.first_round} + {self.rounds} outside [1, 2^31)")

    @property
    def round_id(self) -> int:
        """The round id in every header of the setup: r0."""
        return self.first_round

    @property
    def clients(self) -> tuple[int, ...]:
        """The members (the name ``ServerMachine`` reads)."""
        return self.members


def _share_key(sk: keys.X25519PrivateKey, peer_pk: bytes, spec: SetupSpec, me: int, peer: int) -> bytes:
    """AES key of the pair {me, peer} for this setup: bound to session, r0, R and the pair."""
    purpose = SETUP_SHARE + struct.pack(">I", spec.rounds)
    return keys.pair_key(sk, peer_pk, purpose, spec.session, spec.first_round, me, peer)


# -- the client's session keys --------------------------------------------------------------------------


@dataclass
class RoundSecrets:
    """One client's secrets for one round of a session.

    Attributes:
        self_seed: b_u(j), 32 bytes.
        own_share: u's own Shamir share of b_u(j) (it never keeps a share of its own s_sk_u(j)).
        seeds: partner v -> s_uv(j), the 32-byte pairwise mask seed.
        held: partner v -> (share of b_v(j), share of s_sk_v(j)).
    """

    self_seed: bytes
    own_share: int
    seeds: dict[int, bytes]
    held: dict[int, tuple[int, int]]


@dataclass(frozen=True)
class _StoredKeys(Message):
    """Serialized ``ClientKeys`` (not a wire message): header round = r0, sender = recipient = the client."""

    KIND = 100
    rounds: int
    threshold: int
    neighbours: tuple[int, ...]
    partners: tuple[int, ...]
    secrets: dict[int, bytes]


_STORED = {_StoredKeys.KIND: _StoredKeys}
_E = shamir.ELEMENT_BYTES


@dataclass
class ClientKeys:
    """A client's keys of one setup (rounds r0 .. r0+R-1); the secrets of a round are deleted when it runs.

    Attributes:
        session: the session id.
        first_round: r0.
        rounds: R.
        me: the client's id.
        threshold: t of the session.
        neighbours: N(u) in the session graph (sorted).
        partners: the neighbours whose shares u holds (sorted): the only clients u ever masks with.
        secrets: round id -> RoundSecrets, for the rounds of the range not run yet (nor skipped past).
    """

    session: int
    first_round: int
    rounds: int
    me: int
    threshold: int
    neighbours: tuple[int, ...]
    partners: tuple[int, ...]
    secrets: dict[int, RoundSecrets]

    def check(self, spec: RoundSpec) -> None:
        """Raise unless round ``spec`` may run with these keys: MessageError (field 'session' or 'round') for
        another session or a round outside r0 .. r0+R-1; ReplayError (field 'round') for a round already
        run, or earlier than one already run."""
        me, r = self.me, spec.round_id
        if spec.session != self.session:
            raise MessageError(f"round of session {spec.session:#x}; client {me} holds keys of session "
                               f"{self.session:#x}", client=me, round_id=r, field="session")
        last = self.first_round + self.rounds - 1
        if not self.first_round <= r <= last:
            raise MessageError(f"round {r} is outside the rounds {self.first_round}..{last} that client {me}'s setup "
                               "covers", client=me, round_id=r, field="round")
        if r not in self.secrets:
            raise ReplayError(f"client {me} already ran round {r}, or a later round, of this session", client=me,
                              round_id=r, field="round")

    def take(self, spec: RoundSpec) -> RoundSecrets:
        """The secrets of round ``spec`` (``check`` first), deleting them and those of every earlier round."""
        self.check(spec)
        out = self.secrets[spec.round_id]
        self.secrets = {r: s for r, s in self.secrets.items() if r > spec.round_id}
        return out

    def to_bytes(self) -> bytes:
        """The keys as bytes (wire framing of ``messages.py``, protocol id 5, kind 100): per round
        b (32) || own share (33) || per partner, in order, s_uv (32) || b-share (33) || s_sk-share (33)."""
        secrets = {}
        for r, s in sorted(self.secrets.items()):
            parts = [s.self_seed, shamir.encode_share(s.own_share)]
            for v in self.partners:
                b, sk = s.held[v]
                parts += [s.seeds[v], shamir.encode_share(b), shamir.encode_share(sk)]
            secrets[r] = b"".join(parts)
        header = Header(PROTOCOL_ID, _StoredKeys.KIND, self.session, self.first_round, self.me, self.me)
        return encode(header, _StoredKeys(self.rounds, self.threshold, self.neighbours, self.partners, secrets))

    @classmethod
    def from_bytes(cls, data: bytes, cid: int) -> ClientKeys:
        """Inverse of ``to_bytes``; InputError (client ``cid``, field 'keys') on bytes that are not client
        ``cid``'s keys."""
        try:
            header, stored = decode(data, _STORED, PROTOCOL_ID)
            if header.sender != cid or header.recipient != cid:
                raise ValueError(f"keys of client {header.sender}")
            r0, rounds, partners = header.round_id, stored.rounds, stored.partners
            if rounds < 1 or not set(partners) <= set(stored.neighbours) or list(partners) != sorted(set(partners)):
                raise ValueError("inconsistent rounds or partners")
            size = SEED_BYTES + _E + len(partners) * (SEED_BYTES + 2 * _E)
            secrets = {}
            for r, raw in stored.secrets.items():
                if not r0 <= r < r0 + rounds or len(raw) != size:
                    raise ValueError(f"entry of round {r} ({len(raw)} bytes) does not fit")
                seeds, held, pos = {}, {}, SEED_BYTES + _E
                for v in partners:
                    seeds[v] = raw[pos:pos + SEED_BYTES]
                    pos += SEED_BYTES
                    held[v] = (shamir.decode_share(raw[pos:pos + _E]), shamir.decode_share(raw[pos + _E:pos + 2 * _E]))
                    pos += 2 * _E
                secrets[r] = RoundSecrets(raw[:SEED_BYTES], shamir.decode_share(raw[SEED_BYTES:SEED_BYTES + _E]),
                                          seeds, held)
        except (MessageError, ValueError) as exc:
            raise InputError(f"stored masking keys unusable: {exc}", client=cid, field="keys") from None
        return cls(header.session, r0, rounds, cid, stored.threshold, stored.neighbours, partners, secrets)


@dataclass(frozen=True)
class SessionServerKeys:
    """The server's outcome of a setup: what it needs to run the rounds r0 .. r0+R-1.

    Attributes:
        spec: the setup's public parameters (session, range, graph, t).
        holders: U3, the members that acknowledged (sorted): every round's clients must be among them.
        s_pks: holder u -> s_pk_u(j) for j = 0..R-1 concatenated (32 R bytes).
    """

    spec: SetupSpec
    holders: tuple[int, ...]
    s_pks: dict[int, bytes]

    def covers(self, round_id: int) -> bool:
        return self.spec.first_round <= round_id < self.spec.first_round + self.spec.rounds

    def s_pk(self, cid: int, round_id: int) -> bytes:
        """s_pk of holder ``cid`` for round ``round_id`` (covered), 32 bytes."""
        j = round_id - self.spec.first_round
        return self.s_pks[cid][j * KEY_BYTES:(j + 1) * KEY_BYTES]


# -- machines -------------------------------------------------------------------------------------------


class SetupServer(ServerMachine):
    """Relays the setup's keys and sealed shares; sees public keys and ciphertexts only.

    Phases: "advertise", "share", "ack", then "done" (``contributors`` = the key holders U3). Each phase closes
    when every member still in the setup answered or at ``on_timeout``; closing "advertise" / "share" / "ack"
    requires every remaining member to have >= t of N[u] remaining (DropoutError otherwise, as a classic
    round's phases).

    Attributes:
        public_keys: U1, member -> (c_pk, s_pks).
        sealed: U2, sender -> {recipient: ciphertext}.
        acked: U3, the members that acknowledged.
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: SetupSpec) -> None:
        super().__init__(spec)
        self.graph = spec.graph
        self.public_keys: dict[int, tuple[bytes, bytes]] = {}
        self.sealed: dict[int, dict[int, bytes]] = {}
        self.acked: dict[int, None] = {}

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def outcome(self) -> SessionServerKeys:
        """The server's session keys (once ``done``)."""
        if not self.done:
            raise ValueError("the setup has not finished")
        holders = self.contributors
        return SessionServerKeys(self.spec, holders, {u: self.public_keys[u][1] for u in holders})

    def start(self) -> list[bytes]:
        self.phase = "advertise"
        request = SetupRequest(self.spec.members, self.spec.rounds)
        return [self.send(m, request) for m in self.spec.members]

    def receive(self, data: bytes) -> list[bytes]:
        if self.phase == "advertise":
            return self._on_advertise(data)
        if self.phase == "share":
            return self._on_shares(data)
        if self.phase == "ack":
            return self._on_ack(data)
        self.accept(data, ())  # raises: nothing is accepted before start() or once done
        return []

    def on_timeout(self) -> list[bytes]:
        if self.phase == "advertise":
            return self._close_advertise()
        if self.phase == "share":
            return self._close_share()
        if self.phase == "ack":
            self._finish()
        return []

    def _fail(self, what: str, client: int, field: str) -> MessageError:
        return MessageError(what, client=client, round_id=self.spec.round_id, field=field)

    def _on_advertise(self, data: bytes) -> list[bytes]:
        header, msg = self.accept_from_client(data, (SetupAdvertise,), self.public_keys)
        u, rounds = header.sender, self.spec.rounds
        if len(msg.c_pk) != KEY_BYTES:
            raise self._fail(f"c_pk of {len(msg.c_pk)} bytes, expected {KEY_BYTES}", u, "c_pk")
        if len(msg.s_pks) != KEY_BYTES * rounds:
            raise self._fail(f"s_pks of {len(msg.s_pks)} bytes, expected {KEY_BYTES} x {rounds} rounds", u, "s_pks")
        self.public_keys[u] = (msg.c_pk, msg.s_pks)
        return self._close_advertise() if len(self.public_keys) == len(self.spec.members) else []

    def _on_shares(self, data: bytes) -> list[bytes]:
        u, msg = self.accept_after(data, SetupShares, self.sealed, self.public_keys, "advertise")
        expected = set(self.graph.of(u)) & self.public_keys.keys()
        if set(msg.ciphertexts) != expected:
            raise self._fail(f"ciphertexts for {sorted(msg.ciphertexts)}, expected one for each neighbour that "
                             f"advertised: {sorted(expected)}", u, "ciphertexts")
        size = sealed_bytes(self.spec.rounds)
        for v, ct in msg.ciphertexts.items():
            if len(ct) != size:
                raise self._fail(f"ciphertext for client {v} has {len(ct)} bytes, expected {size}", u, "ciphertexts")
        self.sealed[u] = dict(msg.ciphertexts)
        return self._close_share() if len(self.sealed) == len(self.public_keys) else []

    def _on_ack(self, data: bytes) -> list[bytes]:
        u, _ = self.accept_after(data, SetupAck, self.acked, self.sealed, "share")
        self.acked[u] = None
        if len(self.acked) == len(self.sealed):
            self._finish()
        return []

    def _require(self, alive: set[int], what: str) -> None:
        check_holders(self.graph, alive, alive, True, what, self.phase, self.spec.round_id)

    def _close_advertise(self) -> list[bytes]:
        u1 = set(self.public_keys)
        self._require(u1, "too few neighbours advertised setup keys")
        self.phase = "share"
        return [self.send(u, SetupPeerKeys({v: b"".join(self.public_keys[v]) for v in self.graph.of(u) if v in u1}))
                for u in sorted(u1)]

    def _close_share(self) -> list[bytes]:
        u2 = set(self.sealed)
        self._require(u2, "too few neighbours shared their session secrets")
        self.phase = "ack"
        return [self.send(u, SetupRelayedShares({v: self.sealed[v][u] for v in self.graph.of(u) if v in u2}))
                for u in sorted(u2)]

    def _finish(self) -> None:
        u3 = set(self.acked)
        self._require(u3, "too few neighbours acknowledged their session keys")
        self.contributors = tuple(sorted(u3))
        self.phase = "done"


class SetupClient(_Party):
    """A member: makes R rounds' secrets, shares them, opens its neighbours' shares.

    Phases: "advertise" (waiting for SetupRequest), "share" (SetupPeerKeys), "ack" (SetupRelayedShares), "done"
    with ``keys()``. Holds raw bytes only (private keys are forgotten once their shares and seeds are made), so
    plain ``pickle`` stores it between messages (a Flower node's state).
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: SetupSpec) -> None:
        if cid not in spec.members:
            raise ValueError(f"client {cid} is not a member of the setup {spec.members}")
        super().__init__(spec, cid)
        self.phase = "advertise"
        self._c_sk: bytes | None = None
        self._s_sks: list[bytes] = []                  # s_sk(j), raw, until shared
        self._self_seeds: list[bytes] = []             # b(j)
        self._own_shares: list[int] = []               # own share of b(j)
        self._share_keys: dict[int, bytes] = {}        # v -> AES key of the pair
        self._seeds: dict[int, list[bytes]] = {}       # v -> s_uv(j) for every j
        self._keys: ClientKeys | None = None

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def keys(self) -> bytes:
        """This member's session keys as bytes (``ClientKeys.to_bytes``), once ``done``."""
        if self._keys is None:
            raise ValueError(f"client {self.me} holds no session keys: the setup has not finished")
        return self._keys.to_bytes()

    def receive(self, data: bytes) -> list[bytes]:
        handlers = {"advertise": (SetupRequest, self._on_request), "share": (SetupPeerKeys, self._on_peer_keys),
                    "ack": (SetupRelayedShares, self._on_relayed_shares)}
        kind, handler = handlers.get(self.phase, ((), None))
        header, msg = self.accept(data, kind if handler else ())
        if header.sender != SERVER:
            raise MessageError(f"client {self.me} accepts messages from the server only", client=header.sender,
                               round_id=header.round_id)
        return handler(msg)

    def _fail(self, cls: type, what: str, client: int | None, field: str) -> Exception:
        return cls(what, client=client, round_id=self.spec.round_id, field=field)

    def _on_request(self, msg: SetupRequest) -> list[bytes]:
        spec = self.spec
        if msg.members != spec.members:
            raise self._fail(MessageError, f"SetupRequest lists members {msg.members}, this setup's are "
                             f"{spec.members}", self.me, "members")
        if msg.rounds != spec.rounds:
            raise self._fail(MessageError, f"SetupRequest covers {msg.rounds} rounds, this setup {spec.rounds}",
                             self.me, "rounds")
        c_sk = keys.new_private_key()
        s_sks = [keys.new_private_key() for _ in range(spec.rounds)]
        self._c_sk, self._s_sks = keys.private_bytes(c_sk), [keys.private_bytes(sk) for sk in s_sks]
        self.phase = "share"
        return [self.send(SERVER, SetupAdvertise(keys.public_bytes(c_sk), b"".join(map(keys.public_bytes, s_sks))))]

    def _on_peer_keys(self, msg: SetupPeerKeys) -> list[bytes]:
        me, spec, t, rounds = self.me, self.spec, self.spec.graph.threshold, self.spec.rounds
        check_peer_keys(msg.keys, spec.graph.of(me), me, t, spec.round_id)
        size = KEY_BYTES * (rounds + 1)
        c_sk = keys.private_from_bytes(self._c_sk)
        s_sks = [keys.private_from_bytes(raw) for raw in self._s_sks]
        share_keys, seeds = {}, {}
        for v, both in sorted(msg.keys.items()):
            if len(both) != size:
                raise self._fail(MessageError, f"c_pk || s_pks of {len(both)} bytes, expected {size}", v, "keys")
            try:
                share_keys[v] = _share_key(c_sk, both[:KEY_BYTES], spec, me, v)
                seeds[v] = [keys.pair_key(s_sks[j], both[(j + 1) * KEY_BYTES:(j + 2) * KEY_BYTES], MASK, spec.session,
                                          spec.first_round + j, me, v) for j in range(rounds)]
            except ValueError as exc:
                raise self._fail(MessageError, f"unusable public key: {exc}", v, "keys") from None
        holders = sorted(msg.keys) + [me]
        self_seeds = [os.urandom(SEED_BYTES) for _ in range(rounds)]
        b_shares = [shamir.split(b, t, holders) for b in self_seeds]
        s_shares = [shamir.split(raw, t, holders) for raw in self._s_sks]
        sealed = {v: keys.seal(share_keys[v], spec.session, spec.first_round, me, v,
                               b"".join(shamir.encode_share(b_shares[j][v]) + shamir.encode_share(s_shares[j][v])
                                        for j in range(rounds)))
                  for v in sorted(msg.keys)}
        self._share_keys, self._seeds, self._self_seeds = share_keys, seeds, self_seeds
        self._own_shares = [b_shares[j][me] for j in range(rounds)]
        self._c_sk, self._s_sks = None, []
        self.phase = "ack"
        return [self.send(SERVER, SetupShares(sealed))]

    def _on_relayed_shares(self, msg: SetupRelayedShares) -> list[bytes]:
        me, spec, t, rounds = self.me, self.spec, self.spec.graph.threshold, self.spec.rounds
        check_relayed_shares(msg.ciphertexts, self._share_keys, me, t, spec.round_id)
        held: dict[int, list[tuple[int, int]]] = {}
        for v, ct in sorted(msg.ciphertexts.items()):
            try:
                plain = keys.open_sealed(self._share_keys[v], spec.session, spec.first_round, v, me, ct)
            except keys.InvalidTag:
                raise self._fail(DecryptionError, f"setup share ciphertext from client {v} to client {me} for rounds "
                                 f"from {spec.first_round} failed authentication", v, "ciphertexts") from None
            if len(plain) != rounds * ROUND_SHARES_BYTES:
                raise self._fail(MessageError, f"share plaintext of {len(plain)} bytes, expected "
                                 f"{rounds * ROUND_SHARES_BYTES}", v, "ciphertexts")
            try:
                held[v] = [(shamir.decode_share(plain[i:i + _E]), shamir.decode_share(plain[i + _E:i + 2 * _E]))
                           for i in range(0, len(plain), ROUND_SHARES_BYTES)]
            except ValueError as exc:
                raise self._fail(MessageError, f"bad share plaintext: {exc}", v, "ciphertexts") from None
        partners = tuple(sorted(held))
        secrets = {spec.first_round + j: RoundSecrets(self._self_seeds[j], self._own_shares[j],
                                                      {v: self._seeds[v][j] for v in partners},
                                                      {v: held[v][j] for v in partners})
                   for j in range(rounds)}
        self._keys = ClientKeys(spec.session, spec.first_round, rounds, me, t, spec.graph.of(me), partners, secrets)
        self._share_keys, self._seeds, self._self_seeds, self._own_shares = {}, {}, [], []
        self.phase = "done"
        return [self.send(SERVER, SetupAck())]


__all__ = ["PROTOCOL_ID", "CLIENT_PHASES", "PHASE_OF_KIND", "KINDS", "SetupSpec", "SetupServer", "SetupClient",
           "ClientKeys", "RoundSecrets", "SessionServerKeys", "sealed_bytes"]
