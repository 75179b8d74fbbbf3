"""FairFAL: quota arithmetic, prototype pseudo-labels, per-class quotas and candidates of the picks."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from secure_fal.sampling import (FairFALSampler, PoolView, badge_grad_embeddings, class_quotas, entropy_score,
                                 prototype_pseudo_labels)


@pytest.mark.parametrize("budget, available, expected", [
    (9, [5, 5, 5], [3, 3, 3]),                # even split
    (11, [10, 30, 20], [3, 4, 4]),            # remainder to the two largest classes
    (5, [4, 4, 4, 4], [2, 1, 1, 1]),          # tie in size: lower position first
    (10, [100, 2, 50], [5, 2, 3]),            # class 1 capped at 2, leftover 1 to the largest
    (10, [1, 6, 6, 1], [1, 4, 4, 1]),         # 2 capped classes, leftover 2 round-robin
    (12, [1, 0, 10, 3], [1, 0, 8, 3]),        # leftover 5, only class 2 can still grow
    (9, [0, 5, 4], [0, 5, 4]),                # two rounds of redistribution
    (7, [2, 9, 3], [2, 3, 2]),                # no cap hit: 7 = 2+2+2, +1 to class 1
    (0, [3, 1], [0, 0]),
    (4, [3, 1], [3, 1]),                      # budget = everything available
])
def test_class_quotas_hand_computed(budget, available, expected):
    assert class_quotas(budget, available) == expected


def test_class_quotas_errors():
    with pytest.raises(ValueError, match="not within"):
        class_quotas(5, [3, 1])
    with pytest.raises(ValueError, match="non-empty"):
        class_quotas(0, [])
    with pytest.raises(ValueError, match="non-empty"):
        class_quotas(1, [2, -1])


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.data())
def test_class_quotas_invariants(available, data):
    budget = data.draw(st.integers(0, sum(available)))
    quotas = class_quotas(budget, available)
    assert sum(quotas) == budget
    assert all(0 <= q <= a for q, a in zip(quotas, available))
    fair = budget // len(available)
    assert all(q >= min(fair, a) for q, a in zip(quotas, available))


def test_prototypes_average_normalised_features_over_present_classes():
    labeled = torch.tensor([[10.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = torch.tensor([0, 0, 3])
    # class 0 prototype: mean of (1, 0) and (0, 1) -> 45 degrees (the raw mean would be at 5.7 degrees)
    # class 3 prototype: 53.1 degrees; a point at 30 degrees is closer to class 0 only after normalising
    queries = torch.tensor([[0.866, 0.5], [0.1, 5.0], [-1.0, 0.0], [100.0, 1.0], [0.0, -1.0]])
    assert prototype_pseudo_labels(queries, labeled, labels).tolist() == [0, 3, 3, 0, 0]


def blob_pool(sizes=(60, 60, 6, 40), n_labeled=(5, 5, 2, 0), dim=6, seed=0):
    """Blobs per class; the first ``n_labeled[c]`` samples of class c are labeled. The 4th class
    has no labeled sample, so it is never a pseudo-class."""
    g = torch.Generator().manual_seed(seed)
    n_classes = len(sizes)
    y = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    means = 6.0 * torch.eye(n_classes, dim, dtype=torch.float64)
    emb = means[y] + torch.randn(len(y), dim, generator=g, dtype=torch.float64)
    probs = torch.softmax(2.0 * torch.randn(len(y), n_classes, generator=g, dtype=torch.float64), dim=1)
    labeled = torch.zeros(len(y), dtype=torch.bool)
    for c, k in enumerate(n_labeled):
        labeled[(y == c).nonzero().flatten()[:k]] = True
    return PoolView(probs, emb, labeled, y)


def pseudo_and_quotas(pool, budget):
    lab, unl = pool.labeled_indices(), pool.unlabeled_indices()
    pseudo = prototype_pseudo_labels(pool.embeddings[unl], pool.embeddings[lab], pool.labels[lab])
    classes = torch.unique(pool.labels[lab]).tolist()
    available = [int((pseudo == c).sum()) for c in classes]
    return unl, pseudo, classes, class_quotas(budget, available)


@pytest.mark.parametrize("budget", [3, 10, 31, 50])
def test_picks_respect_quotas_and_stage_one_candidates(budget):
    pool = blob_pool()
    unl, pseudo, classes, quotas = pseudo_and_quotas(pool, budget)
    if budget == 31:
        assert quotas[2] < math.ceil(budget / 3)  # the small class is capped, leftover redistributed
    picked = FairFALSampler().select(pool, budget, torch.Generator()).tolist()
    assert len(set(picked)) == budget
    position = {i: k for k, i in enumerate(unl.tolist())}
    entropy = entropy_score(pool.probs)
    for c, q in zip(classes, quotas):
        mine = [i for i in picked if pseudo[position[i]] == c]
        assert len(mine) == q
        members = unl[pseudo == c]
        ranked = members[torch.sort(entropy[members], descending=True, stable=True).indices]
        assert set(mine) <= set(ranked[: math.ceil(4 * q)].tolist())


def test_each_class_starts_from_the_candidate_farthest_from_its_labeled_samples():
    pool, budget = blob_pool(), 12
    unl, pseudo, classes, quotas = pseudo_and_quotas(pool, budget)
    grads = badge_grad_embeddings(pool.probs, pool.embeddings)
    entropy = entropy_score(pool.probs)
    picked = FairFALSampler().select(pool, budget, torch.Generator()).tolist()
    start = 0
    for c, q in zip(classes, quotas):
        members = unl[pseudo == c]
        candidates = members[torch.sort(entropy[members], descending=True, stable=True).indices][: 4 * q]
        anchors = pool.labeled_indices()[pool.labels[pool.labeled_mask] == c]
        farthest = candidates[torch.cdist(grads[candidates], grads[anchors]).min(dim=1).values.argmax()]
        assert picked[start] == farthest  # picks are grouped by class, in pick order
        start += q


def test_given_grad_embeddings_are_used():
    pool = blob_pool()
    derived = FairFALSampler().select(pool, 20, torch.Generator())
    same = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels,
                    badge_grad_embeddings(pool.probs, pool.embeddings))
    assert torch.equal(FairFALSampler().select(same, 20, torch.Generator()), derived)
    other = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels,
                     badge_grad_embeddings(pool.probs.flip(0), pool.embeddings.flip(0)))
    assert not torch.equal(FairFALSampler().select(other, 20, torch.Generator()), derived)


def test_errors():
    pool = blob_pool()
    no_labeled = PoolView(pool.probs, pool.embeddings, torch.zeros_like(pool.labeled_mask), pool.labels)
    with pytest.raises(ValueError, match="needs labeled samples"):
        FairFALSampler().select(no_labeled, 5, torch.Generator())
    bad = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels + 3)
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        FairFALSampler().select(bad, 5, torch.Generator())
    with pytest.raises(ValueError, match="kappa"):
        FairFALSampler(kappa=0.5)
