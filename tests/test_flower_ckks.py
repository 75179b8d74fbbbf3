"""CKKS over Flower's envelope without a Flower runtime: the key distribution (``session_keys.ServerSetup`` +
``client_setup_step``) then rounds (``ServerRound`` + ``client_step``), each node's ``Context.state`` a RecordDict
kept here. A node that "stops answering" is one whose answers are left out from some exchange on."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

from secure_fal.flower.secure_sum.client_app import synthetic_inputs  # noqa: E402
from secure_fal.flower.carrier.session_keys import (SETUP_RECORD, SETUP_STATE_RECORD, ServerSetup, SetupOpening,  # noqa: E402
                                                    client_setup_step)
from secure_fal.flower.secure_sum.synthetic import synthetic_input  # noqa: E402
from secure_fal.flower.carrier.envelope import (KEYS_RECORD, STATE_RECORD, NodePolicy, client_step, session_key_name)  # noqa: E402
from secure_fal.flower.carrier.server_round import ServerRound  # noqa: E402
from secure_fal.secagg import Aggregator, DropoutError, Faults, InputError, MessageError  # noqa: E402
from secure_fal.secagg.ckks.key_messages import SETUP_ROUND  # noqa: E402
from secure_fal.secagg.ckks.keys import distribute_keys  # noqa: E402
from secure_fal.secagg.encoding import FixedPoint  # noqa: E402
from secure_fal.secagg.machine import RoundSpec  # noqa: E402

SEED, LENGTH, BOUND = 7, 3000, 1.0       # 3000 values: two ciphertexts per input
CLIENTS = (0, 1, 2, 3)
CKKS_NODE = NodePolicy(frozenset({"ckks"}))
SESSION = random.Random(SEED).getrandbits(64)  # a fixed session id


def run_setup_over_records(states, options=None, members=CLIENTS, silent_from=None, session=SESSION):
    """The key distribution through ServerSetup / client_setup_step; silent_from[cid] = first exchange the
    node does not answer. Returns (outcome, batches sent per exchange)."""
    setup = ServerSetup("ckks", {"mode": "dealer", **(options or {})}, session, members)
    silent = silent_from or {}
    sent, exchange = [], 0
    while batches := setup.next_batches():
        sent.append(batches)
        setup.take_answers({cid: client_setup_step(content, states[cid], cid, CKKS_NODE)
                            for cid, content in batches.items() if exchange < silent.get(cid, exchange + 1)})
        exchange += 1
    return setup.outcome(0.0), sent


def run_round_over_records(protocol, states, round_id, clients, options=None, silent_from=None):
    spec = RoundSpec(SESSION, round_id, clients, LENGTH, FixedPoint(BOUND, 24, len(clients)))
    server = ServerRound(protocol, {"mode": "dealer", **(options or {})}, spec, {"seed": SEED})
    silent = silent_from or {}
    exchange = 0
    while batches := server.next_batches():
        server.take_answers({cid: client_step(content, states[cid], cid, synthetic_inputs, CKKS_NODE)
                             for cid, content in batches.items() if exchange < silent.get(cid, exchange + 1)})
        exchange += 1
    return server.outcome(0.0)


def in_process(clients, rounds, silent_from=None, **options):
    agg = Aggregator("ckks", clients, seed=SEED, **{"mode": "dealer", **options})
    phases = agg.protocol.CLIENT_PHASES
    drops = silent_from or {}
    return [agg.sum({c: synthetic_input(SEED, c, r, LENGTH, BOUND) for c in clients}, bound=BOUND,
                    faults=Faults(drop={c: phases[i] for c, i in drops.get(r, {}).items()}))
            for r in range(1, rounds + 1)], agg


@pytest.mark.parametrize("options, silent_from", [
    ({}, {}),
    ({"dealer": 2}, {2: {2: 0}}),     # round 2: the dealer drops before its input; client 0 decrypts
])
def test_setup_then_two_rounds_equal_the_in_process_sums(options, silent_from):
    states = {c: RecordDict() for c in CLIENTS}
    setup, sent = run_setup_over_records(states, options)
    assert setup.key_holders == CLIENTS and setup.dealer == options.get("dealer", 0)
    assert len(sent) == 3 and all(SETUP_RECORD in b.config_records for b in sent[0].values())
    assert not any(SETUP_RECORD in b.config_records for batches in sent[1:] for b in batches.values())
    assert all(set(states[c].config_records) == {KEYS_RECORD} for c in CLIENTS)   # the machine is gone
    wants, agg = in_process(CLIENTS, 2, silent_from, **options)
    for r, want in enumerate(wants, start=1):
        got = run_round_over_records(setup.protocol, states, r, CLIENTS, options, silent_from.get(r))
        assert got.contributors == want.contributors
        bound = agg.protocol.error_bound(RoundSpec(SESSION, r, CLIENTS, LENGTH, FixedPoint(BOUND, 24, 4)),
                                         len(got.contributors))
        diff = float(np.abs(got.total - want.total).max())
        assert diff <= 2 * bound      # each within the bound of the exact sum
        assert got.report.bytes_up == want.report.bytes_up and got.report.bytes_down == want.report.bytes_down
        print(f"\nround {r}: max |Flower - in-process| = {diff} (bound {bound:.3g}), bitwise equal: "
              f"{np.array_equal(got.total, want.total)}")


def test_threshold_mode_over_records_is_the_plaintext_sum_and_keeps_shares_in_node_state():
    states = {c: RecordDict() for c in CLIENTS}
    options = {"mode": "threshold"}
    setup, sent = run_setup_over_records(states, options)
    assert setup.key_holders == CLIENTS and setup.dealer is None and len(sent) == 3
    assert all(set(states[c].config_records) == {KEYS_RECORD} for c in CLIENTS)   # s_i and shares: node state
    for r in (1, 2):
        got = run_round_over_records(setup.protocol, states, r, CLIENTS, options, {1: 0} if r == 2 else None)
        survivors = CLIENTS if r == 1 else (0, 2, 3)       # round 2: client 1 sends nothing
        want = Aggregator("plaintext", CLIENTS, seed=SEED).sum(
            {c: synthetic_input(SEED, c, r, LENGTH, BOUND) for c in survivors}, bound=BOUND)
        assert got.contributors == survivors and np.array_equal(got.total, want.total)


def test_server_side_objects_hold_no_secret_key():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states)
    with pytest.raises(InputError, match="holds no key"):
        setup.protocol.client(0, RoundSpec(SESSION, 1, CLIENTS, 5, FixedPoint(1.0, 24, 4)), np.zeros(5))
    spec = RoundSpec(SESSION, 1, CLIENTS, 5, FixedPoint(1.0, 24, 4))
    server = ServerRound(setup.protocol, {"mode": "dealer"}, spec, {"seed": SEED})
    assert not server.server.context.is_private()
    with pytest.raises(ValueError, match="no secret key"):
        server.server.context.secret_key()


def test_a_non_dealer_silent_in_setup_is_excluded_from_the_rounds():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states, silent_from={3: 0})
    assert setup.key_holders == (0, 1, 2) and setup.report.dropped == (3,)
    assert setup.wire.unanswered[0] == (3,)
    assert KEYS_RECORD not in states[3].config_records
    spec = RoundSpec(SESSION, 1, CLIENTS, LENGTH, FixedPoint(BOUND, 24, 4))
    with pytest.raises(InputError, match="key holders") as err:        # the server refuses the round spec
        ServerRound(setup.protocol, {"mode": "dealer"}, spec, {"seed": SEED})
    assert (err.value.client, err.value.round_id, err.value.field) == (3, 1, "clients")
    holders = (0, 1, 2)
    (want,), _ = in_process(holders, 1)
    got = run_round_over_records(setup.protocol, states, 1, holders)
    assert got.contributors == holders and np.array_equal(got.total, want.total)
    # the excluded node, opened anyway (e.g. by another server object), has no keys to build its machine
    batch = ServerRound(setup.protocol, {"mode": "dealer"}, RoundSpec(SESSION, 2, holders, 5, FixedPoint(1.0, 24, 3)),
                        {"seed": SEED}).next_batches()[0]
    with pytest.raises(MessageError, match="holds no ckks keys") as err:
        client_step(batch, states[3], 3, synthetic_inputs, CKKS_NODE)
    assert (err.value.client, err.value.round_id, err.value.field) == (3, 2, KEYS_RECORD)


def test_a_non_dealer_silent_at_the_ack_is_not_a_key_holder():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states, silent_from={1: 2})
    assert setup.key_holders == (0, 2, 3) and setup.wire.unanswered == [(), (), (1,)]


@pytest.mark.parametrize("exchange", [0, 1])
def test_a_silent_dealer_means_no_session(exchange):
    states = {c: RecordDict() for c in CLIENTS}
    with pytest.raises(DropoutError, match="dealer") as err:
        run_setup_over_records(states, {"dealer": 1}, silent_from={1: exchange})
    assert (err.value.client, err.value.round_id) == (1, SETUP_ROUND)


def test_setup_equals_the_in_process_distribution_in_bytes():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states)
    ref = distribute_keys(setup.protocol.key_setup(SESSION, CLIENTS))
    assert setup.report.bytes_up == ref.report.bytes_up and setup.report.bytes_down == ref.report.bytes_down
    print(f"\nkey distribution, 4 clients, N=4096: {setup.report.total_bytes} B of our messages "
          f"(up {dict(setup.report.bytes_up)}, down {dict(setup.report.bytes_down)})")


def test_node_policy_and_bad_openings_are_refused_without_touching_state():
    setup = ServerSetup("ckks", {"mode": "dealer"}, SESSION, CLIENTS)
    batch = setup.next_batches()[1]
    for policy, field in [(NodePolicy(frozenset({"masking"})), "protocol"),
                          (NodePolicy(frozenset({"ckks"}), min_clients=5), "members")]:
        state = RecordDict()
        with pytest.raises(MessageError) as err:
            client_setup_step(batch, state, 1, policy)
        assert (err.value.client, err.value.round_id, err.value.field) == (1, SETUP_ROUND, field)
        assert not state.config_records
    state = RecordDict()
    with pytest.raises(MessageError, match="not a member") as err:
        client_setup_step(batch, state, 7, CKKS_NODE)
    assert (err.value.client, err.value.field) == (7, "members")
    with pytest.raises(MessageError, match="no machine") as err:
        client_setup_step(RecordDict({"secure_fal": ConfigRecord({"messages": []})}), state, 1, CKKS_NODE)
    assert (err.value.client, err.value.round_id) == (1, SETUP_ROUND)
    broken = SetupOpening("ckks", {"mode": "dealer", "dealer": 9}, SESSION, CLIENTS).to_record()  # a dealer that is no member
    with pytest.raises(MessageError, match="not a member") as err:
        client_setup_step(RecordDict({**dict(batch.config_records), SETUP_RECORD: broken}), state, 1, CKKS_NODE)
    assert err.value.field == SETUP_RECORD and not state.config_records
    with pytest.raises(ValueError, match="no session keys"):
        ServerSetup("masking", {}, SESSION, CLIENTS)
    with pytest.raises(ValueError, match="needs one"):
        ServerSetup("ckks", {"mode": "dealer", "key_authority": True}, SESSION, CLIENTS)


def test_setup_opening_round_trip_and_malformed_opening():
    opening = SetupOpening("ckks", {"mode": "dealer", "dealer": 3}, 2**64 - 1, (1, 3))
    assert SetupOpening.from_record(opening.to_record(), client=1) == opening
    broken = opening.to_record()
    broken["members"] = [3, 1]
    with pytest.raises(MessageError, match="sorted") as err:
        SetupOpening.from_record(broken, client=1)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, SETUP_ROUND, SETUP_RECORD)


def test_a_node_keeps_only_the_newest_sessions_keys():
    states = {c: RecordDict() for c in CLIENTS}
    run_setup_over_records(states, session=SESSION - 1)
    old = states[2].config_records[KEYS_RECORD][session_key_name(SESSION - 1)]
    run_setup_over_records(states)
    assert list(states[2].config_records[KEYS_RECORD]) == [session_key_name(SESSION)]
    assert states[2].config_records[KEYS_RECORD][session_key_name(SESSION)] != old


def test_keys_of_another_session_do_not_open_a_round():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states, session=SESSION - 1)
    batch = ServerRound(setup.protocol, {"mode": "dealer"}, RoundSpec(SESSION, 1, CLIENTS, 5, FixedPoint(1.0, 24, 4)),
                        {"seed": SEED}).next_batches()[2]
    with pytest.raises(MessageError, match="no ckks keys of session") as err:
        client_step(batch, states[2], 2, synthetic_inputs, CKKS_NODE)
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, KEYS_RECORD)
    assert STATE_RECORD not in states[2].config_records


def test_round_options_that_do_not_fit_the_stored_keys_are_refused():
    states = {c: RecordDict() for c in CLIENTS}
    setup, _ = run_setup_over_records(states)
    other = {"mode": "dealer", "params": {"poly_modulus_degree": 2048, "coeff_mod_bit_sizes": [54]}}
    batch = ServerRound(setup.protocol, other, RoundSpec(SESSION, 1, CLIENTS, 5, FixedPoint(1.0, 24, 4)),
                        {"seed": SEED}).next_batches()[1]
    with pytest.raises(MessageError, match="ring degree 2048") as err:   # below the node's pinned ring size
        client_step(batch, states[1], 1, synthetic_inputs, CKKS_NODE)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, 1, "poly_modulus_degree")
    small_rings = NodePolicy(frozenset({"ckks"}), min_ring_degree=2048)
    with pytest.raises(MessageError, match="parameters") as err:
        client_step(batch, states[1], 1, synthetic_inputs, small_rings)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, 1, KEYS_RECORD)


def test_setup_machine_is_kept_between_batches():
    states = {c: RecordDict() for c in CLIENTS}
    setup = ServerSetup("ckks", {"mode": "dealer"}, SESSION, CLIENTS)
    first = setup.next_batches()
    setup.take_answers({c: client_setup_step(b, states[c], c, CKKS_NODE) for c, b in first.items()})
    assert all(SETUP_STATE_RECORD in states[c].config_records for c in CLIENTS)
    assert all(KEYS_RECORD not in states[c].config_records for c in CLIENTS)
