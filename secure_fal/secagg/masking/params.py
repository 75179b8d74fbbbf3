"""SecAgg+ degree and threshold from a target corruption fraction and dropout rate (protocols/masking.md
§Parameters), after the analysis of Bell et al. 2020 ("Secure single-server aggregation with (poly)logarithmic
overhead", §3-4), adapted to this package's graph and to an active server.

Setting. n clients; the server may collude with a fraction gamma of them (corruption) and, independently, each
client drops out with probability delta. A client w's secrets are shared among its closed neighbourhood N[w] of
m = k + 1 clients with threshold t. With the consistency round (active mode) every honest holder reveals, for
w, either b_w shares (w in the signed U3) or s_sk_w shares (w not in it), never both, and two different U3 can
both gather t signatures from N[w] only if 2t - m <= the corrupt members of N[w] (quorum intersection). So the
adversary learns nothing about x_w beyond the sum when N(w) holds fewer than 2t - m corrupt clients (this also
gives fewer than t: it cannot rebuild either secret alone), and the round finishes when at least t members of
N(w) survive. With the graph's random placement (``graph.py``) N(w) is a uniform k-subset of the others, whose
corrupt count is hypergeometric; its tail is bounded by the binomial one (Hoeffding 1963), used here:

    privacy      n * P[Bin(k, gamma) >= 2t - m] <= 2^-SIGMA        (no client of the n exposed)
    correctness  n * P[Bin(k, 1 - delta) < t]  <= 2^-ETA           (no neighbourhood too thin)

The complete graph (k = n - 1, classic SecAgg) needs no probability: the adversary holds at most floor(gamma n)
clients, so privacy is floor(gamma n) < 2t - n. ``choose`` returns the smallest even k (then the complete graph)
for which some t satisfies both, with the smallest such t (most dropouts tolerated); ``check_private`` is the
privacy condition alone, which a node applies to whatever parameters a round asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

SIGMA = 40   # privacy: bits of security against any of the n clients being exposed
ETA = 20     # correctness: bits against a round failing from random dropouts


def _log_binom_pmf(k: int, i: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if i == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if i == k else -math.inf
    return (math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1) + i * math.log(p)
            + (k - i) * math.log1p(-p))


def _fewest_corrupt_to_fear(n: int, k: int, corruption: float) -> int:
    """c_k: the smallest count x with n * P[Bin(k, gamma) >= x] <= 2^-SIGMA (complete graph: floor(gamma n) + 1)."""
    if k >= n - 1:
        return math.floor(corruption * n) + 1
    tail, x = 0.0, k + 1          # tail = P[Bin >= x]
    while x > 0:
        grown = tail + math.exp(_log_binom_pmf(k, x - 1, corruption))
        if n * grown > 2.0 ** -SIGMA:
            break
        tail, x = grown, x - 1
    return x


def private_enough(n: int, k: int, t: int, corruption: float) -> bool:
    """The privacy condition of the module docstring for n clients, degree k (n - 1: complete) and threshold t."""
    m = k + 1
    return m / 2 < t <= m and 2 * t - m >= _fewest_corrupt_to_fear(n, k, corruption)


def check_private(n: int, k: int, t: int, corruption: float, *, round_id: int | None = None,
                  client: int | None = None) -> None:
    """InputError (field 'threshold', naming the round and client) unless ``private_enough``: the parameters a
    round asks for are outside the table for this corruption fraction."""
    if not private_enough(n, k, t, corruption):
        need = _fewest_corrupt_to_fear(n, k, corruption)
        raise InputError(f"n={n}, degree k={k}, threshold t={t} refused: with corruption fraction {corruption} "
                         f"privacy needs 2t - (k+1) >= {need} (protocols/masking.md §Parameters)", client=client,
                         round_id=round_id, field="threshold")


def _largest_reliable_t(n: int, k: int, dropout: float) -> int:
    """The largest t with n * P[Bin(k, 1 - delta) < t] <= 2^-ETA (0 when none)."""
    below, t = 0.0, 0
    for s in range(k + 1):          # below = P[Bin < s + 1] after adding s
        below += math.exp(_log_binom_pmf(k, s, 1.0 - dropout))
        if n * below > 2.0 ** -ETA:
            return s
        t = s + 1
    return t


@dataclass(frozen=True)
class Choice:
    """Degree and threshold for n clients.

    Attributes:
        degree: k (n - 1: the complete graph).
        threshold: t.
        failure: n * P[Bin(k, 1 - delta) < t], the bound on the probability that random dropouts fail a round (at
            most 2^-ETA, except for a complete graph chosen because no degree reaches it: then as computed).
    """

    degree: int
    threshold: int
    failure: float


def _smallest_private_t(n: int, k: int, corruption: float) -> int | None:
    m = k + 1
    t = max(math.floor(m / 2) + 1, math.ceil((m + _fewest_corrupt_to_fear(n, k, corruption)) / 2))
    return t if t <= m else None


def _failure(n: int, k: int, t: int, dropout: float) -> float:
    return min(1.0, n * sum(math.exp(_log_binom_pmf(k, s, 1.0 - dropout)) for s in range(t)))


def choose(n: int, corruption: float, dropout: float) -> Choice:
    """The smallest even degree k in 2 .. n - 2 (binary search) with a t meeting both conditions, and the smallest
    such t; else the complete graph with the smallest private t (privacy is never traded: its round failure bound
    may then exceed 2^-ETA, as for every n below ~30). InputError (field 'threshold') when not even the complete
    graph is private (floor(gamma n) >= n - 1) or gamma / delta are outside [0, 0.5)."""
    if not (0.0 <= corruption < 0.5 and 0.0 <= dropout < 0.5):
        raise InputError(f"corruption {corruption} and dropout {dropout} must be in [0, 0.5)", field="threshold")
    lo, hi, best = 1, (n - 2) // 2, None   # k = 2j, j in [lo, hi]
    while lo <= hi:
        j = (lo + hi) // 2
        t = _smallest_private_t(n, 2 * j, corruption)
        if t is not None and t <= _largest_reliable_t(n, 2 * j, dropout):
            best, hi = Choice(2 * j, t, _failure(n, 2 * j, t, dropout)), j - 1
        else:
            lo = j + 1
    if best is not None:
        return best
    t = _smallest_private_t(n, n - 1, corruption) if n >= 2 else None
    if t is None:
        raise InputError(f"no threshold makes a sum of {n} clients private at corruption {corruption}",
                         field="threshold")
    return Choice(n - 1, t, _failure(n, n - 1, t, dropout))


def table(sizes: tuple[int, ...] = (10, 100, 1000, 10_000),
          targets: tuple[tuple[float, float], ...] = ((0.0, 0.05), (0.05, 0.05), (0.1, 0.1), (0.2, 0.1),
                                                      (0.33, 0.05))) -> list[dict]:
    """Rows {n, corruption, dropout, degree, threshold, failure}: the table of protocols/masking.md §Parameters."""
    rows = []
    for gamma, delta in targets:
        for n in sizes:
            c = choose(n, gamma, delta)
            rows.append(dict(n=n, corruption=gamma, dropout=delta, degree=c.degree, threshold=c.threshold,
                             failure=c.failure))
    return rows
