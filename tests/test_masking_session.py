"""Session-mode masking (protocols/masking.md §Session mode): setup once per R rounds, then 2-exchange rounds."""

import dataclasses
import pickle
from collections import deque

import numpy as np
import pytest

from secure_fal.flower.carrier import machine_state
from secure_fal.secagg import Aggregator, Faults, Report, make_protocol, run_setup
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.errors import (DecryptionError, DropoutError, InputError, MessageError, OutOfOrderError,
                                      ReplayError)
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.masking.graph import session_neighbourhoods
from secure_fal.secagg.masking.messages import InputRequest, UnmaskRequest
from secure_fal.secagg.masking.setup_messages import KINDS as SETUP_KINDS
from secure_fal.secagg.masking.setup_messages import PROTOCOL_ID as SETUP_ID
from secure_fal.secagg.masking.setup_messages import SetupAdvertise, SetupPeerKeys, SetupRelayedShares, SetupShares
from secure_fal.secagg.messages import SERVER, Header, decode, encode, peek_header
from secure_fal.secagg.transport import run_round

SESSION = 0x0123456789ABCDEF


def inputs(clients, length=64, seed=0, bound=1.0):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-bound, bound, length) for c in clients}


def plain(xs, contributors, bound=1.0):
    return Aggregator("plaintext", list(xs)).sum({c: xs[c] for c in contributors}, bound=bound).total


def run_session(agg, rounds, drops=None, length=64, clients=None):
    """``rounds`` sums through ``agg``; each checked bit for bit against plaintext over its contributors."""
    results = []
    for r in range(1, rounds + 1):
        xs = inputs(clients or agg.clients, length, seed=r)
        res = agg.sum(xs, bound=1.0, faults=Faults(drop=(drops or {}).get(r, {})))
        assert np.array_equal(res.total, plain(xs, res.contributors))
        results.append(res)
    return results


# -- exactness, re-setup -----------------------------------------------------------------------------------

@pytest.mark.parametrize("neighbours", [None, 4])
def test_exact_over_several_rounds_and_across_re_setups(neighbours):
    proto = MaskingProtocol(neighbours=neighbours, rounds_per_setup=2)
    agg = Aggregator(proto, range(9), seed=3)
    results = run_session(agg, 5)
    assert [r.contributors for r in results] == [tuple(range(9))] * 5
    assert [rep.round_id for rep in agg.setup_reports] == [1, 3, 5]      # a new setup when the rounds run out
    assert [r.report.round_id for r in results] == [1, 2, 3, 4, 5]       # round ids continue
    assert proto.CLIENT_PHASES == ("masked_input", "unmask")
    assert MaskingProtocol.CLIENT_PHASES == ("advertise", "share", "masked_input", "unmask")


def test_rounds_over_subsets_of_the_members():
    agg = Aggregator(MaskingProtocol(rounds_per_setup=4), range(8), seed=4)
    for r, members in enumerate([range(8), range(1, 8), (0, 2, 3, 4, 5, 6, 7), range(8)], start=1):
        xs = inputs(members, seed=r)
        res = agg.sum(xs, bound=1.0)
        assert res.contributors == tuple(members) and np.array_equal(res.total, plain(xs, members))
    assert len(agg.setup_reports) == 1


def test_registered_under_its_name_and_validated():
    proto = Aggregator("masking", range(3), rounds_per_setup=5).protocol
    assert proto.has_session_keys and proto.rounds_per_setup == 5
    assert not MaskingProtocol().has_session_keys
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="rounds_per_setup"):
            MaskingProtocol(rounds_per_setup=bad)


def test_per_round_mode_is_unchanged():
    agg = Aggregator(MaskingProtocol(), range(5), seed=5)
    results = run_session(agg, 2, drops={2: {1: "share"}})
    assert agg.setup_reports == [] and results[1].contributors == (0, 2, 3, 4)


# -- dropouts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("phase", MaskingProtocol.SETUP_PHASES)
def test_a_client_silent_in_setup_sits_out_until_the_next_setup(phase):
    agg = Aggregator(MaskingProtocol(rounds_per_setup=2), range(7), seed=6,
                     setup_fault_plan=lambda first: Faults(drop={3: phase}) if first == 1 else None)
    results = run_session(agg, 3)
    without = tuple(c for c in range(7) if c != 3)
    assert [r.contributors for r in results] == [without, without, tuple(range(7))]
    assert agg.setup_reports[0].dropped == (3,) and agg.setup_reports[1].dropped == ()
    assert agg.protocol.key_holders == tuple(range(7))


def test_dropouts_in_setup_phases_of_several_clients():
    drop = {1: "advertise", 4: "share", 6: "ack"}
    agg = Aggregator(MaskingProtocol(rounds_per_setup=3), range(10), seed=7, setup_fault_plan=lambda _: Faults(drop))
    results = run_session(agg, 2)
    assert results[0].contributors == (0, 2, 3, 5, 7, 8, 9) == results[1].contributors


def test_too_many_silent_in_setup_is_a_dropout_error_and_no_keys_are_installed():
    proto = MaskingProtocol(rounds_per_setup=3)
    agg = Aggregator(proto, range(5), seed=8, setup_fault_plan=lambda _: Faults(drop={0: "share", 1: "share"}))
    with pytest.raises(DropoutError, match="too few neighbours shared"):
        agg.sum(inputs(range(5)), bound=1.0)
    assert proto.key_holders == () and proto.setup_due(2)


@pytest.mark.parametrize("phase", MaskingProtocol.SESSION_CLIENT_PHASES)
def test_a_client_dropped_in_round_r_contributes_again_in_round_r_plus_1(phase):
    agg = Aggregator(MaskingProtocol(rounds_per_setup=4), range(6), seed=9)
    results = run_session(agg, 3, drops={2: {2: phase}})
    assert results[1].contributors == ((0, 1, 3, 4, 5) if phase == "masked_input" else tuple(range(6)))
    assert results[2].contributors == tuple(range(6)) and len(agg.setup_reports) == 1


def _far_from(graph, u):
    """A client no closer than 3 hops to ``u``: no neighbourhood holds both (the session id, hence the graph, is
    fresh randomness in every run)."""
    near = set(graph.closed(u)).union(*(graph.closed(v) for v in graph.of(u)))
    return min(set(graph.adjacency) - near)


def test_dropouts_in_both_round_phases_complete_and_sparse():
    for neighbours in (None, 4):
        agg = Aggregator(MaskingProtocol(neighbours=neighbours, rounds_per_setup=3), range(12), seed=10)
        late = 5 if neighbours is None else _far_from(
            session_neighbourhoods(agg.session, tuple(range(12)), neighbours, None, 1), 0)
        res = run_session(agg, 3, drops={1: {0: "masked_input", late: "unmask"}, 3: {7: "masked_input"}})
        assert 0 not in res[0].contributors and late in res[0].contributors and 0 in res[1].contributors


def test_too_many_dropouts_in_a_round_release_no_result_and_the_next_round_works():
    agg = Aggregator(MaskingProtocol(rounds_per_setup=3), range(5), seed=11)
    with pytest.raises(DropoutError):
        agg.sum(inputs(range(5)), bound=1.0, faults=Faults(drop={0: "masked_input", 1: "masked_input"}))
    xs = inputs(range(5), seed=2)
    assert np.array_equal(agg.sum(xs, bound=1.0).total, plain(xs, range(5)))


def test_a_round_with_too_few_neighbours_of_a_client_is_refused_before_anything_is_sent():
    proto = MaskingProtocol(neighbours=4, rounds_per_setup=3)
    agg = Aggregator(proto, range(10), seed=12)
    agg.sum(inputs(range(10)), bound=1.0)
    with pytest.raises(DropoutError, match="too few neighbours of this client are in the round"):
        agg.sum(inputs(range(3)), bound=1.0)


# -- hand-driven rounds and setups --------------------------------------------------------------------------

def pump(server, machines, queue, stop=lambda h: False):
    """Deliver FIFO (timeouts when idle) until ``stop(header)`` holds for the head (popped and returned) or done."""
    while True:
        if not queue:
            if server.done:
                return None
            queue.extend(server.on_timeout())
            continue
        h = peek_header(queue[0])
        if stop(h):
            return queue.popleft()
        data = queue.popleft()
        queue.extend((server if h.recipient == SERVER else machines[h.recipient]).receive(data))


def keyed(n=5, rounds=3, neighbours=None, **kwargs):
    """A protocol object with an installed setup of ``rounds`` rounds among 0..n-1 (session SESSION)."""
    proto = MaskingProtocol(neighbours=neighbours, rounds_per_setup=rounds)
    server = proto.setup_server(SESSION, range(n), kwargs.get("first", 1))
    machines = {c: proto.setup_client(c, SESSION, range(n), kwargs.get("first", 1)) for c in range(n)}
    pump(server, machines, deque(server.start()))
    proto.install_setup(server)
    for c in server.contributors:
        proto.load_client_keys(c, machines[c].keys())
    return proto


def spec_of(round_id, clients=tuple(range(5)), length=16):
    return RoundSpec(SESSION, round_id, tuple(clients), length, FixedPoint(1.0, 24, len(clients)))


class Round:
    def __init__(self, proto, round_id, clients=tuple(range(5))):
        self.spec = spec_of(round_id, clients)
        self.xs = inputs(clients, 16, seed=round_id)
        self.server = proto.server(self.spec)
        self.clients = {c: proto.client(c, self.spec, x) for c, x in self.xs.items()}
        self.queue = deque(self.server.start())

    def until(self, kind, recipient):
        return pump(self.server, self.clients, self.queue, lambda h: h.kind == kind.KIND and h.recipient == recipient)

    def finish(self):
        pump(self.server, self.clients, self.queue)
        assert np.array_equal(self.server.result, plain(self.xs, self.server.contributors))


REFUSALS = [
    ((0, 1, 2, 3, 4), (1,), MessageError, "both as survivor and as dropped"),
    ((1, 2, 3, 4), (), MessageError, "not listed as a survivor"),
    ((1, 2, 3, 4), (0,), MessageError, "not listed as a survivor"),
    ((0, 1, 2, 3, 4, 7), (), MessageError, "holds no shares of client 7"),
    ((0, 1, 2, 3), (7,), MessageError, "holds no shares of client 7"),
    ((0, 0, 1, 2, 3), (), MessageError, "listed twice"),
    ((0, 1, 2), (), DropoutError, "only 3 survivors"),
    ((0, 1, 2), (3, 4), DropoutError, "only 3 survivors"),
]


@pytest.mark.parametrize("survivors,dropped,error,match", REFUSALS)
def test_honest_client_checks_in_unmask(survivors, dropped, error, match):
    r = Round(keyed(), 1)
    data = r.until(UnmaskRequest, 0)
    with pytest.raises(error, match=match):
        r.clients[0].receive(r.server.send(0, UnmaskRequest(survivors, dropped, {})))
    assert r.clients[0].phase == "unmask"
    r.queue.appendleft(data)
    r.finish()


def test_client_refuses_shares_of_a_member_that_is_not_in_this_round():
    # 4 is a key holder and 0's partner, but not a client of round 1: 0 did not mask with it
    r = Round(keyed(), 1, clients=(0, 1, 2, 3))
    r.until(UnmaskRequest, 0)
    with pytest.raises(MessageError, match="holds no shares of client 4") as err:
        r.clients[0].receive(r.server.send(0, UnmaskRequest((0, 1, 2, 3), (4,), {})))
    assert (err.value.client, err.value.round_id, err.value.field) == (4, 1, "dropped")


def test_a_round_id_runs_once_per_client():
    proto = keyed(rounds=3)
    Round(proto, 2).finish()
    for round_id in (2, 1):   # the same round again, or an earlier one: its secrets are gone
        with pytest.raises(ReplayError, match="already ran round") as err:
            proto.client(3, spec_of(round_id), np.zeros(16))
        assert (err.value.client, err.value.round_id, err.value.field) == (3, round_id, "round")
    Round(proto, 3).finish()


def test_a_second_masked_input_request_is_refused():
    r = Round(keyed(), 1)
    request = r.server.send(0, InputRequest())
    r.clients[0].receive(request)
    for phase in ("unmask", "done"):
        with pytest.raises(ReplayError, match="already sent its masked input") as err:
            r.clients[0].receive(request)
        assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, "round")
        r.clients[0].phase = "done"
    with pytest.raises(OutOfOrderError):   # an unmask request once done
        r.clients[0].receive(r.server.send(0, UnmaskRequest((0, 1, 2, 3, 4), (), {})))


@pytest.mark.parametrize("round_id", [0, 4, 5])
def test_round_ids_outside_the_setup_are_refused(round_id):
    proto = keyed(rounds=3)   # rounds 1..3
    with pytest.raises(MessageError, match="outside the rounds 1..3") as err:
        proto.client(2, spec_of(round_id), np.zeros(16))
    assert (err.value.client, err.value.round_id, err.value.field) == (2, round_id, "round")
    with pytest.raises(InputError, match="covers rounds 1..3") as err:
        proto.server(spec_of(round_id))
    assert (err.value.round_id, err.value.field) == (round_id, "round")
    assert proto.setup_due(round_id) and not proto.setup_due(2)


def test_rounds_of_another_session_are_refused():
    proto = keyed()
    other = dataclasses.replace(spec_of(1), session=SESSION ^ 1)
    with pytest.raises(MessageError, match="holds keys of session") as err:
        proto.client(1, other, np.zeros(16))
    assert (err.value.client, err.value.field) == (1, "session")
    with pytest.raises(InputError):
        proto.server(other)


def test_non_holders_cannot_be_round_clients():
    proto = MaskingProtocol(rounds_per_setup=2)
    agg = Aggregator(proto, range(6), seed=13, setup_fault_plan=lambda _: Faults(drop={5: "ack"}))
    agg.sum(inputs(range(6)), bound=1.0)
    with pytest.raises(InputError, match="holds no keys of this setup") as err:
        proto.server(RoundSpec(agg.session, 2, tuple(range(6)), 4, FixedPoint(1.0, 24, 6)))
    assert (err.value.client, err.value.field) == (5, "clients")
    with pytest.raises(InputError, match="holds no masking session keys"):
        proto.client(5, RoundSpec(agg.session, 2, tuple(range(6)), 4, FixedPoint(1.0, 24, 6)), np.zeros(4))


def test_keys_serialize_and_forget_the_rounds_that_ran():
    proto = keyed(rounds=3)
    Round(proto, 1).finish()
    blob = proto.spent_keys(2)
    fresh = MaskingProtocol(rounds_per_setup=3)
    fresh.load_client_keys(2, blob)
    with pytest.raises(ReplayError):
        fresh.client(2, spec_of(1), np.zeros(16))
    fresh.client(2, spec_of(2), np.zeros(16))
    assert len(proto.spent_keys(2)) < len(keyed(rounds=3).spent_keys(2))
    for bad, match in ((b"junk", "unusable"), (proto.spent_keys(3), "keys of client 3"),
                       (blob[:-1], "unusable"), (blob + b"\0", "unusable")):
        with pytest.raises(InputError, match=match) as err:
            fresh.load_client_keys(2, bad)
        assert (err.value.client, err.value.field) == (2, "keys")


def test_machines_pickle_mid_setup_and_mid_round():
    proto = MaskingProtocol(rounds_per_setup=2)
    server = proto.setup_server(SESSION, range(4))
    machines = {c: proto.setup_client(c, SESSION, range(4)) for c in range(4)}
    queue = deque(server.start())
    for kind in (SetupPeerKeys, SetupRelayedShares):
        head = pump(server, machines, queue, lambda h: h.kind == kind.KIND and h.recipient == 0)
        machines[0] = pickle.loads(pickle.dumps(machines[0]))   # plain pickle: no key objects inside
        queue.appendleft(head)
    pump(server, machines, queue)
    proto.install_setup(server)
    for c in range(4):
        proto.load_client_keys(c, machines[c].keys())
    r = Round(proto, 1, clients=(0, 1, 2, 3))
    head = r.until(UnmaskRequest, 1)
    r.clients[1] = machine_state.thaw(machine_state.freeze(r.clients[1]))
    r.queue.appendleft(head)
    r.finish()


# -- bad setup messages ------------------------------------------------------------------------------------

def setup_parties(n=5, rounds=2, first=1):
    proto = MaskingProtocol(rounds_per_setup=rounds)
    server = proto.setup_server(SESSION, range(n), first)
    machines = {c: proto.setup_client(c, SESSION, range(n), first) for c in range(n)}
    return proto, server, machines, deque(server.start())


def redo(data, header=None, **fields):
    h, msg = decode(data, SETUP_KINDS, SETUP_ID)
    return encode(dataclasses.replace(h, **(header or {})), dataclasses.replace(msg, **fields))


def flip(ct):
    return bytes([ct[0] ^ 1]) + ct[1:]


def test_tampered_setup_shares_fail_authentication_naming_sender_round_and_field():
    _, server, machines, queue = setup_parties(first=4)
    data = pump(server, machines, queue, lambda h: h.kind == SetupRelayedShares.KIND and h.recipient == 0)
    cts = decode(data, SETUP_KINDS, SETUP_ID)[1].ciphertexts
    with pytest.raises(DecryptionError, match="from client 2 to client 0 for rounds from 4") as err:
        machines[0].receive(redo(data, ciphertexts={**cts, 2: flip(cts[2])}))
    assert (err.value.client, err.value.round_id, err.value.field) == (2, 4, "ciphertexts")
    with pytest.raises(DecryptionError):   # a ciphertext another sender sealed, relayed as 2's
        machines[0].receive(redo(data, ciphertexts={**cts, 2: cts[3]}))
    machines[0].receive(data)   # the machine kept its state: the genuine message is accepted
    assert machines[0].done


def test_shares_sealed_for_another_setup_range_do_not_open():
    # same session, same members, another round range: the share keys differ (fresh c keys, r0 and R bound)
    _, server_a, machines_a, queue_a = setup_parties(first=1)
    old = pump(server_a, machines_a, queue_a, lambda h: h.kind == SetupRelayedShares.KIND and h.recipient == 0)
    _, server_b, machines_b, queue_b = setup_parties(first=3)
    new = pump(server_b, machines_b, queue_b, lambda h: h.kind == SetupRelayedShares.KIND and h.recipient == 0)
    with pytest.raises(ReplayError) as err:   # as recorded: the header names setup 1's round
        machines_b[0].receive(old)
    assert err.value.round_id == 1
    forged = redo(new, ciphertexts=decode(old, SETUP_KINDS, SETUP_ID)[1].ciphertexts)
    with pytest.raises(DecryptionError) as err:
        machines_b[0].receive(forged)
    assert (err.value.client, err.value.round_id, err.value.field) == (1, 3, "ciphertexts")


@pytest.mark.parametrize("change,field", [(dict(members=(0, 1, 2, 3)), "members"), (dict(rounds=3), "rounds")])
def test_client_refuses_a_setup_request_that_does_not_match_its_setup(change, field):
    _, server, machines, queue = setup_parties()
    data = queue.popleft()
    with pytest.raises(MessageError) as err:
        machines[peek_header(data).recipient].receive(redo(data, **change))
    assert (err.value.client, err.value.round_id, err.value.field) == (0, 1, field)


def test_server_refuses_misshapen_advertised_keys():
    _, server, machines, queue = setup_parties()
    data = pump(server, machines, queue, lambda h: h.kind == SetupAdvertise.KIND and h.sender == 3)
    with pytest.raises(MessageError) as err:
        server.receive(redo(data, s_pks=b"\1" * 32))
    assert (err.value.client, err.value.round_id, err.value.field) == (3, 1, "s_pks")
    server.receive(data)
    with pytest.raises(ReplayError):
        server.receive(data)


@pytest.mark.parametrize("change,field", [(dict(c_pk=b"\1" * 31), "c_pk"), (dict(c_pk=bytes(32)), "c_pk"),
                                          (dict(s_pks=bytes(32) * 2), "s_pks[0]")])
def test_a_refused_advertised_key_excludes_its_member_not_the_setup(change, field):
    _, server, machines, queue = setup_parties()
    data = pump(server, machines, queue, lambda h: h.kind == SetupAdvertise.KIND and h.sender == 3)
    server.receive(redo(data, **change))
    refused = server.excluded[3]
    assert (refused.client, refused.round_id, refused.field) == (3, 1, field)
    with pytest.raises(ReplayError):
        server.receive(data)


def test_client_refuses_low_order_or_misshapen_peer_keys():
    _, server, machines, queue = setup_parties()
    data = pump(server, machines, queue, lambda h: h.kind == SetupPeerKeys.KIND and h.recipient == 0)
    keys = decode(data, SETUP_KINDS, SETUP_ID)[1].keys
    for bad, match in ((b"\0" * 96, "unusable public key"), (keys[1][:-1], "expected 96")):
        with pytest.raises(MessageError, match=match) as err:
            machines[0].receive(redo(data, keys={**keys, 1: bad}))
        assert (err.value.client, err.value.round_id, err.value.field) == (1, 1, "keys")
    with pytest.raises(MessageError, match="not neighbours"):
        machines[0].receive(redo(data, keys={**keys, 0: keys[1]}))


def test_server_refuses_shares_for_the_wrong_recipients_or_of_the_wrong_size():
    _, server, machines, queue = setup_parties()
    data = pump(server, machines, queue, lambda h: h.kind == SetupShares.KIND and h.sender == 2)
    cts = decode(data, SETUP_KINDS, SETUP_ID)[1].ciphertexts
    for bad in ({v: c for v, c in cts.items() if v != 4}, {**cts, 4: cts[4][:-1]}):
        with pytest.raises(MessageError) as err:
            server.receive(redo(data, ciphertexts=bad))
        assert (err.value.client, err.value.round_id, err.value.field) == (2, 1, "ciphertexts")
    server.receive(data)


def test_setup_messages_of_other_sessions_senders_or_phases_are_refused():
    _, server, machines, queue = setup_parties()
    request = queue[0]   # the SetupRequest to client 0
    with pytest.raises(ReplayError):
        machines[0].receive(redo(request, header=dict(session=SESSION ^ 1)))
    with pytest.raises(MessageError, match="from the server only"):
        machines[0].receive(redo(request, header=dict(sender=1)))
    machines[0].receive(request)
    with pytest.raises(OutOfOrderError):
        machines[0].receive(request)


# -- cost ---------------------------------------------------------------------------------------------------

def test_session_rounds_cost_fewer_bytes_and_the_sizes_match_the_spec():
    # masking.md §Session mode: header 30; InputRequest 0; MaskedInput 4 + ceil(L k / 8); UnmaskRequest 8 + 8 (s + r);
    # Unmask 8 + 45 (s + r); setup: SetupRequest 12 + 8 n; SetupAdvertise 8 + 32 (R + 1);
    # SetupPeerKeys 4 + (44 + 32 R) d; SetupShares / SetupRelayedShares 4 + (28 + 66 R) d; SetupAck 0
    n, length, rounds = 10, 1000, 10
    xs = inputs(range(n), length)
    per_round = Aggregator(MaskingProtocol(), range(n), seed=1).sum(xs, bound=1.0).report
    agg = Aggregator(MaskingProtocol(rounds_per_setup=rounds), range(n), seed=1)
    session = agg.sum(xs, bound=1.0).report
    setup = agg.setup_reports[0]
    packed, d = 3625, n - 1   # k = 29 (10 x 2^24 and a sign bit): 1000 values in 3,625 bytes
    for c in range(n):
        assert session.bytes_up[c] == 30 + 4 + packed + 30 + 8 + 45 * n
        assert session.bytes_down[c] == 30 + 30 + 12 + 8 * n
        assert setup.bytes_up[c] == (30 + 12 + 32 * (rounds + 1) + 30 + 4 + (28 + 66 * rounds) * d + 4 + 32 * rounds
                                     + 30)
        assert setup.bytes_down[c] == (30 + 12 + 8 * n + 30 + 4 + (44 + 32 * rounds) * d
                                       + 30 + 4 + (28 + 66 * rounds) * d)
    assert session.total_bytes < per_round.total_bytes
    print(f"\nn={n} L={length}: bytes per round, per-round mode {per_round.total_bytes}, session mode "
          f"{session.total_bytes} + setup {setup.total_bytes} / R={rounds} = "
          f"{session.total_bytes + setup.total_bytes / rounds:.0f}")


# -- the setup interface shared with CKKS ---------------------------------------------------------------------

@pytest.mark.parametrize("name,options", [("masking", {"rounds_per_setup": 2}),
                                          ("ckks", {"mode": "dealer", "params": {"poly_modulus_degree": 2048,
                                                                                 "coeff_mod_bit_sizes": [54]}})])
def test_ckks_and_session_masking_set_up_through_the_same_interface(name, options):
    # one object per party, as over Flower: setup machines from the protocol, install / load, then a round
    server_side = make_protocol(name, **options)
    members = (0, 1, 2, 3)
    assert server_side.has_session_keys and server_side.setup_due(1) and server_side.key_holders == ()
    server = server_side.setup_server(SESSION, members, 1)
    parties = {c: make_protocol(name, **options) for c in members}
    machines = {c: parties[c].setup_client(c, SESSION, members, 1) for c in members}
    report = Report("setup", 1, 0, members)
    run_round(server, machines, report, server_side.SETUP_PHASE_OF_KIND, server_side.SETUP_PHASES,
              Faults(drop={3: server_side.SETUP_PHASES[-1]}))
    server_side.install_setup(server)
    assert server.contributors == server_side.key_holders == (0, 1, 2) and not server_side.setup_due(2)
    for c in server.contributors:
        parties[c].load_client_keys(c, machines[c].keys())
    with pytest.raises(ValueError, match="client 0 holds no"):
        parties[0].setup_client(0, SESSION, members, 1).keys()
    spec = spec_of(2, clients=(0, 1, 2))
    xs = inputs(spec.clients, 16)
    round_server = server_side.server(spec)
    clients = {c: parties[c].client(c, spec, xs[c]) for c in spec.clients}
    run_round(round_server, clients, Report(name, 2, 16, spec.clients), server_side.PHASE_OF_KIND,
              server_side.CLIENT_PHASES)
    assert np.allclose(round_server.result, plain(xs, spec.clients), atol=1e-6)


def test_run_setup_installs_on_one_object():
    proto = MaskingProtocol(rounds_per_setup=3)
    report = run_setup(proto, SESSION, range(5), 4, Faults(drop={1: "advertise"}))
    assert (report.round_id, report.dropped, proto.key_holders) == (4, (1,), (0, 2, 3, 4))
    assert [proto.setup_due(r) for r in (3, 4, 6, 7)] == [True, False, False, True]
    Round(proto, 5, clients=(0, 2, 3, 4)).finish()


def test_setup_messages_from_members_that_missed_a_phase_are_out_of_order():
    _, server, machines, queue = setup_parties()
    pump(server, machines, queue, lambda h: h.kind == SetupAdvertise.KIND and h.sender == 4)   # 4's keys are lost
    pump(server, machines, queue, lambda h: h.kind == SetupShares.KIND and h.sender == 0)      # advertise timed out
    late = encode(Header(SETUP_ID, SetupShares.KIND, SESSION, 1, 4, SERVER), SetupShares({}, b""))
    with pytest.raises(OutOfOrderError, match="did not complete phase 'advertise'") as err:
        server.receive(late)
    assert (err.value.client, err.value.round_id) == (4, 1)
