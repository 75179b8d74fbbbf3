"""Cost accounting for one aggregation round: bytes per party and seconds per phase."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Report:
    """What one aggregation round cost and who took part.

    Bytes are counted on the wire (whole encoded messages, headers included). Seconds are CPU wall time
    spent inside each party's state machine, per protocol phase; transport time is not included.

    Attributes:
        protocol: protocol name.
        round_id: the round within its session.
        length: number of values L in each input vector.
        clients: ids of the clients asked to take part.
        bytes_up: client id -> bytes that client sent to the server.
        bytes_down: client id -> bytes the server sent to that client.
        client_seconds: client id -> {phase: seconds}.
        server_seconds: {phase: seconds}.
        dropped: ids of clients whose input is not in the result.
    """

    protocol: str
    round_id: int
    length: int
    clients: tuple[int, ...]
    bytes_up: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    bytes_down: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    client_seconds: dict[int, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    server_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    dropped: tuple[int, ...] = ()

    @property
    def server_bytes_in(self) -> int:
        return sum(self.bytes_up.values())

    @property
    def server_bytes_out(self) -> int:
        return sum(self.bytes_down.values())

    @property
    def total_bytes(self) -> int:
        """Every byte that crossed the network in this round."""
        return self.server_bytes_in + self.server_bytes_out

    @property
    def server_total_seconds(self) -> float:
        return sum(self.server_seconds.values())

    def client_total_seconds(self, cid: int) -> float:
        return sum(self.client_seconds.get(cid, {}).values())

    def to_dict(self) -> dict:
        """A JSON-ready copy (client ids become strings)."""
        return {
            "protocol": self.protocol,
            "round_id": self.round_id,
            "length": self.length,
            "clients": list(self.clients),
            "dropped": list(self.dropped),
            "bytes_up": {str(k): v for k, v in sorted(self.bytes_up.items())},
            "bytes_down": {str(k): v for k, v in sorted(self.bytes_down.items())},
            "client_seconds": {str(k): dict(v) for k, v in sorted(self.client_seconds.items())},
            "server_seconds": dict(self.server_seconds),
            "total_bytes": self.total_bytes,
        }


@dataclass
class CostTotals:
    """Running totals over many rounds, e.g. everything secure aggregation cost in one experiment."""

    rounds: int = 0
    total_bytes: int = 0
    server_seconds: float = 0.0
    client_seconds: float = 0.0   # summed over clients
    values: int = 0               # sum over rounds of L

    def add(self, report: Report) -> None:
        self.rounds += 1
        self.total_bytes += report.total_bytes
        self.server_seconds += report.server_total_seconds
        self.client_seconds += sum(report.client_total_seconds(c) for c in report.clients)
        self.values += report.length

    def to_dict(self) -> dict:
        return dict(self.__dict__)
