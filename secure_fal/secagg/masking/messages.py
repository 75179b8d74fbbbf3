"""Messages of the masking protocol (protocols/masking.md §Messages). Sizes exclude the 30-byte header.

A dict field costs 4 bytes plus, per entry, 8 (key) + 4 (length) + the value; a tuple field 4 + 8 per id.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..messages import Message
from .keys import KEY_BYTES, TAG_BYTES
from .shamir import ELEMENT_BYTES

PROTOCOL_ID = 3
PEER_KEYS_BYTES = 2 * KEY_BYTES                         # c_pk || s_pk of one neighbour
SHARE_PLAINTEXT_BYTES = 2 * ELEMENT_BYTES               # b-share || s_sk-share
SHARE_CIPHERTEXT_BYTES = SHARE_PLAINTEXT_BYTES + TAG_BYTES


@dataclass(frozen=True)
class AdvertiseRequest(Message):
    """Server -> client, opens the round: make your key pairs and advertise them. 0 bytes."""

    KIND = 1


@dataclass(frozen=True)
class Advertise(Message):
    """Client -> server: the client's fresh X25519 public keys. 72 bytes.

    Attributes:
        c_pk: 32-byte public key for share encryption.
        s_pk: 32-byte public key for pairwise mask seeds.
    """

    KIND = 2
    c_pk: bytes
    s_pk: bytes


@dataclass(frozen=True)
class PeerKeys(Message):
    """Server -> client u: the keys of u's neighbours that advertised. 4 + 76 bytes per neighbour.

    Attributes:
        keys: neighbour id v -> c_pk_v || s_pk_v (64 bytes).
    """

    KIND = 3
    keys: dict[int, bytes]


@dataclass(frozen=True)
class Shares(Message):
    """Client u -> server: u's shares for each neighbour, sealed for it. 4 + 94 bytes per neighbour.

    Attributes:
        ciphertexts: recipient v -> AES-GCM(b-share_v || s_sk-share_v) (82 bytes).
    """

    KIND = 4
    ciphertexts: dict[int, bytes]


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
    """Server -> client u: whose shares to reveal. 8 + 8 bytes per listed id.

    Attributes:
        survivors: ids in N[u] whose masked input arrived (U3): reveal their self-mask shares.
        dropped: ids in N(u) that shared but sent no masked input (U2 minus U3): reveal their s_sk shares.
    """

    KIND = 7
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


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


KINDS = {m.KIND: m for m in (AdvertiseRequest, Advertise, PeerKeys, Shares, RelayedShares, MaskedInput,
                             UnmaskRequest, Unmask)}
SESSION_KINDS = {m.KIND: m for m in (InputRequest, MaskedInput, UnmaskRequest, Unmask)}
"""Kinds of a session-mode round: its advertise and share phases ran in the setup (``setup.py``)."""
