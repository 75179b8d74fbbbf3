"""Machines of a session-mode masking round (protocols/masking.md §Session mode): a classic round
(``server.py`` / ``client.py``) whose advertise and share phases ran in advance, in the
session's setup (``setup.py``). Client phases: ``masked_input`` and ``unmask``.

    server -> every client   InputRequest          (0 bytes)
    client -> server         MaskedInput(y_u)       y_u masked with PRG(b_u(j)) and PRG(s_uv(j)), v its partners
                                                    in the round's client list
    server -> client         UnmaskRequest, client -> server Unmask    as in a classic round

Round j of a setup with clients C (every one a key holder): the graph is the session graph restricted to
C, so the round's U2 is C, and everything from the masked_input phase on is the classic round's.
"""

from __future__ import annotations

import numpy as np

from ..errors import DropoutError, InputError, MessageError, ReplayError
from ..identity import Identity, Roster
from ..machine import RoundSpec
from .client import MaskingClient
from .graph import Neighbourhoods
from .messages import SESSION_KINDS, ConsistencyRequest, InputRequest, UnmaskRequest
from .server import MaskingServer
from .session_keys import ClientKeys, SessionServerKeys


class SessionServer(MaskingServer):
    """Server of one session-mode round. ``public_keys`` holds the round's s_pk(j) of each client (no c_pk:
    b""), ``sealed`` is empty per client (the shares were relayed in the setup); U2 = the round's clients.

    Raises at construction: InputError, field 'session' / 'round', when the keys are of another session or do
    not cover the round, field 'clients' naming the first client that holds no keys of this setup;
    DropoutError naming a client with fewer than t of N[u] in the round (as a classic round's share phase).
    """

    KINDS = SESSION_KINDS

    def __init__(self, spec: RoundSpec, keys: SessionServerKeys) -> None:
        if spec.session != keys.spec.session:
            raise InputError(f"the installed setup is of session {keys.spec.session:#x}", round_id=spec.round_id,
                             field="session")
        if not keys.covers(spec.round_id):
            first = keys.spec.first_round
            raise InputError(f"the installed setup covers rounds {first}..{first + keys.spec.rounds - 1}",
                             round_id=spec.round_id, field="round")
        outsiders = [c for c in spec.clients if c not in keys.holders]
        if outsiders:
            raise InputError(f"holds no keys of this setup: a round may only include the key holders "
                             f"{list(keys.holders)}", client=outsiders[0], round_id=spec.round_id, field="clients")
        super().__init__(spec, keys.spec.graph.restricted(spec.clients), keys.roster)
        self.public_keys = {u: (b"", keys.s_pk(u, spec.round_id)) for u in spec.clients}
        self.commitments = {u: keys.commitment(u, spec.round_id) for u in spec.clients}
        self.sealed = {u: {} for u in spec.clients}
        clients = set(spec.clients)
        self._require(clients, clients, True, "too few neighbours of this client are in the round")

    def start(self) -> list[bytes]:
        self.phase = "masked_input"
        return [self.send(cid, InputRequest()) for cid in self.spec.clients]


class SessionClient(MaskingClient):
    """Client of one session-mode round: masks with the round's secrets taken from its ``ClientKeys``.

    At construction, before any secret is used: the round must be covered and not run yet (``ClientKeys.check``:
    MessageError / ReplayError, field 'session' or 'round'), every neighbour in the round's client list must be
    one whose shares it holds (MessageError naming it, field 'clients'), and at least t - 1 of them must be in
    the round (DropoutError, field 'clients'); then the input is checked (InputError) and the round's secrets
    are taken out of ``keys`` (deleted there, with those of every earlier round). Active mode: ``session_graph``
    (the setup's graph, for the two-hop signature check), ``identity`` and ``roster``.
    """

    KINDS = SESSION_KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, keys: ClientKeys,
                 session_graph: Neighbourhoods | None = None, identity: Identity | None = None,
                 roster: Roster | None = None) -> None:
        keys.check(spec)
        in_round = set(spec.clients)
        partners = tuple(v for v in keys.neighbours if v in in_round)
        missing = [v for v in partners if v not in keys.partners]
        if missing:
            raise MessageError(f"client {cid} holds no shares of client {missing[0]} (it did not complete the "
                               "setup with it): they cannot mask with each other", client=missing[0],
                               round_id=spec.round_id, field="clients")
        if len(partners) + 1 < keys.threshold:
            raise DropoutError(f"only {len(partners)} neighbours of client {cid} are in the round, "
                               f"{keys.threshold - 1} needed", client=cid, round_id=spec.round_id, field="clients")
        graph = Neighbourhoods(len(keys.neighbours), keys.threshold, {cid: partners}) if session_graph is None \
            else session_graph.restricted(spec.clients)
        super().__init__(cid, spec, vector, graph, identity, roster)
        secrets = keys.take(spec)
        self._self_seed = secrets.self_seed
        self._own_b_share = secrets.own_share
        self._mask_seeds = {v: secrets.seeds[v] for v in partners}
        self._held = {v: secrets.held[v] for v in partners}
        self.phase = "masked_input"

    def receive(self, data: bytes) -> list[bytes]:
        handlers = {"masked_input": (InputRequest, self._on_input_request),
                    "consistency": (ConsistencyRequest, self._on_consistency_request),
                    "unmask": (UnmaskRequest, self._on_unmask_request)}
        kind, handler = handlers.get(self.phase, (InputRequest, None))
        _, msg = self.accept_from_server(data, (kind, InputRequest))
        if self.phase != "masked_input" and isinstance(msg, InputRequest):  # after the masked input went out
            raise ReplayError(f"client {self.me} already sent its masked input of round {self.spec.round_id}",
                              client=self.me, round_id=self.spec.round_id, field="round")
        return handler(msg)

    def _on_input_request(self, msg: InputRequest) -> list[bytes]:
        return self._masked_input()
