"""Our protocol messages inside Flower Messages: the envelope, the server's round driver, the client's step.

The sans-I/O machines of ``secure_fal.secagg`` exchange bytes; here those bytes travel in Flower Messages
between a ServerApp (server machine) and ClientApps on SuperNodes (one client machine per node). Nothing
of ours is re-encoded: each of our messages crosses the network as the same bytes the in-process
transport moves, so every check of ``machine.py`` (session, round, phase, sender, recipient) still applies.

Envelope (protocols/flower.md):

- server -> node, message type ``query.secure_fal_round``, group id ``"<round>.<exchange>"``: a RecordDict
  with ConfigRecord ``secure_fal`` = {"messages": [bytes, ...]} (our messages addressed to that client, in
  order) and, in the first message of a round to that client only, ConfigRecord ``secure_fal.round`` (the
  round's public parameters, see ``RoundOpening``) and ConfigRecord ``secure_fal.workload`` (free-form
  parameters for the client's input source).
- node -> server, the reply: ConfigRecord ``secure_fal`` = {"messages": [bytes, ...]}, or a Flower Error
  when the client refused or failed (then it counts as not having answered).
- ``query.secure_fal_hello`` (once per session): the node answers ConfigRecord ``secure_fal`` =
  {"client-id": int} with the client id from its node config, so the server can map Flower node ids to
  our client ids.
- ``query.secure_fal_setup`` (once per session, only for protocols with session keys, i.e. CKKS): the key
  distribution, in the same envelope (``session_keys.py``); each node keeps its keys in its
  ``Context.state`` (record ``secure_fal.keys``), where ``client_step`` finds them for the session's rounds.

The server sends one batch per *exchange* and waits for the answers as ``Patience`` allows (at least
``timeout`` seconds, longer on a machine whose nodes answer slowly). A node
that does not answer in time (crashed, unreachable, or answering with an error) is treated exactly like
a client that the in-process transport drops (``Faults(drop=...)``): the server machine's ``on_timeout``
closes the phase without it, and it is not addressed again in that round.

Both ends are split into a sans-I/O core working on RecordDicts (``ServerRound``, ``client_step``) and a
thin Flower layer (``run_round``; ``client_app.py``), so the core is tested without a Flower runtime.
``ServerExchanges`` (batching, the opening, answer checks, byte counts) and ``drive`` (the Grid loop) are
shared with the key distribution's ``session_keys.ServerSetup`` / ``run_setup``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from ..secagg.api import SecureSumProtocol, make_protocol
from ..secagg.encoding import FixedPoint
from ..secagg.errors import MessageError, SecAggError
from ..secagg.machine import RoundSpec, ServerMachine
from ..secagg.messages import SERVER, peek_header
from ..secagg.report import Report
from . import machine_state

log = logging.getLogger(__name__)

RECORD = "secure_fal"
OPENING_RECORD = "secure_fal.round"
WORKLOAD_RECORD = "secure_fal.workload"
STATE_RECORD = "secure_fal.machine"
KEYS_RECORD = "secure_fal.keys"  # node state: session id (16 hex digits) -> this client's session keys (bytes)
HELLO_ACTION = "secure_fal_hello"
ROUND_ACTION = "secure_fal_round"
HELLO_TYPE = f"query.{HELLO_ACTION}"
ROUND_TYPE = f"query.{ROUND_ACTION}"
TTL_SLACK_S = 60.0  # a message stays valid this long after the server stops waiting (clock skew)

# (round spec, client id, workload parameters) -> that client's input vector, float (L,)
InputSource = Callable[[RoundSpec, int, Mapping[str, object]], np.ndarray]


def flower_bytes(message: Message) -> int:
    """Bytes of a Flower Message as Flower serializes it for transfer (metadata and every record);
    the HTTP framing (and TLS, when enabled) of the SuperLink/SuperNode connections comes on top."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def pack_messages(messages: list[bytes]) -> RecordDict:
    """Our messages -> the RecordDict body of a Flower Message."""
    return RecordDict({RECORD: ConfigRecord({"messages": list(messages)})})


def unpack_messages(content: RecordDict, *, client: int | None, round_id: int | None) -> list[bytes]:
    """The RecordDict body of a Flower Message -> our messages; MessageError if it holds none."""
    record = content.config_records.get(RECORD)
    messages = None if record is None else record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, bytes) for m in messages):
        raise MessageError(f"Flower message has no {RECORD!r} record with a list of bytes 'messages'",
                           client=client, round_id=round_id, field="messages")
    return messages


@dataclass(frozen=True)
class RoundOpening:
    """What a client must know to build its machine for a round: protocol, options and public parameters.

    Attributes:
        protocol: protocol name for ``make_protocol`` ('plaintext', 'masking' or 'ckks').
        options: keyword arguments of the protocol's constructor (JSON-serializable).
        spec: the round's public parameters.
    """

    protocol: str
    options: Mapping[str, object]
    spec: RoundSpec

    def to_record(self) -> ConfigRecord:
        s = self.spec
        return ConfigRecord({
            "protocol": self.protocol, "options": json.dumps(dict(self.options), sort_keys=True),
            "session": f"{s.session:016x}", "round": s.round_id, "clients": list(s.clients),
            "length": s.length, "bound": float(s.encoding.bound), "frac-bits": s.encoding.frac_bits,
            "n-clients": s.encoding.n_clients, "clip": s.clip,
        })

    @classmethod
    def from_record(cls, record: ConfigRecord, *, client: int) -> RoundOpening:
        """Parse and validate; MessageError (naming the client and field) on anything malformed."""
        round_id = record.get("round") if isinstance(record.get("round"), int) else None
        try:
            options = json.loads(record["options"])
            if not isinstance(options, dict):
                raise ValueError("options must be a JSON object")
            spec = RoundSpec(int(record["session"], 16), int(record["round"]), tuple(record["clients"]),
                             int(record["length"]),
                             FixedPoint(float(record["bound"]), int(record["frac-bits"]), int(record["n-clients"])),
                             bool(record["clip"]))
            return cls(str(record["protocol"]), options, spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"bad round opening: {exc!r}", client=client, round_id=round_id,
                               field=OPENING_RECORD) from None


def needs_session_keys(protocol: SecureSumProtocol) -> bool:
    """True for protocols whose session needs keys made once and shared by the clients
    (``protocol.has_session_keys``: CKKS, session-mode masking). Over Flower they are distributed in-band first
    (``session_keys.py``)."""
    return protocol.has_session_keys


def check_keys_installed(protocol: SecureSumProtocol) -> None:
    """Raise ValueError when ``protocol`` needs session keys and none are installed on this object.

    A server-side object gets them from the key distribution (``session_keys.ServerSetup(...).outcome()
    .protocol`` or ``run_setup``), or in-process from ``setup``; its ``key_holders`` then lists the clients
    holding the keys.
    """
    if needs_session_keys(protocol) and not getattr(protocol, "key_holders", ()):
        raise ValueError(f"protocol {protocol.NAME!r} needs session keys and this object has none installed: run "
                         "the key distribution first (session_keys.ServerSetup or run_setup)")


def session_key_name(session: int) -> str:
    """Key of a session's entry in the node state's ``KEYS_RECORD``: 16 hex digits."""
    return f"{session:016x}"


def load_session_keys(protocol: SecureSumProtocol, state: RecordDict, cid: int, spec: RoundSpec) -> None:
    """Install this node's keys of ``spec.session`` (from ``state``'s ``KEYS_RECORD``) on a client-side protocol.

    Raises MessageError naming the client, round and field ``secure_fal.keys`` when the node holds none for this
    session (it missed the key distribution or was not a key holder) or they do not fit the protocol's options.
    """
    record = state.config_records.get(KEYS_RECORD)
    blob = None if record is None else record.get(session_key_name(spec.session))
    if not isinstance(blob, bytes):
        raise MessageError(f"this node holds no {protocol.NAME} keys of session {session_key_name(spec.session)} "
                           "(it missed the key distribution, or is not a key holder)", client=cid,
                           round_id=spec.round_id, field=KEYS_RECORD)
    try:
        protocol.load_client_keys(cid, blob)
    except SecAggError as exc:
        raise MessageError(f"stored keys do not fit this round's protocol options: {exc.what}", client=cid,
                           round_id=spec.round_id, field=KEYS_RECORD) from None


# -- server side ---------------------------------------------------------------------------------------


@dataclass
class WireCosts:
    """What one round cost on Flower's side, measured in the ServerApp.

    Attributes:
        bytes_down: client id -> bytes of the Flower Messages sent to it (``flower_bytes``).
        bytes_up: client id -> bytes of the Flower replies received from it.
        exchange_seconds: wall seconds of each exchange (send, wait for answers, feed the server machine).
        unanswered: per exchange, the client ids that did not answer in time or answered with an error.
        rejected: one line per answer the server did not take (the text names the client).
    """

    bytes_down: dict[int, int] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    exchange_seconds: list[float] = field(default_factory=list)
    unanswered: list[tuple[int, ...]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_down.values()) + sum(self.bytes_up.values())

    def to_dict(self) -> dict:
        return {"bytes_down": {str(k): v for k, v in sorted(self.bytes_down.items())},
                "bytes_up": {str(k): v for k, v in sorted(self.bytes_up.items())},
                "total_bytes": self.total_bytes, "exchange_seconds": list(self.exchange_seconds),
                "unanswered": [list(u) for u in self.unanswered], "rejected": list(self.rejected)}


@dataclass
class FlowerRound:
    """Outcome of one secure sum run over Flower.

    Attributes:
        total: float64 (L,), the sum over ``contributors``.
        contributors: client ids whose inputs are in ``total``.
        report: our protocol's costs, counted as by the in-process transport (bytes of our messages,
            server seconds per phase; client seconds are not observable from the server and stay empty).
        wire: Flower-side costs.
        seconds: wall seconds from the round's first send to its result.
    """

    total: np.ndarray
    contributors: tuple[int, ...]
    report: Report
    wire: WireCosts
    seconds: float


class ServerExchanges:
    """A server machine driven over Flower, sans-I/O: batches out, answers in.

    ``next_batches()`` gives client id -> RecordDict to send in the next exchange (empty once done);
    ``take_answers(answers)`` feeds what came back: client id -> reply RecordDict, or an error text for a
    Flower Error reply; clients missing from ``answers`` did not answer in time. A client's answer is
    taken only if every message in it is signed by that client and accepted by the server machine;
    otherwise it is logged in ``wire.rejected`` and the client counts as not having answered.

    Shared by ``ServerRound`` (a secure sum) and ``session_keys.ServerSetup`` (a key distribution).

    Args:
        machine: the server machine (``start``/``receive``/``on_timeout``, ``phase``, ``done``): a
            ``ServerMachine``, or ``ckks_keys.KeyServer`` which has the same interface.
        report: filled with the bytes of our messages per client and the machine's seconds per phase.
        opening: records added to the first batch sent to each client (name -> ConfigRecord).
        round_id: the round id named in errors and log lines.
        max_stalls: timeouts in a row without any message to send after which the exchange is declared stalled.
    """

    def __init__(self, machine: ServerMachine, report: Report, opening: Mapping[str, ConfigRecord], round_id: int,
                 max_stalls: int) -> None:
        self.server = machine
        self.report = report
        self.wire = WireCosts()
        self._opening = dict(opening)
        self._round_id = round_id
        self._max_stalls = max_stalls
        self._opened: set[int] = set()
        self._asked: set[int] = set()
        self._outbox = self._timed(self.server.start)

    @property
    def done(self) -> bool:
        return self.server.done

    def _timed(self, fn, *args) -> list[bytes]:
        phase = self.server.phase
        t0 = time.perf_counter()
        out = fn(*args)
        self.report.server_seconds[phase] += time.perf_counter() - t0
        return out

    def next_batches(self) -> dict[int, RecordDict]:
        """What to send now, per client; calls the machine's ``on_timeout`` when nothing is pending.

        Raises what ``on_timeout`` raises (e.g. DropoutError) and SecAggError if the exchange stalls.
        """
        stalls = 0
        while not self._outbox and not self.server.done:
            stalls += 1
            if stalls > self._max_stalls:
                raise SecAggError(f"stalled in server phase {self.server.phase!r}", round_id=self._round_id)
            self._outbox = self._timed(self.server.on_timeout)
        batches: dict[int, list[bytes]] = {}
        for data in self._outbox:
            batches.setdefault(peek_header(data).recipient, []).append(data)
        self._outbox = []
        out = {}
        for cid, batch in batches.items():
            content = pack_messages(batch)
            if cid not in self._opened:
                for name, record in self._opening.items():
                    content.config_records[name] = record
                self._opened.add(cid)
            self.report.bytes_down[cid] += sum(len(d) for d in batch)
            out[cid] = content
        self._asked = set(out)
        return out

    def reject(self, line: str) -> None:
        """Record (and log) an answer that was not taken."""
        self.wire.rejected.append(line)
        log.warning("round %d: %s", self._round_id, line)

    def take_answers(self, answers: Mapping[int, RecordDict | str]) -> None:
        """Feed the answers of the exchange ``next_batches`` opened, in client id order."""
        answered = set()
        for cid in sorted(answers):
            answer = answers[cid]
            if cid not in self._asked:
                self.reject(f"answer from client {cid}, which was not asked in this exchange")
                continue
            if isinstance(answer, str):
                self.reject(f"client {cid}, round {self._round_id}: error reply: {answer}")
                continue
            try:
                for data in unpack_messages(answer, client=cid, round_id=self._round_id):
                    sender = peek_header(data).sender
                    if sender != cid:
                        raise MessageError(f"answer carries a message signed as sender {sender}", client=cid,
                                           round_id=self._round_id, field="sender")
                    self.report.bytes_up[cid] += len(data)
                    self._outbox += self._timed(self.server.receive, data)
                answered.add(cid)
            except SecAggError as exc:
                self.reject(str(exc))
        self.wire.unanswered.append(tuple(sorted(self._asked - answered)))
        self._asked = set()


class ServerRound(ServerExchanges):
    """The server side of one secure sum over Flower, sans-I/O (``ServerExchanges``).

    Args:
        protocol: the session's protocol object; ``options`` its constructor arguments (sent to clients).
            A protocol with session keys (CKKS) must have them installed (``session_keys``), and
            ``spec.clients`` must be among its key holders (else ``protocol.server`` raises InputError
            naming the first client that holds no key).
        spec: the round's public parameters.
        workload: parameters for the clients' input source (ConfigRecord values).
    """

    def __init__(self, protocol: SecureSumProtocol, options: Mapping[str, object], spec: RoundSpec,
                 workload: Mapping[str, object] | None = None) -> None:
        check_keys_installed(protocol)
        self.protocol = protocol
        self.spec = spec
        opening = {OPENING_RECORD: RoundOpening(protocol.NAME, options, spec).to_record(),
                   WORKLOAD_RECORD: ConfigRecord(dict(workload or {}))}
        super().__init__(protocol.server(spec), Report(protocol.NAME, spec.round_id, spec.length, spec.clients),
                         opening, spec.round_id, len(protocol.CLIENT_PHASES) + 4)

    def outcome(self, seconds: float) -> FlowerRound:
        """The finished round (call once ``done``)."""
        if not self.done:
            raise SecAggError("round not finished", round_id=self.spec.round_id)
        self.report.dropped = tuple(c for c in self.spec.clients if c not in self.server.contributors)
        return FlowerRound(self.server.result, self.server.contributors, self.report, self.wire, seconds)


@dataclass
class Patience:
    """How long an exchange waits for its answers: never less than the configured ``timeout``, and on a slow or
    loaded machine as long as its honest nodes need (protocols/flower.md §Dropouts).

    In the deployment engine every message starts a fresh ClientApp process, whose cold start (interpreter, flwr,
    and for a training step torch) can take tens of seconds on a loaded machine; a fixed timeout would then drop
    honest nodes. So an exchange waits:

    - until every node answered, or
    - while no node has answered at all, up to ``cap`` seconds (nothing is lost by waiting: without any answer
      the round could not go on), then
    - once answers come (error replies do not count), until max(``timeout``, ``factor`` * b), where b is the
      latency of the latest answer so far, measured from the send: each answer extends the wait.

    The answers measure how slow the federation is right now (cold starts, load), for the exchange at hand: a node
    is given ``factor`` times as long as the slowest node that answered. One that has not answered by then counts
    as dropped; the protocol's own rules (thresholds) decide what follows. Only the time to detect a dead node
    grows with the machine's slowness, never the dropouts.

    Attributes:
        timeout: s, the configured floor of every exchange's wait.
        factor: how many times the latest answer's latency a missing node may take.
        cap: s, the longest wait for the first answer (default max(10 x timeout, 300 s)).
    """

    timeout: float
    factor: float = 3.0
    cap: float = 0.0

    def __post_init__(self) -> None:
        if not self.timeout > 0 or not self.factor >= 1:
            raise ValueError(f"patience needs timeout > 0 and factor >= 1, got {self.timeout}, {self.factor}")
        if self.cap <= 0:
            self.cap = max(10.0 * self.timeout, 300.0)

    @classmethod
    def of(cls, timeout: float | Patience) -> Patience:
        """``timeout`` itself if it is a Patience, else one with that floor."""
        return timeout if isinstance(timeout, Patience) else cls(float(timeout))

    @property
    def ttl(self) -> float:
        """s, lifetime of a message in the SuperLink: the longest any exchange may wait, plus clock-skew slack."""
        return max(self.cap, self.timeout) + TTL_SLACK_S

    def deadline(self, latest: float | None) -> float:
        """s after the send at which an exchange stops waiting, given its latest answer's latency (None: none yet)."""
        if latest is None:
            return max(self.cap, self.timeout)
        return max(self.timeout, self.factor * latest)


def exchange(grid: Grid, messages: list[Message], patience: float | Patience, poll_s: float = 0.1) -> list[Message]:
    """Push ``messages`` and collect replies until all arrived or the ``patience`` deadline passed.

    Like ``Grid.send_and_receive`` but polls the SuperLink every ``poll_s`` seconds instead of every 3 s, and
    stops by ``Patience.deadline`` (a float is a fixed timeout, the floor of a fresh ``Patience``).
    """
    patience = Patience.of(patience)
    sent = time.monotonic()
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    latest: float | None = None
    while pending:
        got = list(grid.pull_messages(pending))
        waited = time.monotonic() - sent
        if any(not m.has_error() for m in got):
            latest = waited
        replies += got
        pending -= {m.metadata.reply_to_message_id for m in got}
        if not pending or waited >= patience.deadline(latest):
            break
        time.sleep(poll_s)
    return replies


Channel = Callable[[str, str, dict[int, RecordDict]], dict[int, RecordDict | str]]
"""(message type, group id, client id -> content) -> client id -> the reply's content, or the text of an error
reply; a client missing from the result did not answer in time. Over Flower: ``grid_channel``; tests: a loop
calling the clients' handlers in process."""


def grid_channel(grid: Grid, nodes: Mapping[int, int], *, timeout: float | Patience, wire: WireCosts,
                 reject: Callable[[str], None], poll_s: float = 0.1) -> Channel:
    """A Channel over the Grid: one Message per client to its node ``nodes[c]``, TTL ``Patience.ttl``, answers
    collected as long as ``timeout`` (a ``Patience``, or its floor in seconds) allows (``exchange``).

    The Flower bytes of every Message (``flower_bytes``) are added per client to ``wire.bytes_down`` /
    ``wire.bytes_up``; a reply from a node that is no client's is passed over and described to ``reject``.
    """
    patience = Patience.of(timeout)
    client_of = {node: cid for cid, node in nodes.items()}

    def send(message_type: str, group: str, batches: dict[int, RecordDict]) -> dict[int, RecordDict | str]:
        messages = []
        for cid, content in batches.items():
            msg = Message(content, nodes[cid], message_type, group_id=group, ttl=patience.ttl)
            wire.bytes_down[cid] = wire.bytes_down.get(cid, 0) + flower_bytes(msg)
            messages.append(msg)
        answers: dict[int, RecordDict | str] = {}
        for reply in exchange(grid, messages, patience, poll_s):
            cid = client_of.get(reply.metadata.src_node_id)
            if cid is None:
                reject(f"reply from node {reply.metadata.src_node_id}, which is no client of this session")
                continue
            wire.bytes_up[cid] = wire.bytes_up.get(cid, 0) + flower_bytes(reply)
            answers[cid] = (reply.error.reason or f"error code {reply.error.code}") if reply.has_error() \
                else reply.content
        return answers

    return send


def drive(channel: Channel, state: ServerExchanges, *, message_type: str, group: str) -> None:
    """Run ``state``'s exchanges over ``channel`` until it is done (or raises): exchange i goes out as
    ``message_type`` with group id ``"<group>.<i>"``; its wall seconds are appended to
    ``state.wire.exchange_seconds``."""
    while batches := state.next_batches():
        t0 = time.perf_counter()
        state.take_answers(channel(message_type, f"{group}.{len(state.wire.exchange_seconds)}", batches))
        state.wire.exchange_seconds.append(time.perf_counter() - t0)


def run_round(grid: Grid, protocol: SecureSumProtocol, options: Mapping[str, object], spec: RoundSpec,
              nodes: Mapping[int, int], *, timeout: float | Patience, workload: Mapping[str, object] | None = None,
              poll_s: float = 0.1) -> FlowerRound:
    """Run one secure sum with the server machine here and client ``c``'s machine on node ``nodes[c]``.

    Args:
        grid: the ServerApp's Grid.
        protocol: the session's protocol object (built from ``protocol.NAME`` and ``options``; with its
            session keys installed for CKKS: ``session_keys.run_setup(...).protocol``).
        options: the protocol constructor's keyword arguments, sent to every client.
        spec: the round's public parameters; every id in ``spec.clients`` must be in ``nodes``.
        nodes: client id -> Flower node id.
        timeout: how long each exchange waits for answers (``Patience``, or its floor in seconds); later answers
            are ignored.
        workload: parameters for the clients' input source (ConfigRecord values only).
        poll_s: seconds between polls of the SuperLink for replies.

    Returns:
        FlowerRound. Raises what the server machine raises (e.g. DropoutError when too few clients
        answered), and SecAggError if the round stalls.
    """
    missing = [c for c in spec.clients if c not in nodes]
    if missing:
        raise ValueError(f"clients {missing} of round {spec.round_id} have no Flower node")
    t_round = time.perf_counter()
    state = ServerRound(protocol, options, spec, workload)
    channel = grid_channel(grid, nodes, timeout=timeout, wire=state.wire, reject=state.reject, poll_s=poll_s)
    drive(channel, state, message_type=ROUND_TYPE, group=str(spec.round_id))
    return state.outcome(time.perf_counter() - t_round)


# -- client side ---------------------------------------------------------------------------------------


def hello_content(cid: int) -> RecordDict:
    """This node's answer to ``query.secure_fal_hello``: its client id."""
    return RecordDict({RECORD: ConfigRecord({"client-id": cid})})


def client_id_from_hello(content: RecordDict, node: int) -> int:
    """The client id in node ``node``'s hello answer; MessageError naming the node if absent."""
    record = content.config_records.get(RECORD)
    cid = None if record is None else record.get("client-id")
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 2**31:
        raise MessageError(f"node {node} sent no valid client id ({cid!r})", field="client-id")
    return cid


@dataclass(frozen=True)
class NodePolicy:
    """What a node accepts when a server opens a round (its node config).

    Attributes:
        protocols: protocol names this node takes part in; a server cannot switch it to another (e.g.
            plaintext where the node insists on masking).
        min_clients: fewest clients a round may have: a sum over fewer reveals too much of one input
            (over 1 client, all of it).
    """

    protocols: frozenset[str]
    min_clients: int = 2


def client_step(content: RecordDict, state: RecordDict, cid: int, inputs: InputSource,
                policy: NodePolicy) -> RecordDict:
    """Feed one batch from the server to this client's machine; return the answer's content.

    ``state`` is the node's ``Context.state``. The machine is built on the round's opening (after
    checking it against the node's ``policy``) and, for a protocol with session keys (CKKS), on this node's
    keys of the round's session (``load_session_keys``: MessageError naming client, round and field
    ``secure_fal.keys`` when the node has none); it is kept in ``state`` between batches (``machine_state``)
    and removed once done. Raises SecAggError (naming client, round and field) on a refused or malformed
    batch; the stored machine is then left as it was before this batch.
    """
    opening_record = content.config_records.get(OPENING_RECORD)
    if opening_record is not None:
        opening = RoundOpening.from_record(opening_record, client=cid)
        round_id = opening.spec.round_id
        if opening.protocol not in policy.protocols:
            raise MessageError(f"protocol {opening.protocol!r} refused; this node allows "
                               f"{sorted(policy.protocols)}", client=cid, round_id=round_id, field="protocol")
        if len(opening.spec.clients) < policy.min_clients:
            raise MessageError(f"round of {len(opening.spec.clients)} clients refused; this node needs at least "
                               f"{policy.min_clients}", client=cid, round_id=round_id, field="clients")
        protocol = make_protocol(opening.protocol, **opening.options)
        if needs_session_keys(protocol):
            load_session_keys(protocol, state, cid, opening.spec)
        workload = dict(content.config_records.get(WORKLOAD_RECORD, ConfigRecord()))
        machine = protocol.client(cid, opening.spec, inputs(opening.spec, cid, workload))
        spent = protocol.spent_keys(cid)
        if spent is not None:  # session-mode masking: this round's secrets are gone, a second opening is refused
            state.config_records[KEYS_RECORD][session_key_name(opening.spec.session)] = spent
    else:
        stored = state.config_records.get(STATE_RECORD)
        if stored is None:
            raise MessageError("batch of a round this client has no machine for (opening missed?)", client=cid,
                               field=RECORD)
        machine = machine_state.thaw(stored["machine"])
        round_id = machine.spec.round_id
    out: list[bytes] = []
    for data in unpack_messages(content, client=cid, round_id=round_id):
        out += machine.receive(data)
    if any(peek_header(d).recipient != SERVER for d in out):
        raise MessageError("client machine addressed a message to another client", client=cid, round_id=round_id)
    if machine.phase == "done":
        state.config_records.pop(STATE_RECORD, None)
    else:
        state.config_records[STATE_RECORD] = ConfigRecord({"machine": machine_state.freeze(machine)})
    return pack_messages(out)
