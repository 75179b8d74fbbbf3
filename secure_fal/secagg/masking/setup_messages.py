"""Wire messages and public parameters of a session-mode masking setup (protocol id 5; flow in ``setup.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message
from . import shamir
from .graph import Neighbourhoods
from .keys import TAG_BYTES

PROTOCOL_ID = 5

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
    """Member -> server: fresh X25519 public keys. 12 + 32 (R + 1) bytes (active mode + 64).

    Attributes:
        c_pk: 32-byte public key for share encryption (one for the whole setup).
        s_pks: s_pk(j) for j = 0..R-1, 32 bytes each, for the pairwise mask seeds of round r0 + j.
        signature: active mode: the member's Ed25519 signature of (session, r0, id, c_pk, s_pks)
            (``keys.advertise_statement``), 64 bytes; honest-but-curious mode: b"".
    """

    KIND = 2
    c_pk: bytes
    s_pks: bytes
    signature: bytes



@dataclass(frozen=True)
class SetupPeerKeys(Message):
    """Server -> member u: the keys of u's neighbours that advertised. 4 + (12 + 32 (R + 1)) per neighbour
    (active mode + 64).

    Attributes:
        keys: neighbour v -> c_pk_v || s_pks_v (32 (R + 1) bytes), in active mode || v's SetupAdvertise signature.
    """

    KIND = 3
    keys: dict[int, bytes]



@dataclass(frozen=True)
class SetupShares(Message):
    """Member u -> server: u's shares of all R rounds for each neighbour, sealed for it.
    4 + (12 + 66 R + 16) per neighbour + 4 + 32 R.

    Attributes:
        ciphertexts: recipient v -> AES-GCM(for j = 0..R-1: share of b_u(j) || share of s_sk_u(j)).
        commitments: for j = 0..R-1 the commitment to b_u(j) (``keys.commit`` with round r0 + j), 32 bytes each.
    """

    KIND = 4
    ciphertexts: dict[int, bytes]
    commitments: bytes



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
