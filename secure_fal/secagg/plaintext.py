"""Plaintext reference protocol: the same message flow with no cryptography.

The server sees every client's (fixed-point) input. It exists as the correctness reference (masking must
match it bit for bit) and as the baseline for measuring what privacy costs. Spec: protocols/plaintext.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .api import SecureSumProtocol
from .errors import DropoutError, MessageError
from .machine import ClientMachine, RoundSpec, ServerMachine
from .messages import SERVER, Message

PROTOCOL_ID = 1


@dataclass(frozen=True)
class Request(Message):
    """Server -> client: send your input for this round."""

    KIND = 1


@dataclass(frozen=True)
class Input(Message):
    """Client -> server: the client's input as packed ring elements (k/8 bytes per value)."""

    KIND = 2
    values: bytes


KINDS = {m.KIND: m for m in (Request, Input)}


class PlaintextServer(ServerMachine):
    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, spec: RoundSpec) -> None:
        super().__init__(spec)
        self.inputs: dict[int, None] = {}   # senders whose input is in ``_total``
        self._total = np.zeros(spec.length, dtype=np.uint64)   # running ring sum

    def start(self) -> list[bytes]:
        self.phase = "collect"
        return [self.send(cid, Request()) for cid in self.spec.clients]

    def receive(self, data: bytes) -> list[bytes]:
        header, msg = self.accept_from_client(data, (Input,), self.inputs)
        try:
            values = self.spec.encoding.unpack(msg.values, self.spec.length)
        except ValueError as exc:
            raise MessageError(str(exc), client=header.sender, round_id=header.round_id, field="values") from None
        np.add(self._total, values, out=self._total)
        self.inputs[header.sender] = None
        if len(self.inputs) == len(self.spec.clients):
            self._finish()
        return []

    def on_timeout(self) -> list[bytes]:
        if not self.inputs:
            raise DropoutError("no client sent its input", round_id=self.spec.round_id)
        self._finish()
        return []

    def _finish(self) -> None:
        enc = self.spec.encoding
        self.contributors = tuple(sorted(self.inputs))
        self.result = enc.dequantize(enc.from_ring(self._total))
        self.phase = "done"


class PlaintextClient(ClientMachine):
    PROTOCOL = PROTOCOL_ID
    KINDS = KINDS

    def __init__(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> None:
        super().__init__(cid, spec, vector)
        self.phase = "input"

    def receive(self, data: bytes) -> list[bytes]:
        self.accept_from_server(data, (Request,) if self.phase == "input" else ())
        enc = self.spec.encoding
        out = [self.send(SERVER, Input(enc.pack(enc.to_ring(self.quantized))))]
        self.phase = "done"
        return out


class PlaintextProtocol(SecureSumProtocol):
    """No protection: the server learns every input. Reference and baseline only."""

    NAME = "plaintext"
    CLIENT_PHASES = ("input",)
    PHASE_OF_KIND = {Input.KIND: "input"}

    def server(self, spec: RoundSpec) -> ServerMachine:
        return PlaintextServer(spec)

    def client(self, cid: int, spec: RoundSpec, vector: np.ndarray) -> ClientMachine:
        return PlaintextClient(cid, spec, vector)
