"""CKKS protocol: clients encrypt, the server adds ciphertexts, one key-holding client decrypts the sum.

Flow of a round (spec: protocols/ckks.md):

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
from ..errors import DecryptionError, DropoutError, InputError, MessageError
from ..machine import ClientMachine, RoundSpec, ServerMachine
from ..messages import SERVER
from .context import CKKSContext
from .key_messages import CLIENT_PHASES as KEY_PHASES, PHASE_OF_KIND as KEY_PHASE_OF_KIND, KeySetup
from .keys import KeyClient, KeyServer
from .messages import KINDS, PROTOCOL_ID, DecryptRequest, DecryptedSum, EncryptedInput, Request
from .params import CKKSParams, RoundPlan


def _load_chunks(context: CKKSContext, plan: RoundPlan, chunks: dict[int, bytes], *, client: int | None,
                 round_id: int) -> list:
    """Check and parse every chunk before anything is used: all or nothing."""
    if sorted(chunks) != list(range(plan.chunks)):
        raise MessageError(f"expected chunks 0..{plan.chunks - 1}, got {len(chunks)} with indices "
                           f"{sorted(chunks)[:5]}...", client=client, round_id=round_id, field="chunks")
    out = []
    for i in range(plan.chunks):
        try:
            out.append(context.load_ciphertext(chunks[i], plan.scale))
        except ValueError as exc:
            raise MessageError(str(exc), client=client, round_id=round_id, field=f"chunks[{i}]") from None
    return out


class CKKSServer(ServerMachine):
    """Holds only the public context: adds ciphertexts, never decrypts.

    Phases: "collect" (EncryptedInput from each client, added as it arrives), "decrypt" (waiting for the
    DecryptedSum of the current decryptor), then done.
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: RoundSpec, context: CKKSContext, preferred_decryptor: int | None) -> None:
        if context.is_private():
            raise ValueError("the CKKS server must not hold the secret key")
        super().__init__(spec)
        self.context = context
        self.plan = RoundPlan.for_round(context.params, spec)
        self.preferred_decryptor = preferred_decryptor
        self.received: dict[int, None] = {}
        self.sums: list | None = None
        self.asked: list[int] = []
        self._request: DecryptRequest | None = None

    def start(self) -> list[bytes]:
        self.phase = "collect"
        return [self.send(cid, Request()) for cid in self.spec.clients]

    def receive(self, data: bytes) -> list[bytes]:
        if self.phase == "collect":
            return self._collect(data)
        header, msg = self.accept_from_client(data, (DecryptedSum,) if self.phase == "decrypt" else (), {})
        return self._finish(header.sender, msg)

    def on_timeout(self) -> list[bytes]:
        if self.phase == "collect":
            if not self.received:
                raise DropoutError("no client sent its input", round_id=self.spec.round_id)
            return self._ask_next()
        if self.phase == "decrypt":
            return self._ask_next()
        return []

    def _collect(self, data: bytes) -> list[bytes]:
        header, msg = self.accept_from_client(data, (EncryptedInput,), self.received)
        ciphers = _load_chunks(self.context, self.plan, msg.chunks, client=header.sender,
                               round_id=self.spec.round_id)
        if self.sums is None:
            self.sums = ciphers
        else:
            for total, c in zip(self.sums, ciphers):
                self.context.add_inplace(total, c)
        self.received[header.sender] = None
        if len(self.received) == len(self.spec.clients):
            return self._ask_next()
        return []

    def _ask_next(self) -> list[bytes]:
        """Send the aggregate to the next contributing key holder not asked yet."""
        if self._request is None:
            self.contributors = tuple(sorted(self.received))
            self._request = DecryptRequest(self.contributors, {i: self.context.save_ciphertext(c)
                                                               for i, c in enumerate(self.sums)})
            self.sums = None
        order = sorted(self.contributors, key=lambda c: (c != self.preferred_decryptor, c))
        remaining = [c for c in order if c not in self.asked]
        if not remaining:
            raise DropoutError(f"no contributing key holder answered the decryption request (asked {self.asked})",
                               round_id=self.spec.round_id)
        self.phase = "decrypt"
        self.asked.append(remaining[0])
        return [self.send(remaining[0], self._request)]

    def _finish(self, sender: int, msg: DecryptedSum) -> list[bytes]:
        if sender not in self.asked:
            raise MessageError("DecryptedSum from a client that was not asked to decrypt", client=sender,
                               round_id=self.spec.round_id, field="values")
        enc = self.spec.encoding
        try:
            total = enc.from_ring(enc.unpack(msg.values, self.spec.length))
        except ValueError as exc:
            raise MessageError(str(exc), client=sender, round_id=self.spec.round_id, field="values") from None
        limit = len(self.contributors) * enc.max_abs_int
        if np.abs(total).max() > limit:
            raise MessageError(f"decrypted sum exceeds {len(self.contributors)} x the input bound", client=sender,
                               round_id=self.spec.round_id, field="values")
        self.result = enc.dequantize(total)
        self.phase = "done"
        return []


class CKKSClient(ClientMachine):
    """Holds the secret context: encrypts its input, and decrypts the aggregate when asked.

    Phases: "input" (waiting for Request), "decrypt" (input sent; may be asked to decrypt), "done".
    """

    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray, context: CKKSContext) -> None:
        super().__init__(cid, spec, vector)
        if not context.is_private():
            raise InputError("client context holds no secret key", client=cid, round_id=spec.round_id,
                             field="context")
        self.context = context
        self.plan = RoundPlan.for_round(context.params, spec)
        self.phase = "input"

    def receive(self, data: bytes) -> list[bytes]:
        allowed = {"input": (Request,), "decrypt": (DecryptRequest,)}.get(self.phase, ())
        _, msg = self.accept_from_server(data, allowed)
        if isinstance(msg, Request):
            out = [self.send(SERVER, EncryptedInput(self._encrypt()))]
            self.phase = "decrypt"
            return out
        out = [self.send(SERVER, DecryptedSum(self._decrypt(msg)))]
        self.phase = "done"
        return out

    def _encrypt(self) -> dict[int, bytes]:
        y = self.quantized / float(self.plan.divisor)
        slots = self.context.params.slots
        return {i: self.context.encrypt(y[i * slots:(i + 1) * slots], self.plan.scale)
                for i in range(self.plan.chunks)}

    def _decrypt(self, msg: DecryptRequest) -> bytes:
        spec, plan, enc = self.spec, self.plan, self.spec.encoding
        contributors = msg.contributors
        if not contributors or list(contributors) != sorted(set(contributors)) or not set(contributors) <= set(
                spec.clients):
            raise MessageError(f"contributors {contributors} are not a set of this round's clients",
                               round_id=spec.round_id, field="contributors")
        ciphers = _load_chunks(self.context, plan, msg.chunks, client=None, round_id=spec.round_id)
        slots = self.context.params.slots
        total = np.concatenate([self.context.decrypt(c) for c in ciphers])[:spec.length] * plan.divisor
        n = len(contributors)
        limit = n * enc.max_abs_int + plan.integer_error(n) + 1
        bad = np.flatnonzero(~(np.abs(total) <= limit))
        if bad.size:
            raise DecryptionError(f"decryptor client {self.me}: slot {bad[0]} decrypts beyond what any sum of {n} "
                                  "inputs can reach (wrong key or corrupted ciphertext)", client=self.me,
                                  round_id=spec.round_id, field=f"chunks[{bad[0] // slots}]")
        rounded = np.clip(np.rint(total), -n * enc.max_abs_int, n * enc.max_abs_int).astype(np.int64)
        return enc.pack(enc.to_ring(rounded))

    def __getstate__(self) -> dict:
        """Picklable (e.g. kept in a Flower node's state between messages): the context as its bytes."""
        state = dict(self.__dict__)
        state["context"] = self.context.serialize()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "context": CKKSContext.from_bytes(state["context"])})


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


class CKKSProtocol(SecureSumProtocol):
    """CKKS homomorphic encryption (TenSEAL's SEAL bindings); the server never holds the secret key.

    Args:
        params: CKKS parameters, or a mapping of ``CKKSParams`` fields (e.g. JSON options over Flower:
            ``{"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [60]}``); default ``CKKSParams()`` (N = 4096,
            one 60-bit prime, automatic scale, symmetric encryption).
        dealer: client id that generates the keys and is the preferred decryptor; default the smallest id.
        key_authority: True: a separate party generates the keys (no client is dealer); the decryptor is then
            the smallest contributing client. In-process ``setup`` only (the in-band distribution needs a dealer
            client).

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

    def __init__(self, params: CKKSParams | Mapping[str, object] | None = None, *, dealer: int | None = None,
                 key_authority: bool = False) -> None:
        if dealer is not None and key_authority:
            raise ValueError("choose a dealer client or a key authority, not both")
        if isinstance(params, Mapping):
            params = CKKSParams(**params)
        self.params = params or CKKSParams()
        self.key_authority = key_authority
        self._dealer_choice = dealer
        self.dealer: int | None = None
        self.key_holders: tuple[int, ...] = ()
        self.setup_cost: SetupCost | None = None
        self._server_context: CKKSContext | None = None
        self._client_contexts: dict[int, CKKSContext] = {}

    def setup(self, clients: Sequence[int], rng: random.Random) -> None:
        """Generate the session's keys and distribute them (out of band; costs in ``setup_cost``).

        The secret key comes from SEAL's CSPRNG, not from ``rng``.
        """
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
        return CKKSServer(spec, self._server_context, self.dealer)

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        if cid not in self._client_contexts:
            raise InputError("holds no key of this CKKS session", client=cid, round_id=spec.round_id, field="cid")
        return CKKSClient(cid, spec, vector, self._client_contexts[cid])

    def error_bound(self, spec: RoundSpec, n_inputs: int) -> float:
        """Input rounding, plus the CKKS error when it is not guaranteed to vanish (see RoundPlan)."""
        return RoundPlan.for_round(self.params, spec).error_bound(n_inputs)
