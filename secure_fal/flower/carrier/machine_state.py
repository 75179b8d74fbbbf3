"""Keeping a client machine alive between the messages of one round.

Flower runs a ClientApp once per incoming message: on a SuperNode (deployment engine) each message gets a
fresh ``flwr-clientapp`` process; in the simulation engine a pooled worker. What must survive from one
message of a round to the next is the client's ``ClientMachine``: its quantized private input, its secret
keys and its phase. It is kept, as bytes, in the node's ``Context.state``, which Flower keeps on the
SuperNode (handed to the ClientApp over the node-local Runtime API and back) and never sends to the
SuperLink; Flower's own ``secaggplus_mod`` keeps its secrets there too.

The bytes are a pickle. Pickle cannot serialize the X25519 keys of ``cryptography`` nor read-only mappings
(``types.MappingProxyType``), which the masking machine holds; ``freeze`` reduces those to their raw
bytes / a dict and ``thaw`` rebuilds them. Any other unpicklable attribute makes ``freeze`` raise
``TypeError`` naming the machine. Unpickling runs code named in the data, so ``thaw`` must only ever see
bytes that ``freeze`` wrote on the same node (Context.state is such a place; a message is not).
"""

from __future__ import annotations

import io
import pickle
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ...secagg.machine import ClientMachine


def _private_key(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def _public_key(raw: bytes) -> X25519PublicKey:
    return X25519PublicKey.from_public_bytes(raw)


def _read_only(items: dict) -> MappingProxyType:
    return MappingProxyType(items)


class _MachinePickler(pickle.Pickler):
    def reducer_override(self, obj):  # noqa: ANN001, ANN201 (pickle's hook signature)
        if isinstance(obj, X25519PrivateKey):
            return _private_key, (obj.private_bytes_raw(),)
        if isinstance(obj, X25519PublicKey):
            return _public_key, (obj.public_bytes_raw(),)
        if isinstance(obj, MappingProxyType):
            return _read_only, (dict(obj),)
        return NotImplemented


def freeze(machine: ClientMachine) -> bytes:
    """Serialize a client machine, secrets included (keep the bytes on the client's own node)."""
    buf = io.BytesIO()
    try:
        _MachinePickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(machine)
    except (TypeError, AttributeError, pickle.PicklingError) as exc:
        raise TypeError(f"cannot keep {type(machine).__name__} of client {machine.me} between messages: "
                        f"{exc}") from exc
    return buf.getvalue()


def thaw(data: bytes) -> ClientMachine:
    """Inverse of ``freeze``; raises TypeError if the bytes do not hold a ClientMachine."""
    machine = pickle.loads(data)
    if not isinstance(machine, ClientMachine):
        raise TypeError(f"stored state holds a {type(machine).__name__}, not a ClientMachine")
    return machine
