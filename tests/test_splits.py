"""Client partitions: disjoint and covering, sizes, class totals, skew, determinism; shot noise."""

import numpy as np
import pytest
import torch

from secure_fal.data import (balanced_allocation, dirichlet_balanced_split, dirichlet_split, homogeneous_split,
                             kmeans_split, long_tail_counts, long_tail_indices, shot_noise)

LABELS = np.repeat(np.arange(10), 200)  # 10 balanced classes, N = 2000


def assert_partition(parts, n):
    joined = np.concatenate(parts)
    assert all(p.dtype == np.int64 for p in parts)
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted, no repeats
    assert len(joined) == n and len(np.unique(joined)) == n  # disjoint and covering


def class_histograms(parts, labels, num_classes=10):
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])


def mean_max_class_share(parts, labels):
    hist = class_histograms(parts, labels)
    return float(np.mean(hist.max(axis=1) / hist.sum(axis=1)))


def test_homogeneous_split_is_stratified():
    labels = np.random.default_rng(0).integers(0, 7, 1003)
    parts = homogeneous_split(labels, 10, seed=1)
    assert_partition(parts, 1003)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    hist = class_histograms(parts, labels, 7)
    assert np.all(hist.max(axis=0) - hist.min(axis=0) <= 1)


def test_dirichlet_equal_sizes_and_class_totals_kept():
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(10), [300, 250, 200, 200, 150, 150, 100, 60, 50,
                                                                             43]))
    for alpha in (0.1, 1.0, 100.0):
        parts = dirichlet_split(labels, 10, alpha, seed=0)
        assert_partition(parts, len(labels))  # every sample assigned once: class totals kept
        assert sorted({len(p) for p in parts}) == [150, 151]  # 1503 = 10 * 150 + 3
        np.testing.assert_array_equal(class_histograms(parts, labels).sum(0), np.bincount(labels))


def test_dirichlet_alpha_controls_skew():
    skewed = np.mean([mean_max_class_share(dirichlet_split(LABELS, 10, 0.1, seed=s), LABELS) for s in range(3)])
    mixed = np.mean([mean_max_class_share(dirichlet_split(LABELS, 10, 100.0, seed=s), LABELS) for s in range(3)])
    # alpha = 0.1: a few classes dominate each client (measured 0.46; equal sizes with class totals kept cap
    # it: two clients that favour one class share its samples); alpha = 100: near the uniform 0.1 (0.14)
    assert skewed > 0.35
    assert mixed < 0.2
    assert skewed > 2.5 * mixed


# -- the reference split (dir_balance of chenchenzong/FairFAL and raymin0223/LoGo) -----------------------------

def test_balanced_allocation_hand_computed():
    # Class 0: 6, 3, 1 exactly. Class 1: 0, 2.5, 2.5 -> floors 0, 2, 2, the one left to the larger fraction, a
    # tie between clients 1 and 2 -> client 1: 0, 3, 2. Sizes 6, 6, 3 against targets 5, 5, 5: client 2 takes
    # one class-0 sample from each of the donors 0 and 1 (equal surplus and supply: lower id first).
    prior = [[0.6, 0.0], [0.3, 0.5], [0.1, 0.5]]
    assert balanced_allocation(prior, [10, 5]).tolist() == [[5, 0], [2, 3], [3, 2]]
    # Class 0 cannot fill client 1 (client 0 holds only 2 of it): the pass moves on to class 1.
    # Initial: class 0 [2, 0]; class 1 7.2, 0.8 -> [7, 1]; sizes 9, 1 -> targets 5, 5.
    assert balanced_allocation([[1.0, 0.9], [0.0, 0.1]], [2, 8]).tolist() == [[0, 5], [2, 3]]
    # A class without prior mass is split evenly; the first N % K clients get one more sample.
    assert balanced_allocation([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], [4, 3]).sum(axis=1).tolist() == [3, 2, 2]


def test_dirichlet_balanced_equal_sizes_and_class_totals_kept():
    labels = np.random.default_rng(3).permutation(np.repeat(np.arange(10), [300, 250, 200, 200, 150, 150, 100, 60, 50,
                                                                             43]))
    for alpha in (0.1, 1.0, 100.0):
        parts = dirichlet_balanced_split(labels, 10, alpha, seed=0)
        assert_partition(parts, len(labels))
        assert [len(p) for p in parts] == [151] * 3 + [150] * 7
        np.testing.assert_array_equal(class_histograms(parts, labels).sum(0), np.bincount(labels))
    assert all(np.array_equal(a, b) for a, b in zip(dirichlet_balanced_split(labels, 10, 0.1, seed=4),
                                                    dirichlet_balanced_split(labels, 10, 0.1, seed=4)))


def effective_classes(parts, labels):
    """Mean over clients of exp(entropy of the client's class mix)."""
    p = class_histograms(parts, labels) / np.array([[len(q)] for q in parts])
    return float(np.mean(np.exp(-np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1))))


def test_dirichlet_balanced_is_more_skewed_than_ours_at_alpha_0_1():
    # FMNIST-LT class sizes (rho = 20, 20,428 samples), 10 clients. Over 200 seeds: the reference code gives
    # 2.85 effective classes per client (SPEC: 2.88 over 20), this split 2.81, ours (dirichlet_split) 3.37, with a
    # per-seed standard deviation of about 0.26 for each. Over 10 seeds the mean difference (0.55 expected) has a
    # standard error of 0.12: demanding 0.2 leaves 3 standard errors; the balanced mean must lie within 3 standard
    # errors (0.25) of the reference's 2.85.
    labels = np.repeat(np.arange(10), long_tail_counts([6000] * 10, 20))
    balanced = [dirichlet_balanced_split(labels, 10, 0.1, seed=s) for s in range(10)]
    ours = [dirichlet_split(labels, 10, 0.1, seed=s) for s in range(10)]
    mean_balanced = np.mean([effective_classes(p, labels) for p in balanced])
    mean_ours = np.mean([effective_classes(p, labels) for p in ours])
    assert abs(mean_balanced - 2.85) < 0.25
    assert mean_ours - mean_balanced > 0.2
    # some client holds no sample of the head class: 199 of 200 reference seeds (ours: 7 of 20)
    assert sum(class_histograms(p, labels)[:, 0].min() == 0 for p in balanced) >= 9


def test_dirichlet_deterministic_and_seed_dependent():
    a = dirichlet_split(LABELS, 10, 0.5, seed=7)
    b = dirichlet_split(torch.as_tensor(LABELS), 10, 0.5, seed=7)
    c = dirichlet_split(LABELS, 10, 0.5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_split(LABELS, 10, 0.0)
    with pytest.raises(ValueError, match="n_clients"):
        homogeneous_split(LABELS[:5], 6)
    with pytest.raises(ValueError, match="labels"):
        homogeneous_split(np.array([0.5, 1.0]), 1)


def test_long_tail_ratio_and_formula():
    counts = long_tail_counts(np.full(10, 1000), 20)
    assert counts[0] == 1000 and counts[-1] == 50 and counts.max() / counts.min() == 20
    expected = [int(1000 * (1 / 20) ** (i / 9) + 1e-9) for i in range(10)]
    np.testing.assert_array_equal(counts, expected)
    assert np.all(np.diff(counts) < 0)
    # the reference count on Fashion-MNIST (6,000 per class): 20,428 training images
    assert long_tail_counts(np.full(10, 6000), 20).sum() == 20428
    np.testing.assert_array_equal(long_tail_counts([7, 9], 1), [7, 9])
    with pytest.raises(ValueError, match="rho"):
        long_tail_counts([10, 10], 0.5)


def test_long_tail_indices_subset_and_determinism():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 1000))
    kept = long_tail_indices(labels, 20, seed=1)
    assert np.all(np.diff(kept) > 0) and kept.dtype == np.int64
    hist = np.bincount(labels[kept], minlength=10)
    np.testing.assert_array_equal(hist, long_tail_counts(np.full(10, 1000), 20))
    assert hist.max() / hist.min() == 20
    assert np.array_equal(kept, long_tail_indices(labels, 20, seed=1))
    assert not np.array_equal(kept, long_tail_indices(labels, 20, seed=2))


def test_kmeans_split_follows_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 20
    blob = np.repeat(np.arange(4), 100)
    x = centres[blob] + rng.normal(size=(400, 4))
    labels = np.tile(np.arange(5), 80)  # classes independent of the blobs
    parts = kmeans_split(x, labels, 4, seed=0)
    assert_partition(parts, 400)
    owner = []
    for p in parts:
        share = np.bincount(blob[p], minlength=4) / len(p)
        assert share.max() > 0.7  # 80 of a blob + ~20 shared samples spread over all blobs
        owner.append(int(share.argmax()))
    assert sorted(owner) == [0, 1, 2, 3]
    # the shared 20% is stratified: every client holds every class
    assert np.all(class_histograms(parts, labels, 5) > 0)
    again = kmeans_split(torch.as_tensor(x, dtype=torch.float32), labels, 4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_shot_noise_corrupts_only_the_chosen_samples():
    rng = np.random.default_rng(0)
    mean, std = (0.3,), (0.2,)
    pixels = torch.full((20, 1, 16, 16), 0.5)
    pixels[:, :, :8] = torch.as_tensor(rng.random((20, 1, 8, 16)), dtype=torch.float32)
    x = (pixels - mean[0]) / std[0]
    chosen = np.arange(0, 20, 2)
    out = shot_noise(x, chosen, mean, std, photons=3.0, seed=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    untouched = np.setdiff1d(np.arange(20), chosen)
    assert torch.equal(out[untouched], x[untouched]) and not torch.equal(out[chosen], x[chosen])
    noisy = out[chosen] * std[0] + mean[0]
    assert float(noisy.min()) >= -1e-6 and float(noisy.max()) <= 1 + 1e-6
    # on the constant half (v = 0.5): std of Poisson(v * photons) / photons is sqrt(v / photons) = 0.41
    # before clipping at 1, which only lowers it
    spread = float(noisy[:, :, 8:].std())
    assert 0.25 < spread < 0.45
    weak = shot_noise(x, chosen, mean, std, photons=300.0, seed=0)[chosen] * std[0] + mean[0]
    assert float(weak[:, :, 8:].std()) < 0.06  # sqrt(0.5 / 300) = 0.041
    assert torch.equal(out, shot_noise(x, chosen, mean, std, photons=3.0, seed=0))
    assert torch.equal(shot_noise(x, [], mean, std), x)
    with pytest.raises(ValueError, match="photons"):
        shot_noise(x, chosen, mean, std, photons=0)
