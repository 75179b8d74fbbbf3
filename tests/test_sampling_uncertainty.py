"""Margin, entropy and least-confidence scores and their top-b picks on hand-made examples."""

import math

import pytest
import torch

from secure_fal.sampling import PoolView, entropy_score, get_sampler, least_confidence_score, margin_score

PROBS = torch.tensor([
    [0.50, 0.45, 0.05],  # margin .95, least-confidence .50, entropy .779
    [0.90, 0.05, 0.05],  # margin .15, least-confidence .10, entropy .359
    [0.34, 0.33, 0.33],  # the most uncertain of all, but labeled
    [0.60, 0.20, 0.20],  # margin .60, least-confidence .40, entropy .865
    [0.45, 0.10, 0.45],  # margin 1.0, least-confidence .55, entropy .864
    [0.40, 0.30, 0.30],  # margin .90, least-confidence .60, entropy .991
], dtype=torch.float64)
LABELED = torch.tensor([False, False, True, False, False, False])


def pool():
    return PoolView(PROBS, torch.zeros(6, 2, dtype=torch.float64), LABELED)


def test_scores_match_their_definitions():
    assert torch.allclose(margin_score(PROBS), torch.tensor([.95, .15, .99, .6, 1., .9], dtype=torch.float64))
    assert torch.allclose(least_confidence_score(PROBS), torch.tensor([.5, .1, .66, .4, .55, .6], dtype=torch.float64))
    expected = [-sum(p * math.log(p) for p in row) / math.log(3) for row in PROBS.tolist()]
    assert torch.allclose(entropy_score(PROBS), torch.tensor(expected, dtype=torch.float64))
    assert entropy_score(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).item() == 0.0  # 0 log 0 = 0
    assert entropy_score(torch.full((1, 4), 0.25)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name, expected", [
    ("margin", [4, 0, 5]),
    ("entropy", [5, 3, 4]),
    ("least-confidence", [5, 4, 0]),
])
def test_top_b_on_hand_made_example(name, expected):
    assert get_sampler(name).select(pool(), 3, torch.Generator()).tolist() == expected


@pytest.mark.parametrize("name", ["margin", "entropy", "least-confidence"])
def test_ties_go_to_the_lower_index(name):
    flat = PoolView(torch.full((8, 4), 0.25), torch.zeros(8, 2), torch.tensor([True] + [False] * 7))
    assert get_sampler(name).select(flat, 3, torch.Generator()).tolist() == [1, 2, 3]
