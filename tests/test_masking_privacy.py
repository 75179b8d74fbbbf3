"""What the server sees of each input: masked vectors that look uniform (protocols/masking.md §What each
party learns)."""

import numpy as np
import pytest
from scipy.stats import chisquare

from secure_fal.secagg import Aggregator, Faults
from secure_fal.secagg.encoding import FixedPoint
from secure_fal.secagg.masking.protocol import MaskingProtocol
from secure_fal.secagg.masking.messages import KINDS, PROTOCOL_ID, MaskedInput
from secure_fal.secagg.messages import decode

L = 50_000


def masked_vectors(xs, bound, protocol):
    """Run one round; return (the y_u the server received, as ring elements; the encoding; the SumResult)."""
    seen = {}

    def spy(header, data):
        if header.kind == MaskedInput.KIND:
            seen[header.sender] = decode(data, KINDS, PROTOCOL_ID)[1].values
        return [data]

    agg = Aggregator(protocol, list(xs), seed=4)
    res = agg.sum(xs, bound=bound, faults=Faults(in_flight=spy))
    encoding = FixedPoint(bound, agg.frac_bits, len(xs))   # the round's public encoding
    assert set(seen) == set(xs)
    return {c: encoding.unpack(v, len(xs[c])) for c, v in seen.items()}, encoding, res


def uniformity_p_value(values: np.ndarray, k: int) -> float:
    top = (values >> np.uint64(k - 8)).astype(np.int64)
    return chisquare(np.bincount(top, minlength=256)).pvalue


@pytest.mark.parametrize("neighbours", [None, 2])
def test_masked_inputs_of_constant_vectors_look_uniform(neighbours):
    # masking.md §What each party learns: y_u is uniform on Z_2^k whatever x_u is
    xs = {0: np.zeros(L), 1: np.full(L, 0.5), 2: np.ones(L), 3: -np.ones(L), 4: np.zeros(L)}
    ys, enc, res = masked_vectors(xs, 1.0, MaskingProtocol(neighbours=neighbours))
    k = enc.ring_bits
    assert np.array_equal(res.total, sum(xs.values()))
    for c, y in ys.items():
        x_ring = enc.to_ring(enc.quantize(xs[c]))
        assert np.mean(y == x_ring) < 1e-3        # about L / 2^k coincidences expected
        assert uniformity_p_value(y, k) > 1e-6    # chi-square on the top byte
        bits = (y[:, None] >> np.arange(k, dtype=np.uint64)) & np.uint64(1)
        assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 6 / np.sqrt(4 * L))


def test_the_sum_of_masked_inputs_is_still_masked_until_the_self_masks_are_removed():
    # pairwise masks cancel in the sum, self-masks do not: the server learns the sum only in the unmask phase
    xs = {c: np.zeros(L) for c in range(3)}
    ys, enc, res = masked_vectors(xs, 1.0, MaskingProtocol())
    total = sum(ys.values()) & enc.ring_mask
    assert uniformity_p_value(total, enc.ring_bits) > 1e-6
    assert np.array_equal(res.total, np.zeros(L))


def test_masks_are_fresh_in_every_round():
    xs = {c: np.zeros(1000) for c in range(3)}
    protocol = MaskingProtocol()
    first, _, _ = masked_vectors(xs, 1.0, protocol)
    second, _, _ = masked_vectors(xs, 1.0, protocol)
    assert all(np.mean(first[c] == second[c]) < 0.01 for c in xs)
