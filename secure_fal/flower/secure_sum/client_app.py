"""The Flower ClientApp: one client machine per SuperNode.

Node config (``flower-supernode --node-config "client-id=3 protocols='masking'"``):

- ``client-id`` (int, required in the deployment engine): this node's client id in our protocols. In
  the simulation engine, where nodes get ``partition-id`` instead, that is used.
- ``protocols`` (str, default ``"masking"``): comma-separated protocols this node accepts (``masking``,
  ``plaintext``, ``ckks``). A round or key distribution opened with any other protocol is refused, so a
  server cannot switch a node to plaintext.
- ``min-clients`` (int, default 2): rounds with fewer clients are refused (a sum over one client is
  that client's input).
- ``privacy`` (JSON object of ``NodePrivacy`` fields, default none): the differential privacy the node requires
  of every sum (``node_config.privacy_of``); it then clips and noises its input as in process
  (``envelope.protocol_input``) and refuses a round without noise or with less than it requires.

A client that refuses or fails a batch raises; Flower turns that into an Error reply, which the server
counts as no answer.

Input source: in this phase, ``synthetic_inputs`` derives the vector from the workload's ``seed``, the
client id and the round (``synthetic.synthetic_input``). ``make_client_app(inputs)`` takes any other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from ...secagg.errors import InputError
from ...secagg.machine import RoundSpec
from ..carrier.envelope import HELLO_ACTION, ROUND_ACTION, InputSource, client_step, hello_content
from ...secagg.privacy.release import NodePrivacy
from ..carrier.node_config import DEFAULT_PROTOCOLS, client_id_of, policy_of, privacy_of
from ..carrier.session_keys import SETUP_ACTION, client_setup_step
from .synthetic import synthetic_input


def synthetic_inputs(spec: RoundSpec, cid: int, workload: Mapping[str, object]) -> np.ndarray:
    """Input source of phase 1: ``synthetic_input(workload["seed"], cid, round, L, bound)``."""
    seed = workload.get("seed")
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"workload needs a non-negative int 'seed', got {seed!r}", client=cid,
                         round_id=spec.round_id, field="seed")
    return synthetic_input(seed, cid, spec.round_id, spec.length, spec.encoding.bound)


def make_client_app(inputs: InputSource = synthetic_inputs, protocols: str = DEFAULT_PROTOCOLS,
                    privacy: NodePrivacy | None = None) -> ClientApp:
    """A ClientApp answering ``query.secure_fal_hello``, ``query.secure_fal_setup`` (session keys, CKKS) and
    ``query.secure_fal_round``.

    Args:
        inputs: (round spec, client id, workload parameters) -> the client's vector (L,).
        protocols: protocols accepted where the node config sets no ``protocols`` (comma-separated).
        privacy: the differential privacy required where the node config sets no ``privacy``.
    """
    app = ClientApp()

    @app.query(HELLO_ACTION)
    def hello(message: Message, context: Context) -> Message:
        return Message(hello_content(client_id_of(context)), reply_to=message)

    @app.query(SETUP_ACTION)
    def session_keys(message: Message, context: Context) -> Message:
        answer = client_setup_step(message.content, context.state, client_id_of(context),
                                   policy_of(context, protocols))
        return Message(answer, reply_to=message)

    @app.query(ROUND_ACTION)
    def secure_round(message: Message, context: Context) -> Message:
        answer = client_step(message.content, context.state, client_id_of(context), inputs,
                             policy_of(context, protocols), privacy_of(context, privacy))
        return Message(answer, reply_to=message)

    return app


app = make_client_app()
