"""Dropouts in every phase of the masking protocol (protocols/masking.md §Dropout)."""

import numpy as np
import pytest

from secure_fal.secagg import DropoutError, Faults, secure_sum
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.plaintext import PlaintextProtocol
from secure_fal.secagg.report import Report
from secure_fal.secagg.transport import run_round

PHASES = MaskingProtocol.CLIENT_PHASES
SESSION = 0x5EC0A66


def inputs(n, length=40, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-1, 1, length) for c in range(n)}


def run(protocol, xs, drop):
    """One round driven by the in-process transport; returns (server, report) or raises."""
    spec = RoundSpec(SESSION, 1, tuple(sorted(xs)), len(next(iter(xs.values()))), FixedPoint(1.0, 24, len(xs)))
    server = protocol.server(spec)
    clients = {c: protocol.client(c, spec, x) for c, x in xs.items()}
    report = Report(protocol.NAME, 1, spec.length, spec.clients)
    run_round(server, clients, report, protocol.PHASE_OF_KIND, protocol.CLIENT_PHASES, Faults(drop=drop))
    return server, report


def expected_contributors(xs, drop):
    # masking.md §Dropout: a client contributes iff its masked input arrived (it did not drop before "unmask")
    return tuple(c for c in sorted(xs) if drop.get(c) in (None, "unmask"))


def assert_exact(server, report, xs, drop):
    want = expected_contributors(xs, drop)
    assert server.contributors == want and report.dropped == tuple(c for c in sorted(xs) if c not in want)
    plain = secure_sum(PlaintextProtocol(), {c: xs[c] for c in want}, bound=1.0).total
    assert np.array_equal(server.result, plain)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("dropped", [(0,), (6,), (2, 5)])
def test_complete_graph_survives_up_to_m_minus_t_dropouts_in_any_phase(phase, dropped):
    # n = 7: m = 7, t = 5, so any 2 clients may drop
    xs = inputs(7, seed=len(dropped))
    drop = {c: phase for c in dropped}
    server, report = run(MaskingProtocol(), xs, drop)
    assert_exact(server, report, xs, drop)


@pytest.mark.parametrize("drop", [
    {1: "share", 3: "masked_input", 5: "unmask"},
    {0: "advertise", 9: "unmask", 4: "share"},
    {2: "masked_input", 7: "masked_input", 8: "unmask"},
])
def test_dropouts_in_different_phases_of_one_round(drop):
    xs = inputs(10, seed=3)   # m = 10, t = 7
    server, report = run(MaskingProtocol(), xs, drop)
    assert_exact(server, report, xs, drop)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("dropped", [(0, 1, 2), (4, 5, 6)])
def test_more_than_m_minus_t_dropouts_release_no_result(phase, dropped):
    # masking.md §Dropout: fewer than t holders left -> DropoutError, and no partial result
    xs = inputs(7)
    protocol = MaskingProtocol()
    spec = RoundSpec(SESSION, 1, tuple(range(7)), 40, FixedPoint(1.0, 24, 7))
    server = protocol.server(spec)
    clients = {c: protocol.client(c, spec, x) for c, x in xs.items()}
    with pytest.raises(DropoutError, match="threshold t=5") as err:
        run_round(server, clients, Report("masking", 1, 40, spec.clients), protocol.PHASE_OF_KIND, PHASES,
                  Faults(drop={c: phase for c in dropped}))
    assert err.value.round_id == 1 and err.value.client is not None
    assert server.result is None and server.contributors == () and not server.done


def test_everyone_dropping_is_a_dropout_error():
    with pytest.raises(DropoutError, match="no client left"):
        run(MaskingProtocol(), inputs(4), {c: "advertise" for c in range(4)})


def test_a_higher_threshold_tolerates_fewer_dropouts():
    xs = inputs(7)
    server, report = run(MaskingProtocol(threshold=6), xs, {3: "masked_input"})
    assert_exact(server, report, xs, {3: "masked_input"})
    with pytest.raises(DropoutError):
        run(MaskingProtocol(threshold=6), xs, {3: "masked_input", 4: "unmask"})
    with pytest.raises(DropoutError):
        run(MaskingProtocol(threshold=1.0), xs, {3: "unmask"})


def _graph(n, k):
    spec = RoundSpec(SESSION, 1, tuple(range(n)), 40, FixedPoint(1.0, 24, n))
    return MaskingProtocol(neighbours=k).graph(spec)


def _far_apart_pair(g):
    """Two clients that no closed neighbourhood contains together."""
    for a in g.adjacency:
        for b in g.adjacency:
            if a < b and not any({a, b} <= g.closed(u) for u in g.adjacency):
                return a, b
    raise AssertionError("no such pair")


@pytest.mark.parametrize("phase", PHASES)
def test_secagg_plus_tolerates_dropouts_spread_over_neighbourhoods(phase):
    # n = 20, k = 4: m = 5, t = 4, so each closed neighbourhood may lose one client
    g = _graph(20, 4)
    assert g.threshold == 4
    a, b = _far_apart_pair(g)
    xs = inputs(20, seed=5)
    drop = {a: phase, b: phase}
    server, report = run(MaskingProtocol(neighbours=4), xs, drop)
    assert_exact(server, report, xs, drop)


@pytest.mark.parametrize("phase", PHASES)
def test_secagg_plus_fails_when_one_neighbourhood_loses_too_many(phase):
    # masking.md §Dropout: the threshold applies per neighbourhood; 18 of 20 alive is not enough if
    # two of them are neighbours of the same client
    g = _graph(20, 4)
    victim = 11
    drop = {v: phase for v in g.of(victim)[:2]}
    with pytest.raises(DropoutError, match="threshold t=4"):
        run(MaskingProtocol(neighbours=4), inputs(20), drop)


def test_secagg_plus_fails_when_a_dropped_clients_mask_key_cannot_be_recovered():
    # w drops before sending its masked input; one of its 4 neighbours then drops while unmasking:
    # only 3 < t holders can reveal s_sk_w
    g = _graph(20, 4)
    w = 3
    drop = {w: "masked_input", g.of(w)[0]: "unmask"}
    with pytest.raises(DropoutError, match="threshold t=4"):
        run(MaskingProtocol(neighbours=4), inputs(20), drop)


def test_dropped_clients_send_less_and_the_report_names_them():
    xs = inputs(8, length=1000)   # m = 8, t = 5: three may drop
    drop = {1: "advertise", 2: "share", 3: "masked_input"}
    _, report = run(MaskingProtocol(threshold=5), xs, drop)
    assert report.dropped == (1, 2, 3)
    assert report.bytes_up.get(1, 0) == 0
    assert report.bytes_up[2] < report.bytes_up[3] < 1000 < report.bytes_up[0]


@pytest.mark.parametrize("phase", PHASES)
def test_survivors_split_into_unconnected_groups_release_no_result(phase):
    # masking.md §Dropout: in a sparse graph, if the clients of U3 fall apart into groups with no neighbour
    # in another group, each group's masks cancel on their own and the server would learn each group's sum.
    # A cycle (k = 2) with the minimal threshold t = 2 passes every neighbourhood check when two
    # non-adjacent clients drop, so only the connectivity check stops it.
    g = _graph(20, 2)
    a = 0
    b = next(c for c in range(1, 20) if c not in g.closed(a) and not g.closed(c) & set(g.of(a)))
    assert len(g.components(set(range(20)) - {a, b})) == 2
    xs, drop = inputs(20), {a: phase, b: phase}
    if phase == "unmask":   # their masked inputs arrived: U3 is everyone, still connected
        server, report = run(MaskingProtocol(neighbours=2, threshold=2), xs, drop)
        assert_exact(server, report, xs, drop)
        return
    with pytest.raises(DropoutError, match="split into 2 groups"):
        run(MaskingProtocol(neighbours=2, threshold=2), xs, drop)


def test_default_threshold_keeps_sparse_survivors_connected():
    # with t = floor(2m/3) + 1 > k/2 + 1, a run of k/2 dropped neighbours fails a neighbourhood check first
    g = _graph(20, 4)
    a = 0
    b = next(c for c in range(1, 20) if not any({a, c} <= g.closed(u) for u in range(20)))
    with pytest.raises(DropoutError, match="threshold t=4"):
        run(MaskingProtocol(neighbours=4), inputs(20), {v: "masked_input" for v in g.of(a)[:2] + g.of(b)[:2]})
