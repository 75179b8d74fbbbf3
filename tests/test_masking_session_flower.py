"""Session-mode masking over Flower's envelope without a Flower runtime: the setup through the same
``session_keys.ServerSetup`` / ``client_setup_step`` as CKKS's key distribution (machines fetched from the
protocol), then 2-exchange rounds through ``ServerRound`` / ``client_step``; bit for bit the in-process result."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import RecordDict  # noqa: E402

from secure_fal.flower.secure_sum.client_app import synthetic_inputs  # noqa: E402
from secure_fal.flower.carrier.session_keys import ServerSetup, client_setup_step  # noqa: E402
from secure_fal.flower.secure_sum.synthetic import synthetic_input  # noqa: E402
from secure_fal.flower.carrier.envelope import KEYS_RECORD, NodePolicy, client_step  # noqa: E402
from secure_fal.flower.carrier.server_round import ServerRound  # noqa: E402
from secure_fal.secagg import Aggregator, Faults, ReplayError  # noqa: E402
from secure_fal.secagg.encoding import FixedPoint  # noqa: E402
from secure_fal.secagg.machine import RoundSpec  # noqa: E402

SEED, LENGTH, BOUND = 7, 50, 1.0
CLIENTS = (0, 1, 2, 3, 4)
OPTIONS = {"rounds_per_setup": 3, "threshold": 3}
NODE = NodePolicy(frozenset({"masking"}))
SESSION = random.Random(SEED).getrandbits(64)  # a fixed session id


def exchanges(state, handler, silent_from):
    """Drive ``state`` (ServerSetup / ServerRound); handler(content, cid) answers; returns the exchange count."""
    exchange = 0
    while batches := state.next_batches():
        state.take_answers({cid: handler(content, cid) for cid, content in batches.items()
                            if exchange < silent_from.get(cid, exchange + 1)})
        exchange += 1
    return exchange


@pytest.mark.parametrize("setup_silent", [{}, {2: 0}, {4: 2}])   # silent from exchange i of the setup on
def test_setup_and_rounds_over_records_equal_in_process(setup_silent):
    states = {c: RecordDict() for c in CLIENTS}
    setup = ServerSetup("masking", OPTIONS, SESSION, CLIENTS)
    assert exchanges(setup, lambda content, cid: client_setup_step(content, states[cid], cid, NODE),
                     setup_silent) == 3
    outcome = setup.outcome(0.0)
    holders = tuple(c for c in CLIENTS if c not in setup_silent)
    assert outcome.key_holders == holders and outcome.dealer is None
    assert all((KEYS_RECORD in states[c].config_records) == (c in holders) for c in CLIENTS)
    phases = outcome.protocol.CLIENT_PHASES
    agg = Aggregator("masking", CLIENTS, seed=SEED,
                     setup_fault_plan=lambda _: Faults(drop={c: ("advertise", "share", "ack")[i]
                                                             for c, i in setup_silent.items()}), **OPTIONS)
    for round_id, silent in ((1, {}), (2, {holders[0]: 0}), (3, {holders[1]: 1})):
        spec = RoundSpec(SESSION, round_id, holders, LENGTH, FixedPoint(BOUND, 24, len(holders)))
        server = ServerRound(outcome.protocol, OPTIONS, spec, {"seed": SEED})
        count = exchanges(server, lambda content, cid: client_step(content, states[cid], cid, synthetic_inputs, NODE),
                          silent)
        assert count == 2                                       # masked_input, unmask
        got = server.outcome(0.0)
        ref = agg.sum({c: synthetic_input(SEED, c, round_id, LENGTH, BOUND) for c in CLIENTS}, bound=BOUND,
                      faults=Faults(drop={c: phases[i] for c, i in silent.items()}))
        assert got.contributors == ref.contributors
        assert np.array_equal(got.total, ref.total)


def test_a_node_refuses_to_open_a_round_twice():
    states = {c: RecordDict() for c in CLIENTS}
    setup = ServerSetup("masking", OPTIONS, SESSION, CLIENTS)
    exchanges(setup, lambda content, cid: client_setup_step(content, states[cid], cid, NODE), {})
    protocol = setup.outcome(0.0).protocol
    spec = RoundSpec(SESSION, 1, CLIENTS, LENGTH, FixedPoint(BOUND, 24, len(CLIENTS)))
    server = ServerRound(protocol, OPTIONS, spec, {"seed": SEED})
    openings = {}

    def step(content, cid):
        openings.setdefault(cid, content)
        return client_step(content, states[cid], cid, synthetic_inputs, NODE)

    exchanges(server, step, {})
    with pytest.raises(ReplayError, match="already ran round 1") as err:
        client_step(openings[3], states[3], 3, synthetic_inputs, NODE)
    assert (err.value.client, err.value.round_id, err.value.field) == (3, 1, "round")
