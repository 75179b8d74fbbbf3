"""A node's settings from its Flower node config: its client id and its policy (the protocols it accepts, the
fewest clients it lets a round have)."""

from __future__ import annotations

from flwr.app import Context

from ...secagg.errors import InputError
from .envelope import NodePolicy

DEFAULT_PROTOCOLS = "masking"



def client_id_of(context: Context) -> int:
    """This node's client id: node config ``client-id``, else ``partition-id`` (simulation engine)."""
    for key in ("client-id", "partition-id"):
        value = context.node_config.get(key)
        if value is not None:
            if not isinstance(value, int) or not 0 <= value < 2**31:
                raise InputError(f"node config {key}={value!r} is not an int in [0, 2^31)", field=key)
            return value
    raise InputError("node config has neither 'client-id' nor 'partition-id' "
                     "(start the SuperNode with --node-config \"client-id=<int>\")", field="client-id")



def policy_of(context: Context, default_protocols: str = DEFAULT_PROTOCOLS) -> NodePolicy:
    """This node's policy: node config ``protocols`` (else ``default_protocols``, comma-separated) and
    ``min-clients`` (default 2)."""
    raw = context.node_config.get("protocols", default_protocols)
    min_clients = context.node_config.get("min-clients", 2)
    if not isinstance(min_clients, int) or min_clients < 1:
        raise InputError(f"node config min-clients={min_clients!r} is not an int >= 1", field="min-clients")
    return NodePolicy(frozenset(p.strip() for p in str(raw).split(",") if p.strip()), min_clients)
