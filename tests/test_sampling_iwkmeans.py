"""IWKMeans: margin candidates, fixed labeled centres, one distinct sample per new centre."""

import numpy as np
import pytest
import torch

from secure_fal.sampling import IWKMeansSampler, PoolView, get_sampler, margin_score
from secure_fal.sampling.iwkmeans import MODES
from secure_fal.sampling.minibatch_kmeans import greedy_kmeans_pp, incremental_minibatch_kmeans


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


def test_zero_iterations_and_registry_defaults():
    sampler = get_sampler("iwkmeans")
    assert (sampler.beta, sampler.mode, sampler.max_iter, sampler.batch_size) == (10, "minibatch", 100, 100)
    lloyd = get_sampler("iwkmeans", mode="lloyd")
    assert (lloyd.max_iter, lloyd.tol) == (10, 1e-4)
    for mode in MODES:
        picked = IWKMeansSampler(mode=mode, max_iter=0).select(make_pool(), 10, torch.Generator().manual_seed(0))
        assert len(set(picked.tolist())) == 10


@pytest.mark.parametrize("kwargs", [{"beta": 0}, {"max_iter": -1}, {"tol": -1.0}, {"batch_size": 0},
                                    {"mode": "full"}])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        IWKMeansSampler(**kwargs)


# -- the reference's incremental mini-batch k-means, transcribed independently ------------------------------
# (cardinal 96ee635 kmeans.py: _k_init, _mini_batch_step, IncrementalMiniBatchKMeans.fit,
#  _mini_batch_convergence; OpenAL f6b79bd runs it with n_init=1, batch_size=100, max_iter=100)

def reference_minibatch(x, w, fixed, n_new, rng, batch_size=100, max_iter=100, patience=10, ratio=0.01):
    """Loop-by-loop transcription: one centre at a time, one sample at a time, same order of random draws."""
    n, k_total = len(x), len(fixed) + n_new
    init_size = 3 * batch_size
    if init_size < k_total:
        init_size = 3 * k_total
    init_size = min(init_size, n)
    valid = rng.integers(0, n, init_size)
    xi = x[rng.integers(0, n, init_size)] if init_size < n else x

    def d2(a, b):
        return float(((a - b) ** 2).sum())

    centres = [c.copy() for c in fixed]
    if not len(fixed):
        centres.append(xi[rng.integers(len(xi))].copy())
    closest = np.array([min(d2(p, c) for c in centres) for p in xi])
    trials = 2 + int(np.log(k_total))
    while len(centres) < k_total:
        r = rng.random(trials) * closest.sum()
        cum = np.cumsum(closest)
        ids = [min(int(np.searchsorted(cum, v)), len(xi) - 1) for v in r]
        pots = [np.minimum(closest, [d2(p, xi[i]) for p in xi]) for i in ids]
        best = int(np.argmin([p.sum() for p in pots]))
        closest = pots[best]
        centres.append(xi[ids[best]].copy())
    centres = np.array(centres)
    counts = np.zeros(k_total)
    fixed_ids = set(range(len(fixed)))

    def step(idx, reassign):
        labels = [int(np.argmin([d2(x[i], c) for c in centres])) for i in idx]
        inertia = sum(w[i] * d2(x[i], centres[j]) for i, j in zip(idx, labels))
        if reassign:
            small = counts < ratio * counts.max()
            for j in fixed_ids:
                small[j] = False
            if small.sum() > 0.5 * len(idx):
                small[np.argsort(counts, kind="stable")[int(0.5 * len(idx)):]] = False
            if small.sum():
                new = rng.choice(len(idx), size=int(small.sum()), replace=False)
                centres[small] = x[np.asarray(idx)[new]]
            counts[small] = counts[~small].min()
        for j in range(k_total):
            if j in fixed_ids:
                continue
            members = [i for i, lab in zip(idx, labels) if lab == j]
            mass = sum(w[i] for i in members)
            if mass > 0:
                total = centres[j] * counts[j] + sum(w[i] * x[i] for i in members)
                counts[j] += mass
                centres[j] = total / counts[j]
        return inertia

    step(list(valid), False)
    ewa = best = None
    stale = 0
    for it in range(max_iter * int(np.ceil(n / batch_size))):
        idx = list(rng.integers(0, n, batch_size))
        inertia = step(idx, (it + 1) % (10 + int(counts.min())) == 0) / batch_size
        ewa = inertia if ewa is None else ewa * (1 - min(1.0, 2.0 * batch_size / (n + 1))) + inertia * min(
            1.0, 2.0 * batch_size / (n + 1))
        if best is None or ewa < best:
            best, stale = ewa, 0
        else:
            stale += 1
        if stale >= patience:
            break
    return centres[len(fixed):]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n, n_fixed, n_new, batch", [(60, 5, 6, 16), (40, 0, 4, 100), (90, 30, 9, 20)])
def test_minibatch_kmeans_equals_the_transcribed_reference(seed, n, n_fixed, n_new, batch):
    g = np.random.default_rng(100 + seed)
    x = g.normal(size=(n, 3))
    w = g.random(n)
    fixed = g.normal(size=(n_fixed, 3))
    got = incremental_minibatch_kmeans(x, w, fixed, n_new, np.random.default_rng(seed), batch_size=batch)
    expected = reference_minibatch(x, w, fixed, n_new, np.random.default_rng(seed), batch_size=batch)
    assert np.allclose(got, expected, atol=1e-9)


def test_seeding_ignores_sample_weights():
    # Fixed centre at 0; points 0, 1 and 10. D² = (0, 1, 100): the 3 trials (2 + int(log 2)) pick 10 unless all
    # three land on 1 (probability 1e-6), and 10 leaves the smaller potential (1 vs 81). Weights play no part.
    x = np.array([[0.0], [1.0], [10.0]])
    for seed in range(5):
        assert greedy_kmeans_pp(x, 1, np.zeros((1, 1)), np.random.default_rng(seed)).tolist() == [[10.0]]


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
    got = IWKMeansSampler(mode="lloyd", max_iter=iterations, tol=0.0)._lloyd(x, w, fixed_sq, init)
    expected = reference_lloyd(x.numpy(), w.numpy(), fixed.numpy(), init.numpy(), iterations)
    assert torch.allclose(got, torch.from_numpy(expected), atol=1e-12)
