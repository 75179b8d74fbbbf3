"""The server's side of a round over Flower, sans-I/O: batches out, answers in (``ServerExchanges``,
``ServerRound``), and what a round cost on the wire (``WireCosts``, ``FlowerRound``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from ...secagg.api import SecureSumProtocol
from ...secagg.errors import MessageError, SecAggError
from ...secagg.machine import RoundSpec, ServerMachine
from ...secagg.messages import peek_header
from ...secagg.report import Report
from .envelope import (OPENING_RECORD, WORKLOAD_RECORD, RoundOpening, check_keys_installed, pack_messages,
                       unpack_messages)

log = logging.getLogger(__name__)


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
