"""10 clients x 1,000,000 values: bytes per value per client and seconds per phase, plaintext vs CKKS (our
parameters and TenSEAL's defaults). Slow; `pytest -m slow tests/test_ckks_benchmark.py -s` prints the table
quoted in protocols/ckks.md."""

import numpy as np
import pytest

from secure_fal.secagg import Aggregator
from secure_fal.secagg.ckks.protocol import CKKSProtocol
from secure_fal.secagg.ckks.params import CKKSParams

N_CLIENTS, LENGTH = 10, 1_000_000


def run(protocol, xs):
    agg = Aggregator(protocol, range(N_CLIENTS), seed=0)
    res = agg.sum(xs, bound=1.0)
    r = res.report
    others = [c for c in range(N_CLIENTS) if r.client_seconds[c].get("decrypt", 0) == 0]
    decryptors = [c for c in range(N_CLIENTS) if c not in others]
    up = np.mean([r.bytes_up[c] for c in others]) / LENGTH
    down = np.mean([r.bytes_down[c] for c in others]) / LENGTH
    phases = {p: float(np.mean([r.client_seconds[c].get(p, 0.0) for c in others]))
              for p in agg.protocol.CLIENT_PHASES}
    row = {"up B/value": up, "down B/value": down, "client s": phases, "server s": dict(r.server_seconds)}
    if decryptors:
        (d,) = decryptors
        row["decryptor"] = {"up B/value": r.bytes_up[d] / LENGTH, "down B/value": r.bytes_down[d] / LENGTH,
                            "decrypt s": r.client_seconds[d]["decrypt"]}
    if isinstance(agg.protocol, CKKSProtocol):
        row["setup"] = agg.protocol.setup_cost
    return res.total, row


@pytest.mark.slow
def test_ten_clients_one_million_values():
    rng = np.random.default_rng(0)
    xs = {c: rng.uniform(-1, 1, LENGTH) for c in range(N_CLIENTS)}
    plain, row = run("plaintext", xs)
    rows = {"plaintext": row}
    ours, rows["ckks (4096, [60], auto scale, symmetric)"] = run(CKKSProtocol(mode="dealer"), xs)
    theirs, rows["ckks TenSEAL default (8192, [60,40,40,60], 2^40, public key)"] = run(
        CKKSProtocol(CKKSParams.tenseal_default(), mode="dealer"), xs)
    for name, r in rows.items():
        print(f"\n{name}")
        for key, value in r.items():
            print(f"  {key}: {value}")
    assert np.array_equal(ours, plain)
    assert np.max(np.abs(theirs - plain)) < 1e-5
    assert rows["ckks (4096, [60], auto scale, symmetric)"]["up B/value"] <= 8 * 4
