"""Long-term client identities for the active-adversary modes (protocols/masking.md §Active mode): each client holds
an Ed25519 signing key (``Identity``); the roster of client ids and public keys (``Roster``) is fixed when a session
is set up (in process: given; over Flower: the roster in the run config, each node's own key in its node config,
and each node pins the roster it was given). Every statement a client signs is domain-separated and binds the
protocol, the session, the round and the signer (``statement``), so no signature is valid in another context.

Sizes: public key 32 bytes, signature 64 bytes (RFC 8032). Signing ~50 us, verifying ~130 us on this project's VM.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InputError, MessageError
from .node import NodePolicy

PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64
_LABEL = b"secure_fal/identity/v1/"


def statement(purpose: bytes, session: int, round_id: int, signer: int, *parts: bytes) -> bytes:
    """The bytes a client signs: label || purpose || session (8) || round (4) || signer (4) || each part as
    length (4) || bytes. Length prefixes make the encoding injective."""
    out = bytearray(_LABEL + purpose + b"/" + struct.pack(">QIi", session, round_id, signer))
    for part in parts:
        out += struct.pack(">I", len(part)) + part
    return bytes(out)


def ids_bytes(ids: Iterable[int]) -> bytes:
    """A set of client ids as signed bytes: sorted, 4 bytes each."""
    ids = sorted(ids)
    return struct.pack(f">{len(ids)}i", *ids)


class Identity:
    """One client's Ed25519 signing key.

    Args:
        raw: the 32-byte private key (``to_bytes``); None: a fresh key from the OS's RNG.
    """

    def __init__(self, raw: bytes | None = None) -> None:
        try:
            self._key = Ed25519PrivateKey.generate() if raw is None else Ed25519PrivateKey.from_private_bytes(raw)
        except ValueError:
            raise InputError("an Ed25519 signing key is 32 bytes", field="signing-key") from None

    def __reduce__(self) -> tuple:
        """Picklable (a client machine kept in a node's state between messages holds one): as its raw bytes."""
        return Identity, (self.to_bytes(),)

    def to_bytes(self) -> bytes:
        """The 32-byte private key (what a node keeps in its node config)."""
        return self._key.private_bytes_raw()

    def public_bytes(self) -> bytes:
        """The 32-byte public key (the roster's entry)."""
        return self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


class Roster:
    """The clients of a session and their public signing keys, fixed at setup.

    Args:
        keys: client id -> 32-byte Ed25519 public key. InputError (field 'roster') on a malformed entry.
    """

    def __init__(self, keys: Mapping[int, bytes]) -> None:
        parsed = {}
        for cid, pk in keys.items():
            try:
                parsed[int(cid)] = Ed25519PublicKey.from_public_bytes(bytes(pk))
            except (ValueError, TypeError):
                raise InputError("roster entry is not a 32-byte Ed25519 public key", client=int(cid),
                                 field="roster") from None
        self._keys = MappingProxyType(parsed)
        self._raw = MappingProxyType({c: bytes(keys[c]) for c in keys})

    def __reduce__(self) -> tuple:
        """Picklable: rebuilt from the raw public keys."""
        return Roster, (dict(self._raw),)

    @classmethod
    def of(cls, identities: Mapping[int, Identity]) -> Roster:
        """The roster of the given identities."""
        return cls({c: ident.public_bytes() for c, ident in identities.items()})

    def __contains__(self, cid: object) -> bool:
        return cid in self._keys

    @property
    def clients(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    def to_dict(self) -> dict[str, str]:
        """{client id: public key hex}: JSON-ready (a Flower run config value)."""
        return {str(c): pk.hex() for c, pk in sorted(self._raw.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Roster:
        """Inverse of ``to_dict``; InputError (field 'roster') on anything else."""
        try:
            return cls({int(c): bytes.fromhex(pk) for c, pk in data.items()})
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"roster unreadable: {exc}", field="roster") from None

    def digest(self) -> str:
        """SHA-256 hex of ``to_dict`` (what a node pins)."""
        return hashlib.sha256(repr(sorted(self.to_dict().items())).encode()).hexdigest()

    def valid(self, signer: int, message: bytes, signature: bytes) -> bool:
        """True when ``signature`` is ``signer``'s valid signature of ``message`` (False for unknown signers)."""
        key = self._keys.get(signer)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def verify(self, signer: int, message: bytes, signature: bytes, *, round_id: int, field: str) -> None:
        """MessageError naming ``signer``, the round and ``field`` unless the signature is valid."""
        if signer not in self._keys:
            raise MessageError("not in the session's roster", client=signer, round_id=round_id, field=field)
        if not self.valid(signer, message, signature):
            raise MessageError("invalid signature", client=signer, round_id=round_id, field=field)


class ActiveParties:
    """What a protocol object with an active mode keeps (mixin of ``MaskingProtocol`` and ``CKKSProtocol``): the
    mode, the session's roster, and the signing identities of the clients this object plays (in process: all of
    them; on a Flower node: its own). Call ``init_identities`` from the constructor."""

    active: bool
    roster: Roster | None

    def init_identities(self, active: bool, roster: Roster | Mapping[str, str] | None) -> None:
        """ValueError unless ``active`` is a bool, or for a roster in honest-but-curious mode."""
        if not isinstance(active, bool):
            raise ValueError(f"active must be True or False, got {active!r}")
        if roster is not None and not active:
            raise ValueError("a roster is for active mode (active=True)")
        self.active = active
        self.roster = roster if roster is None or isinstance(roster, Roster) else Roster.from_dict(roster)
        self._identities: dict[int, Identity] = {}

    def make_identities(self, clients: Iterable[int]) -> None:
        """In process, active mode without a given roster: a fresh identity per client and their roster (given out
        of band, as a deployment's PKI would be). Otherwise nothing."""
        if self.active and self.roster is None:
            self._identities = {c: Identity() for c in clients}
            self.roster = Roster.of(self._identities)

    def load_identity(self, cid: int, identity: Identity) -> None:
        """Give client ``cid`` its signing identity; InputError (field 'roster') unless the roster lists ``cid``
        with this key."""
        if self.roster is None or self.roster.to_dict().get(str(cid)) != identity.public_bytes().hex():
            raise InputError("the roster does not list this client with its signing key", client=cid,
                             field="roster")
        self._identities[cid] = identity

    def pin_identity(self, policy: NodePolicy, cid: int, round_id: int) -> None:
        """A node's identity pins: a node that requires the active mode refuses an honest-but-curious opening
        (field 'active'); in active mode the roster must be the one the node pinned (``policy.roster_sha256``)
        and list the node's own key (``policy.signing_key``, then loaded; field 'roster'). InputError naming the
        client and round."""
        if policy.active and not self.active:
            raise InputError("honest-but-curious mode refused: this node requires the active mode", client=cid,
                             round_id=round_id, field="active")
        if self.active:
            if self.roster is None or not policy.signing_key or self.roster.digest() != policy.roster_sha256:
                raise InputError("active mode needs the roster this node pinned (node config roster-sha256) and its "
                                 "signing key", client=cid, round_id=round_id, field="roster")
            self.load_identity(cid, Identity(policy.signing_key))

    def require_roster(self) -> None:
        """Server side: ValueError in active mode without a roster."""
        if self.active and self.roster is None:
            raise ValueError("active mode: no roster on this protocol object (in process: setup; else roster=...)")

    def identity_of(self, cid: int, round_id: int) -> Identity | None:
        """Client ``cid``'s identity in active mode (None in honest-but-curious mode); InputError (field 'roster')
        when it holds none."""
        if not self.active:
            return None
        if self.roster is None or cid not in self._identities:
            raise InputError("active mode: this client holds no signing identity and roster (setup, or a node's "
                             "pinned key)", client=cid, round_id=round_id, field="roster")
        return self._identities[cid]
