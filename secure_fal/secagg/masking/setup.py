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

from ..errors import DecryptionError, MessageError
from ..identity import SIGNATURE_BYTES, Identity, Roster
from ..machine import ServerMachine, _Party
from ..messages import SERVER
from . import keys, shamir
from .graph import check_holders, check_peer_keys, check_relayed_shares
from .keys import KEY_BYTES, MASK
from .messages import COMMITMENT_BYTES
from .prg import SEED_BYTES
from .session_keys import ClientKeys, RoundSecrets, SessionServerKeys
from .setup_messages import (CLIENT_PHASES, KINDS, PHASE_OF_KIND, PROTOCOL_ID, ROUND_SHARES_BYTES, SetupAck,
                             SetupAdvertise, SetupPeerKeys, SetupRelayedShares, SetupRequest, SetupShares, SetupSpec,
                             sealed_bytes)

_E = shamir.ELEMENT_BYTES
SETUP_SHARE = b"setup-share"   # purpose label of the setup's share-encryption keys (followed by R, 4 bytes)


def _share_key(sk: keys.X25519PrivateKey, peer_pk: bytes, spec: SetupSpec, me: int, peer: int) -> bytes:
    """AES key of the pair {me, peer} for this setup: bound to session, r0, R and the pair."""
    purpose = SETUP_SHARE + struct.pack(">I", spec.rounds)
    return keys.pair_key(sk, peer_pk, purpose, spec.session, spec.first_round, me, peer)


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
        excluded: members whose SetupAdvertise carried a refused key -> the MessageError naming member and field
            (``keys.screen_public_keys``); they are out of U1 and hold no keys of the session.
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: SetupSpec, roster: Roster | None = None) -> None:
        super().__init__(spec)
        self.graph = spec.graph
        self.roster = roster
        self.public_keys: dict[int, tuple[bytes, bytes]] = {}
        self.signed_keys: dict[int, bytes] = {}
        self.commitments: dict[int, bytes] = {}
        self.sealed: dict[int, dict[int, bytes]] = {}
        self.acked: dict[int, None] = {}
        self.excluded: dict[int, MessageError] = {}

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def outcome(self) -> SessionServerKeys:
        """The server's session keys (once ``done``)."""
        if not self.done:
            raise ValueError("the setup has not finished")
        holders = self.contributors
        return SessionServerKeys(self.spec, holders, {u: self.public_keys[u][1] for u in holders},
                                 {u: self.commitments[u] for u in holders}, self.roster)

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
        header, msg = self.accept_from_client(data, (SetupAdvertise,), {**self.public_keys, **self.excluded})
        u, rounds = header.sender, self.spec.rounds
        if len(msg.s_pks) != KEY_BYTES * rounds:
            raise self._fail(f"s_pks of {len(msg.s_pks)} bytes, expected {KEY_BYTES} x {rounds} rounds", u, "s_pks")
        named = [("c_pk", msg.c_pk)] + [(f"s_pks[{j}]", msg.s_pks[j * KEY_BYTES:(j + 1) * KEY_BYTES])
                                        for j in range(rounds)]
        refused = keys.screen_public_keys(named, u, self.spec.round_id)
        if refused is None and self.roster is not None and not self.roster.valid(
                u, keys.advertise_statement(self.spec.session, self.spec.first_round, u, msg.c_pk, msg.s_pks),
                msg.signature):
            refused = self._fail("invalid SetupAdvertise signature; the member is excluded", u, "signature")
        if refused is not None:  # a bad key excludes its client from the session, not the setup
            self.excluded[u] = refused
        else:
            self.public_keys[u] = (msg.c_pk, msg.s_pks)
            self.signed_keys[u] = msg.signature
        complete = len(self.public_keys) + len(self.excluded) == len(self.spec.members)
        return self._close_advertise() if complete else []

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
        if len(msg.commitments) != COMMITMENT_BYTES * self.spec.rounds:
            raise self._fail(f"commitments of {len(msg.commitments)} bytes, expected {COMMITMENT_BYTES} x "
                             f"{self.spec.rounds} rounds", u, "commitments")
        self.sealed[u] = dict(msg.ciphertexts)
        self.commitments[u] = msg.commitments
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
        return [self.send(u, SetupPeerKeys({v: b"".join(self.public_keys[v]) + self.signed_keys[v]
                                            for v in self.graph.of(u) if v in u1}))
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

    def __init__(self, cid: int, spec: SetupSpec, identity: Identity | None = None,
                 roster: Roster | None = None) -> None:
        if cid not in spec.members:
            raise ValueError(f"client {cid} is not a member of the setup {spec.members}")
        if (identity is None) != (roster is None):
            raise ValueError("active mode needs both a signing identity and the roster")
        super().__init__(spec, cid)
        self.identity, self.roster = identity, roster
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
        c_pk, s_pks = keys.public_bytes(c_sk), b"".join(map(keys.public_bytes, s_sks))
        signature = b"" if self.identity is None else self.identity.sign(
            keys.advertise_statement(spec.session, spec.first_round, self.me, c_pk, s_pks))
        self.phase = "share"
        return [self.send(SERVER, SetupAdvertise(c_pk, s_pks, signature))]

    def _on_peer_keys(self, msg: SetupPeerKeys) -> list[bytes]:
        me, spec, t, rounds = self.me, self.spec, self.spec.graph.threshold, self.spec.rounds
        check_peer_keys(msg.keys, spec.graph.of(me), me, t, spec.round_id)
        size = KEY_BYTES * (rounds + 1)
        signed = size + (SIGNATURE_BYTES if self.roster is not None else 0)
        c_sk = keys.private_from_bytes(self._c_sk)
        s_sks = [keys.private_from_bytes(raw) for raw in self._s_sks]
        share_keys, seeds = {}, {}
        for v, entry in sorted(msg.keys.items()):
            if len(entry) != signed:
                raise self._fail(MessageError, f"c_pk || s_pks of {len(entry)} bytes, expected {signed}", v, "keys")
            both = entry[:size]
            if self.roster is not None:
                self.roster.verify(v, keys.advertise_statement(spec.session, spec.first_round, v, both[:KEY_BYTES],
                                                               both[KEY_BYTES:]), entry[size:],
                                   round_id=spec.round_id, field="keys")
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
        commitments = b"".join(keys.commit(b, spec.session, spec.first_round + j, me) for j, b in enumerate(self_seeds))
        return [self.send(SERVER, SetupShares(sealed, commitments))]

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
        self._keys = ClientKeys(spec.session, spec.first_round, rounds, me, t, spec.graph.of(me), partners, secrets,
                                spec.members)
        self._share_keys, self._seeds, self._self_seeds, self._own_shares = {}, {}, [], []
        self.phase = "done"
        return [self.send(SERVER, SetupAck())]


__all__ = ["PROTOCOL_ID", "CLIENT_PHASES", "PHASE_OF_KIND", "KINDS", "SetupSpec", "SetupServer", "SetupClient",
           "ClientKeys", "RoundSecrets", "SessionServerKeys", "sealed_bytes"]
