"""The exchange loop over a Flower Grid: send one batch per client and wait for the answers as ``Patience`` allows
(``exchange``, ``grid_channel``); drive a sans-I/O server to its end (``drive``, ``run_round``); find the
clients (``discover_clients``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from ...secagg.api import SecureSumProtocol
from ...secagg.errors import DropoutError, MessageError
from ...secagg.machine import RoundSpec
from .envelope import HELLO_TYPE, RECORD, ROUND_TYPE, TTL_SLACK_S, client_id_from_hello, flower_bytes
from .server_round import FlowerRound, ServerExchanges, ServerRound, WireCosts

log = logging.getLogger(__name__)


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


def discover_clients(grid: Grid, *, min_nodes: int, wait_nodes: float, timeout: float | Patience) -> dict[int, int]:
    """Client id -> Flower node id, from a hello exchange with every connected node.

    Waits up to ``wait_nodes`` seconds for ``min_nodes`` nodes, then asks each its client id and waits for the
    answers as ``timeout`` (a ``Patience``, or its floor in seconds) allows: a node's first ClientApp process
    starts cold, and Patience waits for it.
    Raises DropoutError if fewer than ``min_nodes`` answered, MessageError if two nodes claim one client id.
    """
    patience = Patience.of(timeout)
    deadline = time.monotonic() + wait_nodes
    while len(node_ids := sorted(grid.get_node_ids())) < min_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
    hellos = [Message(RecordDict({RECORD: ConfigRecord()}), node, HELLO_TYPE, group_id="hello", ttl=patience.ttl)
              for node in node_ids]
    nodes: dict[int, int] = {}
    for reply in exchange(grid, hellos, patience) if hellos else []:
        node = reply.metadata.src_node_id
        if reply.has_error():
            log.warning("node %d answered the hello with an error: %s", node, reply.error.reason)
            continue
        try:
            cid = client_id_from_hello(reply.content, node)
        except MessageError as exc:
            log.warning("%s", exc)
            continue
        if cid in nodes:
            raise MessageError(f"nodes {nodes[cid]} and {node} both claim this client id", client=cid,
                               field="client-id")
        nodes[cid] = node
    if len(nodes) < min_nodes:
        raise DropoutError(f"{len(nodes)} of {len(node_ids)} connected nodes named their client id in time, "
                           f"{min_nodes} needed")
    return nodes
