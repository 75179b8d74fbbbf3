"""The mask PRG (secure_fal/secagg/masking/prg.py; protocols/masking.md §PRG)."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secure_fal.secagg.masking.prg import NONCE, SEED_BYTES, MaskAccumulator, expand, permutation

SEED = bytes(range(32))


def test_expand_is_the_chacha20_keystream_read_as_little_endian_words():
    # masking.md §PRG: PRG(seed) = ChaCha20(key=seed, nonce=NONCE) keystream, 8 little-endian bytes per value
    stream = Cipher(algorithms.ChaCha20(SEED, NONCE), None).encryptor().update(bytes(8 * 5))
    expected = [int.from_bytes(stream[8 * i:8 * i + 8], "little") for i in range(5)]
    assert expand(SEED, 5).tolist() == expected


def test_expand_regression_vector():
    # masking.md §PRG: the published test vector, so that other implementations can check theirs
    assert expand(SEED, 2).tolist() == [0xBC11BBBEA3E0E1BB, 0x6C14E26CCCD9A933]


def test_expand_is_deterministic_and_prefix_stable():
    a = expand(SEED, 1000)
    assert a.dtype == np.uint64 and a.shape == (1000,)
    assert np.array_equal(a, expand(SEED, 1000))
    assert np.array_equal(expand(SEED, 10), a[:10])


def test_different_seeds_give_unrelated_streams():
    a = expand(SEED, 4096)
    b = expand(bytes([SEED[0] ^ 1]) + SEED[1:], 4096)
    assert not np.any(a == b)
    # about half of the 64 * 4096 bits differ
    differing = np.unpackbits((a ^ b).view(np.uint8)).mean()
    assert abs(differing - 0.5) < 0.01


def test_words_are_uniform_bits():
    bits = np.unpackbits(expand(SEED, 50_000).view(np.uint8)).reshape(-1, 64)
    # each of the 64 bit positions: mean 0.5, std 1/sqrt(4 * 50000) = 0.0022; 6 sigma
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.014)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), "x" * 32])
def test_seed_must_be_32_bytes(bad):
    with pytest.raises(ValueError, match="32 bytes"):
        expand(bad, 3)
    with pytest.raises(ValueError, match="32 bytes"):
        MaskAccumulator(np.zeros(3, dtype=np.uint64)).add(bad)


def test_accumulator_adds_and_subtracts_masks_mod_2_64_without_touching_its_start():
    start = np.arange(1000, dtype=np.uint64)
    acc = MaskAccumulator(start)
    s1, s2 = bytes(32), bytes([7]) * 32
    acc.add(s1)
    acc.add(s2)
    acc.sub(s1)
    with np.errstate(over="ignore"):
        expected = start + expand(s2, 1000)
    assert np.array_equal(acc.total, expected)
    assert np.array_equal(start, np.arange(1000, dtype=np.uint64))
    mask = np.uint64(2**40 - 1)
    assert np.array_equal(acc.reduce(mask), expected & mask)
    acc.sub(s2)
    assert np.array_equal(acc.total, start)


def test_permutation_is_a_deterministic_permutation():
    p = permutation(SEED, 100)
    assert sorted(p.tolist()) == list(range(100))
    assert np.array_equal(p, permutation(SEED, 100))
    assert not np.array_equal(p, permutation(bytes(SEED_BYTES), 100))
    assert p.tolist() != list(range(100))
