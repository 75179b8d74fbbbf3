"""Wire messages of a CKKS round (protocol id 2; flow in ``protocol.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message

PROTOCOL_ID = 2



@dataclass(frozen=True)
class Request(Message):
    """Server -> client: send your encrypted input for this round."""

    KIND = 1



@dataclass(frozen=True)
class EncryptedInput(Message):
    """Client -> server: chunk index (0 .. chunks-1) -> serialized CKKS ciphertext of N values (two per complex
    slot); in active mode ``signature`` is the client's Ed25519 signature of (session, round, id, SHA-256 of the
    chunks) (64 bytes; else b"")."""

    KIND = 2
    chunks: dict[int, bytes]
    signature: bytes



@dataclass(frozen=True)
class DecryptRequest(Message):
    """Server -> decryptor: the aggregate ciphertexts and the ids of the clients whose inputs they sum; in active
    mode ``inputs`` holds, per contributor, the SHA-256 of its chunks || its signature (96 bytes; else empty)."""

    KIND = 3
    contributors: tuple[int, ...]
    chunks: dict[int, bytes]
    inputs: dict[int, bytes]



@dataclass(frozen=True)
class DecryptedSum(Message):
    """Decryptor -> server: the sum as integers on the fixed-point grid, packed as ring elements (k/8 bytes)."""

    KIND = 4
    values: bytes



KINDS = {m.KIND: m for m in (Request, EncryptedInput, DecryptRequest, DecryptedSum)}
