"""In-process transport: moves bytes between one server machine and its client machines.

It is the only place where messages travel, so it is also where costs are measured (bytes per party,
seconds per phase) and where faults are injected for tests: a client dropping out at a given phase,
and any rewriting of messages in flight (drop, corrupt, duplicate, replay, reorder) through a hook.
Delivery order is deterministic: first-in first-out, unless a fault hook reorders.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import SecAggError
from .machine import ClientMachine, ServerMachine
from .messages import SERVER, Header, peek_header
from .report import Report

# A hook sees every message in flight and returns what is delivered instead: [] drops it,
# [data] passes it (possibly altered), [data, data] duplicates it, and it may add older messages (replay).
InFlightHook = Callable[[Header, bytes], list[bytes]]


@dataclass
class Faults:
    """Deterministic fault plan for one round.

    Attributes:
        drop: client id -> phase name. From the first message that client would send in that phase on,
            it sends and receives nothing (it crashed). Phase names are the protocol's CLIENT_PHASES.
        in_flight: optional hook applied to every message sent (see InFlightHook).
    """

    drop: Mapping[int, str] = field(default_factory=dict)
    in_flight: InFlightHook | None = None


def run_round(server: ServerMachine, clients: Mapping[int, ClientMachine], report: Report,
              phase_of_kind: Mapping[int, str], client_phases: tuple[str, ...],
              faults: Faults | None = None) -> None:
    """Drive one round to completion, filling ``report``; errors from a machine propagate unchanged.

    Args:
        server: the server machine of the round.
        clients: id -> client machine, for every client that is online at the start.
        report: filled in place with bytes and seconds.
        phase_of_kind: message kind -> client phase name in which clients send it.
        client_phases: the protocol's client phases in order (for the dropout plan).
        faults: optional fault plan.
    """
    faults = faults or Faults()
    for cid, phase in faults.drop.items():
        if phase not in client_phases:
            raise ValueError(f"unknown phase {phase!r} for client {cid}; phases: {client_phases}")
    crashed: set[int] = set()
    queue: deque[bytes] = deque()

    def post(messages: list[bytes]) -> None:
        for data in messages:
            header = peek_header(data)
            if header.sender != SERVER:
                cid = header.sender
                drop_at = faults.drop.get(cid)
                if drop_at is not None and (client_phases.index(phase_of_kind[header.kind])
                                            >= client_phases.index(drop_at)):
                    crashed.add(cid)
                if cid in crashed:
                    continue
                report.bytes_up[cid] += len(data)
            elif header.recipient in crashed or header.recipient not in clients:
                continue
            else:
                report.bytes_down[header.recipient] += len(data)
            queue.extend(faults.in_flight(header, data) if faults.in_flight else [data])

    def timed(phase_store: dict, phase: str, fn, *args) -> list[bytes]:
        t0 = time.perf_counter()
        out = fn(*args)
        phase_store[phase] += time.perf_counter() - t0
        return out

    post(timed(report.server_seconds, server.phase, server.start))
    stalls = 0
    while not server.done:
        if not queue:
            stalls += 1
            # a protocol may time out once per phase, plus once per client it retries (e.g. a decryptor)
            if stalls > len(client_phases) + 4 + len(clients):
                raise SecAggError(f"round stalled in server phase {server.phase!r}",
                                  round_id=server.spec.round_id)
            post(timed(report.server_seconds, server.phase, server.on_timeout))
            continue
        data = queue.popleft()
        recipient = peek_header(data).recipient
        if recipient == SERVER:
            post(timed(report.server_seconds, server.phase, server.receive, data))
        elif recipient in clients and recipient not in crashed:
            machine = clients[recipient]
            post(timed(report.client_seconds[recipient], machine.phase, machine.receive, data))
    report.dropped = tuple(c for c in report.clients if c not in server.contributors)
