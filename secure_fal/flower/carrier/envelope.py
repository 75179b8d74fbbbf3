"""Our protocol messages inside Flower Messages: the envelope, the round opening, the client's step.

The sans-I/O machines of ``secure_fal.secagg`` exchange bytes; here those bytes travel in Flower Messages
between a ServerApp (server machine) and ClientApps on SuperNodes (one client machine per node). Nothing
of ours is re-encoded: each of our messages crosses the network as the same bytes the in-process
transport moves, so every check of ``machine.py`` (session, round, phase, sender, recipient) still applies.

Envelope (protocols/flower.md):

- server -> node, message type ``query.secure_fal_round``, group id ``"<round>.<exchange>"``: a RecordDict
  with ConfigRecord ``secure_fal`` = {"messages": [bytes, ...]} (our messages addressed to that client, in
  order) and, in the first message of a round to that client only, ConfigRecord ``secure_fal.round`` (the
  round's public parameters, see ``RoundOpening``) and ConfigRecord ``secure_fal.workload`` (free-form
  parameters for the client's input source; under differential privacy also ``dp``, the release's public
  parameters: ``protocol_input``).
- node -> server, the reply: ConfigRecord ``secure_fal`` = {"messages": [bytes, ...]}, or a Flower Error
  when the client refused or failed (then it counts as not having answered).
- ``query.secure_fal_hello`` (once per session): the node answers ConfigRecord ``secure_fal`` =
  {"client-id": int} with the client id from its node config, so the server can map Flower node ids to
  our client ids.
- ``query.secure_fal_setup`` (once per session, only for protocols with session keys, i.e. CKKS): the key
  distribution, in the same envelope (``session_keys.py``); each node keeps its keys in its
  ``Context.state`` (record ``secure_fal.keys``), where ``client_step`` finds them for the session's rounds.

The server sends one batch per *exchange* and waits for the answers as ``exchange.Patience`` allows (at least
``timeout`` seconds, longer on a machine whose nodes answer slowly). A node
that does not answer in time (crashed, unreachable, or answering with an error) is treated exactly like
a client that the in-process transport drops (``Faults(drop=...)``): the server machine's ``on_timeout``
closes the phase without it, and it is not addressed again in that round.

Both ends are split into a sans-I/O core working on RecordDicts (``server_round.ServerRound``, ``client_step``
here) and a thin Flower layer (``exchange.run_round``; ``secure_sum/client_app.py``), so the core is tested
without a Flower runtime. ``server_round.ServerExchanges`` (batching, the opening, answer checks, byte counts)
and ``exchange.drive`` (the Grid loop) are shared with the key distribution's ``session_keys.ServerSetup`` /
``run_setup``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from ...secagg.api import SecureSumProtocol, make_protocol
from ...secagg.encoding import FixedPoint
from ...secagg.errors import InputError, MessageError, SecAggError
from ...secagg.machine import RoundSpec
from ...secagg.messages import SERVER, peek_header
from ...secagg.node import NodePolicy, RoundRegistry
from ...secagg.privacy.mechanisms import PrivacyError
from ...secagg.privacy.release import NodePrivacy, Release
from ...secagg.privacy.samplers import NoiseSource
from . import machine_state

log = logging.getLogger(__name__)

RECORD = "secure_fal"
OPENING_RECORD = "secure_fal.round"
WORKLOAD_RECORD = "secure_fal.workload"
STATE_RECORD = "secure_fal.machine"
KEYS_RECORD = "secure_fal.keys"  # node state: session id (16 hex digits) -> this client's session keys (bytes)
ROUNDS_RECORD = "secure_fal.rounds"  # node state: the round registry, session id (16 hex digits) -> [round ids]
HELLO_ACTION = "secure_fal_hello"
ROUND_ACTION = "secure_fal_round"
HELLO_TYPE = f"query.{HELLO_ACTION}"
ROUND_TYPE = f"query.{ROUND_ACTION}"
DP_KEY = "dp"  # workload key of a noised sum: the JSON of its ``privacy.release.Release``
TTL_SLACK_S = 60.0  # a message stays valid this long after the server stops waiting (clock skew)

# (round spec, client id, workload parameters) -> that client's input vector, float (L,)
InputSource = Callable[[RoundSpec, int, Mapping[str, object]], np.ndarray]


def flower_bytes(message: Message) -> int:
    """Bytes of a Flower Message as Flower serializes it for transfer (metadata and every record);
    the HTTP framing (and TLS, when enabled) of the SuperLink/SuperNode connections comes on top."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def pack_messages(messages: list[bytes]) -> RecordDict:
    """Our messages -> the RecordDict body of a Flower Message."""
    return RecordDict({RECORD: ConfigRecord({"messages": list(messages)})})


def unpack_messages(content: RecordDict, *, client: int | None, round_id: int | None) -> list[bytes]:
    """The RecordDict body of a Flower Message -> our messages; MessageError if it holds none."""
    record = content.config_records.get(RECORD)
    messages = None if record is None else record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, bytes) for m in messages):
        raise MessageError(f"Flower message has no {RECORD!r} record with a list of bytes 'messages'",
                           client=client, round_id=round_id, field="messages")
    return messages


@dataclass(frozen=True)
class RoundOpening:
    """What a client must know to build its machine for a round: protocol, options and public parameters.

    Attributes:
        protocol: protocol name for ``make_protocol`` ('plaintext', 'masking' or 'ckks').
        options: keyword arguments of the protocol's constructor (JSON-serializable).
        spec: the round's public parameters.
    """

    protocol: str
    options: Mapping[str, object]
    spec: RoundSpec

    def to_record(self) -> ConfigRecord:
        s = self.spec
        return ConfigRecord({
            "protocol": self.protocol, "options": json.dumps(dict(self.options), sort_keys=True),
            "session": f"{s.session:016x}", "round": s.round_id, "clients": list(s.clients),
            "length": s.length, "bound": float(s.encoding.bound), "frac-bits": s.encoding.frac_bits,
            "n-clients": s.encoding.n_clients, "clip": s.clip,
            **({} if s.encoding.sum_bound is None else {"sum-bound": float(s.encoding.sum_bound)}),
        })

    @classmethod
    def from_record(cls, record: ConfigRecord, *, client: int) -> RoundOpening:
        """Parse and validate; MessageError (naming the client and field) on anything malformed."""
        round_id = record.get("round") if isinstance(record.get("round"), int) else None
        try:
            options = json.loads(record["options"])
            if not isinstance(options, dict):
                raise ValueError("options must be a JSON object")
            spec = RoundSpec(int(record["session"], 16), int(record["round"]), tuple(record["clients"]),
                             int(record["length"]),
                             FixedPoint(float(record["bound"]), int(record["frac-bits"]), int(record["n-clients"]),
                                        None if record.get("sum-bound") is None else float(record["sum-bound"])),
                             bool(record["clip"]))
        except InputError as exc:
            raise MessageError(f"bad round opening: {exc.what}", client=client, round_id=round_id,
                               field=exc.field) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise MessageError(f"bad round opening: {exc!r}", client=client, round_id=round_id,
                               field=OPENING_RECORD) from None
        if spec.encoding.n_clients < len(spec.clients):  # the ring would be too small for the sum: it would wrap
            raise MessageError(f"n-clients {spec.encoding.n_clients} is below the round's {len(spec.clients)} clients",
                               client=client, round_id=round_id, field="n-clients")
        return cls(str(record["protocol"]), options, spec)


def needs_session_keys(protocol: SecureSumProtocol) -> bool:
    """True for protocols whose session needs keys made once and shared by the clients
    (``protocol.has_session_keys``: CKKS, session-mode masking). Over Flower they are distributed in-band first
    (``session_keys.py``)."""
    return protocol.has_session_keys


def check_keys_installed(protocol: SecureSumProtocol) -> None:
    """Raise ValueError when ``protocol`` needs session keys and none are installed on this object.

    A server-side object gets them from the key distribution (``session_keys.ServerSetup(...).outcome()
    .protocol`` or ``run_setup``), or in-process from ``setup``; its ``key_holders`` then lists the clients
    holding the keys.
    """
    if needs_session_keys(protocol) and not getattr(protocol, "key_holders", ()):
        raise ValueError(f"protocol {protocol.NAME!r} needs session keys and this object has none installed: run "
                         "the key distribution first (session_keys.ServerSetup or run_setup)")


def session_key_name(session: int) -> str:
    """Key of a session's entry in the node state's ``KEYS_RECORD``: 16 hex digits."""
    return f"{session:016x}"


def load_session_keys(protocol: SecureSumProtocol, state: RecordDict, cid: int, spec: RoundSpec) -> None:
    """Install this node's keys of ``spec.session`` (from ``state``'s ``KEYS_RECORD``) on a client-side protocol.

    Raises MessageError naming the client, round and field ``secure_fal.keys`` when the node holds none for this
    session (it missed the key distribution or was not a key holder) or they do not fit the protocol's options.
    """
    record = state.config_records.get(KEYS_RECORD)
    blob = None if record is None else record.get(session_key_name(spec.session))
    if not isinstance(blob, bytes):
        raise MessageError(f"this node holds no {protocol.NAME} keys of session {session_key_name(spec.session)} "
                           "(it missed the key distribution, or is not a key holder)", client=cid,
                           round_id=spec.round_id, field=KEYS_RECORD)
    try:
        protocol.load_client_keys(cid, blob)
    except SecAggError as exc:
        raise MessageError(f"stored keys do not fit this round's protocol options: {exc.what}", client=cid,
                           round_id=spec.round_id, field=KEYS_RECORD) from None


# -- server side ---------------------------------------------------------------------------------------


# -- client side ---------------------------------------------------------------------------------------


def pinned_protocol(name: str, options: Mapping[str, object], policy: NodePolicy, cid: int,
                    round_id: int) -> SecureSumProtocol:
    """The protocol object a server's opening asks for, with the node's ``policy`` pinned (``protocol.pin``);
    MessageError naming the client, round and field for options the protocol rejects or the policy refuses."""
    try:
        protocol = make_protocol(name, **options)
        protocol.pin(policy, cid, round_id)
    except InputError as exc:
        raise MessageError(f"refused by this node's policy: {exc.what}", client=cid, round_id=round_id,
                           field=exc.field) from None
    except (TypeError, ValueError) as exc:
        raise MessageError(f"unusable protocol options: {exc}", client=cid, round_id=round_id,
                           field="options") from None
    return protocol


def load_registry(state: RecordDict, policy: NodePolicy, cid: int) -> RoundRegistry:
    """The node's round registry: the union of its state's ``ROUNDS_RECORD`` and ``policy.registry_file``."""
    record = state.config_records.get(ROUNDS_RECORD)
    registry = RoundRegistry.from_dict(dict(record) if record is not None else {}, cid)
    if policy.registry_file:
        registry.merge(RoundRegistry.load(policy.registry_file, cid))
    return registry


def store_registry(state: RecordDict, policy: NodePolicy, registry: RoundRegistry) -> None:
    """Persist ``registry`` in the node's state and, when the policy names one, its file."""
    state.config_records[ROUNDS_RECORD] = ConfigRecord(registry.to_dict())
    if policy.registry_file:
        registry.save(policy.registry_file)


def hello_content(cid: int) -> RecordDict:
    """This node's answer to ``query.secure_fal_hello``: its client id."""
    return RecordDict({RECORD: ConfigRecord({"client-id": cid})})


def client_id_from_hello(content: RecordDict, node: int) -> int:
    """The client id in node ``node``'s hello answer; MessageError naming the node if absent."""
    record = content.config_records.get(RECORD)
    cid = None if record is None else record.get("client-id")
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 2**31:
        raise MessageError(f"node {node} sent no valid client id ({cid!r})", field="client-id")
    return cid


def protocol_input(spec: RoundSpec, cid: int, workload: Mapping[str, object], inputs: InputSource,
                   privacy: NodePrivacy | None) -> np.ndarray:
    """The vector this client feeds the protocol's machine: its input from ``inputs``, or, when the workload carries
    a noised release (``DP_KEY``: ``Release`` JSON), that input clipped, encoded and with its noise share
    (``Release.client_input``, the in-process code path), after ``privacy.check``. The input source then sees the
    round with the release's raw length and the caller's bound (frac bits 0).

    Raises PrivacyError (naming client, round and field) when the node requires differential privacy and the round
    carries none, when the release is weaker than ``privacy`` requires, or when the round's shape is not the one
    the release calls for. A node without ``privacy`` follows the server's release with noise from fresh OS keys.
    """
    raw = workload.get(DP_KEY)
    if raw is None:
        if privacy is not None:
            raise PrivacyError("this node adds differential-privacy noise to every sum and the round carries no "
                               "release parameters", client=cid, round_id=spec.round_id, field=DP_KEY)
        return inputs(spec, cid, workload)
    release = Release.from_json(raw, client=cid, round_id=spec.round_id)
    if privacy is not None:
        privacy.check(release, client=cid)
    shape = (spec.length, spec.encoding.bound, spec.encoding.frac_bits)
    if (release.round_shape(spec.encoding.frac_bits) != shape or spec.encoding.sum_bound != release.sum_bound
            or spec.clip):
        raise PrivacyError(f"round of (length, bound, frac bits) {shape} does not carry this release",
                           client=cid, round_id=spec.round_id, field="length")
    raw_spec = RoundSpec(spec.session, spec.round_id, spec.clients, release.calibration.length,
                         FixedPoint(release.bound, 0, 1))
    src = privacy.noise_source(release, cid) if privacy is not None else NoiseSource()
    return release.client_input(inputs(raw_spec, cid, workload), src, cid)


def client_step(content: RecordDict, state: RecordDict, cid: int, inputs: InputSource,
                policy: NodePolicy, privacy: NodePrivacy | None = None) -> RecordDict:
    """Feed one batch from the server to this client's machine; return the answer's content.

    ``state`` is the node's ``Context.state``. The machine is built on the round's opening (after
    checking it against the node's ``policy``) and, for a protocol with session keys (CKKS), on this node's
    keys of the round's session (``load_session_keys``: MessageError naming client, round and field
    ``secure_fal.keys`` when the node has none), on its vector (``protocol_input``: under differential privacy
    noised as ``privacy`` requires); it is kept in ``state`` between batches (``machine_state``)
    and removed once done. Raises SecAggError (naming client, round and field) on a refused or malformed
    batch; the stored machine is then left as it was before this batch.
    """
    opening_record = content.config_records.get(OPENING_RECORD)
    if opening_record is not None:
        opening = RoundOpening.from_record(opening_record, client=cid)
        round_id = opening.spec.round_id
        policy.check_opening(opening.protocol, len(opening.spec.clients), client=cid, round_id=round_id,
                             field="clients")
        protocol = pinned_protocol(opening.protocol, opening.options, policy, cid, round_id)
        if needs_session_keys(protocol):
            load_session_keys(protocol, state, cid, opening.spec)
        registry = load_registry(state, policy, cid)
        protocol.registries[cid] = registry
        workload = dict(content.config_records.get(WORKLOAD_RECORD, ConfigRecord()))
        machine = protocol.client(cid, opening.spec, protocol_input(opening.spec, cid, workload, inputs, privacy))
        store_registry(state, policy, registry)
        spent = protocol.spent_keys(cid)
        if spent is not None:  # session-mode masking: this round's secrets are gone, a second opening is refused
            state.config_records[KEYS_RECORD][session_key_name(opening.spec.session)] = spent
    else:
        stored = state.config_records.get(STATE_RECORD)
        if stored is None:
            raise MessageError("batch of a round this client has no machine for (opening missed?)", client=cid,
                               field=RECORD)
        machine = machine_state.thaw(stored["machine"])
        round_id = machine.spec.round_id
    out: list[bytes] = []
    for data in unpack_messages(content, client=cid, round_id=round_id):
        out += machine.receive(data)
    if any(peek_header(d).recipient != SERVER for d in out):
        raise MessageError("client machine addressed a message to another client", client=cid, round_id=round_id)
    if machine.phase == "done":
        state.config_records.pop(STATE_RECORD, None)
    else:
        state.config_records[STATE_RECORD] = ConfigRecord({"machine": machine_state.freeze(machine)})
    return pack_messages(out)
