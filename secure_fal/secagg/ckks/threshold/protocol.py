"""``ThresholdCKKSProtocol``: CKKS with no key holder, the default of ``CKKSProtocol`` (``mode="threshold"``).

Once per session the members run the share distribution (``setup.py``, in band: in process through
``Aggregator``'s setup, over Flower through the carrier's key session); every round then runs the machines of
``machines.py``. Spec: protocols/ckks.md §Threshold mode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ...errors import InputError
from ...identity import Roster
from ...machine import ClientMachine, RoundSpec, ServerMachine
from ...node import NodePolicy
from ..protocol import CKKSProtocol
from .machines import ThresholdClient, ThresholdServer
from .params import ThresholdParams
from .setup import ShareClient, ShareServer, ShareSetup, ThresholdKeys


class ThresholdCKKSProtocol(CKKSProtocol):
    """Threshold CKKS (what ``CKKSProtocol(mode="threshold")``, the default, builds).

    Args:
        params: ``ThresholdParams`` or a mapping of its fields (N, prime_bits, committee, threshold, corruption).
        min_contributors: fewest contributors a responder decrypts (default 2; a node raises it: ``pin``).
        active: contributors sign their c0, responders verify the signed contributor list and sign their partials.
        roster: active mode: the session's roster (None: made by ``setup`` in process).
    """

    def __init__(self, params: ThresholdParams | Mapping[str, object] | None = None, *, mode: str = "threshold",
                 min_contributors: int = 2, active: bool = False,
                 roster: Roster | Mapping[str, str] | None = None) -> None:
        if mode != "threshold":
            raise ValueError(f"ThresholdCKKSProtocol has mode 'threshold', got {mode!r}")
        if isinstance(params, Mapping):
            params = ThresholdParams(**params)
        self.mode = mode
        self.params = params or ThresholdParams()
        self.init_identities(active, roster)
        if isinstance(min_contributors, bool) or not isinstance(min_contributors, int) or min_contributors < 1:
            raise ValueError(f"min_contributors must be an int >= 1, got {min_contributors!r}")
        self.min_contributors = min_contributors
        self.corruption = self.params.corruption
        self.key_holders: tuple[int, ...] = ()
        self.committee: tuple[int, ...] = ()
        self.threshold = 0
        self.dealer = None
        self.setup_cost = None
        self._keys: dict[int, ThresholdKeys] = {}

    def setup(self, clients: Sequence[int], rng) -> None:
        """In process: only the identities and roster in active mode; the shares come from the in-band setup that
        ``Aggregator`` runs before the first round (``setup_due``)."""
        self.make_identities(clients)

    def key_setup(self, session: int, members: Sequence[int]) -> ShareSetup:
        """Public parameters of the share distribution among ``members`` (committee and t from the session id)."""
        members = tuple(sorted(set(members)))
        if not members:
            raise ValueError("a CKKS session needs at least one member")
        committee, t = self.params.committee_and_threshold(session, members)
        return ShareSetup(session, members, committee, t, self.params, self.corruption)

    def setup_server(self, session: int, members: Sequence[int], first_round: int = 1) -> ShareServer:
        return ShareServer(self.key_setup(session, members))

    def setup_client(self, cid: int, session: int, members: Sequence[int], first_round: int = 1) -> ShareClient:
        return ShareClient(cid, self.key_setup(session, members))

    def install_setup(self, server: ShareServer) -> None:
        """The server's view of a finished share distribution: key holders, committee (that acknowledged), t."""
        if not isinstance(server, ShareServer) or not server.done:
            raise ValueError("expected a finished threshold CKKS ShareServer")
        self.key_holders, self.committee, self.threshold = server.key_holders, server.committee, server.spec.threshold

    def load_client_keys(self, cid: int, data: bytes) -> None:
        """Client ``cid``'s ThresholdKeys from ``ShareClient.keys()`` bytes; InputError naming it on bad bytes."""
        try:
            keys = ThresholdKeys.from_bytes(data, self.params.prime_bits)
        except ValueError as exc:
            raise InputError(f"stored threshold CKKS keys unusable: {exc}", client=cid, field="context") from None
        if keys.me != cid or keys.secret.size != self.params.poly_modulus_degree:
            raise InputError("stored threshold CKKS keys are another client's or of other parameters", client=cid,
                             field="context")
        self._keys[cid] = keys

    def server(self, spec: RoundSpec) -> ServerMachine:
        if not self.key_holders:
            raise ValueError("no threshold CKKS setup on this object: the share distribution must run first")
        outsiders = [c for c in spec.clients if c not in self.key_holders]
        if outsiders:
            raise InputError(f"dealt no shares in this CKKS session: a round may only include {list(self.key_holders)}",
                             client=outsiders[0], round_id=spec.round_id, field="clients")
        self.require_roster()
        return ThresholdServer(spec, self.params, self.committee, self.threshold, self.roster)

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        """Client ``cid``'s machine; claims the round (ReplayError, field 'round', for a round already answered:
        a responder answers once per round)."""
        if cid not in self._keys:
            raise InputError("holds no threshold CKKS keys of this session", client=cid, round_id=spec.round_id,
                             field="cid")
        machine = ThresholdClient(cid, spec, vector, self.params, self._keys[cid], self.min_contributors,
                                  self.identity_of(cid, spec.round_id), self.roster)
        self.claim_round(cid, spec)
        return machine

    def pin(self, policy: NodePolicy, cid: int, round_id: int) -> None:
        """A node's pins: ring degree N >= ``policy.min_ring_degree``, ``min_clients`` contributors, its corruption
        fraction (the share setup refuses a threshold below ``default_threshold`` at it), identity pins."""
        self.pin_identity(policy, cid, round_id)
        if self.params.poly_modulus_degree < policy.min_ring_degree:
            raise InputError(f"CKKS ring degree {self.params.poly_modulus_degree} refused; this node needs at least "
                             f"{policy.min_ring_degree}", client=cid, round_id=round_id, field="poly_modulus_degree")
        self.min_contributors = max(self.min_contributors, policy.min_clients)
        self.corruption = max(self.corruption, policy.corruption)

    def error_bound(self, spec: RoundSpec, n_inputs: int) -> float:
        """Exact on the grid (the decryption noise stays below Delta / 2 by construction): the plaintext bound."""
        return n_inputs * 2.0 ** -(spec.encoding.frac_bits + 1)
