"""A node pins its parameters (protocols/masking.md §Parameters, §Node policy, §Round registry): the SecAgg+
degree / threshold table after Bell et al. 2020, openings that ask for weaker parameters refused naming the field
(attack 2 of issue 12), and each (session, round) answered at most once (attack 3)."""

import numpy as np
import pytest
from flwr.app import RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_fal.flower.carrier.envelope import ROUNDS_RECORD, client_step
from secure_fal.flower.carrier.server_round import ServerRound
from secure_fal.flower.secure_sum.client_app import synthetic_inputs
from secure_fal.secagg import Aggregator, InputError, MessageError, ReplayError, SecAggError, make_protocol
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.params import check_private, choose, private_enough, table
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.node import NodePolicy, RoundRegistry

MASKING = NodePolicy(frozenset({"masking"}))
SEED = 3


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 400), gamma=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.33]),
       delta=st.sampled_from([0.0, 0.05, 0.1, 0.2]))
def test_the_chosen_parameters_are_private_with_the_smallest_threshold(n, gamma, delta):
    c = choose(n, gamma, delta)
    assert private_enough(n, c.degree, c.threshold, gamma)
    assert not private_enough(n, c.degree, c.threshold - 1, gamma)
    assert c.degree == n - 1 or c.degree % 2 == 0
    assert c.degree == n - 1 or c.failure <= 2.0 ** -20


def test_the_complete_graph_rule_is_the_quorum_intersection_bound():
    # n = 10, gamma = 0.33: the server holds 3 clients; two U3 views both signed by t of 10 need 2t - 10 <= 3
    assert not private_enough(10, 9, 6, 0.33) and private_enough(10, 9, 7, 0.33)
    assert private_enough(10, 9, 6, 0.0)                       # t > m / 2 alone without collusion
    with pytest.raises(InputError, match="2t - \\(k\\+1\\) >= 4") as err:
        check_private(10, 9, 6, 0.33, round_id=4)
    assert (err.value.round_id, err.value.field) == (4, "threshold")


def test_the_documented_table_is_what_choose_returns():
    rows = {(r["n"], r["corruption"], r["dropout"]): (r["degree"], r["threshold"]) for r in table(sizes=(100, 1000))}
    assert rows[(1000, 0.1, 0.1)] == (114, 80) and rows[(100, 0.1, 0.1)] == (99, 56)
    assert rows[(1000, 0.05, 0.05)] == (60, 43)


def test_auto_masking_builds_the_table_graph_and_explicit_weak_parameters_are_refused():
    proto = MaskingProtocol(neighbours="auto", corruption=0.05, dropout=0.05)
    spec = RoundSpec(1, 1, tuple(range(100)), 4, FixedPoint(1.0, 16, 100))
    graph = proto.graph(spec)
    assert (graph.degree, graph.threshold) == (54, 39)
    weak = MaskingProtocol(neighbours=10, threshold=0.6, corruption=0.05)
    with pytest.raises(InputError) as err:
        weak.graph(spec)
    assert err.value.field == "threshold"
    xs = {c: np.full(4, 0.25) for c in range(12)}
    res = Aggregator(MaskingProtocol(neighbours="auto", corruption=0.1), range(12)).sum(xs, bound=1.0)
    assert np.array_equal(res.total, np.full(4, 3.0))


def opening_batch(options, clients=tuple(range(6)), session=0x5EED, round_id=1, n_clients=None):
    spec = RoundSpec(session, round_id, clients, 8, FixedPoint(1.0, 24, n_clients or len(clients)))
    protocol = make_protocol("masking", **options)
    protocol.pin(NodePolicy(frozenset({"masking"}), corruption=0.0), 0, round_id)   # the server's own object
    return ServerRound(protocol, options, spec, {"seed": SEED}).next_batches()


@pytest.mark.parametrize("options, field", [
    ({"threshold": 0.51, "neighbours": 2}, "threshold"),      # attack 2: t = 2 with 2 neighbours
    ({"threshold": 4}, "threshold"),                           # 6 clients, t = 4: 2t - 6 = 2 > 0.1 x 6 ok...
])
def test_a_node_refuses_an_opening_weaker_than_its_policy(options, field):
    batch = opening_batch(options)[2]
    state = RecordDict()
    policy = NodePolicy(frozenset({"masking"}), corruption=0.34)   # ... but not when 2 of 6 may collude
    with pytest.raises(SecAggError) as err:
        client_step(batch, state, 2, synthetic_inputs, policy)
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, field)
    assert not state.config_records


def test_an_opening_with_fewer_n_clients_than_clients_is_refused():
    batch = opening_batch({}, n_clients=1)[0]
    with pytest.raises(MessageError) as err:
        client_step(batch, RecordDict(), 0, synthetic_inputs, MASKING)
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, "n-clients")


def test_a_node_answers_each_session_round_once_even_in_a_fresh_state_with_a_registry_file(tmp_path):
    # attack 3: re-opening a finished (session, round) to drop one client the second time and subtract
    state = RecordDict()
    first = opening_batch({})[1]
    client_step(first, state, 1, synthetic_inputs, MASKING)
    assert dict(state.config_records[ROUNDS_RECORD]) == {f"{0x5EED:016x}": [1]}
    with pytest.raises(ReplayError) as err:
        client_step(opening_batch({})[1], state, 1, synthetic_inputs, MASKING)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, 1, "round")
    client_step(opening_batch({}, round_id=2)[1], state, 1, synthetic_inputs, MASKING)   # the next round is fine
    path = str(tmp_path / "rounds.json")
    persistent = NodePolicy(frozenset({"masking"}), registry_file=path)
    client_step(opening_batch({}, session=7)[1], RecordDict(), 1, synthetic_inputs, persistent)
    with pytest.raises(ReplayError):       # a new Flower run (fresh state) replaying the same session and round
        client_step(opening_batch({}, session=7)[1], RecordDict(), 1, synthetic_inputs, persistent)
    assert RoundRegistry.load(path, 1).to_dict() == {f"{7:016x}": [1]}


def test_in_process_clients_claim_their_rounds():
    proto = MaskingProtocol()
    spec = RoundSpec(9, 1, (0, 1, 2), 4, FixedPoint(1.0, 24, 3))
    proto.client(0, spec, np.zeros(4))
    with pytest.raises(ReplayError) as err:
        proto.client(0, spec, np.zeros(4))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, "round")
    proto.client(1, spec, np.zeros(4))     # registries are per client


def test_a_node_reads_its_pins_from_its_node_config_and_refuses_bad_values():
    from types import SimpleNamespace

    from secure_fal.flower.carrier.node_config import policy_of
    from secure_fal.secagg.identity import Identity

    key = Identity().to_bytes()
    config = {"protocols": "masking,ckks", "min-clients": 3, "corruption": 0.2, "active": True,
              "min-ring-degree": 8192, "round-registry": "/tmp/r.json", "roster-sha256": "ab", "signing-key": key.hex()}
    got = policy_of(SimpleNamespace(node_config=config))
    assert got == NodePolicy(frozenset({"masking", "ckks"}), 3, 0.2, True, 8192, "/tmp/r.json", "ab", key)
    assert policy_of(SimpleNamespace(node_config={})) == NodePolicy(frozenset({"masking"}))
    for bad, field in (({"corruption": 0.5}, "corruption"), ({"active": "yes"}, "active"),
                       ({"signing-key": "zz" * 32}, "signing-key"), ({"signing-key": "ab"}, "signing-key"),
                       ({"min-ring-degree": 0}, "min-ring-degree"), ({"min-clients": 0}, "min-clients")):
        with pytest.raises(InputError) as err:
            policy_of(SimpleNamespace(node_config=bad))
        assert err.value.field == field
