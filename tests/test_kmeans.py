"""Secure federated k-means (protocols/kmeans.md)."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from secure_fal.federated.kmeans import FederatedKMeans, cluster_stats
from secure_fal.secagg import Aggregator

from .conftest import PROTOCOLS, protocol_or_skip


def _blobs(seed, k=6, d=8, n=900, clients=4):
    x, _ = make_blobs(n_samples=n, centers=k, n_features=d, cluster_std=0.4, center_box=(-6, 6), random_state=seed)
    x = x / 10.0
    parts = np.array_split(np.random.default_rng(seed).permutation(n), clients)
    return x, {c: torch.tensor(x[p]) for c, p in enumerate(parts)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recovers_central_kmeans_centres_on_blobs(protocol):
    # kmeans.md §Correctness: on well-separated data the federated centres equal central k-means' centres.
    protocol_or_skip(protocol)
    x, points = _blobs(seed=3)
    agg = Aggregator(protocol, list(points), seed=0)
    result = FederatedKMeans(6, agg, point_bound=1.0, count_bound=1000).fit(points)
    central = KMeans(6, n_init=10, random_state=0).fit(x).cluster_centers_
    dist = np.linalg.norm(result.centroids[:, None] - central[None], axis=2)
    rows, cols = linear_sum_assignment(dist)
    assert dist[rows, cols].max() < 1e-4
    assert result.converged
    assert result.rounds == agg.round_id   # every statistic went through the aggregator


@pytest.mark.parametrize("seed", range(4))
def test_inertia_not_worse_than_central_kmeans(seed):
    x, points = _blobs(seed=seed, k=10, d=16, n=2000, clients=5)
    agg = Aggregator("plaintext", list(points), seed=0)
    result = FederatedKMeans(10, agg, point_bound=1.0, count_bound=1000).fit(points)
    central = KMeans(10, n_init=3, random_state=0).fit(x)
    assert result.inertia <= central.inertia_ * (1 + 1e-6)


def test_cluster_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    w = rng.uniform(0.5, 2.0, size=50)
    centres = rng.normal(size=(4, 3))
    stats = cluster_stats(torch.tensor(x), torch.tensor(w), torch.tensor(centres))
    idx = np.argmin(((x[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(idx, weights=w, minlength=4)
    sums = np.stack([(w[idx == j, None] * x[idx == j]).sum(0) for j in range(4)])
    squares = np.stack([(w[idx == j, None] * x[idx == j] ** 2).sum(0) for j in range(4)])
    np.testing.assert_allclose(stats, np.concatenate([counts, sums.ravel(), squares.ravel()]))


def test_empty_cluster_keeps_its_centre():
    # kmeans.md §Lloyd: an empty cluster keeps its previous centre.
    from secure_fal.federated.kmeans import _update
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    out = _update(centres, np.array([2.0, 0.0]), np.array([[2.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(out, [[1.0, 2.0], [5.0, 5.0]])


def test_weights_move_the_centre():
    points = {0: torch.tensor([[0.0], [1.0]]), 1: torch.tensor([[1.0]])}
    weights = {0: torch.tensor([3.0, 1.0]), 1: torch.tensor([0.0])}
    agg = Aggregator("plaintext", [0, 1], seed=0)
    result = FederatedKMeans(1, agg, point_bound=1.0, count_bound=10).fit(points, weights)
    assert result.centroids[0, 0] == pytest.approx(0.25, abs=1e-6)


def test_point_outside_public_bound_is_rejected():
    from secure_fal.secagg import InputError
    points = {0: torch.tensor([[0.0], [50.0]]), 1: torch.tensor([[1.0]])}
    agg = Aggregator("plaintext", [0, 1], seed=0)
    with pytest.raises(InputError, match="client 0"):
        FederatedKMeans(1, agg, point_bound=1.0, count_bound=2).fit(points)


def test_fit_sums_is_the_server_side_of_fit():
    # a deployment runs fit_sums with sums computed elsewhere; over the same sums it gives fit's result
    gen = torch.Generator().manual_seed(3)
    points = {c: torch.randn(40, 3, generator=gen) * 0.2 for c in range(3)}
    fit = FederatedKMeans(5, Aggregator("plaintext", range(3), seed=0), point_bound=1.0, count_bound=40).fit(points)
    kmeans = FederatedKMeans(5, None, point_bound=1.0, count_bound=40)
    seen = []

    def stats_sum(centres):
        seen.append(len(centres))
        c = torch.as_tensor(centres)
        return sum(cluster_stats(x, torch.ones(len(x)), c) for x in points.values())

    sums = kmeans.fit_sums(stats_sum, 3)
    assert np.allclose(sums.centroids, fit.centroids, atol=1e-6) and sums.rounds == fit.rounds == len(seen)
    with pytest.raises(ValueError, match="fit needs an Aggregator"):
        kmeans.fit(points)
    with pytest.raises(ValueError, match="shape"):
        FederatedKMeans(2, None, point_bound=1.0, count_bound=40).fit_sums(lambda centres: np.zeros(3), 3)
