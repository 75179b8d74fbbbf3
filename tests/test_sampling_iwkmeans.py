"""IWKMeans: margin candidates, fixed labeled centres, one distinct sample per new centre."""

import pytest
import torch

from secure_fal.sampling import IWKMeansSampler, PoolView, get_sampler, margin_score


def make_pool(n=300, dim=4, n_labeled=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=g, dtype=torch.float64)
    probs = torch.softmax(3 * torch.randn(n, 5, generator=g, dtype=torch.float64), dim=1)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[:n_labeled]] = True
    return PoolView(probs, emb, labeled)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta", [1, 2, 10])
def test_distinct_picks_among_stage_one_candidates_only(seed, beta):
    pool, budget = make_pool(seed=seed), 12
    score = margin_score(pool.probs)
    score[pool.labeled_mask] = -1
    candidates = set(torch.argsort(score, descending=True)[:beta * budget].tolist())
    picked = IWKMeansSampler(beta=beta).select(pool, budget, torch.Generator().manual_seed(seed)).tolist()
    assert len(set(picked)) == budget
    assert set(picked) <= candidates
    if beta == 1:
        assert set(picked) == candidates


def blobs(labeled_blobs):
    """Four tight blobs of 10 points; points of ``labeled_blobs`` are labeled (all of them)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], dtype=torch.float64)
    blob = torch.arange(40) // 10
    emb = centres[blob] + 0.1 * torch.randn(40, 2, generator=g, dtype=torch.float64)
    probs = torch.softmax(0.1 * torch.randn(40, 3, generator=g, dtype=torch.float64), dim=1)
    labeled = torch.isin(blob, torch.tensor(labeled_blobs))
    return PoolView(probs, emb, labeled), blob


@pytest.mark.parametrize("seed", range(5))
def test_labeled_points_are_fixed_centres(seed):
    # blobs 0 and 1 are covered by labeled centres: the two new centres go to blobs 2 and 3
    pool, blob = blobs([0, 1])
    labeled = pool.labeled_mask.clone()
    labeled[[0, 10]] = False  # one unlabeled point left in each covered blob
    pool = PoolView(pool.probs, pool.embeddings, labeled)
    picked = IWKMeansSampler(beta=20).select(pool, 2, torch.Generator().manual_seed(seed))
    assert sorted(blob[picked].tolist()) == [2, 3]


@pytest.mark.parametrize("seed", range(5))
def test_one_pick_per_cluster_without_labeled(seed):
    pool, blob = blobs([])
    picked = IWKMeansSampler().select(pool, 4, torch.Generator().manual_seed(seed))
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3]


def test_zero_lloyd_iterations_and_registry_defaults():
    sampler = get_sampler("iwkmeans")
    assert (sampler.beta, sampler.max_iter, sampler.tol) == (10, 10, 1e-4)
    picked = IWKMeansSampler(max_iter=0).select(make_pool(), 10, torch.Generator().manual_seed(0))
    assert len(set(picked.tolist())) == 10


@pytest.mark.parametrize("kwargs", [{"beta": 0}, {"max_iter": -1}, {"tol": -1.0}])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        IWKMeansSampler(**kwargs)


def reference_lloyd(x, w, fixed, centres, iterations):
    """Plain numpy weighted Lloyd with fixed centres: full distance matrix every iteration."""
    for _ in range(iterations):
        d_new = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        d_fixed = ((x[:, None, :] - fixed[None]) ** 2).sum(-1).min(1)
        nearest, mine = d_new.argmin(1), d_new.min(1) < d_fixed
        new = centres.copy()
        for k in range(len(centres)):
            members = mine & (nearest == k)
            if w[members].sum() > 0:
                new[k] = (w[members, None] * x[members]).sum(0) / w[members].sum()
        centres = new
    return centres


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("iterations", [1, 3, 25])
def test_lloyd_matches_a_full_recomputation_reference(seed, iterations):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 3, generator=g, dtype=torch.float64)
    fixed = torch.randn(10, 3, generator=g, dtype=torch.float64)
    w = torch.rand(200, generator=g, dtype=torch.float64)
    w[:20] = 0.0
    init = x[torch.randperm(200, generator=g)[:15]]
    fixed_sq = torch.cdist(x, fixed).min(dim=1).values ** 2
    got = IWKMeansSampler(max_iter=iterations, tol=0.0)._lloyd(x, w, fixed_sq, init)
    expected = reference_lloyd(x.numpy(), w.numpy(), fixed.numpy(), init.numpy(), iterations)
    assert torch.allclose(got, torch.from_numpy(expected), atol=1e-12)
