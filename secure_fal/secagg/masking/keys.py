"""Key agreement and share encryption of the masking protocol (protocols/masking.md §Keys).

Each client makes two fresh X25519 key pairs per round: c (encrypts the shares it sends) and s (agrees
the pairwise mask seeds). For a pair {u, v} and a purpose ("mask" or "share"):

    key_uv = HKDF-SHA256(ikm = X25519(sk_u, pk_v), salt = none, length = 32,
                         info = "secure_fal/masking/v1/" + purpose + session(8) + round(4) + min(u,v)(4) + max(u,v)(4))

so both ends derive the same key, and keys of different sessions, rounds, pairs or purposes are
independent. Shares are sealed with AES-256-GCM under the "share" key; the nonce is
sender(4) || recipient(4) || 0(4), unique because each direction of a pair carries one ciphertext per
round, and the associated data binds session, round, sender and recipient.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import MessageError
from ..identity import ids_bytes, statement

KEY_BYTES = 32
TAG_BYTES = 16
MASK = b"mask"     # purpose label of pairwise mask seeds
SHARE = b"share"   # purpose label of share-encryption keys
_LABEL = b"secure_fal/masking/v1/"
_PAIR = struct.Struct(">QIii")


def new_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key from the OS's cryptographic RNG."""
    return X25519PrivateKey.generate()


def private_bytes(sk: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of a private key (what is secret-shared)."""
    return sk.private_bytes_raw()


def public_bytes(sk: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the matching public key."""
    return sk.public_key().public_bytes_raw()


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    """Inverse of private_bytes; raises ValueError unless raw is 32 bytes."""
    return X25519PrivateKey.from_private_bytes(raw)


_P25519 = 2**255 - 19


def check_public_key(pk: bytes) -> None:
    """Raise ValueError (saying why) unless ``pk`` is a canonical X25519 public key of a point not of low order.

    Refused: not 32 bytes; non-canonical (u >= 2^255 - 19 or the unused top bit set: another encoding of a
    point, which would let one party hold two "different" keys); a low-order point (0, 1, the order-2 and
    order-8 points: X25519 with it gives an all-zero or predictable shared secret). Detected by exchanging with a
    fresh key: every low-order point gives the all-zero secret that ``cryptography`` refuses.
    """
    if not isinstance(pk, (bytes, bytearray)) or len(pk) != KEY_BYTES:
        raise ValueError(f"public key must be {KEY_BYTES} bytes, got {len(pk) if isinstance(pk, bytes) else pk!r}")
    u = int.from_bytes(pk, "little")
    if u >> 255 or u >= _P25519:
        raise ValueError("non-canonical X25519 public key (u >= 2^255 - 19 or top bit set)")
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(bytes(pk)))
    except ValueError:
        raise ValueError("low-order X25519 public key (the shared secret would be all zero)") from None


def screen_public_keys(named: list[tuple[str, bytes]], client: int, round_id: int) -> MessageError | None:
    """The server's check of a client's advertised keys: None when every (field name, key) passes
    ``check_public_key``, else the MessageError naming the client, round and first bad field (what the server
    records when it excludes that client from the round)."""
    for name, pk in named:
        try:
            check_public_key(pk)
        except ValueError as exc:
            return MessageError(f"refused public key: {exc}; the client is excluded from the round", client=client,
                                round_id=round_id, field=name)
    return None


def pair_key(sk: X25519PrivateKey, peer_pk: bytes, purpose: bytes, session: int, round_id: int, me: int,
             peer: int) -> bytes:
    """The 32-byte key that ``me`` (holding sk) and ``peer`` (owning peer_pk) share for ``purpose``.

    Raises ValueError when peer_pk is not 32 bytes or is a low-order point (all-zero shared secret).
    """
    if len(peer_pk) != KEY_BYTES:
        raise ValueError(f"public key must be {KEY_BYTES} bytes, got {len(peer_pk)}")
    shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    info = _LABEL + purpose + _PAIR.pack(session, round_id, min(me, peer), max(me, peer))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)


def commit(seed: bytes, session: int, round_id: int, owner: int) -> bytes:
    """SHA-256(label || "commit" || session || round || owner || seed): the 32-byte commitment to a self-mask seed
    b_u. Hiding because b_u is 256 uniform bits; binding by collision resistance."""
    return hashlib.sha256(_LABEL + b"commit" + struct.pack(">QIi", session, round_id, owner) + seed).digest()


def advertise_statement(session: int, round_id: int, me: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """What a client signs in active mode when it advertises its keys (``identity.statement``, purpose
    "masking/advertise"); in session mode round_id is r0 and s_pk the R keys s_pks."""
    return statement(b"masking/advertise", session, round_id, me, c_pk, s_pk)


def consistency_statement(session: int, round_id: int, me: int, survivors: tuple[int, ...]) -> bytes:
    """What a client signs in the consistency round: U3 (purpose "masking/consistency")."""
    return statement(b"masking/consistency", session, round_id, me, ids_bytes(survivors))


def seal(key: bytes, session: int, round_id: int, sender: int, recipient: int, plaintext: bytes) -> bytes:
    """AES-256-GCM ciphertext || 16-byte tag of plaintext, bound to (session, round, sender, recipient)."""
    return AESGCM(key).encrypt(_nonce(sender, recipient), plaintext, _aad(session, round_id, sender, recipient))


def open_sealed(key: bytes, session: int, round_id: int, sender: int, recipient: int, ciphertext: bytes) -> bytes:
    """Inverse of seal; raises InvalidTag when the ciphertext, the tag or any bound field differs."""
    return AESGCM(key).decrypt(_nonce(sender, recipient), ciphertext, _aad(session, round_id, sender, recipient))


def _nonce(sender: int, recipient: int) -> bytes:
    return struct.pack(">iiI", sender, recipient, 0)


def _aad(session: int, round_id: int, sender: int, recipient: int) -> bytes:
    return _LABEL + SHARE + _PAIR.pack(session, round_id, sender, recipient)


__all__ = ["KEY_BYTES", "TAG_BYTES", "MASK", "SHARE", "InvalidTag", "check_public_key", "screen_public_keys",
           "new_private_key", "private_bytes", "public_bytes", "private_from_bytes", "pair_key", "commit",
           "advertise_statement", "consistency_statement", "seal", "open_sealed"]
