"""Wire messages and public parameters of the CKKS key distribution (protocol id 4; flow in ``keys.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..messages import Message
from .params import CKKSParams

PROTOCOL_ID = 4

SETUP_ROUND = 0
"""Round id in the headers of the key distribution (aggregation rounds are numbered from 1)."""

KEY_BYTES = 32

TAG_BYTES = 16



@dataclass(frozen=True)
class KeyRequest(Message):
    """Server -> member: the session's members and its dealer; answer with a fresh X25519 public key."""

    KIND = 1
    members: tuple[int, ...]
    dealer: int



@dataclass(frozen=True)
class MemberKey(Message):
    """Member -> server: the raw 32 bytes of a fresh X25519 public key."""

    KIND = 2
    public_key: bytes



@dataclass(frozen=True)
class MemberKeys(Message):
    """Server -> dealer: member id -> X25519 public key, for every other member that answered."""

    KIND = 3
    keys: dict[int, bytes]



@dataclass(frozen=True)
class DealtKeys(Message):
    """Dealer -> server: the public context (``make_public().serialize()``) and, per member, its sealed
    secret context (ciphertext || 16-byte tag)."""

    KIND = 4
    public_context: bytes
    sealed: dict[int, bytes]



@dataclass(frozen=True)
class SealedContext(Message):
    """Server -> member: the dealer's X25519 public key and this member's sealed secret context."""

    KIND = 5
    dealer_key: bytes
    sealed: bytes



@dataclass(frozen=True)
class KeyAck(Message):
    """Member -> server: the context decrypted, has the session's parameters and is kept."""

    KIND = 6



KINDS = {m.KIND: m for m in (KeyRequest, MemberKey, MemberKeys, DealtKeys, SealedContext, KeyAck)}

CLIENT_PHASES = ("key", "deal", "ack")
"""Phases in which members send: every member its key, the dealer the sealed contexts, the others an ack."""

PHASE_OF_KIND = {MemberKey.KIND: "key", DealtKeys.KIND: "deal", KeyAck.KIND: "ack"}



@dataclass(frozen=True)
class KeySetup:
    """Public parameters of one key distribution, known to the server and every member.

    Attributes:
        session: random 64-bit id of the aggregation session the keys are for.
        members: ids of the clients that should receive the keys, sorted, distinct, each in [0, 2^31).
        dealer: the member that generates the keys.
        params: the session's CKKS parameters.
    """

    session: int
    members: tuple[int, ...]
    dealer: int
    params: CKKSParams
    round_id: ClassVar[int] = SETUP_ROUND

    def __post_init__(self) -> None:
        if list(self.members) != sorted(set(self.members)):
            raise ValueError(f"members must be sorted and distinct, got {self.members}")
        if not self.members or self.members[0] < 0 or self.members[-1] >= 2**31:
            raise ValueError("members must be a non-empty set of ids in [0, 2^31)")
        if self.dealer not in self.members:
            raise ValueError(f"dealer {self.dealer} is not a member of {self.members}")
