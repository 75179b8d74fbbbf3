"""Neighbour graph and threshold of the masking protocol (secagg/masking/graph.py; protocols/masking.md §Parameters)."""

import math

import pytest

from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.errors import InputError
from secure_fal.secagg.machine import RoundSpec
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.masking.graph import check_settings, neighbourhoods


def spec(n: int, *, session: int = 0xABCDEF, round_id: int = 1, clients=None) -> RoundSpec:
    clients = tuple(range(n)) if clients is None else tuple(clients)
    return RoundSpec(session, round_id, clients, 4, FixedPoint(1.0, 16, len(clients)))


@pytest.mark.parametrize("n", [2, 3, 10, 37])
def test_complete_graph_by_default(n):
    g = neighbourhoods(spec(n), None, None)
    assert g.degree == n - 1
    assert all(g.of(c) == tuple(v for v in range(n) if v != c) for c in range(n))


@pytest.mark.parametrize("n,k,degree", [(20, 4, 4), (20, 5, 6), (41, 10, 10), (10, 9, 9), (7, 6, 6), (6, 50, 5),
                                        (100, "log", 14), (1000, "log", 20), (10, "log", 8), (3, "log", 2)])
def test_secagg_plus_graph_is_regular_symmetric_and_connected(n, k, degree):
    # masking.md §Parameters: k rounded up to even (capped at n - 1); "log" = 2 ceil(log2 n); Harary graph
    clients = [3 * i + 1 for i in range(n)]  # ids need not be 0..n-1
    g = neighbourhoods(spec(n, clients=clients), k, None)
    assert g.degree == degree
    assert set(g.adjacency) == set(clients)
    for c in clients:
        assert len(g.of(c)) == degree and c not in g.of(c) and list(g.of(c)) == sorted(g.of(c))
        assert all(c in g.of(v) for v in g.of(c))
        assert g.closed(c) == frozenset(g.of(c)) | {c}
    seen, todo = set(), [clients[0]]
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.add(c)
            todo.extend(g.of(c))
    assert seen == set(clients)


def test_graph_is_derived_from_public_round_randomness():
    # masking.md §Parameters: every party derives the same graph from (session, round, clients)
    a = neighbourhoods(spec(30), 4, None).adjacency
    assert dict(a) == dict(MaskingProtocol(neighbours=4).graph(spec(30)).adjacency)
    assert dict(a) != dict(neighbourhoods(spec(30, round_id=2), 4, None).adjacency)
    assert dict(a) != dict(neighbourhoods(spec(30, session=7), 4, None).adjacency)
    # not simply the circle in id order
    assert any(set(a[c]) != {(c + s) % 30 for s in (-2, -1, 1, 2)} for c in range(30))


@pytest.mark.parametrize("m,t", [(2, 2), (3, 3), (4, 3), (5, 4), (10, 7), (11, 8), (100, 67)])
def test_default_threshold_is_more_than_two_thirds_of_the_neighbourhood(m, t):
    # masking.md §Parameters: t = floor(2m/3) + 1 with m = degree + 1
    g = neighbourhoods(spec(m), None, None)
    assert g.threshold == t and t > 2 * m / 3 and t - 1 <= 2 * m / 3


def test_threshold_as_int_or_fraction():
    assert neighbourhoods(spec(10), None, 6).threshold == 6
    assert neighbourhoods(spec(10), None, 0.51).threshold == 6   # ceil(0.51 * 10)
    assert neighbourhoods(spec(10), None, 1.0).threshold == 10
    assert neighbourhoods(spec(50), 4, 0.8).threshold == 4        # m = 5: ceil(4.0)
    assert neighbourhoods(spec(50), 4, None).threshold == math.floor(2 * 5 / 3) + 1


@pytest.mark.parametrize("n,neighbours,threshold", [(10, None, 5), (10, None, 11), (50, 4, 2), (50, 4, 6)])
def test_threshold_outside_half_to_whole_neighbourhood_is_rejected_per_round(n, neighbours, threshold):
    # masking.md §Parameters: m/2 < t <= m
    with pytest.raises(InputError, match="m/2 < t <= m") as err:
        neighbourhoods(spec(n), neighbours, threshold)
    assert err.value.field == "threshold" and err.value.round_id == 1


def test_one_client_is_refused():
    with pytest.raises(InputError, match="at least 2 clients") as err:
        MaskingProtocol().server(spec(1))
    assert err.value.field == "clients"


@pytest.mark.parametrize("neighbours,threshold", [(0, None), (-3, None), ("all", None), (True, None), (2.5, None),
                                                  (None, 0), (None, 0.5), (None, 1.5), (None, "2"), (None, False)])
def test_constructor_settings_are_validated(neighbours, threshold):
    with pytest.raises(ValueError, match="neighbours|threshold"):
        check_settings(neighbours, threshold)
    with pytest.raises(ValueError):
        MaskingProtocol(threshold=threshold, neighbours=neighbours)
