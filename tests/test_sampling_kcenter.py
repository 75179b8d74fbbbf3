"""k-center greedy against a brute-force reference and the 2-approximation guarantee."""

import itertools

import numpy as np
import pytest
import torch

from secure_fal.sampling import PoolView, get_sampler
from secure_fal.sampling.kcenter import farthest_first
from secure_fal.sampling.space import FeatureSpace


def reference_farthest_first(x, labeled, budget, first=None):
    """Plain numpy farthest-first: exact distances, Python loops."""
    unlabeled = [i for i in range(len(x)) if not labeled[i]]
    centres = [i for i in range(len(x)) if labeled[i]]
    picks = []
    if first is not None:
        picks.append(first)
        centres.append(first)
    while len(picks) < budget:
        best, best_d = None, -1.0
        for i in unlabeled:
            if i in picks:
                continue
            d = min(np.sqrt(((x[i] - x[c]) ** 2).sum()) for c in centres)
            if d > best_d:
                best, best_d = i, d
        picks.append(best)
        centres.append(best)
    return picks


def kcenter_cost(x, centres, points):
    return max(min(np.sqrt(((x[p] - x[c]) ** 2).sum()) for c in centres) for p in points)


def random_pool(n, dim, n_labeled, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[:n_labeled]] = True
    probs = torch.full((n, 2), 0.5, dtype=torch.float64)
    return PoolView(probs, x, labeled)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_reference_with_labeled_centres(seed):
    pool = random_pool(40, 3, 6, seed)
    picked = get_sampler("kcenter").select(pool, 12, torch.Generator().manual_seed(seed))
    assert picked.tolist() == reference_farthest_first(pool.embeddings.numpy(), pool.labeled_mask.tolist(), 12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_reference_without_labeled(seed):
    pool = random_pool(40, 3, 0, seed)
    picked = get_sampler("kcenter").select(pool, 12, torch.Generator().manual_seed(seed)).tolist()
    assert picked == reference_farthest_first(pool.embeddings.numpy(), [False] * 40, 12, first=picked[0])


def test_first_pick_without_labeled_depends_on_seed():
    pool = random_pool(40, 3, 0, 0)
    firsts = {get_sampler("kcenter").select(pool, 1, torch.Generator().manual_seed(s)).item() for s in range(6)}
    assert len(firsts) > 1


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n_labeled", [0, 2])
def test_two_approximation_of_optimal_k_center(seed, n_labeled):
    pool = random_pool(11, 2, n_labeled, 100 + seed)
    x, k = pool.embeddings.numpy(), 3
    labeled = pool.labeled_indices().tolist()
    unlabeled = pool.unlabeled_indices().tolist()
    picked = get_sampler("kcenter").select(pool, k, torch.Generator().manual_seed(seed)).tolist()
    greedy = kcenter_cost(x, labeled + picked, unlabeled)
    optimal = min(kcenter_cost(x, labeled + list(s), unlabeled) for s in itertools.combinations(unlabeled, k))
    assert greedy <= 2 * optimal + 1e-12


def test_duplicate_points_still_give_distinct_picks():
    x = torch.zeros(6, 2)
    picks = farthest_first(FeatureSpace.dense(x), 6, first=2)
    assert sorted(picks.tolist()) == list(range(6))


def test_farthest_first_arguments():
    space = FeatureSpace.dense(torch.randn(5, 2))
    with pytest.raises(ValueError, match="exactly one"):
        farthest_first(space, 2)
    with pytest.raises(ValueError, match="cannot pick 6 of 5"):
        farthest_first(space, 6, first=0)
