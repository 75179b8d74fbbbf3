"""What a session-mode masking setup leaves behind: a client's secrets of its R rounds (``ClientKeys``, stored on
its node between rounds) and the server's public keys of the holders (``SessionServerKeys``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, MessageError, ReplayError
from ..identity import Roster
from ..machine import RoundSpec
from ..messages import Header, Message, decode, encode
from . import shamir
from .keys import KEY_BYTES
from .messages import COMMITMENT_BYTES
from .prg import SEED_BYTES
from .setup_messages import PROTOCOL_ID, SetupSpec


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
    members: tuple[int, ...]



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
        members: the setup's members (the session graph is derived from them: active mode checks signatures
            of two-hop neighbours).
    """

    session: int
    first_round: int
    rounds: int
    me: int
    threshold: int
    neighbours: tuple[int, ...]
    partners: tuple[int, ...]
    secrets: dict[int, RoundSecrets]
    members: tuple[int, ...]

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
        return encode(header, _StoredKeys(self.rounds, self.threshold, self.neighbours, self.partners, secrets,
                                          self.members))

    @classmethod
    def from_bytes(cls, data: bytes, cid: int) -> ClientKeys:
        """Inverse of ``to_bytes``; InputError (client ``cid``, field 'keys') on bytes that are not client
        ``cid``'s keys."""
        try:
            header, stored = decode(data, _STORED, PROTOCOL_ID)
            if header.sender != cid or header.recipient != cid:
                raise ValueError(f"keys of client {header.sender}")
            r0, rounds, partners = header.round_id, stored.rounds, stored.partners
            if (rounds < 1 or not set(partners) <= set(stored.neighbours) or list(partners) != sorted(set(partners))
                    or not set(stored.neighbours) | {cid} <= set(stored.members)):
                raise ValueError("inconsistent rounds, partners or members")
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
        return cls(header.session, r0, rounds, cid, stored.threshold, stored.neighbours, partners, secrets,
                   stored.members)



@dataclass(frozen=True)
class SessionServerKeys:
    """The server's outcome of a setup: what it needs to run the rounds r0 .. r0+R-1.

    Attributes:
        spec: the setup's public parameters (session, range, graph, t).
        holders: U3, the members that acknowledged (sorted): every round's clients must be among them.
        s_pks: holder u -> s_pk_u(j) for j = 0..R-1 concatenated (32 R bytes).
        commitments: holder u -> the commitments to b_u(j) for j = 0..R-1 concatenated (32 R bytes).
        roster: active mode: the session's roster (None: honest-but-curious).
    """

    spec: SetupSpec
    holders: tuple[int, ...]
    s_pks: dict[int, bytes]
    commitments: dict[int, bytes]
    roster: Roster | None = None

    def covers(self, round_id: int) -> bool:
        return self.spec.first_round <= round_id < self.spec.first_round + self.spec.rounds

    def s_pk(self, cid: int, round_id: int) -> bytes:
        """s_pk of holder ``cid`` for round ``round_id`` (covered), 32 bytes."""
        j = round_id - self.spec.first_round
        return self.s_pks[cid][j * KEY_BYTES:(j + 1) * KEY_BYTES]

    def commitment(self, cid: int, round_id: int) -> bytes:
        """Holder ``cid``'s commitment to its b of round ``round_id`` (covered), 32 bytes."""
        j = round_id - self.spec.first_round
        return self.commitments[cid][j * COMMITMENT_BYTES:(j + 1) * COMMITMENT_BYTES]
