"""Shamir secret sharing (secure_fal/secagg/masking/shamir.py; protocols/masking.md §Shamir)."""

import itertools
import os
import random

import pytest
from scipy.stats import chisquare
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_fal.secagg.masking import shamir
from secure_fal.secagg.masking.shamir import ELEMENT_BYTES, P, decode_share, encode_share, reconstruct, split, x_of


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    rng = random.Random(1)
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_field_is_the_smallest_prime_above_2_256():
    # masking.md §Shamir: P = 2^256 + 297, so every 32-byte secret is a field element
    assert P == 2**256 + 297 and _is_probable_prime(P)
    assert not any(_is_probable_prime(2**256 + c) for c in range(1, 297, 2))
    assert ELEMENT_BYTES == 33 and P < 2 ** (8 * ELEMENT_BYTES)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), data=st.data())
def test_any_t_shares_reconstruct(n, data):
    t = data.draw(st.integers(1, n))
    parties = data.draw(st.lists(st.integers(0, 2**31 - 1), min_size=n, max_size=n, unique=True))
    secret = os.urandom(32)
    shares = split(secret, t, parties)
    assert set(shares) == set(parties)
    subsets = list(itertools.combinations(parties, t))
    for subset in random.Random(0).sample(subsets, min(len(subsets), 10)):
        assert reconstruct({c: shares[c] for c in subset}, t) == secret
    assert reconstruct(shares, t) == secret  # more than t: also checked for consistency


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 10), data=st.data())
def test_t_minus_1_shares_are_consistent_with_every_secret(n, data):
    """t-1 shares plus one chosen extra point reconstruct ANY candidate secret: they pin nothing down."""
    t = data.draw(st.integers(2, n))
    parties = list(range(n))
    shares = split(os.urandom(32), t, parties)
    known = {c: shares[c] for c in parties[:t - 1]}
    candidate = os.urandom(32)
    # the polynomial of degree t-1 through (0, candidate) and the known shares, evaluated at a new party
    basis = (0,) + tuple(x_of(c) for c in known)
    values = [int.from_bytes(candidate, "big")] + list(known.values())
    extra_party = n + 5
    extra = shamir._combine(shamir._lagrange(basis, x_of(extra_party)), values)
    assert reconstruct({**known, extra_party: extra}, t) == candidate


def test_fewer_than_t_shares_are_refused():
    shares = split(os.urandom(32), 3, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="2 shares, 3 needed"):
        reconstruct({0: shares[0], 1: shares[1]}, 3)


def test_a_single_altered_share_among_t_plus_1_is_detected():
    # masking.md §Shamir: with t + 1 shares the extra one is checked against the polynomial
    shares = split(os.urandom(32), 4, range(6))
    for victim in range(5):  # the t + 1 = 5 smallest ids are used
        bad = dict(shares)
        bad[victim] = (bad[victim] + 1) % P
        with pytest.raises(ValueError, match="inconsistent"):
            reconstruct(bad, 4)


def test_threshold_1_shares_are_the_secret_and_n_out_of_n_needs_all():
    secret = os.urandom(32)
    assert all(reconstruct({c: y}, 1) == secret for c, y in split(secret, 1, [3, 9]).items())
    shares = split(secret, 5, range(5))
    assert reconstruct(shares, 5) == secret


@pytest.mark.parametrize("secret,t,parties,match", [
    (bytes(31), 1, [0], "32 bytes"),
    (bytes(32), 0, [0], "threshold"),
    (bytes(32), 3, [0, 1], "threshold"),
    (bytes(32), 1, [0, 0], "distinct"),
    (bytes(32), 1, [-1], ">= 0"),
])
def test_split_validates_its_arguments(secret, t, parties, match):
    with pytest.raises(ValueError, match=match):
        split(secret, t, parties)


def test_shares_are_33_bytes_and_decoding_rejects_non_field_elements():
    y = split(os.urandom(32), 2, [0, 1])[0]
    assert decode_share(encode_share(y)) == y and len(encode_share(y)) == 33
    with pytest.raises(ValueError, match="33 bytes"):
        decode_share(bytes(32))
    with pytest.raises(ValueError, match="field element"):
        decode_share(P.to_bytes(33, "big"))
    with pytest.raises(ValueError, match="field element"):
        reconstruct({0: P, 1: 0}, 2)


def test_shares_of_a_fixed_secret_look_uniform():
    # a share f(x) = s + a_1 x with a_1 uniform is uniform on GF(P): chi-square on its top byte (bits 248-255)
    tops = [(split(bytes(32), 2, [0, 1])[0] >> 248) & 0xFF for _ in range(20_000)]
    counts = [tops.count(v) for v in range(256)]
    assert chisquare(counts).pvalue > 1e-6
