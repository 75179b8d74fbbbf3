"""What a client's node enforces whatever a server asks (protocols/masking.md §Node policy, §Round registry).

``NodePolicy``: the parameters a node pins in its own configuration. A round or key-setup opening that asks for
anything weaker (another protocol, fewer clients, a threshold or graph outside the table of ``masking/params.py``
for the node's corruption fraction, honest-but-curious masking where the node requires the active mode, a smaller
CKKS ring) is refused with an error naming the field; each protocol's ``pin`` applies the parts that concern it.

``RoundRegistry``: every (session, round) a client answered. A node answers each at most once, so a server that
re-opens a finished round (to drop one client the second time and subtract the two sums) is refused. It
serializes to plain values (a Flower ConfigRecord in the node's state, or a JSON file with ``save`` / ``load``
when the node config names one, which also survives the run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import InputError, MessageError, ReplayError


@dataclass(frozen=True)
class NodePolicy:
    """What a node accepts when a server opens a round (its node config).

    Attributes:
        protocols: protocol names this node takes part in; a server cannot switch it to another (e.g.
            plaintext where the node insists on masking).
        min_clients: fewest clients a round may have, and fewest contributors a CKKS decryptor accepts: a sum
            over fewer reveals too much of one input (over 1 client, all of it).
        corruption: gamma, the fraction of the clients the node assumes may collude with the server; masking
            parameters must be private at it (``masking.params.check_private``).
        active: require active-mode masking (signed keys and the consistency round).
        min_ring_degree: smallest CKKS polynomial degree N accepted (the ring size; 4096 with one 60-bit prime
            is SEAL's 128-bit-secure default).
        registry_file: where the node's round registry also persists ('' = only in the node's state, which
            lasts one Flower run); with a file, a round is answered at most once across runs too.
        roster_sha256: active mode: the digest (``Roster.digest``) of the only roster the node accepts; a server
            that put its own keys in the roster could otherwise sign for any client.
        signing_key: active mode: this node's own 32-byte Ed25519 private key (node config, never sent).
    """

    protocols: frozenset[str]
    min_clients: int = 2
    corruption: float = 0.1
    active: bool = False
    min_ring_degree: int = 4096
    registry_file: str = ""
    roster_sha256: str = ""
    signing_key: bytes = field(default=b"", repr=False)

    def check_opening(self, protocol: str, n_clients: int, *, client: int, round_id: int, field: str) -> None:
        """MessageError naming ``client``, ``round_id`` and the field ('protocol', or ``field`` for the member list)
        unless ``protocol`` is allowed and the round / setup has at least ``min_clients`` clients."""
        if protocol not in self.protocols:
            raise MessageError(f"protocol {protocol!r} refused; this node allows {sorted(self.protocols)}",
                             client=client, round_id=round_id, field="protocol")
        if n_clients < self.min_clients:
            raise MessageError(f"{n_clients} clients refused; this node needs at least {self.min_clients}",
                             client=client, round_id=round_id, field=field)


class RoundRegistry:
    """The (session, round) pairs a client has answered; ``claim`` refuses a second time.

    Args:
        answered: session id -> round ids already answered (e.g. ``to_dict`` of an earlier registry).
    """

    def __init__(self, answered: Mapping[int, list[int]] | None = None) -> None:
        self._answered = {int(s): set(map(int, rounds)) for s, rounds in (answered or {}).items()}

    def claim(self, session: int, round_id: int, client: int) -> None:
        """Record that ``client`` answers (session, round); ReplayError (field 'round') if it already did."""
        rounds = self._answered.setdefault(session, set())
        if round_id in rounds:
            raise ReplayError(f"round {round_id} of session {session:#018x} was already answered by this node: a "
                              "round is answered at most once", client=client, round_id=round_id, field="round")
        rounds.add(round_id)

    def merge(self, other: RoundRegistry) -> None:
        """Add every (session, round) of ``other``."""
        for session, rounds in other._answered.items():
            self._answered.setdefault(session, set()).update(rounds)

    def to_dict(self) -> dict[str, list[int]]:
        """{session as 16 hex digits: sorted round ids}: JSON- and ConfigRecord-ready."""
        return {f"{s:016x}": sorted(r) for s, r in self._answered.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, object], client: int) -> RoundRegistry:
        """Inverse of ``to_dict``; InputError (client, field 'round-registry') on anything else."""
        try:
            return cls({int(s, 16): [int(r) for r in rounds] for s, rounds in data.items()})
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"round registry unusable: {exc}", client=client, field="round-registry") from None

    @classmethod
    def load(cls, path: str, client: int) -> RoundRegistry:
        """The registry saved at ``path`` (an empty one if there is no file yet)."""
        if not os.path.exists(path):
            return cls()
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f), client)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"round registry {path!r} unreadable: {exc}", client=client,
                             field="round-registry") from None

    def save(self, path: str) -> None:
        """Write to ``path`` atomically (a temporary file renamed over it)."""
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_dict(), f)
        os.replace(tmp, path)
