"""The Flower transport's sans-I/O core (``ServerRound`` + ``client_step``) against the in-process run.

No Flower runtime: batches go from ``ServerRound`` straight to ``client_step`` as the RecordDicts a
Flower Message would carry, each node's ``Context.state`` is a RecordDict kept here, and a node that
"stops answering" is one whose answers are left out from some exchange on. Exchange i carries the server
messages that make clients send in phase CLIENT_PHASES[i], so a node silent from exchange i on is the
in-process ``Faults(drop={cid: CLIENT_PHASES[i]})``.
"""

from __future__ import annotations

import math
import pickle
import random
import tomllib
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402
from flwr.common.config import validate_config  # noqa: E402

from secure_fal.flower.carrier import machine_state  # noqa: E402
from secure_fal.flower.app_bundle import write_app_dir  # noqa: E402
from secure_fal.flower.secure_sum.client_app import synthetic_inputs  # noqa: E402
from secure_fal.flower.secure_sum.server_app import SessionSettings  # noqa: E402
from secure_fal.flower.secure_sum.synthetic import synthetic_input  # noqa: E402
from secure_fal.flower.carrier.envelope import (KEYS_RECORD, OPENING_RECORD, STATE_RECORD, RoundOpening, NodePolicy,  # noqa: E402
                                                check_keys_installed, client_step, pack_messages, unpack_messages)
from secure_fal.flower.carrier.server_round import ServerRound  # noqa: E402
from secure_fal.secagg import Aggregator, Faults, FixedPoint, MessageError, make_protocol  # noqa: E402
from secure_fal.secagg.machine import RoundSpec  # noqa: E402
from secure_fal.secagg.messages import decode  # noqa: E402

from .conftest import protocol_or_skip  # noqa: E402

SEED, LENGTH, BOUND = 7, 40, 1.0
MASKING_ONLY = NodePolicy(frozenset({"masking"}))


def run_over_records(protocol_name: str, options: dict, clients: tuple[int, ...], rounds: int,
                     silent_from: dict[int, dict[int, int]], tamper=None, session: int = 0x5EED) -> list:
    """Rounds 1..rounds of ``session`` through ServerRound/client_step; silent_from[round][cid] = first exchange
    the node does not answer. ``tamper(exchange, answers)`` may rewrite the answers before they are taken."""
    protocol = make_protocol(protocol_name, **options)
    states = {c: RecordDict() for c in clients}
    policy = NodePolicy(frozenset({protocol_name}), corruption=0.0)   # toy graphs: private only without collusion
    outcomes = []
    for round_id in range(1, rounds + 1):
        spec = RoundSpec(session, round_id, clients, LENGTH, FixedPoint(BOUND, 24, len(clients)))
        server = ServerRound(protocol, options, spec, {"seed": SEED})
        silent = silent_from.get(round_id, {})
        exchange = 0
        while batches := server.next_batches():
            answers = {cid: client_step(content, states[cid], cid, synthetic_inputs, policy)
                       for cid, content in batches.items() if exchange < silent.get(cid, exchange + 1)}
            if tamper is not None:
                answers = tamper(exchange, answers)
            server.take_answers(answers)
            exchange += 1
        outcomes.append(server.outcome(0.0))
    return outcomes


def run_in_process(protocol_name: str, options: dict, clients: tuple[int, ...], rounds: int,
                   silent_from: dict[int, dict[int, int]]) -> tuple[list, int]:
    """The same rounds through an in-process ``Aggregator``: (results, its session id)."""
    agg = Aggregator(protocol_name, clients, seed=SEED, **options)
    phases = agg.protocol.CLIENT_PHASES
    return [agg.sum({c: synthetic_input(SEED, c, r, LENGTH, BOUND) for c in clients}, bound=BOUND,
                    faults=Faults(drop={c: phases[i] for c, i in silent_from.get(r, {}).items()}))
            for r in range(1, rounds + 1)], agg.session


@pytest.mark.parametrize("name, options, silent_from", [
    ("plaintext", {}, {2: {1: 0}}),
    ("masking", {"threshold": 2}, {2: {1: 2}}),           # drops after sharing: its masks are removed
    ("masking", {"threshold": 2, "neighbours": 2}, {1: {3: 1}, 2: {0: 3}}),  # SecAgg+ ring, other phases
])
def test_rounds_over_flower_records_equal_in_process_run(name, options, silent_from):
    protocol_or_skip(name)
    clients = (0, 1, 2, 3) if "neighbours" in options else (0, 1, 2)
    ref, session = run_in_process(name, options, clients, 2, silent_from)
    over = run_over_records(name, options, clients, 2, silent_from, session=session)   # the same graphs
    for got, want in zip(over, ref, strict=True):
        assert got.contributors == want.contributors
        assert np.array_equal(got.total, want.total)  # bit for bit
        assert got.report.bytes_up == want.report.bytes_up    # the same messages crossed
        assert got.report.bytes_down == want.report.bytes_down
        assert got.report.dropped == want.report.dropped


def test_client_machine_and_its_secret_keys_survive_in_node_state():
    protocol_or_skip("masking")
    from secure_fal.secagg.masking.messages import KINDS, PROTOCOL_ID

    state = RecordDict()
    protocol = make_protocol("masking", threshold=2)
    spec = RoundSpec(1, 1, (0, 1, 2), LENGTH, FixedPoint(BOUND, 24, 3))
    first = ServerRound(protocol, {"threshold": 2}, spec, {"seed": SEED}).next_batches()[0]
    answer = client_step(first, state, 0, synthetic_inputs, MASKING_ONLY)
    (data,) = unpack_messages(answer, client=0, round_id=1)
    _, advertise = decode(data, KINDS, PROTOCOL_ID)
    machine = machine_state.thaw(state.config_records[STATE_RECORD]["machine"])
    assert machine.phase == "share" and machine.me == 0
    assert machine._c_sk.public_key().public_bytes_raw() == advertise.c_pk  # the advertised key pair survived
    assert machine._s_sk.public_key().public_bytes_raw() == advertise.s_pk
    with pytest.raises(MessageError, match="no machine") as err:
        client_step(pack_messages([]), RecordDict(), 0, synthetic_inputs, MASKING_ONLY)
    assert err.value.client == 0


@pytest.mark.parametrize("protocol_name, clients, policy, field", [
    ("plaintext", (0, 1), MASKING_ONLY, "protocol"),                              # no switch to plaintext
    ("plaintext", (1,), NodePolicy(frozenset({"plaintext"})), "clients"),        # a sum of one is the input
    ("plaintext", (0, 1), NodePolicy(frozenset({"plaintext"}), min_clients=3), "clients"),
])
def test_node_refuses_a_round_its_policy_forbids(protocol_name, clients, policy, field):
    spec = RoundSpec(1, 4, clients, LENGTH, FixedPoint(BOUND, 24, len(clients)))
    batch = ServerRound(make_protocol(protocol_name), {}, spec, {"seed": SEED}).next_batches()[1]
    state = RecordDict()
    with pytest.raises(MessageError) as err:
        client_step(batch, state, 1, synthetic_inputs, policy)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, 4, field)
    assert STATE_RECORD not in state.config_records


def test_answer_signed_by_another_client_is_rejected_and_counts_as_dropout():
    def swap(exchange, answers):  # node of client 0 replays client 1's answer as its own
        return {**answers, 0: answers[1]}

    (got,) = run_over_records("plaintext", {}, (0, 1, 2), 1, {}, tamper=swap)
    assert got.contributors == (1, 2)
    assert got.wire.unanswered == [(0,)]
    assert any("client 0" in line and "sender 1" in line for line in got.wire.rejected)
    assert np.array_equal(got.total, run_in_process("plaintext", {}, (0, 1, 2), 1, {1: {0: 0}})[0][0].total)


def test_error_answer_counts_as_dropout():
    (got,) = run_over_records("plaintext", {}, (0, 1, 2), 1, {},
                              tamper=lambda exchange, answers: {**answers, 2: "ClientApp raised"})
    assert got.contributors == (0, 1)
    assert got.wire.rejected == ["client 2, round 1: error reply: ClientApp raised"]


def test_round_opening_round_trip_and_malformed_opening():
    spec = RoundSpec(2**64 - 1, 9, (3, 5), 17, FixedPoint(2.5, 20, 2), clip=True)
    opening = RoundOpening("masking", {"threshold": 2, "neighbours": None}, spec)
    assert RoundOpening.from_record(opening.to_record(), client=3) == opening
    broken = opening.to_record()
    del broken["length"]
    with pytest.raises(MessageError) as err:
        RoundOpening.from_record(broken, client=5)
    assert (err.value.client, err.value.round_id, err.value.field) == (5, 9, OPENING_RECORD)


def test_first_batch_of_a_round_carries_the_opening_later_ones_do_not():
    protocol_or_skip("masking")
    protocol = make_protocol("masking")
    spec = RoundSpec(1, 1, (0, 1, 2), LENGTH, FixedPoint(BOUND, 24, 3))
    server = ServerRound(protocol, {}, spec, {"seed": SEED})
    states = {c: RecordDict() for c in spec.clients}
    first = server.next_batches()
    assert all(OPENING_RECORD in b.config_records for b in first.values())
    server.take_answers({c: client_step(b, states[c], c, synthetic_inputs, MASKING_ONLY)
                         for c, b in first.items()})
    assert all(OPENING_RECORD not in b.config_records for b in server.next_batches().values())


def test_protocols_with_session_keys_need_them_installed():
    pytest.importorskip("secure_fal.secagg.ckks")
    spec = RoundSpec(1, 1, (0, 1), LENGTH, FixedPoint(BOUND, 24, 2))
    with pytest.raises(ValueError, match="needs session keys"):
        check_keys_installed(make_protocol("ckks"))
    with pytest.raises(ValueError, match="needs session keys"):
        ServerRound(make_protocol("ckks"), {}, spec, {"seed": SEED})
    check_keys_installed(make_protocol("masking"))                      # no keys needed
    with_keys = make_protocol("ckks", mode="dealer")
    with_keys.setup((0, 1), random.Random(0))                           # in-process keys are keys too
    batch = ServerRound(with_keys, {"mode": "dealer"}, spec, {"seed": SEED}).next_batches()[0]
    with pytest.raises(MessageError, match="holds no ckks keys") as err:  # a node without the key setup
        client_step(batch, RecordDict(), 0, synthetic_inputs, NodePolicy(frozenset({"ckks"})))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, KEYS_RECORD)


def test_machine_state_rejects_foreign_bytes_and_unpicklable_machines():
    with pytest.raises(TypeError, match="not a ClientMachine"):
        machine_state.thaw(pickle.dumps(5))
    machine = make_protocol("plaintext").client(4, RoundSpec(1, 1, (4,), 3, FixedPoint(1.0, 8, 1)), np.zeros(3))
    machine.hook = lambda: None
    with pytest.raises(TypeError, match="client 4"):
        machine_state.freeze(machine)


def test_session_settings_run_config_round_trip():
    s = SessionSettings(protocol="plaintext", options={"threshold": 2}, rounds=3, length=5, timeout=1.5)
    assert SessionSettings.from_run_config(s.to_run_config()) == s
    with pytest.raises(ValueError, match="unknown run config keys"):
        SessionSettings.from_run_config({"round": 1})


def test_app_dir_is_a_valid_flower_app(tmp_path):
    app = write_app_dir(tmp_path / "app", SessionSettings().to_run_config())
    with (app / "pyproject.toml").open("rb") as f:
        config = tomllib.load(f)
    ok, errors, _ = validate_config(config, check_module=True, project_dir=app)
    assert ok, errors
    assert config["tool"]["flwr"]["app"]["config"]["options"] == "{}"
    assert SessionSettings.from_run_config(config["tool"]["flwr"]["app"]["config"]) == SessionSettings()


def test_synthetic_input_is_deterministic_and_bounded():
    a = synthetic_input(1, 2, 3, 1000, 0.5)
    assert np.array_equal(a, synthetic_input(1, 2, 3, 1000, 0.5))
    assert not np.array_equal(a, synthetic_input(1, 2, 4, 1000, 0.5))
    assert a.shape == (1000,) and np.all(np.abs(a) <= 0.5)
    with pytest.raises(ValueError):
        synthetic_input(1, 2, 3, 0, 0.5)


def test_empty_answer_record_is_a_malformed_answer():
    (got,) = run_over_records("plaintext", {}, (0, 1), 1, {},
                              tamper=lambda exchange, answers: {**answers, 1: RecordDict({"x": ConfigRecord()})})
    assert got.contributors == (0,)
    assert any("client 1" in line and "messages" in line for line in got.wire.rejected)


def test_patience_waits_for_slow_nodes_and_stops_for_dead_ones():
    from secure_fal.flower.carrier.exchange import Patience

    p = Patience(5.0)
    assert p.deadline(None) == 300.0      # nobody answered yet: wait (up to the cap)
    assert p.deadline(1.0) == 5.0         # fast federation: the floor
    assert p.deadline(40.0) == 120.0      # slow (cold, loaded) federation: 3 x the latest answer
    assert Patience(60.0).deadline(None) == 600.0 and Patience(5.0, factor=2.0, cap=50.0).deadline(30.0) == 60.0
    assert Patience.of(p) is p and Patience.of(7).timeout == 7.0
    assert p.ttl > p.deadline(None)
    with pytest.raises(ValueError):
        Patience(0.0)


class _ScriptedGrid:
    """A Grid whose nodes answer at scripted times (s after the push) on a fake clock."""

    def __init__(self, answer_at: dict[int, float], clock: list[float]) -> None:
        self.answer_at, self.clock = answer_at, clock

    def push_messages(self, messages):
        return [f"id{m.metadata.dst_node_id}" for m in messages]

    def pull_messages(self, ids):
        return [SimpleNamespace(metadata=SimpleNamespace(src_node_id=node, reply_to_message_id=f"id{node}"),
                                has_error=lambda: False)
                for node, t in self.answer_at.items() if f"id{node}" in ids and self.clock[0] >= t]


@pytest.mark.parametrize("answer_at, answered, waited", [
    ({1: 2.0, 2: 5.0, 3: 14.0}, {1, 2, 3}, 14.0),    # each answer extends the wait (to 6, then 15 s)
    ({1: 2.0, 2: 12.0}, {1}, 6.0),                    # beyond 3 x the latest answer and the floor: dropped
    ({1: 2.0, 2: 3.0, 9: math.inf}, {1, 2}, 9.0),    # a dead node costs 3 x the latest answer, floor 5 s
    ({1: 50.0, 2: 60.0, 9: math.inf}, {1, 2}, 180.0),  # a cold federation: nobody answers before the floor
])
def test_exchange_deadline_follows_the_answers(monkeypatch, answer_at, answered, waited):
    from secure_fal.flower.carrier import exchange

    clock = [0.0]
    monkeypatch.setattr(exchange.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(exchange.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    grid = _ScriptedGrid(answer_at, clock)
    messages = [SimpleNamespace(metadata=SimpleNamespace(dst_node_id=node)) for node in answer_at]
    replies = exchange.exchange(grid, messages, exchange.Patience(5.0), poll_s=1.0)
    assert {r.metadata.src_node_id for r in replies} == answered
    assert clock[0] == pytest.approx(waited, abs=1.0)


def test_supernode_launcher_replaces_only_flowers_fixed_waits(monkeypatch):
    from secure_fal.flower import supernode

    slept = []
    monkeypatch.setattr(supernode.time, "sleep", slept.append)
    clock = supernode.PollClock(0.2)
    for s in (3, 0.5, 1.0, 0.01):
        clock.sleep(s)
    assert slept == [0.2, 0.2, 1.0, 0.01] and clock.monotonic is supernode.time.monotonic
    assert supernode.PollClock(2.0).poll_s == 2.0
    from flwr.supernode import start_client_internal as loop

    monkeypatch.setattr(loop, "time", loop.time)   # restored after the test
    supernode.set_poll(0.2)
    assert isinstance(loop.time, supernode.PollClock)
