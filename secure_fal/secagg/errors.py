"""Exceptions raised by the secure aggregation protocols.

Every error names where it happened (client id, round, field) so that a failed round can be diagnosed
without guessing. A machine that raises leaves its state unchanged: the offending message is rejected,
never half-applied, and no aggregate is ever produced from a message that failed a check.
"""

from __future__ import annotations


class SecAggError(Exception):
    """Base class of every secure-aggregation error.

    Attributes:
        client: id of the client the problem concerns (None when it concerns the server or no one party).
        round_id: aggregation round in which it happened (None when unknown, e.g. undecodable bytes).
        field: name of the offending field or message part (None when not about one field).
    """

    def __init__(self, what: str, *, client: int | None = None, round_id: int | None = None,
                 field: str | None = None) -> None:
        self.what = what
        self.client = client
        self.round_id = round_id
        self.field = field
        where = []
        if client is not None:
            where.append(f"client {client}")
        if round_id is not None:
            where.append(f"round {round_id}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {what}" if where else what)


class InputError(SecAggError, ValueError):
    """A client's input vector is unusable: wrong length or dtype, NaN/Inf, or outside the public bound."""


class MessageError(SecAggError, ValueError):
    """A message is malformed, truncated, of an unknown kind, from an unknown or duplicate sender, or tampered."""


class ReplayError(MessageError):
    """A message belongs to another session or an earlier round, or repeats one already accepted."""


class OutOfOrderError(MessageError):
    """A message arrived in a phase that does not accept it."""


class DecryptionError(MessageError):
    """Authenticated decryption failed: the ciphertext or its associated data was altered."""


class DropoutError(SecAggError):
    """Too few clients survived for the protocol to finish; no partial result is released."""
