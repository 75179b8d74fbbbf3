"""Base classes of the sans-I/O state machines and the public parameters of one round.

A machine never does I/O. It is fed bytes with ``receive`` and returns the bytes it wants sent; each
message names its recipient in its header, and a transport (``transport.py``, or Flower later) routes it.
Every check that a message must pass before it can change state lives in ``ServerMachine.accept`` /
``ClientMachine.accept``: a message that fails one raises and leaves the machine as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .encoding import FixedPoint
from .errors import InputError, MessageError, OutOfOrderError, ReplayError
from .messages import SERVER, Header, Message, decode, encode


@dataclass(frozen=True)
class RoundSpec:
    """Public parameters of one aggregation round, known to the server and every client.

    Attributes:
        session: random 64-bit id of the aggregation session.
        round_id: round number within the session (strictly increasing).
        clients: ids of the clients asked to contribute, sorted, distinct, each in [0, 2^31).
        length: number of values L in every input vector.
        encoding: fixed-point grid and ring shared by all parties.
        clip: clip inputs to [-bound, bound] (True) or reject them (False, the default).
    """

    session: int
    round_id: int
    clients: tuple[int, ...]
    length: int
    encoding: FixedPoint
    clip: bool = False

    def __post_init__(self) -> None:
        if list(self.clients) != sorted(set(self.clients)):
            raise ValueError(f"clients must be sorted and distinct, got {self.clients}")
        if not self.clients or self.clients[0] < 0 or self.clients[-1] >= 2**31:
            raise ValueError("clients must be a non-empty set of ids in [0, 2^31)")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")


class _Party(ABC):
    """What a server and a client machine share: message coding bound to one protocol and round."""

    PROTOCOL: ClassVar[int]
    KINDS: ClassVar[dict[int, type[Message]]]

    def __init__(self, spec: RoundSpec, me: int) -> None:
        self.spec = spec
        self.me = me
        self.phase = "init"

    def send(self, recipient: int, msg: Message) -> bytes:
        header = Header(self.PROTOCOL, msg.KIND, self.spec.session, self.spec.round_id, self.me, recipient)
        return encode(header, msg)

    def accept(self, data: bytes, allowed: tuple[type[Message], ...]) -> tuple[Header, Message]:
        """Decode ``data`` and check it is for this party, this session and round, and this phase.

        Every rejection names a client: the sender when a client sent it, else (at a client) the client itself;
        and the round: the header's, else (undecodable header) this party's.
        """
        try:
            header, msg = decode(data, self.KINDS, self.PROTOCOL)
        except MessageError as exc:
            if exc.client is not None or self.me == SERVER:
                raise
            raise type(exc)(exc.what, client=self.me, round_id=self.spec.round_id if exc.round_id is None
                            else exc.round_id, field=exc.field) from None
        who = header.sender if header.sender != SERVER else (None if self.me == SERVER else self.me)
        if header.session != self.spec.session or header.round_id != self.spec.round_id:
            raise ReplayError(
                f"message from session {header.session:#x} round {header.round_id}, this is session "
                f"{self.spec.session:#x} round {self.spec.round_id}", client=who, round_id=header.round_id)
        if header.recipient != self.me:
            raise MessageError(f"message addressed to {header.recipient}, delivered to {self.me}", client=who,
                               round_id=header.round_id)
        if not isinstance(msg, allowed):
            raise OutOfOrderError(f"{type(msg).__name__} not accepted in phase {self.phase!r}", client=who,
                                  round_id=header.round_id)
        return header, msg


class ServerMachine(_Party):
    """Server side of one aggregation round.

    Lifecycle: ``start()`` -> messages to clients; ``receive(data)`` for each client message;
    ``on_timeout()`` when the transport decides the current phase's deadline passed (the clients that
    did not answer are then treated as dropped). When ``done`` is True, ``result`` holds the float64
    sum of shape (L,) and ``contributors`` the ids whose inputs it contains.
    """

    def __init__(self, spec: RoundSpec) -> None:
        super().__init__(spec, SERVER)
        self.result: np.ndarray | None = None
        self.contributors: tuple[int, ...] = ()

    @property
    def done(self) -> bool:
        return self.result is not None

    @abstractmethod
    def start(self) -> list[bytes]: ...

    @abstractmethod
    def receive(self, data: bytes) -> list[bytes]: ...

    @abstractmethod
    def on_timeout(self) -> list[bytes]: ...

    def accept_from_client(self, data: bytes, allowed: tuple[type[Message], ...],
                           seen: dict[int, object]) -> tuple[Header, Message]:
        """``accept`` plus: the sender is a client of this round and has not already sent in this phase."""
        header, msg = self.accept(data, allowed)
        if header.sender not in self.spec.clients:
            raise MessageError("sender is not a client of this round", client=header.sender,
                               round_id=header.round_id)
        if header.sender in seen:
            raise ReplayError(f"second {type(msg).__name__} in phase {self.phase!r}", client=header.sender,
                              round_id=header.round_id)
        return header, msg

    def accept_after(self, data: bytes, kind: type[Message], seen: dict[int, object], previous: dict[int, object],
                     previous_phase: str) -> tuple[int, Message]:
        """``accept_from_client`` of one ``kind``, plus: the sender completed ``previous_phase`` (it is a key of
        ``previous``), else OutOfOrderError naming it. Returns (sender, message)."""
        header, msg = self.accept_from_client(data, (kind,), seen)
        if header.sender not in previous:
            raise OutOfOrderError(f"{kind.__name__} from a client that did not complete phase {previous_phase!r}",
                                  client=header.sender, round_id=header.round_id)
        return header.sender, msg


class ClientMachine(_Party):
    """Client side of one aggregation round; holds the client's private input.

    The input is validated and quantized at construction: a bad input raises InputError naming the client,
    round and field before anything is sent.
    """

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> None:
        if cid not in spec.clients:
            raise InputError("not a client of this round", client=cid, round_id=spec.round_id, field="cid")
        super().__init__(spec, cid)
        vector = np.asarray(vector)
        if vector.ndim != 1 or vector.shape[0] != spec.length:
            raise InputError(f"vector has shape {vector.shape}, expected ({spec.length},)", client=cid,
                             round_id=spec.round_id, field="vector")
        if not (np.issubdtype(vector.dtype, np.floating) or np.issubdtype(vector.dtype, np.integer)):
            raise InputError(f"vector dtype {vector.dtype} is not numeric", client=cid,
                             round_id=spec.round_id, field="vector")
        self.quantized = spec.encoding.quantize(vector, clip=spec.clip, client=cid, round_id=spec.round_id)

    def accept_from_server(self, data: bytes, allowed: tuple[type[Message], ...]) -> tuple[Header, Message]:
        header, msg = self.accept(data, allowed)
        if header.sender != SERVER:
            raise MessageError(f"client {self.me} accepts messages from the server only", client=header.sender,
                               round_id=header.round_id)
        return header, msg

    @abstractmethod
    def receive(self, data: bytes) -> list[bytes]: ...
