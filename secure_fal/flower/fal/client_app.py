"""The FAL ClientApp: one FAL client per SuperNode, its data, labeled set and secrets kept on the node.

This module is what Flower loads for every message (in the deployment engine, a fresh process per message), so
it imports nothing heavy: an exchange that needs neither the client's data nor a model (hello, key distribution,
the later exchanges of a secure sum) costs the flwr and numpy imports and the protocol step only. The client's
data and model code (``node.FalClient``: torch, the strategies) is imported on the first message that needs
it: the opening of a secure sum (its input) and selection requests.

The client's data comes from its node config (``node_data``): its rows of the simulated split of the experiment
config (run config key ``experiment``, the JSON of ``ExperimentConfig.to_dict()``; cached on the node), or the
node's own ``.npz`` / image folder. Its labeled set (in labeling order) lives in the node's ``Context.state``; it
never leaves the node, nor do labels, scores, embeddings or the strategy's per-client choices. The client runs
the in-process strategy's own per-client code, so both give the same picks.

Messages it answers (protocols/flower.md, "FAL experiments over Flower"):

- ``query.secure_fal_hello``: its client id.
- ``query.secure_fal_setup``: the CKKS key distribution of a cycle's session (``session_keys``).
- ``query.secure_fal_round``: a batch of a secure sum. The workload of the opening names the ``kind`` of the
  client's input (under differential privacy it also carries the release's public parameters, ``dp``: the client
  checks them against its config's [privacy] section, then clips, encodes and adds its noise share to the input
  below, ``envelope.protocol_input``; a round without them is refused):
  - ``fedavg`` (``cycle``, ``round``, ``global``: the global model's floating-point state, float64 bytes):
    train locally from that model; input [n_k * delta, n_k] (delta = local - global; under differential privacy
    delta alone), as ``train_federated``;
  - ``gamma`` (``cycle``, ``global``): [gamma_k, 1] (FairFAL);
  - ``kmeans`` (``cycle``, ``centres``: float64 (m, d) bytes, ``m``): its candidates' ``cluster_stats``;
  - ``owners`` (``cycle``, ``centroids``, ``m``, ``owners-members``, ``thresholds`` int64, ``active`` uint8):
    the bisection indicators of its ownership keys (``ownership.under_threshold``).
- ``query.secure_fal_select``: ``cycle``, ``step``, ``budget``, ``global`` and the strategy's public inputs.
  Step ``candidates`` (fal-global): keep the stage-1 candidates in the node state, answer ``selected`` = 0.
  Step ``select``: pick, label the picks (they join the labeled set) and answer only
  {"cycle": c, "selected": number of samples labeled}.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Mapping

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from ...experiment.config import ExperimentConfig
from ...experiment.dp_settings import node_privacy
from ...secagg.errors import MessageError
from ...secagg.machine import RoundSpec
from ...secagg.privacy.release import NodePrivacy
from ..carrier.envelope import HELLO_ACTION, ROUND_ACTION, NodePolicy, client_step, hello_content
from ..carrier.node_config import DEFAULT_PROTOCOLS, client_id_of, policy_of
from ..carrier.session_keys import SETUP_ACTION, client_setup_step
from .candidates import LIGHT_INPUTS
from .node_data import DataSource, data_source_of

log = logging.getLogger("flwr.secure_fal")  # Flower's handler prints it in the node's (or executor's) log

SELECT_ACTION = "secure_fal_select"
SELECT_TYPE = f"query.{SELECT_ACTION}"
SELECT_RECORD = "secure_fal.select"
LABELED_RECORD = "secure_fal.labeled"
EXPERIMENT_KEY = "experiment"
MODEL_INPUTS = ("fedavg", "gamma")
"""Kinds of secure-sum input that need the client's data and model (``node``); the others: ``LIGHT_INPUTS``."""


def experiment_json(run_config: Mapping[str, object]) -> str:
    """The experiment JSON of a run config; MessageError if missing."""
    raw = run_config.get(EXPERIMENT_KEY)
    if not isinstance(raw, str) or not raw:
        raise MessageError(f"run config has no {EXPERIMENT_KEY!r} (JSON of ExperimentConfig.to_dict())",
                           field=EXPERIMENT_KEY)
    return raw


@functools.lru_cache(maxsize=16)
def experiment_privacy(config_json: str) -> NodePrivacy | None:
    """The differential privacy this client requires of every sum: the experiment's [privacy] section
    (``experiment.dp_settings.node_privacy``; None when off). Parsing the config imports no torch."""
    return node_privacy(ExperimentConfig.from_dict(json.loads(config_json)))


def round_input(state: RecordDict, cid: int, config_json: str, source: DataSource, spec: RoundSpec,
                workload: Mapping[str, object]) -> np.ndarray:
    """This client's input to a secure sum, by the workload's ``kind`` (module docstring); MessageError naming the
    client, round and field on an unknown kind or an input of another length than the round's."""
    kind = workload.get("kind")
    if kind in LIGHT_INPUTS:
        vector = LIGHT_INPUTS[kind](state, cid, spec, workload)
    elif kind in MODEL_INPUTS:
        from .node import FalClient

        vector = FalClient(config_json, cid, state, source).round_input(spec, workload)
    else:
        raise MessageError(f"unknown kind of input {kind!r}; expected one of {sorted([*LIGHT_INPUTS, *MODEL_INPUTS])}",
                           client=cid, round_id=spec.round_id, field="workload.kind")
    if len(vector) != spec.length:
        raise MessageError(f"{kind} round of length {spec.length}, this client's input has {len(vector)}",
                           client=cid, round_id=spec.round_id, field="length")
    return vector


def handle(action: str, content: RecordDict, state: RecordDict, cid: int, config_json: str,
           policy: NodePolicy, source: DataSource = DataSource()) -> RecordDict:
    """Answer one message of ``action`` (hello / setup / round / select) for client ``cid`` under the node's
    ``policy`` (``client_app.policy_of``), with the node's data from ``source``; the sans-I/O core of the app.

    The client's data and model (``node.FalClient``) are loaded only when the message needs them: the opening
    of a FedAvg or gamma sum, and selection requests; k-means and ownership inputs come from the kept candidates
    (``candidates``, numpy only).
    """
    if action == HELLO_ACTION:
        return hello_content(cid)
    if action == SETUP_ACTION:
        return client_setup_step(content, state, cid, policy)
    if action == ROUND_ACTION:
        return client_step(content, state, cid,
                           lambda spec, _, workload: round_input(state, cid, config_json, source, spec, workload),
                           policy, experiment_privacy(config_json))
    if action == SELECT_ACTION:
        from .node import FalClient

        return FalClient(config_json, cid, state, source).select(content)
    raise MessageError(f"unknown action {action!r}", client=cid, field="message_type")


def make_fal_client_app(experiment: str | None = None, protocols: str = DEFAULT_PROTOCOLS) -> ClientApp:
    """A ClientApp answering hello, key distribution, secure-sum batches and selection requests (``handle``).

    Args:
        experiment: the experiment JSON used when the run config has none (the simulation engine, whose
            ``run_simulation`` passes no run config); default: the run config's ``experiment`` is required.
        protocols: protocols accepted where the node config sets no ``protocols`` (comma-separated).
    """
    app = ClientApp()

    def answer(action: str, message: Message, context: Context) -> Message:
        t0 = time.perf_counter()
        config_json = experiment if experiment is not None and EXPERIMENT_KEY not in context.run_config \
            else experiment_json(context.run_config)
        content = handle(action, message.content, context.state, client_id_of(context), config_json,
                         policy_of(context, protocols), data_source_of(context.node_config))
        heavy = [m for m in ("torch", "scipy", "matplotlib") if m in sys.modules]
        log.info("secure_fal: %s %s answered in %.3f s; heavy modules loaded: %s", action, message.metadata.group_id,
                 time.perf_counter() - t0, ", ".join(heavy) or "none")
        return Message(content, reply_to=message)

    @app.query(HELLO_ACTION)
    def hello(message: Message, context: Context) -> Message:
        return answer(HELLO_ACTION, message, context)

    @app.query(SETUP_ACTION)
    def setup(message: Message, context: Context) -> Message:
        return answer(SETUP_ACTION, message, context)

    @app.query(ROUND_ACTION)
    def secure_round(message: Message, context: Context) -> Message:
        return answer(ROUND_ACTION, message, context)

    @app.query(SELECT_ACTION)
    def select(message: Message, context: Context) -> Message:
        return answer(SELECT_ACTION, message, context)

    return app


app = make_fal_client_app()
