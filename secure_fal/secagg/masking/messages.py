"""Messages of the masking protocol (protocols/masking.md §Messages). Sizes exclude the 30-byte header.

A dict field costs 4 bytes plus, per entry, 8 (key) + 4 (length) + the value; a tuple field 4 + 8 per id.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..identity import SIGNATURE_BYTES
from ..messages import Message
from .keys import KEY_BYTES, TAG_BYTES
from .shamir import ELEMENT_BYTES

PROTOCOL_ID = 3
PEER_KEYS_BYTES = 2 * KEY_BYTES                         # c_pk || s_pk of one neighbour
SIGNED_PEER_KEYS_BYTES = PEER_KEYS_BYTES + SIGNATURE_BYTES   # active mode: || its Advertise signature
COMMITMENT_BYTES = 32                                   # SHA-256 commitment to b_u
SHARE_PLAINTEXT_BYTES = 2 * ELEMENT_BYTES               # b-share || s_sk-share
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + TAG_BYTES


@dataclass(frozen=True)
class AdvertiseRequest(Message):
    """Server -> client, opens the round: make your key pairs and advertise them. 0 bytes."""

    KIND = 1


@dataclass(frozen=True)
class Advertise(Message):
    """Client -> server: the client's fresh X25519 public keys. 76 bytes (active mode 140).

    Attributes:
        c_pk: 32-byte public key for share encryption.
        s_pk: 32-byte public key for pairwise mask seeds.
        signature: active mode: the client's Ed25519 signature of (session, round, id, c_pk, s_pk)
            (``keys.advertise_statement``), 64 bytes; honest-but-curious mode: b"".
    """

    KIND = 2
    c_pk: bytes
    s_pk: bytes
    signature: bytes


@dataclass(frozen=True)
class PeerKeys(Message):
    """Server -> client u: the keys of u's neighbours that advertised. 4 + 76 bytes per neighbour (active 140).

    Attributes:
        keys: neighbour id v -> c_pk_v || s_pk_v (64 bytes), in active mode || v's Advertise signature (128).
    """

    KIND = 3
    keys: dict[int, bytes]


@dataclass(frozen=True)
class Shares(Message):
    """Client u -> server: u's shares for each neighbour, sealed for it. 4 + 94 bytes per neighbour + 36.

    Attributes:
        ciphertexts: recipient v -> AES-GCM(b-share_v || s_sk-share_v) (82 bytes).
        commitment: SHA-256 commitment to b_u (``keys.commit``, 32 bytes): the server checks every rebuilt
            self-mask seed against it (§Verifiable reconstruction).
    """

    KIND = 4
    ciphertexts: dict[int, bytes]
    commitment: bytes


@dataclass(frozen=True)
class RelayedShares(Message):
    """Server -> client u: the sealed shares addressed to u. 4 + 94 bytes per neighbour that shared.

    The senders are the neighbours of u that reached the share phase (N(u) and U2): exactly the
    neighbours u masks with.

    Attributes:
        ciphertexts: sender v -> the ciphertext v sealed for u (82 bytes).
    """

    KIND = 5
    ciphertexts: dict[int, bytes]


@dataclass(frozen=True)
class MaskedInput(Message):
    """Client -> server: y_u packed as k/8 bytes per value. 4 + L * k/8 bytes.

    Attributes:
        values: FixedPoint.pack of y_u (uint64 residues mod 2^k).
    """

    KIND = 6
    values: bytes


@dataclass(frozen=True)
class UnmaskRequest(Message):
    """Server -> client u: whose shares to reveal. 12 + 8 bytes per listed id (active: + 76 per signature).

    Attributes:
        survivors: ids in N[u] whose masked input arrived (U3): reveal their self-mask shares.
        dropped: ids in N(u) that shared but sent no masked input (U2 minus U3): reveal their s_sk shares.
        signatures: active mode: signer -> its ConsistencySignature on U3, for the signers within two hops of u
            (the members of N[w] for each w whose shares u reveals); honest-but-curious mode: empty.
    """

    KIND = 7
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: dict[int, bytes]


@dataclass(frozen=True)
class Unmask(Message):
    """Client -> server: the requested shares. 8 + 45 bytes per share.

    Attributes:
        b_shares: survivor v -> share of b_v (33 bytes).
        s_shares: dropped v -> share of s_sk_v (33 bytes).
    """

    KIND = 8
    b_shares: dict[int, bytes]
    s_shares: dict[int, bytes]


@dataclass(frozen=True)
class InputRequest(Message):
    """Server -> client, opens a session-mode round (§Session mode): send your masked input. 0 bytes."""

    KIND = 9


@dataclass(frozen=True)
class ConsistencyRequest(Message):
    """Active mode, server -> each client of U3: the set U3 the server claims (§Consistency round). 4 + 8 |U3|.

    Attributes:
        survivors: U3, every client whose masked input arrived (sorted).
    """

    KIND = 10
    survivors: tuple[int, ...]


@dataclass(frozen=True)
class ConsistencySignature(Message):
    """Active mode, client -> server: its Ed25519 signature of (session, round, id, U3). 68 bytes.

    Attributes:
        signature: 64 bytes (``keys.consistency_statement``).
    """

    KIND = 11
    signature: bytes


KINDS = {m.KIND: m for m in (AdvertiseRequest, Advertise, PeerKeys, Shares, RelayedShares, MaskedInput,
                             ConsistencyRequest, ConsistencySignature, UnmaskRequest, Unmask)}
SESSION_KINDS = {m.KIND: m for m in (InputRequest, MaskedInput, ConsistencyRequest, ConsistencySignature,
                                     UnmaskRequest, Unmask)}
"""Kinds of a session-mode round: its advertise and share phases ran in the setup (``setup.py``)."""
