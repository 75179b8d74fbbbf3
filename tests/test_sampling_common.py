"""Contract shared by every registered sampler: budget, distinctness, labeled samples, determinism."""

import numpy as np
import pytest
import torch

from secure_fal.sampling import SAMPLERS, PoolView, Sampler, get_sampler


def make_pool(n=120, dim=5, n_classes=4, n_labeled=25, seed=0, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(n_classes, (n,), generator=g)
    means = 4.0 * torch.randn(n_classes, dim, generator=g, dtype=dtype)
    emb = means[y] + torch.randn(n, dim, generator=g, dtype=dtype)
    probs = torch.softmax(2.0 * torch.randn(n, n_classes, generator=g, dtype=dtype), dim=1)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[:n_labeled]] = True
    return PoolView(probs.to(device), emb.to(device), labeled.to(device), y.to(device))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("budget", [1, 17, 95])
def test_distinct_unlabeled_indices_of_budget_size(name, budget):
    pool = make_pool()
    picked = get_sampler(name).select(pool, budget, gen())
    assert picked.dtype == torch.long and picked.shape == (budget,)
    assert len(set(picked.tolist())) == budget
    assert not pool.labeled_mask[picked].any()


@pytest.mark.parametrize("name", SAMPLERS)
def test_budget_equal_to_unlabeled_count_returns_all_unlabeled(name):
    pool = make_pool(n=40, n_labeled=10)
    picked = get_sampler(name).select(pool, 30, gen())
    assert sorted(picked.tolist()) == pool.unlabeled_indices().tolist()


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic_for_a_seed(name):
    pool = make_pool(seed=3)
    first = get_sampler(name).select(pool, 20, gen(7))
    second = get_sampler(name).select(pool, 20, gen(7))
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ["random", "badge", "iwkmeans"])
def test_randomised_samplers_use_the_generator(name):
    pool = make_pool(n=300, seed=4)
    picks = {tuple(get_sampler(name).select(pool, 30, gen(s)).tolist()) for s in range(4)}
    assert len(picks) > 1


@pytest.mark.parametrize("name", SAMPLERS)
def test_budget_larger_than_unlabeled_raises(name):
    pool = make_pool(n=40, n_labeled=10)
    with pytest.raises(ValueError, match="exceeds the 30 unlabeled"):
        get_sampler(name).select(pool, 31, gen())


@pytest.mark.parametrize("name", SAMPLERS)
def test_zero_budget_gives_empty_selection(name):
    assert get_sampler(name).select(make_pool(), 0, gen()).shape == (0,)


def test_numpy_integer_budget_is_accepted():
    assert get_sampler("margin").select(make_pool(), np.int64(4), gen()).shape == (4,)


@pytest.mark.parametrize("budget", [-1, 2.0, True])
def test_invalid_budget_raises(budget):
    with pytest.raises(ValueError, match="budget must be a non-negative int"):
        get_sampler("margin").select(make_pool(), budget, gen())


def test_generator_must_be_a_cpu_generator():
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        get_sampler("random").select(make_pool(), 3, 0)


def test_missing_labels_are_reported():
    pool = make_pool()
    pool = PoolView(pool.probs, pool.embeddings, pool.labeled_mask)
    with pytest.raises(ValueError, match="needs pool.labels"):
        get_sampler("fairfal").select(pool, 3, gen())


def test_registry_names_and_unknown_name():
    assert set(SAMPLERS) == {"random", "margin", "entropy", "least-confidence", "kcenter", "badge",
                             "iwkmeans", "fairfal"}
    for name in SAMPLERS:
        sampler = get_sampler(name)
        assert isinstance(sampler, Sampler) and sampler.name == name
        assert sampler.needs <= {"probs", "embeddings", "labels"}
    assert get_sampler("iwkmeans", beta=3).beta == 3
    with pytest.raises(ValueError, match="unknown sampler 'coreset'; valid names: random, margin"):
        get_sampler("coreset")


def test_pool_view_validation():
    pool = make_pool(n=10)
    with pytest.raises(ValueError, match="C >= 2"):
        PoolView(pool.probs[:, :1], pool.embeddings, pool.labeled_mask)
    with pytest.raises(ValueError, match="embeddings must be"):
        PoolView(pool.probs, pool.embeddings[:5], pool.labeled_mask)
    with pytest.raises(ValueError, match="labeled_mask must be a bool"):
        PoolView(pool.probs, pool.embeddings, pool.labeled_mask.long())
    with pytest.raises(ValueError, match="labels must be an int64"):
        PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels.int())
    with pytest.raises(ValueError, match="grad_probs must be"):
        PoolView(pool.probs, pool.embeddings, pool.labeled_mask, grad_probs=pool.probs[:, :1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", SAMPLERS)
def test_same_selection_on_cpu_and_cuda(name):
    cpu = make_pool(n=400, seed=5)
    cuda = make_pool(n=400, seed=5, device="cuda")
    on_cpu = get_sampler(name).select(cpu, 40, gen(11))
    on_cuda = get_sampler(name).select(cuda, 40, gen(11))
    assert on_cuda.device.type == "cuda"
    assert torch.equal(on_cpu, on_cuda.cpu())
