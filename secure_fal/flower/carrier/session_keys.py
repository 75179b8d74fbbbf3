"""Session keys over Flower: a protocol's in-band setup (CKKS: ``secagg/ckks/keys.py``; session-mode masking:
``secagg/masking/setup.py``) in Flower Messages. The setup machines come from the protocol object
(``setup_server`` / ``setup_client``; outcome via ``install_setup`` and the client machine's ``keys()``).

Protocols whose session needs keys shared by the clients (``envelope.needs_session_keys``) run this
once per session, after the hello and before the first round. The server only relays: it ends up with the
public context and the list of key holders, each key holder's node with its secret context.

Envelope (protocols/flower.md §Key distribution), as for rounds:

- server -> node, message type ``query.secure_fal_setup`` (``SETUP_TYPE``), group id ``"setup.<exchange>"``:
  ConfigRecord ``secure_fal`` = {"messages": [bytes, ...]} and, in the first message to each member only,
  ConfigRecord ``secure_fal.setup`` (``SetupOpening``: protocol, options, session, members).
- node -> server: ConfigRecord ``secure_fal`` = {"messages": [...]}, or a Flower Error (no answer).

Exchange i makes members send in phase ``ckks.key_messages.CLIENT_PHASES[i]``: 0 every member its X25519 key, 1 the
dealer the sealed contexts, 2 the other members their acknowledgement. A node silent from exchange i on is the
in-process ``Faults(drop={cid: CLIENT_PHASES[i]})``.

Node state: between messages the member's ``KeyClient`` is kept (pickled, X25519 key as raw bytes) in record
``secure_fal.setup_machine``; at the end the secret context's bytes go to record ``secure_fal.keys``, keyed by the
session id (16 hex digits), replacing the keys of any older session. ``envelope.client_step`` reads them there.

Sans-I/O core (``ServerSetup``, ``client_setup_step``) plus a thin Flower layer (``run_setup``; the ClientApp
answers ``query.secure_fal_setup`` with ``client_setup_step``).
"""

from __future__ import annotations

import json
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid

from ...secagg.api import SecureSumProtocol, make_protocol
from ...secagg.ckks.key_messages import SETUP_ROUND
from ...secagg.errors import MessageError, SecAggError
from ...secagg.messages import SERVER, peek_header
from ...secagg.report import Report
from .envelope import (KEYS_RECORD, RECORD, NodePolicy, needs_session_keys, pack_messages, pinned_protocol,
                       session_key_name, unpack_messages)
from .exchange import Patience, drive, grid_channel
from .server_round import ServerExchanges, WireCosts

SETUP_ACTION = "secure_fal_setup"
SETUP_TYPE = f"query.{SETUP_ACTION}"
SETUP_RECORD = "secure_fal.setup"
SETUP_STATE_RECORD = "secure_fal.setup_machine"


@dataclass(frozen=True)
class SetupOpening:
    """What a member must know to build its key-distribution machine.

    Attributes:
        protocol: protocol name for ``make_protocol`` (one with session keys: 'ckks').
        options: keyword arguments of the protocol's constructor (JSON-serializable); they fix the CKKS
            parameters and the dealer (option ``dealer``, else the smallest member).
        session: the 64-bit id of the aggregation session the keys are for.
        members: the clients asked to take the keys, sorted and distinct.
        first_round: the first round id the keys are for (session-mode masking: a setup covers rounds
            first_round .. first_round + R - 1, and the next one starts where it ends; CKKS keys cover the session).
    """

    protocol: str
    options: Mapping[str, object]
    session: int
    members: tuple[int, ...]
    first_round: int = 1

    def to_record(self) -> ConfigRecord:
        return ConfigRecord({"protocol": self.protocol, "options": json.dumps(dict(self.options), sort_keys=True),
                             "session": session_key_name(self.session), "members": list(self.members),
                             "first-round": self.first_round})

    @classmethod
    def from_record(cls, record: ConfigRecord, *, client: int) -> SetupOpening:
        """Parse and validate; MessageError (naming the client, round 0 and field) on anything malformed."""
        try:
            options = json.loads(record["options"])
            if not isinstance(options, dict):
                raise ValueError("options must be a JSON object")
            members = tuple(int(m) for m in record["members"])
            if list(members) != sorted(set(members)):
                raise ValueError(f"members must be sorted and distinct, got {members}")
            first_round = int(record.get("first-round", 1))
            if first_round < 1:
                raise ValueError(f"first-round must be >= 1, got {first_round}")
            return cls(str(record["protocol"]), options, int(record["session"], 16), members, first_round)
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"bad key-setup opening: {exc!r}", client=client, round_id=SETUP_ROUND,
                               field=SETUP_RECORD) from None


@dataclass
class SetupOutcome:
    """A finished key distribution, on the server.

    Attributes:
        protocol: the server-side protocol object with the session's keys installed (public context only: it
            holds no secret key); pass it to ``ServerRound`` / ``run_round`` for every round of the session.
        key_holders: the clients that hold the keys (the dealer and the members that acknowledged); every
            round's clients must be among them.
        dealer: the member that generated the keys (CKKS; None for session-mode masking).
        report: bytes of our messages per member up/down, server seconds per phase (round id 0, length 0;
            ``dropped``: the members that hold no key).
        wire: Flower-side costs (filled by ``run_setup``; empty in the sans-I/O core).
        seconds: wall seconds of the whole distribution.
    """

    protocol: SecureSumProtocol
    key_holders: tuple[int, ...]
    dealer: int | None
    report: Report
    wire: WireCosts
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready record (no key material)."""
        return {"key_holders": list(self.key_holders), "dealer": self.dealer, "seconds": self.seconds,
                "report": self.report.to_dict(), "wire": self.wire.to_dict()}


class ServerSetup(ServerExchanges):
    """The server side of a key distribution over Flower, sans-I/O: ``next_batches()``, ``take_answers()``,
    ``done`` as ``server_round.ServerRound``; then ``outcome(seconds)``.

    Args:
        protocol_name: a protocol with session keys ('ckks').
        options: its constructor options (sent to every member; they fix the parameters and the dealer).
        session: the session id the keys are for (the rounds' ``RoundSpec.session``).
        members: the clients to give the keys to.
        first_round: the first round id the keys are for (``SetupOpening.first_round``).

    Raises:
        ValueError: a protocol without session keys, or options that allow no in-band distribution (e.g. a
            dealer that is not a member, ``key_authority=True``).
    """

    def __init__(self, protocol_name: str, options: Mapping[str, object], session: int,
                 members: Sequence[int], first_round: int = 1) -> None:
        protocol = make_protocol(protocol_name, **options)
        if not needs_session_keys(protocol):
            raise ValueError(f"protocol {protocol_name!r} has no session keys to distribute")
        self.protocol = protocol
        machine = protocol.setup_server(session, members, first_round)
        self.key_setup = machine.spec
        opening = SetupOpening(protocol_name, options, session, self.key_setup.members, first_round).to_record()
        super().__init__(machine, Report(f"{protocol_name}-keys", SETUP_ROUND, 0, self.key_setup.members),
                         {SETUP_RECORD: opening}, SETUP_ROUND, len(protocol.SETUP_PHASES) + 4)

    def outcome(self, seconds: float) -> SetupOutcome:
        """The finished distribution (call once ``done``): installs the public context and the key holders on
        ``protocol``."""
        if not self.done:
            raise SecAggError("key distribution not finished", round_id=SETUP_ROUND)
        holders = self.server.contributors
        self.protocol.install_setup(self.server)
        self.report.dropped = tuple(m for m in self.key_setup.members if m not in holders)
        dealer = getattr(self.key_setup, "dealer", None)
        return SetupOutcome(self.protocol, holders, dealer, self.report, self.wire, seconds)


def run_setup(grid: Grid, protocol_name: str, options: Mapping[str, object], session: int,
              nodes: Mapping[int, int], *, timeout: float | Patience, members: Sequence[int] | None = None,
              first_round: int = 1, poll_s: float = 0.1) -> SetupOutcome:
    """Distribute the session's keys: the server machine here, member ``c``'s machine on node ``nodes[c]``.

    Args:
        grid: the ServerApp's Grid.
        protocol_name, options: the session's protocol (one with session keys) and its constructor options.
        session: the session id of the rounds that will use the keys.
        nodes: client id -> Flower node id.
        timeout: how long each exchange waits for answers (``exchange.Patience``, or its floor in seconds).
        members: the clients to give the keys to (default: every client in ``nodes``).
        first_round: the first round id the keys are for (exchanges go out as group ``setup-<first_round>.<i>``
            after the first setup, ``setup.<i>`` for it).
        poll_s: seconds between polls of the SuperLink for replies.

    Returns:
        SetupOutcome. Raises DropoutError when the dealer does not answer (no session), ValueError as
        ``ServerSetup``.
    """
    members = tuple(sorted(nodes)) if members is None else tuple(sorted(set(members)))
    missing = [c for c in members if c not in nodes]
    if missing:
        raise ValueError(f"members {missing} of the key distribution have no Flower node")
    t0 = time.perf_counter()
    state = ServerSetup(protocol_name, options, session, members, first_round)
    channel = grid_channel(grid, nodes, timeout=timeout, wire=state.wire, reject=state.reject, poll_s=poll_s)
    drive(channel, state, message_type=SETUP_TYPE, group=setup_group(first_round))
    return state.outcome(time.perf_counter() - t0)


def setup_group(first_round: int) -> str:
    """Group id prefix of a setup's exchanges: ``setup`` for a session's first, ``setup-<first round>`` after."""
    return "setup" if first_round == 1 else f"setup-{first_round}"


def _thaw(data: object, cid: int) -> object:
    """The setup client machine this node stored (``pickle``: node-local bytes only, as ``machine_state``)."""
    machine = pickle.loads(data) if isinstance(data, bytes) else None
    if not all(hasattr(machine, name) for name in ("receive", "done", "keys")):
        raise MessageError(f"stored key-setup state holds a {type(machine).__name__}, not a setup client machine",
                           client=cid, round_id=SETUP_ROUND, field=SETUP_STATE_RECORD)
    return machine


def client_setup_step(content: RecordDict, state: RecordDict, cid: int, policy: NodePolicy) -> RecordDict:
    """Feed one batch of the key distribution to this member's machine; return the answer's content.

    ``state`` is the node's ``Context.state``. The machine is built on the opening (checked against the node's
    ``policy``: the protocol must be allowed, the session have at least ``min_clients`` members, and the
    protocol's options meet its pins: ``pinned_protocol``), kept in
    ``state`` between batches, and replaced, once it holds the keys, by the secret context's bytes in record
    ``secure_fal.keys`` under the session id (older sessions' keys are dropped). Raises SecAggError (naming
    client, round 0 and field) on a refused or malformed batch; ``state`` is then left as it was.
    """
    opening_record = content.config_records.get(SETUP_RECORD)
    if opening_record is not None:
        opening = SetupOpening.from_record(opening_record, client=cid)
        policy.check_opening(opening.protocol, len(opening.members), client=cid, round_id=SETUP_ROUND,
                             field="members")
        if cid not in opening.members:
            raise MessageError(f"not a member of the key distribution {list(opening.members)}", client=cid,
                               round_id=SETUP_ROUND, field="members")
        protocol = pinned_protocol(opening.protocol, opening.options, policy, cid, SETUP_ROUND)
        try:
            if not needs_session_keys(protocol):
                raise ValueError(f"protocol {opening.protocol!r} has no session keys")
            machine = protocol.setup_client(cid, opening.session, opening.members, opening.first_round)
        except (TypeError, ValueError) as exc:
            raise MessageError(f"cannot take part in this key distribution: {exc}", client=cid, round_id=SETUP_ROUND,
                               field=SETUP_RECORD) from None
    else:
        stored = state.config_records.get(SETUP_STATE_RECORD)
        if stored is None:
            raise MessageError("batch of a key distribution this client has no machine for (opening missed?)",
                               client=cid, round_id=SETUP_ROUND, field=RECORD)
        machine = _thaw(stored.get("machine"), cid)
    out: list[bytes] = []
    for data in unpack_messages(content, client=cid, round_id=SETUP_ROUND):
        out += machine.receive(data)
    if any(peek_header(d).recipient != SERVER for d in out):
        raise MessageError("client machine addressed a message to another client", client=cid, round_id=SETUP_ROUND)
    if machine.done:
        state.config_records.pop(SETUP_STATE_RECORD, None)
        state.config_records[KEYS_RECORD] = ConfigRecord({session_key_name(machine.spec.session): machine.keys()})
    else:
        state.config_records[SETUP_STATE_RECORD] = ConfigRecord({"machine": pickle.dumps(machine)})
    return pack_messages(out)
