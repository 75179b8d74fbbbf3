"""BADGE: gradient embeddings, factored vs dense distances, k-means++ seeding."""

import pytest
import torch
import torch.nn.functional as F

from secure_fal.sampling import PoolView, badge_grad_embeddings, get_sampler
from secure_fal.sampling.badge import _draw, kmeans_pp
from secure_fal.sampling.space import FeatureSpace, gradient_space


def make_pool(n=150, dim=4, n_classes=3, n_labeled=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, dim, generator=g, dtype=torch.float64)
    probs = torch.softmax(emb @ torch.randn(dim, n_classes, generator=g, dtype=torch.float64), dim=1)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[:n_labeled]] = True
    return PoolView(probs, emb, labeled)


def test_grad_embedding_is_minus_last_layer_gradient_at_predicted_label():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(5, 4, generator=g)
    weight = torch.randn(3, 4, generator=g, requires_grad=True)
    bias = torch.randn(3, generator=g)
    probs = torch.softmax(emb @ weight.T + bias, dim=1).detach()
    for i in range(5):
        loss = F.cross_entropy((emb[i] @ weight.T + bias)[None], probs[i].argmax()[None])
        (grad,) = torch.autograd.grad(loss, weight)
        expected = -grad.T.flatten()  # layout g[d * C + c]
        assert torch.allclose(badge_grad_embeddings(probs, emb)[i], expected, atol=1e-6)


def test_factored_distances_equal_dense_distances():
    pool = make_pool(n=30)
    grads = badge_grad_embeddings(pool.probs, pool.embeddings)
    ref = torch.cdist(grads, grads) ** 2
    dense, factored = FeatureSpace.dense(grads), gradient_space(pool)
    for space in (dense, factored):
        assert torch.allclose(space.sq_norms, (grads ** 2).sum(dim=1))
        assert torch.allclose(space.sq_dists_to(torch.tensor([7])), ref[:, 7], atol=1e-9)
        d, i = space.rows(torch.arange(10, 30)).nearest(space.rows(torch.arange(10)))
        assert torch.allclose(d, ref[10:, :10].min(dim=1).values, atol=1e-9)
        assert torch.equal(i, ref[10:, :10].argmin(dim=1))


@pytest.mark.parametrize("seed", range(3))
def test_grad_probs_set_the_gradient_space(seed):
    # BADGE reads probabilities only through the gradient space: grad_probs must act exactly like probs there
    pool, other = make_pool(seed=seed), make_pool(seed=seed + 10)
    with_grad_probs = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, grad_probs=other.probs)
    as_probs = PoolView(other.probs, pool.embeddings, pool.labeled_mask)
    a = get_sampler("badge").select(with_grad_probs, 25, torch.Generator().manual_seed(seed))
    b = get_sampler("badge").select(as_probs, 25, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


def test_first_pick_is_the_largest_gradient_norm():
    pool = make_pool()
    norms = badge_grad_embeddings(pool.probs, pool.embeddings).norm(dim=1)
    norms[pool.labeled_mask] = -1
    picked = get_sampler("badge").select(pool, 10, torch.Generator().manual_seed(0))
    assert picked[0] == norms.argmax()


def test_draw_inverse_cdf_skips_zero_weights():
    w = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0])
    assert _draw(w, 0.0) == 1
    assert _draw(w, 0.1) == 1
    assert _draw(w, 0.25) == 3
    assert _draw(w, 1.0 - 1e-16) == 3
    assert _draw(torch.tensor([2.0, 0.0, 0.0]), 0.999) == 0
    assert _draw(torch.zeros(3), 0.5) is None


def test_kmeans_pp_never_draws_zero_weight_points_and_falls_back_to_uniform():
    g = torch.Generator().manual_seed(0)
    space = FeatureSpace.dense(torch.randn(50, 3, generator=g))
    weights = torch.zeros(50)
    weights[::5] = 1.0
    picks = kmeans_pp(space, 10, torch.Generator().manual_seed(1), weights=weights)
    assert sorted(picks.tolist()) == list(range(0, 50, 5))
    more = kmeans_pp(space, 14, torch.Generator().manual_seed(1), weights=weights)
    assert len(set(more.tolist())) == 14


def test_identical_points_still_give_distinct_picks():
    pool = PoolView(torch.full((12, 3), 1 / 3), torch.ones(12, 2), torch.zeros(12, dtype=torch.bool))
    picked = get_sampler("badge").select(pool, 12, torch.Generator().manual_seed(0))
    assert sorted(picked.tolist()) == list(range(12))


def test_d2_sampling_prefers_far_points():
    # 1 far point among 99 near the first seed: D² sampling must pick it as the second seed
    x = torch.zeros(100, 2, dtype=torch.float64)
    x[1:99] = 1e-3 * torch.randn(98, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[99] = torch.tensor([100.0, 0.0])
    for seed in range(5):
        assert kmeans_pp(FeatureSpace.dense(x), 2, torch.Generator().manual_seed(seed), first=0)[1] == 99
