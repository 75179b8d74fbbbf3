"""A node's settings from its Flower node config: its client id, its policy (the protocols it accepts, the
fewest clients it lets a round have, the corruption fraction its masking parameters must withstand, whether it
requires active-mode masking, the smallest CKKS ring, where its round registry persists) and the differential
privacy it requires of every sum."""

from __future__ import annotations

import json

from flwr.app import Context

from ...secagg.errors import InputError
from ...secagg.privacy.release import NodePrivacy
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
    """This node's policy (protocols/masking.md §Node policy) from its node config: ``protocols`` (else
    ``default_protocols``, comma-separated), ``min-clients`` (default 2), ``corruption`` (gamma, default 0.1),
    ``active`` (require active-mode masking, default false), ``min-ring-degree`` (CKKS N, default 4096),
    ``round-registry`` (a file where the round registry also persists; default none), and for active mode
    ``roster-sha256`` (the pinned roster's digest) and ``signing-key`` (this node's Ed25519 key, 64 hex digits).
    InputError naming the key on a bad value."""
    config = context.node_config
    raw = config.get("protocols", default_protocols)
    min_clients = config.get("min-clients", 2)
    if not isinstance(min_clients, int) or isinstance(min_clients, bool) or min_clients < 1:
        raise InputError(f"node config min-clients={min_clients!r} is not an int >= 1", field="min-clients")
    corruption = config.get("corruption", 0.1)
    if isinstance(corruption, bool) or not isinstance(corruption, (int, float)) or not 0 <= corruption < 0.5:
        raise InputError(f"node config corruption={corruption!r} is not a fraction in [0, 0.5)", field="corruption")
    active = config.get("active", False)
    if not isinstance(active, bool):
        raise InputError(f"node config active={active!r} is not true or false", field="active")
    degree = config.get("min-ring-degree", 4096)
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 1:
        raise InputError(f"node config min-ring-degree={degree!r} is not an int >= 1", field="min-ring-degree")
    registry = config.get("round-registry", "")
    if not isinstance(registry, str):
        raise InputError(f"node config round-registry={registry!r} is not a path", field="round-registry")
    digest, key = config.get("roster-sha256", ""), config.get("signing-key", "")
    bad_key = InputError("node config signing-key is not 64 hex digits", field="signing-key")
    if not isinstance(key, str) or len(key) not in (0, 64):
        raise bad_key
    try:
        signing_key = bytes.fromhex(key)
    except ValueError:
        raise bad_key from None
    return NodePolicy(frozenset(p.strip() for p in str(raw).split(",") if p.strip()), min_clients,
                      float(corruption), active, degree, registry, str(digest), signing_key)


def privacy_of(context: Context, default: NodePrivacy | None = None) -> NodePrivacy | None:
    """The differential privacy this node requires of every sum: node config ``privacy``, a JSON object of
    ``NodePrivacy`` fields (e.g. ``privacy='{"mechanism": "ddg", "max_contributors": 3, "noise_multiplier": 1.0}'``),
    else ``default`` (None: the node adds no noise unless a round carries a release, and then follows it).
    InputError naming the key on a bad value."""
    raw = context.node_config.get("privacy")
    if raw is None:
        return default
    try:
        fields = json.loads(str(raw))
        return NodePrivacy(**fields)
    except (TypeError, ValueError) as exc:
        raise InputError(f"node config privacy={raw!r} is not a JSON object of NodePrivacy fields: {exc}",
                         field="privacy") from None
