"""FairFAL: quota arithmetic, prototype pseudo-labels, per-class quotas and candidates of the picks."""

import numpy as np
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


def pseudo_and_quotas(pool, budget, num_classes=4):
    """Pseudo-labels of the unlabeled samples and the quota of EVERY class (the reference splits over all C)."""
    lab, unl = pool.labeled_indices(), pool.unlabeled_indices()
    pseudo = prototype_pseudo_labels(pool.embeddings[unl], pool.embeddings[lab], pool.labels[lab])
    classes = list(range(num_classes))
    available = [int((pseudo == c).sum()) for c in classes]
    return unl, pseudo, classes, class_quotas(budget, available)


@pytest.mark.parametrize("budget", [3, 10, 31, 50])
def test_picks_respect_quotas_and_stage_one_candidates(budget):
    pool = blob_pool()
    unl, pseudo, classes, quotas = pseudo_and_quotas(pool, budget)
    # no labeled sample of class 3: it is nobody's pseudo-label, its share budget // 4 goes to the others
    assert quotas[3] == 0 and sum(quotas) == budget
    picked = FairFALSampler().select(pool, budget, torch.Generator()).tolist()
    assert len(set(picked)) == budget
    position = {i: k for k, i in enumerate(unl.tolist())}
    entropy = entropy_score(pool.probs)
    for c, q in zip(classes, quotas):
        mine = [i for i in picked if pseudo[position[i]] == c]
        assert len(mine) == q
        members = unl[pseudo == c]
        ranked = members[torch.sort(entropy[members], descending=True, stable=True).indices]
        assert set(mine) <= set(ranked[: 4 * q].tolist())


def true_label_grads(probs, embeddings, labels):
    """Gradient embeddings at the given labels, built entry by entry: block c is e * (1[c == y] - p_c)."""
    n, c = probs.shape
    out = torch.zeros(n, embeddings.shape[1] * c, dtype=probs.dtype)
    for i in range(n):
        for k in range(c):
            out[i, k::c] = embeddings[i] * ((1.0 if k == labels[i] else 0.0) - probs[i, k])
    return out


def test_each_class_starts_from_the_candidate_farthest_from_its_true_label_anchors():
    pool, budget = blob_pool(), 12
    unl, pseudo, classes, quotas = pseudo_and_quotas(pool, budget)
    grads = badge_grad_embeddings(pool.probs, pool.embeddings)
    anchor_grads = true_label_grads(pool.probs, pool.embeddings, pool.labels)
    entropy = entropy_score(pool.probs)
    picked = FairFALSampler().select(pool, budget, torch.Generator()).tolist()
    start = 0
    for c, q in zip(classes, quotas):
        if q == 0:
            continue
        members = unl[pseudo == c]
        candidates = members[torch.sort(entropy[members], descending=True, stable=True).indices][: 4 * q]
        anchors = pool.labeled_indices()[pool.labels[pool.labeled_mask] == c]
        farthest = candidates[torch.cdist(grads[candidates], anchor_grads[anchors]).min(dim=1).values.argmax()]
        assert picked[start] == farthest  # picks are grouped by class, in pick order
        start += q


# -- the reference, transcribed independently (chenchenzong/FairFAL ca14e07, fairfal_sampling.py) ------------

def reference_picks(query_probs, grad_probs, features, labeled, labels, budget, num_classes, kappa=4):
    """NumPy transcription of the reference's balanced_sample_by_pred_kmeans_maxscore with its inputs built as
    FairFALSampling.query builds them: pseudo-labels by cosine to the L2-normalised prototypes of the present
    classes, quotas over ALL classes, top floor(kappa*q) by entropy, k-center from anchors embedded at their
    TRUE label. Returns the set of picked pool indices."""
    q, g, e = (np.asarray(a, dtype=np.float64) for a in (query_probs, grad_probs, features))
    labeled, labels = np.asarray(labeled), np.asarray(labels)
    unl, lab = np.flatnonzero(~labeled), np.flatnonzero(labeled)
    z = e / np.linalg.norm(e, axis=1, keepdims=True)
    proto = np.zeros((num_classes, e.shape[1]))
    count = np.zeros(num_classes)
    for i in lab:
        proto[labels[i]] += z[i]
        count[labels[i]] += 1
    proto[count > 0] /= np.linalg.norm(proto[count > 0], axis=1, keepdims=True)
    sim = z[unl] @ proto.T
    sim[:, count == 0] = -np.inf
    pred = sim.argmax(axis=1)
    entropy = -(q[unl] * np.log(q[unl] + 1e-12)).sum(axis=1)

    def grad_embed(rows, hot):
        out = np.zeros((len(rows), e.shape[1] * num_classes))
        for r, (i, h) in enumerate(zip(rows, hot)):
            for c in range(num_classes):
                out[r, e.shape[1] * c: e.shape[1] * (c + 1)] = e[i] * ((c == h) - g[i, c])
        return out

    x_unl = grad_embed(unl, g[unl].argmax(axis=1))
    x_lab = grad_embed(lab, labels[lab])
    buckets = {c: list(np.flatnonzero(pred == c)) for c in range(num_classes)}
    quota = {c: budget // num_classes for c in range(num_classes)}
    order = sorted(range(num_classes), key=lambda c: len(buckets[c]), reverse=True)
    for c in order[: budget % num_classes]:
        quota[c] += 1
    leftover = 0
    for c in range(num_classes):
        if quota[c] > len(buckets[c]):
            leftover += quota[c] - len(buckets[c])
            quota[c] = len(buckets[c])
    grow, j = [c for c in order if len(buckets[c]) > quota[c]], 0
    while leftover > 0:
        c = grow[j % len(grow)]
        if quota[c] < len(buckets[c]):
            quota[c] += 1
            leftover -= 1
        j += 1
    chosen = []
    for c in range(num_classes):
        if quota[c] == 0:
            continue
        members = np.asarray(buckets[c])
        size = min(len(members), int(np.floor(kappa * quota[c])))
        cand = members[np.argsort(-entropy[members], kind="stable")[:size]]
        pts = x_unl[cand]
        anchors = x_lab[labels[lab] == c]
        sq = lambda a, b: (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        if len(cand) <= quota[c]:
            chosen += list(cand)
            continue
        dist = sq(pts, anchors).min(axis=1)
        taken = []
        while len(taken) < quota[c]:
            k = int(np.argmax(dist))
            taken.append(k)
            dist = np.minimum(dist, sq(pts, pts[[k]])[:, 0])
            dist[taken] = -np.inf
        chosen += list(cand[taken])
    return set(unl[np.asarray(chosen, dtype=int)].tolist())


def random_pool(seed, n=150, num_classes=5, present=(0, 1, 3), n_labeled=12, mislabeled=0.0):
    """Blobs of the present classes plus noise; a few labeled samples whose TRUE labels the global model gets
    wrong with probability ``mislabeled`` (their predicted class is shifted)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(present)[torch.randint(len(present), (n,), generator=g)]
    emb = 3.0 * torch.eye(num_classes, 6, dtype=torch.float64)[y] + torch.randn(n, 6, generator=g, dtype=torch.float64)
    logits = 2.0 * torch.nn.functional.one_hot(y, num_classes).double() + torch.randn(n, num_classes, generator=g,
                                                                                      dtype=torch.float64)
    wrong = torch.rand(n, generator=g) < mislabeled
    logits[wrong] = logits[wrong].roll(1, dims=1) + 3.0
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[:n_labeled]] = True
    probs = torch.softmax(logits, dim=1)
    grad_probs = torch.softmax(logits + torch.randn(n, num_classes, generator=g, dtype=torch.float64), dim=1)
    return PoolView(probs, emb, labeled, y, grad_probs)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [7, 20])
def test_picks_equal_an_independent_transcription_of_the_reference(seed, budget):
    pool = random_pool(seed, mislabeled=0.3)
    got = set(FairFALSampler().select(pool, budget, torch.Generator()).tolist())
    expected = reference_picks(pool.probs, pool.grad_probs, pool.embeddings, pool.labeled_mask, pool.labels,
                               budget, pool.n_classes)
    assert got == expected


def test_quotas_split_over_all_classes_not_only_present_ones():
    # Hand-built: 3 present classes among C = 4, pseudo-label buckets of sizes 5, 1, 3 (class 3 absent).
    # All 4 classes: base 7 // 4 = 1, remainder 3 to the largest buckets (0, 2, 1) -> [2, 2, 2, 1]; capping
    # classes 1 and 3 frees 2, dealt round-robin to classes 0 and 2 -> [3, 1, 3, 0].
    # Present classes only: base 7 // 3 = 2, remainder to class 0 -> [3, 2, 2]; class 1 capped at 1, its spare
    # to class 0 -> [4, 1, 2].
    assert class_quotas(7, [5, 1, 3, 0]) == [3, 1, 3, 0]
    assert class_quotas(7, [5, 1, 3]) == [4, 1, 2]
    directions = {0: [1.0, 0.0, 0.0], 1: [0.0, 1.0, 0.0], 2: [0.0, 0.0, 1.0]}
    y = torch.tensor([0, 1, 2] + [0] * 5 + [1] + [2] * 3)
    emb = torch.tensor([directions[int(c)] for c in y], dtype=torch.float64)
    emb = emb + 0.01 * torch.arange(len(y), dtype=torch.float64)[:, None]
    probs = torch.softmax(torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64), dim=1)
    labeled = torch.zeros(len(y), dtype=torch.bool)
    labeled[:3] = True
    pool = PoolView(probs, emb, labeled, y)
    for mode, expected in (("all", [3, 1, 3]), ("present", [4, 1, 2])):
        picked = FairFALSampler(quota_classes=mode).select(pool, 7, torch.Generator())
        assert torch.bincount(y[picked], minlength=3).tolist() == expected


def test_anchors_are_embedded_at_their_true_label():
    # One class (0) present with one labeled anchor whose global model predicts class 1 (mislabeled). Two
    # unlabeled candidates, quota 1: the pick is the one farther from the anchor. Gradient embeddings
    # e * (onehot - p), e = (1, 0) for everyone, C = 2:
    #   anchor, true label 0, p = (0.2, 0.8): (0.8, -0.8)   [at its predicted label 1: (-0.2, 0.2)]
    #   candidate a, p = (0.9, 0.1) -> predicted 0: (0.1, -0.1)
    #   candidate b, p = (0.4, 0.6) -> predicted 1: (-0.4, 0.4)
    # True-label anchor: |a - anchor|^2 = 0.98, |b - anchor|^2 = 2.88 -> b. Predicted-label anchor: a (0.18 vs 0.08).
    probs = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]], dtype=torch.float64)
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    pool = PoolView(probs, emb, torch.tensor([True, False, False]), torch.tensor([0, -1, -1]))
    assert FairFALSampler().select(pool, 1, torch.Generator()).tolist() == [2]


def test_grad_probs_replace_probs_in_the_gradient_space_only():
    pool = random_pool(1)
    plain = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels)
    same = PoolView(pool.probs, pool.embeddings, pool.labeled_mask, pool.labels, pool.probs.clone())
    assert torch.equal(FairFALSampler().select(same, 20, torch.Generator()),
                       FairFALSampler().select(plain, 20, torch.Generator()))
    assert set(FairFALSampler().select(pool, 20, torch.Generator()).tolist()) != set(
        FairFALSampler().select(plain, 20, torch.Generator()).tolist())


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
    with pytest.raises(ValueError, match="quota_classes"):
        FairFALSampler(quota_classes="some")
