"""Pairwise-masking secure aggregation with dropout recovery: SecAgg (Bonawitz et al. 2017) and its
sparse-graph variant SecAgg+ (Bell et al. 2020), as sans-I/O machines. Spec: protocols/masking.md.

Client u sends y_u = x_u + PRG(b_u) + sum_{v in N(u), v > u} PRG(s_uv) - sum_{v in N(u), v < u} PRG(s_uv)
(mod 2^k), where b_u is a fresh random seed and s_uv a seed agreed with neighbour v, having first
Shamir-shared b_u and its key-agreement secret s_sk_u among its neighbours. Pairwise masks cancel in the
sum; the server removes self-masks of the clients whose input arrived, and the pairwise masks of clients
that dropped after sharing, from shares that the surviving clients reveal. Phases and sets:

    advertise     clients send public keys                    -> U1 (advertised)
    share         clients send sealed shares                  -> U2 (shared)      U2 within U1
    masked_input  clients send y_u                            -> U3 (contributors) U3 within U2
    unmask        clients send shares of b (U3) / s_sk (U2-U3) -> U4 (answered)    U4 within U3

The result is the exact fixed-point sum over U3, bit for bit what the plaintext protocol returns for
the same inputs and surviving set.

Session mode (``rounds_per_setup=R``): a setup (``setup.py``) does the advertise and share work of R
rounds at once, with independent secrets per round; each round then has only the masked_input and unmask
phases (``session.py``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import numpy as np

from ..api import SecureSumProtocol
from ..errors import InputError
from ..identity import ActiveParties, Roster
from ..machine import ClientMachine, RoundSpec, ServerMachine
from ..node import NodePolicy
from .client import MaskingClient
from .graph import (NeighbourSetting, Neighbourhoods, ThresholdSetting, check_settings, neighbourhoods,
                    session_neighbourhoods)
from .messages import Advertise, ConsistencySignature, MaskedInput, Shares, Unmask
from .params import check_private, choose
from .server import MaskingServer
from .session import SessionClient, SessionServer
from .session_keys import ClientKeys, SessionServerKeys
from .setup import SetupClient, SetupServer
from .setup_messages import CLIENT_PHASES as SETUP_CLIENT_PHASES, PHASE_OF_KIND as SETUP_KIND_PHASES, SetupSpec

__all__ = ["MaskingProtocol", "MaskingServer", "MaskingClient", "SessionServer", "SessionClient"]


class MaskingProtocol(ActiveParties, SecureSumProtocol):
    """Pairwise masking with Shamir-shared dropout recovery (SecAgg / SecAgg+).

    Args:
        threshold: shares t needed to recover a client's secret. None (default): floor(2m/3) + 1 with
            m = neighbours + 1; an int: t itself; a float f in (1/2, 1]: ceil(f * m). Must satisfy
            m/2 < t <= m for every round (checked per round: InputError field 'threshold').
        neighbours: None (default): complete graph (SecAgg); an int k: SecAgg+ graph with k neighbours
            (rounded up to even, capped at n - 1); "log": k = 2 * ceil(log2 n); "auto": degree and threshold
            from ``corruption`` and ``dropout`` per round size n (``params.choose``, the table of
            protocols/masking.md §Parameters; ``threshold`` must then be None).
        corruption: gamma, the fraction of clients assumed to collude with the server. None (default): no
            assumption (only m/2 < t <= m is checked). A float in [0, 0.5): every round's degree and threshold
            must be private at it (``params.check_private``, InputError field 'threshold'); "auto" chooses by it.
        dropout: delta, the dropout rate "auto" plans for (default 0.05).
        active: False (default): honest-but-curious mode. True: active mode (protocols/masking.md §Active mode):
            every client signs its keys with its long-term Ed25519 identity, and a consistency round (signed U3)
            runs before unmasking: one more exchange per round, private against a server that deviates. Needs
            the session's ``Roster`` on every party and each client's ``Identity``: ``setup`` (in process) makes
            both for the session's clients unless ``roster`` is given; a Flower node loads its own identity when
            it pins its policy (``pin``: the roster must have the digest the node pinned).
        roster: active mode: the session's roster, a ``Roster`` or its ``to_dict()`` (JSON options over Flower:
            {"client id": "public key hex"}). None: made by ``setup`` (in process).
        rounds_per_setup: None (default): per-round mode, 4 client phases per round (advertise, share,
            masked_input, unmask). An int R >= 1: session mode: a setup among the session's members makes and
            shares the secrets of R rounds in advance (``setup_server`` / ``setup_client``; the in-process
            ``Aggregator`` runs it before the first round and again whenever the rounds run out), and each
            round has 2 client phases (masked_input, unmask). The graph and t are then fixed per setup from
            its members (``session_neighbourhoods``).

    Up to m - t clients of a neighbourhood may drop out; fewer than t colluding parties (the server
    included) learn nothing beyond the sum. See protocols/masking.md.
    """

    NAME = "masking"
    CLIENT_PHASES = ("advertise", "share", "masked_input", "unmask")
    PHASE_OF_KIND = {Advertise.KIND: "advertise", Shares.KIND: "share", MaskedInput.KIND: "masked_input",
                     Unmask.KIND: "unmask"}
    SESSION_CLIENT_PHASES = ("masked_input", "unmask")
    SETUP_PHASES = SETUP_CLIENT_PHASES
    SETUP_PHASE_OF_KIND = SETUP_KIND_PHASES

    def __init__(self, threshold: ThresholdSetting = None, neighbours: NeighbourSetting = None,
                 rounds_per_setup: int | None = None, *, corruption: float | None = None,
                 dropout: float = 0.05, active: bool = False,
                 roster: Roster | Mapping[str, str] | None = None) -> None:
        if neighbours == "auto" and threshold is not None:
            raise ValueError("neighbours='auto' chooses the threshold too: leave threshold None")
        check_settings(None if neighbours == "auto" else neighbours, threshold)
        for name, value in (("corruption", corruption), ("dropout", dropout)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < 0.5):
                raise ValueError(f"{name} must be a fraction in [0, 0.5), got {value!r}")
        self.init_identities(active, roster)
        self.corruption = corruption
        self.dropout = dropout
        self._pinned_corruption: float | None = None
        if rounds_per_setup is not None and (isinstance(rounds_per_setup, bool) or not isinstance(rounds_per_setup, int)
                                             or rounds_per_setup < 1):
            raise ValueError(f"rounds_per_setup must be None (per-round mode) or an int >= 1, got {rounds_per_setup!r}")
        self.threshold = threshold
        self.neighbours = neighbours
        self.rounds_per_setup = rounds_per_setup
        if rounds_per_setup is not None:  # this object's rounds have 2 client phases (active mode: 3)
            self.CLIENT_PHASES = self.SESSION_CLIENT_PHASES
            self.PHASE_OF_KIND = {MaskedInput.KIND: "masked_input", Unmask.KIND: "unmask"}
        if active:
            self.CLIENT_PHASES = (*self.CLIENT_PHASES[:-1], "consistency", "unmask")
            self.PHASE_OF_KIND = {**self.PHASE_OF_KIND, ConsistencySignature.KIND: "consistency"}
        self._server_keys: SessionServerKeys | None = None
        self._client_keys: dict[int, ClientKeys] = {}

    def graph(self, spec: RoundSpec) -> Neighbourhoods:
        """The neighbour graph and threshold of a per-round-mode round (the same for every party)."""
        neighbours, threshold = self._settings(len(spec.clients))
        graph = neighbourhoods(spec, neighbours, threshold)
        self._check_private(len(spec.clients), graph, spec.round_id)
        return graph

    def _settings(self, n: int) -> tuple[NeighbourSetting, ThresholdSetting]:
        if self.neighbours != "auto":
            return self.neighbours, self.threshold
        choice = choose(n, self.corruption or 0.0, self.dropout)
        return choice.degree, choice.threshold

    def _check_private(self, n: int, graph: Neighbourhoods, round_id: int) -> None:
        """InputError (field 'threshold') when the graph is not private at this object's corruption fraction or
        the one a node pinned (the larger); nothing to check when neither is set."""
        gammas = [g for g in (self.corruption, self._pinned_corruption) if g is not None]
        if gammas:
            check_private(n, graph.degree, graph.threshold, max(gammas), round_id=round_id)

    def pin(self, policy: NodePolicy, cid: int, round_id: int) -> None:
        """A node's pins: every graph and threshold this object builds must be private at ``policy.corruption``
        (checked when the machines are built), and the identity pins of ``ActiveParties.pin_identity``."""
        self._pinned_corruption = policy.corruption
        self.pin_identity(policy, cid, round_id)

    def setup(self, clients: Sequence[int], rng: random.Random) -> None:
        """In process, active mode: identities and roster for the session's clients (``make_identities``)."""
        self.make_identities(clients)

    # -- session mode: setup ------------------------------------------------------------------------------

    @property
    def has_session_keys(self) -> bool:
        """True in session mode: rounds need the keys of an in-band setup."""
        return self.rounds_per_setup is not None

    @property
    def key_holders(self) -> tuple[int, ...]:
        """Session mode, server side: the members of the installed setup that hold keys (else ())."""
        return () if self._server_keys is None else self._server_keys.holders

    def setup_due(self, round_id: int) -> bool:
        """Session mode: True when no installed setup covers ``round_id`` (none yet, or its rounds ran out)."""
        return self.has_session_keys and (self._server_keys is None or not self._server_keys.covers(round_id))

    def setup_spec(self, session: int, members: Sequence[int], first_round: int) -> SetupSpec:
        """Public parameters of the setup for rounds first_round .. first_round + R - 1 among ``members``.

        Raises ValueError in per-round mode or for a bad member list / range, InputError (field 'clients' or
        'threshold') when the members admit no graph and threshold.
        """
        if not self.has_session_keys:
            raise ValueError("per-round masking (rounds_per_setup=None) has no session setup")
        members = tuple(sorted(set(members)))
        neighbours, threshold = self._settings(len(members))
        graph = session_neighbourhoods(session, members, neighbours, threshold, first_round)
        self._check_private(len(members), graph, first_round)
        return SetupSpec(session, members, first_round, self.rounds_per_setup, graph)

    def setup_server(self, session: int, members: Sequence[int], first_round: int = 1) -> SetupServer:
        """The server's setup machine; once ``done``, pass it to ``install_setup``."""
        self.require_roster()
        return SetupServer(self.setup_spec(session, members, first_round), self.roster)

    def setup_client(self, cid: int, session: int, members: Sequence[int], first_round: int = 1) -> SetupClient:
        """Member ``cid``'s setup machine; once ``done``, its ``keys()`` go to ``load_client_keys``."""
        return SetupClient(cid, self.setup_spec(session, members, first_round), self.identity_of(cid, first_round),
                           self.roster)

    def install_setup(self, server: SetupServer) -> None:
        """Make this the server's object for the rounds the finished setup ``server`` covers (replacing any
        earlier setup); ValueError unless it is a finished masking setup."""
        if not isinstance(server, SetupServer):
            raise ValueError(f"expected a masking SetupServer, got {type(server).__name__}")
        self._server_keys = server.outcome()

    def load_client_keys(self, cid: int, data: bytes) -> None:
        """Give client ``cid`` its keys (``SetupClient.keys()`` bytes), replacing any it had; InputError
        (client, field 'keys') on bytes that are not its masking keys."""
        self._client_keys[cid] = ClientKeys.from_bytes(data, cid)

    def spent_keys(self, cid: int) -> bytes | None:
        """Session mode: client ``cid``'s keys as bytes, without the secrets of the rounds it ran or skipped (a
        node stores them back so that no round runs twice); None in per-round mode or without keys."""
        keys = self._client_keys.get(cid)
        return None if keys is None else keys.to_bytes()

    def round_clients(self, members: tuple[int, ...]) -> tuple[int, ...]:
        """Session mode: the ``members`` that hold keys of the installed setup (a client silent in the
        setup sits out until the next one); per-round mode: all of them."""
        if not self.has_session_keys or self._server_keys is None:
            return members
        return tuple(c for c in members if c in self._server_keys.holders)

    # -- rounds ---------------------------------------------------------------------------------------------

    def server(self, spec: RoundSpec) -> ServerMachine:
        self.require_roster()
        if not self.has_session_keys:
            return MaskingServer(spec, self.graph(spec), self.roster)
        if self._server_keys is None:
            raise ValueError("session-mode masking: no setup installed on this object; run setup_server / "
                             "install_setup before the first round")
        return SessionServer(spec, self._server_keys)

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        """Client ``cid``'s machine of round ``spec``; claims the round in its registry (ReplayError, field
        'round', for a (session, round) it already answered)."""
        if not self.has_session_keys:
            try:
                graph = self.graph(spec)
            except InputError as exc:
                raise InputError(exc.what, client=cid, round_id=exc.round_id, field=exc.field) from None
            machine = MaskingClient(cid, spec, vector, graph, self.identity_of(cid, spec.round_id), self.roster)
        elif cid not in self._client_keys:
            raise InputError("holds no masking session keys (not a key holder of this setup)", client=cid,
                             round_id=spec.round_id, field="keys")
        else:
            keys = self._client_keys[cid]
            graph = None
            if self.active:
                neighbours, threshold = self._settings(len(keys.members))
                graph = session_neighbourhoods(keys.session, keys.members, neighbours, threshold, keys.first_round)
            machine = SessionClient(cid, spec, vector, keys, graph, self.identity_of(cid, spec.round_id), self.roster)
        self.claim_round(cid, spec)
        return machine
