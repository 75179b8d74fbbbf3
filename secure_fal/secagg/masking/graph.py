"""Who masks with whom, and how many shares reconstruct a secret (protocols/masking.md §Parameters).

Neighbour graph. ``neighbours=None`` is the complete graph of classic SecAgg (Bonawitz et al. 2017).
An integer k (or ``"log"``, k = 2 * ceil(log2 n)) gives SecAgg+ (Bell et al. 2020): a Harary graph
H(k', n) (k' = k rounded up to even), i.e. the clients placed on a circle and each joined to its k'/2
nearest on either side, with the placement a pseudo-random permutation derived from the round's public
randomness (session id, round id, client ids). Every party computes the same graph; the graph is
k'-regular, and complete when k' >= n - 1.

Threshold. A client's secrets are shared among its closed neighbourhood N[u] = {u} + N(u) of size
m = degree + 1. ``threshold=None`` gives t = floor(2m/3) + 1 (more than two thirds); an integer is t
itself; a float f in (1/2, 1] gives t = ceil(f * m). Every choice must satisfy m/2 < t <= m: t > m/2
keeps the server from obtaining both the self-mask and the pairwise key of one client from two disjoint
sets of holders, and t <= m keeps reconstruction possible with no dropout.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from ..errors import DropoutError, InputError, MessageError
from ..machine import RoundSpec
from .prg import permutation

NeighbourSetting = int | str | None
ThresholdSetting = int | float | None


def check_settings(neighbours: NeighbourSetting, threshold: ThresholdSetting) -> None:
    """Validate the constructor settings (before any round); raises ValueError naming the bad one."""
    if not (neighbours is None or neighbours == "log"
            or (isinstance(neighbours, int) and not isinstance(neighbours, bool) and neighbours >= 1)):
        raise ValueError(f"neighbours must be None (complete graph), an int >= 1 or 'log', got {neighbours!r}")
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold must be None, an int or a float fraction, got {threshold!r}")
    if isinstance(threshold, int) and threshold < 1:
        raise ValueError(f"threshold must be >= 1, got {threshold}")
    if isinstance(threshold, float) and not 0.5 < threshold <= 1.0:
        raise ValueError(f"a fractional threshold must be in (0.5, 1], got {threshold}")


@dataclass(frozen=True)
class Neighbourhoods:
    """The neighbour graph of one round and its share threshold.

    Attributes:
        degree: number of neighbours of every client (k').
        threshold: t, shares needed to reconstruct any client's secret.
        adjacency: client id -> sorted tuple of its neighbours (never itself); read-only.
    """

    degree: int
    threshold: int
    adjacency: Mapping[int, tuple[int, ...]]

    def __reduce__(self) -> tuple:
        """Picklable by plain ``pickle`` (a read-only mapping is not): rebuilt from a dict copy."""
        return _rebuild, (self.degree, self.threshold, dict(self.adjacency))

    def of(self, cid: int) -> tuple[int, ...]:
        """N(cid): the neighbours of cid (sorted)."""
        return self.adjacency[cid]

    def closed(self, cid: int) -> frozenset[int]:
        """N[cid] = {cid} + N(cid): the holders of cid's shares."""
        return frozenset(self.adjacency[cid]) | {cid}

    def restricted(self, clients: tuple[int, ...]) -> Neighbourhoods:
        """The graph induced on ``clients`` (a subset of this graph's vertices); ``degree`` and t stay this
        graph's (a session's graph restricted to one round's clients keeps the session's threshold)."""
        keep = set(clients)
        return Neighbourhoods(self.degree, self.threshold, MappingProxyType(
            {c: tuple(v for v in self.adjacency[c] if v in keep) for c in clients}))

    def components(self, alive: set[int]) -> list[set[int]]:
        """Connected components of the graph restricted to ``alive`` (each a set of ids)."""
        left, parts = set(alive), []
        while left:
            todo, part = [left.pop()], set()
            while todo:
                c = todo.pop()
                part.add(c)
                fresh = [v for v in self.adjacency[c] if v in left]
                left.difference_update(fresh)
                todo.extend(fresh)
            parts.append(part)
        return parts


def _rebuild(degree: int, threshold: int, adjacency: dict[int, tuple[int, ...]]) -> Neighbourhoods:
    return Neighbourhoods(degree, threshold, MappingProxyType(adjacency))


def check_holders(graph: Neighbourhoods, alive: set[int], owners: set[int], closed: bool, what: str, phase: str,
                  round_id: int) -> None:
    """DropoutError unless every owner in ``owners`` has >= t share holders among ``alive`` (holders: N[u]
    when ``closed``, else N(u)); ``what`` and ``phase`` word the error, which names the owner and round."""
    t = graph.threshold
    if not alive:
        raise DropoutError(f"no client left after phase {phase!r}", round_id=round_id)
    for u in sorted(owners):
        holders = (graph.closed(u) if closed else set(graph.of(u))) & alive
        if len(holders) < t:
            raise DropoutError(f"{what}: {len(holders)} holders of this client's shares remain "
                               f"({sorted(holders)}), threshold t={t}; no result is released", client=u,
                               round_id=round_id)


def neighbourhoods(spec: RoundSpec, neighbours: NeighbourSetting, threshold: ThresholdSetting) -> Neighbourhoods:
    """Graph and threshold of a round; raises InputError (field 'clients' or 'threshold') when impossible."""
    return _build(spec.session, spec.round_id, spec.clients, neighbours, threshold, spec.round_id)


def session_neighbourhoods(session: int, members: tuple[int, ...], neighbours: NeighbourSetting,
                           threshold: ThresholdSetting, round_id: int) -> Neighbourhoods:
    """Graph and threshold of a session-mode setup (protocols/masking.md §Session mode): the graph of
    ``members`` derived from the session id alone (the round id in the seed is 0), so every setup of a
    session over the same members has the same graph. ``round_id`` (the setup's first round) only names
    errors: InputError (field 'clients' or 'threshold') as ``neighbourhoods``."""
    return _build(session, 0, members, neighbours, threshold, round_id)


def _build(session: int, graph_round: int, clients: tuple[int, ...], neighbours: NeighbourSetting,
           threshold: ThresholdSetting, round_id: int) -> Neighbourhoods:
    n = len(clients)
    if n < 2:
        raise InputError(f"masking needs at least 2 clients, got {n}: the sum of one input is that input",
                         round_id=round_id, field="clients")
    degree = _degree(n, neighbours)
    t = _threshold(degree + 1, threshold, round_id)
    return Neighbourhoods(degree, t, _adjacency(session, graph_round, clients, degree))


def _degree(n: int, neighbours: NeighbourSetting) -> int:
    if neighbours is None:
        return n - 1
    k = 2 * math.ceil(math.log2(n)) if neighbours == "log" else neighbours
    k += k % 2
    return min(k, n - 1)


def _threshold(m: int, threshold: ThresholdSetting, round_id: int) -> int:
    if threshold is None:
        t = 2 * m // 3 + 1
    elif isinstance(threshold, float):
        t = math.ceil(threshold * m)
    else:
        t = threshold
    if not m / 2 < t <= m:
        raise InputError(f"threshold t={t} impossible for neighbourhoods of m={m} (client + {m - 1} neighbours):"
                         f" need m/2 < t <= m", round_id=round_id, field="threshold")
    return t


@lru_cache(maxsize=64)
def _adjacency(session: int, round_id: int, clients: tuple[int, ...], degree: int) -> Mapping[int, tuple[int, ...]]:
    n = len(clients)
    if degree >= n - 1:
        return MappingProxyType({c: tuple(v for v in clients if v != c) for c in clients})
    label = b"secure_fal/masking/v1/graph" + struct.pack(">QI", session, round_id)
    seed = hashlib.sha256(label + struct.pack(f">{n}I", *clients)).digest()
    placed = [clients[i] for i in permutation(seed, n)]  # placed[p] = client at circle position p
    adjacency: dict[int, set[int]] = {c: set() for c in clients}
    for p, c in enumerate(placed):
        for step in range(1, degree // 2 + 1):
            other = placed[(p + step) % n]
            adjacency[c].add(other)
            adjacency[other].add(c)
    return MappingProxyType({c: tuple(sorted(vs)) for c, vs in adjacency.items()})


def _check_peers(ids: Collection[int], allowed: Collection[int], me: int, threshold: int, round_id: int,
                 field: str, outside: str, too_few: str) -> None:
    others = sorted(set(ids) - set(allowed))
    if others:
        raise MessageError(outside.format(ids=others, me=me), client=others[0], round_id=round_id, field=field)
    if len(ids) + 1 < threshold:
        raise DropoutError(f"only {len(ids)} neighbours {too_few}, {threshold - 1} needed", client=me,
                           round_id=round_id, field=field)


def check_peer_keys(ids: Collection[int], neighbours: Collection[int], me: int, threshold: int, round_id: int) -> None:
    """Client ``me``'s check of the peers whose public keys the server relays (classic round or setup): only its
    ``neighbours`` (MessageError naming the first other one, field 'keys'), and at least t - 1 of them, so that
    its secrets get t holders (DropoutError, field 'keys')."""
    _check_peers(ids, neighbours, me, threshold, round_id, "keys", "keys of {ids}, who are not neighbours of "
                 "client {me}", "advertised keys")


def check_relayed_shares(ids: Collection[int], keyed: Collection[int], me: int, threshold: int,
                         round_id: int) -> None:
    """Client ``me``'s check of the senders of relayed shares (classic round or setup): only peers it derived a
    share key with (MessageError naming the first other one, field 'ciphertexts'), and at least t - 1 of them
    (DropoutError, field 'ciphertexts')."""
    _check_peers(ids, keyed, me, threshold, round_id, "ciphertexts", "shares from {ids}, to whom client {me} gave "
                 "no keys", "shared")
