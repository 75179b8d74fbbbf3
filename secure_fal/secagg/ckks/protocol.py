"""CKKS protocol object. ``CKKSProtocol(mode="threshold")`` (the default) builds a ``ThresholdCKKSProtocol``
(``threshold/protocol.py``: no key holder); this module is the dealer mode: clients encrypt, the server adds
ciphertexts, one key-holding client decrypts the sum.

Flow of a round in dealer mode (spec: protocols/ckks.md):

    server -> every client      Request
    client -> server            EncryptedInput   ceil(L / (N/2)) ciphertexts of y = q / M
    server -> decryptor         DecryptRequest   the sum of the received ciphertexts, and who is in it
    decryptor -> server         DecryptedSum     round(M * decryption): the integer sum on the grid, packed

Keys, once per session, by either of two paths that end in the same ``install_server_keys`` /
``install_client_key``: ``CKKSProtocol.setup`` (in-process: a key dealer, by default the smallest client id, or a
separate key authority, generates the keys on this one object and hands each client its secret context out of
band), or the in-band key distribution of ``keys.py`` (``key_setup``; used over Flower, where every party
has its own protocol object). The server gets a public context (parameters only, no key). The decryptor is the
dealer when it contributed to the round, otherwise the smallest contributing client; if it does not answer, the
server asks the next contributing client; when none is left the round fails with DropoutError.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..api import SecureSumProtocol
from ..errors import InputError
from ..machine import ClientMachine, RoundSpec, ServerMachine
from ..identity import ActiveParties, Roster
from ..node import NodePolicy
from .context import CKKSContext
from .key_messages import CLIENT_PHASES as KEY_PHASES, PHASE_OF_KIND as KEY_PHASE_OF_KIND, KeySetup
from .keys import KeyClient, KeyServer
from .machines import CKKSClient, CKKSServer
from .messages import DecryptedSum, EncryptedInput
from .params import CKKSParams, RoundPlan


@dataclass(frozen=True)
class SetupCost:
    """What ``CKKSProtocol.setup`` cost; it runs once per session, outside the rounds' reports.

    Attributes:
        dealer: the client that generated the keys, or None for a separate key authority.
        secret_context_bytes: bytes of the secret context sent to each other key holder.
        public_context_bytes: bytes of the public context sent to the server.
        bytes_sent: total out-of-band bytes: secret context to every client but the dealer, public to server.
        keygen_seconds: seconds to generate the keys.
    """

    dealer: int | None
    secret_context_bytes: int
    public_context_bytes: int
    bytes_sent: int
    keygen_seconds: float


MODES = ("threshold", "dealer")


class CKKSProtocol(ActiveParties, SecureSumProtocol):
    """CKKS homomorphic encryption; the server never holds the secret key. Two modes (protocols/ckks.md):

    - ``mode="threshold"`` (default): no one holds the secret key; each client encrypts under its own secret, whose
      Shamir shares a committee holds, and t committee members decrypt the aggregate (``threshold.protocol``:
      ``CKKSProtocol(mode="threshold", ...)`` builds a ``ThresholdCKKSProtocol``; its arguments are documented there).
    - ``mode="dealer"``: a dealer generates one secret key and seals it to every client (TenSEAL's SEAL bindings);
      one client decrypts. The arguments below are this mode's.

    Args:
        mode: "threshold" or "dealer".
        params: CKKS parameters, or a mapping of ``CKKSParams`` fields (e.g. JSON options over Flower:
            ``{"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [60]}``); default ``CKKSParams()`` (N = 4096,
            one 60-bit prime, automatic scale, symmetric encryption).
        dealer: client id that generates the keys and is the preferred decryptor; default the smallest id.
        key_authority: True: a separate party generates the keys (no client is dealer); the decryptor is then
            the smallest contributing client. In-process ``setup`` only (the in-band distribution needs a dealer
            client).
        min_contributors: fewest contributors a decryptor accepts in a DecryptRequest (default 2; a node's policy
            raises it to its ``min_clients``: ``pin``).
        active: sign every input for its round (Ed25519 identities, as masking's active mode); the decryptor then
            decrypts only a request carrying the signed inputs of every listed contributor of the round.
        roster: active mode: the session's roster (``Roster`` or its ``to_dict()``); None: made by ``setup``.

    Keys come from ``setup`` (in-process, all keys on this one object) or are installed on each party's own
    object after the in-band distribution of ``keys.py`` (``key_setup``): ``install_server_keys`` on the
    server's, ``install_client_key`` / ``load_client_keys`` on a client's. Both paths install through the same
    two methods, and ``server`` / ``client`` then build the same machines.
    """

    NAME = "ckks"
    CLIENT_PHASES = ("input", "decrypt")
    PHASE_OF_KIND = {EncryptedInput.KIND: "input", DecryptedSum.KIND: "decrypt"}
    SETUP_PHASES = KEY_PHASES
    SETUP_PHASE_OF_KIND = KEY_PHASE_OF_KIND

    def __new__(cls, *args, mode: str = "threshold", **kwargs):
        if mode not in MODES:
            raise ValueError(f"unknown CKKS mode {mode!r}; choose one of {list(MODES)}")
        if cls is CKKSProtocol and mode == "threshold":
            from .threshold.protocol import ThresholdCKKSProtocol
            cls = ThresholdCKKSProtocol
        return super().__new__(cls)

    def __init__(self, params: CKKSParams | Mapping[str, object] | None = None, *, mode: str = "threshold",
                 dealer: int | None = None, key_authority: bool = False, min_contributors: int = 2,
                 active: bool = False, roster: Roster | Mapping[str, str] | None = None) -> None:
        self.mode = mode
        if dealer is not None and key_authority:
            raise ValueError("choose a dealer client or a key authority, not both")
        if isinstance(params, Mapping):
            params = CKKSParams(**params)
        self.params = params or CKKSParams()
        self.key_authority = key_authority
        self.init_identities(active, roster)
        if isinstance(min_contributors, bool) or not isinstance(min_contributors, int) or min_contributors < 1:
            raise ValueError(f"min_contributors must be an int >= 1, got {min_contributors!r}")
        self.min_contributors = min_contributors
        self._dealer_choice = dealer
        self.dealer: int | None = None
        self.key_holders: tuple[int, ...] = ()
        self.setup_cost: SetupCost | None = None
        self._server_context: CKKSContext | None = None
        self._client_contexts: dict[int, CKKSContext] = {}

    def setup(self, clients: Sequence[int], rng: random.Random) -> None:
        """Generate the session's keys and distribute them (out of band; costs in ``setup_cost``).

        The secret key comes from SEAL's CSPRNG, not from ``rng``. Active mode: also the clients' identities
        and roster (``make_identities``).
        """
        self.make_identities(clients)
        clients = sorted(set(clients))
        if not clients:
            raise ValueError("a CKKS session needs at least one client")
        if self._dealer_choice is not None and self._dealer_choice not in clients:
            raise ValueError(f"dealer {self._dealer_choice} is not a client of the session {clients}")
        dealer = None if self.key_authority else (
            self._dealer_choice if self._dealer_choice is not None else clients[0])
        t0 = time.perf_counter()
        keys = CKKSContext.generate(self.params)
        keygen_seconds = time.perf_counter() - t0
        secret, public = keys.serialize(), keys.make_public().serialize()
        self.install_server_keys(CKKSContext.from_bytes(public), clients, dealer)
        self._client_contexts = {}
        for cid in clients:
            self.install_client_key(cid, keys if cid == dealer else CKKSContext.from_bytes(secret))
        receivers = len(clients) - (dealer is not None)
        self.setup_cost = SetupCost(dealer, len(secret), len(public), receivers * len(secret) + len(public),
                                    keygen_seconds)

    def key_setup(self, session: int, members: Sequence[int]) -> KeySetup:
        """Public parameters of the in-band key distribution (``keys``) for ``members`` of ``session``:
        the dealer is the ``dealer`` option, else the smallest member.

        Raises:
            ValueError: no members, a dealer that is not a member, or ``key_authority=True``.
        """
        if self.key_authority:
            raise ValueError("key_authority=True has no dealer client: the in-band key distribution needs one "
                             "(use dealer=<client id> or the default, the smallest member)")
        members = tuple(sorted(set(members)))
        if not members:
            raise ValueError("a CKKS session needs at least one member")
        dealer = self._dealer_choice if self._dealer_choice is not None else members[0]
        if dealer not in members:
            raise ValueError(f"dealer {dealer} is not a member of the session {list(members)}")
        return KeySetup(session, members, dealer, self.params)

    @property
    def has_session_keys(self) -> bool:
        """Always: every round needs the session's keys."""
        return True

    def setup_due(self, round_id: int) -> bool:
        """True while no keys are installed on this (server's) object."""
        return not self.key_holders

    def round_clients(self, members: tuple[int, ...]) -> tuple[int, ...]:
        """The ``members`` that hold the session's key (all of them before any key is installed)."""
        return tuple(c for c in members if c in self.key_holders) if self.key_holders else members

    def setup_server(self, session: int, members: Sequence[int], first_round: int = 1) -> KeyServer:
        """The server's machine of the in-band key distribution (``keys``; ``first_round`` is not used:
        the keys serve the whole session); once ``done``, pass it to ``install_setup``."""
        return KeyServer(self.key_setup(session, members))

    def setup_client(self, cid: int, session: int, members: Sequence[int], first_round: int = 1) -> KeyClient:
        """Member ``cid``'s machine of the in-band key distribution; once ``done``, its ``keys()`` go to
        ``load_client_keys``."""
        return KeyClient(cid, self.key_setup(session, members))

    def install_setup(self, server: KeyServer) -> None:
        """``install_server_keys`` from a finished key distribution's server machine."""
        if not isinstance(server, KeyServer) or not server.done:
            raise ValueError("expected a finished CKKS KeyServer")
        self.install_server_keys(server.public_context, server.key_holders, server.spec.dealer)

    def install_server_keys(self, public_context: CKKSContext, key_holders: Sequence[int],
                            dealer: int | None) -> None:
        """Make this the server's object of a session whose keys are distributed.

        Args:
            public_context: the session's public context (parameters only; a context with a key is refused).
            key_holders: the clients that hold the secret key; every round's clients must be among them.
            dealer: the client that generated the keys (preferred decryptor), or None for a key authority.

        Raises:
            ValueError: a private context, other parameters than this object's, no key holder, or a dealer that
                holds no key.
        """
        if public_context.is_private():
            raise ValueError("the CKKS server must not hold the secret key")
        if public_context.params != self.params:
            raise ValueError(f"public context has parameters {public_context.params}, this session's are "
                             f"{self.params}")
        holders = tuple(sorted(set(key_holders)))
        if not holders:
            raise ValueError("a CKKS session needs at least one key holder")
        if dealer is not None and dealer not in holders:
            raise ValueError(f"dealer {dealer} is not among the key holders {list(holders)}")
        self._server_context, self.key_holders, self.dealer = public_context, holders, dealer

    def install_client_key(self, cid: int, context: CKKSContext) -> None:
        """Give client ``cid`` its private context (on a Flower node: the node's own client only).

        Raises:
            InputError: (client ``cid``, field "context") a context without the secret key or with other
                parameters than this object's.
        """
        if not context.is_private():
            raise InputError("client context holds no secret key", client=cid, field="context")
        if context.params != self.params:
            raise InputError(f"the key has parameters {context.params}, this session's are {self.params}",
                             client=cid, field="context")
        self._client_contexts[cid] = context

    def load_client_keys(self, cid: int, data: bytes) -> None:
        """``install_client_key`` from a serialized private context (``CKKSContext.serialize``: what a node
        keeps in its state after the key distribution); InputError naming the client on bad bytes."""
        try:
            context = CKKSContext.from_bytes(data)
        except ValueError as exc:
            raise InputError(f"stored CKKS key unusable: {exc}", client=cid, field="context") from None
        self.install_client_key(cid, context)

    def server(self, spec: RoundSpec) -> ServerMachine:
        if self._server_context is None:
            raise ValueError("no CKKS keys on this object: run setup(clients, rng), or install_server_keys(...) "
                             "after a key distribution, before the first round")
        outsiders = [c for c in spec.clients if c not in self.key_holders]
        if outsiders:
            raise InputError(f"holds no key of this CKKS session: a round may only include the key holders "
                             f"{list(self.key_holders)}", client=outsiders[0], round_id=spec.round_id,
                             field="clients")
        self.require_roster()
        return CKKSServer(spec, self._server_context, self.dealer, self.roster)

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        """Client ``cid``'s machine of round ``spec``; claims the round in its registry (ReplayError, field
        'round', for a (session, round) it already answered: a decryptor decrypts once per round)."""
        if cid not in self._client_contexts:
            raise InputError("holds no key of this CKKS session", client=cid, round_id=spec.round_id, field="cid")
        machine = CKKSClient(cid, spec, vector, self._client_contexts[cid], self.min_contributors,
                             self.identity_of(cid, spec.round_id), self.roster)
        self.claim_round(cid, spec)
        return machine

    def pin(self, policy: NodePolicy, cid: int, round_id: int) -> None:
        """A node's pins: the ring degree N >= ``policy.min_ring_degree`` (InputError, field
        'poly_modulus_degree'), and a decryptor needs ``policy.min_clients`` contributors (or this object's
        ``min_contributors``, the larger), and the identity pins of ``ActiveParties.pin_identity``."""
        self.pin_identity(policy, cid, round_id)
        if self.params.poly_modulus_degree < policy.min_ring_degree:
            raise InputError(f"CKKS ring degree {self.params.poly_modulus_degree} refused; this node needs at least "
                             f"{policy.min_ring_degree}", client=cid, round_id=round_id, field="poly_modulus_degree")
        self.min_contributors = max(self.min_contributors, policy.min_clients)

    def error_bound(self, spec: RoundSpec, n_inputs: int) -> float:
        """Input rounding, plus the CKKS error when it is not guaranteed to vanish (see RoundPlan)."""
        return RoundPlan.for_round(self.params, spec).error_bound(n_inputs)
