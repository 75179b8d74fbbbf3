"""Bytes and seconds of the masking protocol (protocols/masking.md §Messages and §Cost)."""

import numpy as np
import pytest

from secure_fal.secagg import Aggregator, Faults
from secure_fal.secagg.masking.protocol import MaskingProtocol


def inputs(n, length, bound, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(-bound, bound, length) for c in range(n)}


@pytest.mark.parametrize("drop", [{}, {5: "masked_input"}])
def test_bytes_on_the_wire_match_the_message_sizes_in_the_spec(drop):
    # masking.md §Messages: header 30; Advertise 76; PeerKeys 4 + 76 d; Shares 4 + 94 d + 36; RelayedShares
    # 4 + 94 d; MaskedInput 4 + ceil(L k / 8); UnmaskRequest 12 + 8 (s + r); Unmask 8 + 45 (s + r)
    n, length = 6, 1000
    res = Aggregator(MaskingProtocol(), range(n)).sum(inputs(n, length, 1.0), bound=1.0, faults=Faults(drop=drop))
    packed = 3500   # FixedPoint(1.0, 24, 6): 6 x 2^24 needs 27 bits, + sign: k = 28; 1000 x 28 bits = 3,500 bytes
    d = n - 1
    for c in range(n):
        if c in drop:
            continue
        dropped = len(drop)            # each survivor is asked for the s_sk shares of every dropped neighbour
        survivors = n - dropped        # ... and the b-shares of every survivor, itself included
        up = 30 + 76 + 30 + 4 + 94 * d + 36 + 30 + 4 + packed + 30 + 8 + 45 * (survivors + dropped)
        down = 30 + 30 + 4 + 76 * d + 30 + 4 + 94 * d + 30 + 12 + 8 * (survivors + dropped)  # 5 did share
        assert res.report.bytes_up[c] == up
        assert res.report.bytes_down[c] == down


@pytest.mark.parametrize("bound,k", [(1.0, 29), (100.0, 35)])
@pytest.mark.parametrize("neighbours", [None, "log"])
def test_a_client_sends_at_most_twice_the_bytes_of_float32_for_large_vectors(bound, k, neighbours):
    # masking.md §Cost: k/8 bytes per value (k = 29 or 35 here: 10 x bound x 2^24 and a sign bit) plus
    # O(neighbours) bytes per round
    k_bytes = k / 8
    n, length = 10, 100_000
    res = Aggregator(MaskingProtocol(neighbours=neighbours), range(n)).sum(inputs(n, length, bound), bound=bound)
    for c in range(n):
        per_value = (res.report.bytes_up[c] + res.report.bytes_down[c]) / length
        assert k_bytes < per_value < k_bytes + 0.05 and per_value <= 2 * 4


MEASURED = [  # (clients, neighbours, dropouts); L = 10^6, bound 100 -> k = 40
    (10, None, {}),
    (10, "log", {}),
    (11, 10, {}),
    (10, None, {1: "masked_input", 2: "masked_input", 3: "unmask"}),
]


@pytest.mark.slow
@pytest.mark.parametrize("n,neighbours,drop", MEASURED)
def test_cost_of_a_round_of_a_million_values(n, neighbours, drop):
    """Prints the figures of masking.md §Cost (run with -s) and checks the targets there: <= 2x the bytes
    of float32 per client, <= 0.2 s of client time for L = 10^6 and about 10 neighbours."""
    length, bound = 1_000_000, 100.0
    xs = inputs(n, length, bound)
    agg = Aggregator(MaskingProtocol(neighbours=neighbours), range(n), seed=0)
    agg.sum({c: x[:10] for c, x in xs.items()}, bound=bound)          # warm-up round
    rep = agg.sum(xs, bound=bound, faults=Faults(drop=drop)).report
    alive = [c for c in range(n) if c not in drop]

    def median(f):
        return float(np.median([f(c) for c in alive]))

    up, down = median(lambda c: rep.bytes_up[c]) / length, median(lambda c: rep.bytes_down[c]) / length
    client = {p: median(lambda c: rep.client_seconds[c][p]) for p in MaskingProtocol.CLIENT_PHASES}
    print(f"\nn={n} L={length} neighbours={neighbours} drop={drop}: bytes/value/client up {up:.4f} "
          f"down {down:.4f}; client s (median) {({p: round(v, 4) for p, v in client.items()})} "
          f"total {sum(client.values()):.4f}; server s {({p: round(v, 4) for p, v in rep.server_seconds.items()})} "
          f"total {rep.server_total_seconds:.4f}")
    assert up + down <= 2 * 4
    assert sum(client.values()) <= 0.2
