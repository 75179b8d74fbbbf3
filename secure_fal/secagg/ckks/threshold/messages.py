"""Wire messages of threshold CKKS: the rounds (protocol id 6) and the share distribution (protocol id 7; every
header carries round id 0). Flow: ``machines.py`` and ``setup.py``; spec: protocols/ckks.md §Threshold mode."""

from __future__ import annotations

from dataclasses import dataclass

from ...messages import Message
from ..key_messages import KeyAck, MemberKey, MemberKeys

PROTOCOL_ID = 6
SETUP_PROTOCOL_ID = 7


@dataclass(frozen=True)
class InputRequest(Message):
    """Server -> client: send your encrypted input for this round."""

    KIND = 1


@dataclass(frozen=True)
class Ciphertext(Message):
    """Client -> server: ``c0``, the blocks' c0 polynomials in NTT form, residues bit-packed (``ring.pack_residues``,
    shape (blocks, k, N)); ``signature`` (active mode, else b""): Ed25519 of (session, round, id, SHA-256 of c0)."""

    KIND = 2
    c0: bytes
    signature: bytes


@dataclass(frozen=True)
class PartialRequest(Message):
    """Server -> each responder: the contributors C whose inputs the aggregate sums, the responders T (exactly
    t committee members; the Lagrange coefficients depend on T), and (active mode) per contributor the SHA-256
    of its c0 || its signature (96 bytes)."""

    KIND = 3
    contributors: tuple[int, ...]
    responders: tuple[int, ...]
    inputs: dict[int, bytes]


@dataclass(frozen=True)
class Partial(Message):
    """Responder -> server: its partial decryption (NTT form, packed as ``Ciphertext.c0``); ``signature`` (active
    mode, else b""): Ed25519 of (session, round, id, C, T, SHA-256 of the partial)."""

    KIND = 4
    partial: bytes
    signature: bytes


KINDS = {m.KIND: m for m in (InputRequest, Ciphertext, PartialRequest, Partial)}


@dataclass(frozen=True)
class ShareRequest(Message):
    """Server -> every member: the session's members, its committee and threshold t; answer with a fresh X25519
    public key (``MemberKey``)."""

    KIND = 1
    members: tuple[int, ...]
    committee: tuple[int, ...]
    threshold: int


@dataclass(frozen=True)
class DealtShares(Message):
    """Member -> server: per committee member j, the Shamir shares of this member's secret s_i at x = j + 1
    (residues (k_max, N) packed), sealed for j (AES-256-GCM ciphertext || 16-byte tag)."""

    KIND = 4
    sealed: dict[int, bytes]


@dataclass(frozen=True)
class SealedShares(Message):
    """Server -> committee member j: per dealer i, i's X25519 public key (``keys``) and its sealed shares for j."""

    KIND = 5
    keys: dict[int, bytes]
    sealed: dict[int, bytes]


SETUP_KINDS = {m.KIND: m for m in (ShareRequest, MemberKey, MemberKeys, DealtShares, SealedShares, KeyAck)}
