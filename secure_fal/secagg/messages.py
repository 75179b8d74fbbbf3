"""Wire format: a fixed header followed by a typed payload, all bytes.

Header (big-endian, 30 bytes):

    magic  b"SF"   2   identifies secure_fal messages
    version        1   WIRE_VERSION; other versions are rejected
    protocol       1   protocol id (plaintext 1, ckks 2, masking 3)
    kind           1   message kind within the protocol
    flags          1   reserved, must be 0
    session        8   random id of the aggregation session (binds messages to one session)
    round          4   round number within the session (binds messages to one round)
    sender         4   signed: client id >= 0, or SERVER (-1)
    recipient      4   signed: client id >= 0, or SERVER (-1)
    payload_len    4   bytes that follow; must match exactly

A payload is a message dataclass whose fields are encoded in declaration order. Supported field types:
``int`` (signed 64-bit), ``float`` (IEEE double), ``bytes`` and ``str`` (u32 length + data),
``tuple[int, ...]`` (u32 count + i64 each), ``dict[int, bytes]`` (u32 count + (i64 key, bytes) each; a key
that appears twice is refused, never "last one wins").
Decoding checks every length against the remaining bytes, so truncated or padded input raises
MessageError instead of producing a half-read message.
"""

from __future__ import annotations

import struct
import typing
from dataclasses import dataclass, fields
from typing import ClassVar

from .errors import MessageError

WIRE_VERSION = 1
MAGIC = b"SF"
SERVER = -1
_HEADER = struct.Struct(">2sBBBBQIiiI")
HEADER_BYTES = _HEADER.size


@dataclass(frozen=True)
class Header:
    """Routing and binding information carried by every message."""

    protocol: int
    kind: int
    session: int
    round_id: int
    sender: int
    recipient: int


class Message:
    """Base of payload dataclasses. Subclasses set KIND (unique within their protocol)."""

    KIND: ClassVar[int]


def encode(header: Header, msg: Message) -> bytes:
    """Serialize a header and its payload; the header's kind must be the message's KIND."""
    if header.kind != msg.KIND:
        raise ValueError(f"header kind {header.kind} does not match {type(msg).__name__}.KIND={msg.KIND}")
    body = bytearray()
    hints = _hints(type(msg))
    for f in fields(msg):
        _put(body, hints[f.name], getattr(msg, f.name))
    head = _HEADER.pack(MAGIC, WIRE_VERSION, header.protocol, header.kind, 0, header.session,
                        header.round_id, header.sender, header.recipient, len(body))
    return head + bytes(body)


def peek_header(data: bytes) -> Header:
    """Read and check only the header (for routing); raises MessageError on a bad header."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    if len(data) < HEADER_BYTES:
        raise MessageError(f"truncated message: {len(data)} bytes, header alone needs {HEADER_BYTES}")
    magic, version, protocol, kind, flags, session, round_id, sender, recipient, n = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MessageError(f"bad magic {magic!r}: not a secure_fal message")
    if version != WIRE_VERSION:
        raise MessageError(f"wire version {version} unsupported (this build speaks {WIRE_VERSION})",
                           client=sender if sender != SERVER else None, round_id=round_id)
    if flags != 0:
        raise MessageError(f"reserved flags set ({flags})", client=_who(sender), round_id=round_id)
    if len(data) - HEADER_BYTES != n:
        raise MessageError(f"payload length {len(data) - HEADER_BYTES} != declared {n} (truncated or padded)",
                           client=_who(sender), round_id=round_id)
    return Header(protocol, kind, session, round_id, sender, recipient)


def decode(data: bytes, kinds: dict[int, type[Message]], protocol: int) -> tuple[Header, Message]:
    """Parse bytes into (header, message), accepting only the given protocol and message kinds."""
    header = peek_header(data)
    who = _who(header.sender)
    if header.protocol != protocol:
        raise MessageError(f"message for protocol {header.protocol}, expected {protocol}", client=who,
                           round_id=header.round_id)
    cls = kinds.get(header.kind)
    if cls is None:
        raise MessageError(f"unknown message kind {header.kind}", client=who, round_id=header.round_id)
    view = memoryview(data)[HEADER_BYTES:]
    hints = _hints(cls)
    values = {}
    pos = 0
    for f in fields(cls):
        try:
            values[f.name], pos = _get(view, pos, hints[f.name])
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise MessageError(f"cannot decode {cls.__name__}: {exc}", client=who, round_id=header.round_id,
                               field=f.name) from None
    if pos != len(view):
        raise MessageError(f"{len(view) - pos} trailing bytes after {cls.__name__}", client=who,
                           round_id=header.round_id)
    return header, cls(**values)


def _who(sender: int) -> int | None:
    return None if sender == SERVER else sender


_HINTS: dict[type, dict[str, object]] = {}


def _hints(cls: type) -> dict[str, object]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")
_F64 = struct.Struct(">d")


def _put(out: bytearray, tp: object, value: object) -> None:
    if tp is int:
        out += _I64.pack(value)
    elif tp is float:
        out += _F64.pack(value)
    elif tp is bytes:
        out += _U32.pack(len(value)) + value
    elif tp is str:
        raw = value.encode()
        out += _U32.pack(len(raw)) + raw
    elif tp == tuple[int, ...]:
        out += _U32.pack(len(value))
        out += struct.pack(f">{len(value)}q", *value)
    elif tp == dict[int, bytes]:
        out += _U32.pack(len(value))
        for k, v in value.items():
            out += _I64.pack(k) + _U32.pack(len(v)) + v
    else:
        raise TypeError(f"unsupported field type {tp!r}")


def _take(view: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if n > len(view) - pos:
        raise ValueError(f"needs {n} bytes, {len(view) - pos} left")
    return bytes(view[pos:pos + n]), pos + n


def _get(view: memoryview, pos: int, tp: object) -> tuple[object, int]:
    if tp is int:
        raw, pos = _take(view, pos, 8)
        return _I64.unpack(raw)[0], pos
    if tp is float:
        raw, pos = _take(view, pos, 8)
        return _F64.unpack(raw)[0], pos
    if tp is bytes or tp is str:
        raw, pos = _take(view, pos, 4)
        raw, pos = _take(view, pos, _U32.unpack(raw)[0])
        return (raw.decode() if tp is str else raw), pos
    if tp == tuple[int, ...]:
        raw, pos = _take(view, pos, 4)
        n = _U32.unpack(raw)[0]
        raw, pos = _take(view, pos, 8 * n)
        return struct.unpack(f">{n}q", raw), pos
    if tp == dict[int, bytes]:
        raw, pos = _take(view, pos, 4)
        out: dict[int, bytes] = {}
        for _ in range(_U32.unpack(raw)[0]):
            raw, pos = _take(view, pos, 8)
            key = _I64.unpack(raw)[0]
            if key in out:
                raise ValueError(f"key {key} appears twice")
            raw, pos = _take(view, pos, 4)
            out[key], pos = _take(view, pos, _U32.unpack(raw)[0])
        return out, pos
    raise TypeError(f"unsupported field type {tp!r}")
