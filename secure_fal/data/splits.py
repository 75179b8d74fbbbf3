"""Partitions of a training set among K clients, and the data corruptions of the reference settings.

Every function is deterministic given its ``seed``. Partitions are returned as a list of K disjoint, sorted
int64 index arrays into the array they were computed from; together they cover it exactly.

- ``homogeneous_split``: stratified, i.i.d.-like; client sizes differ by at most one.
- ``dirichlet_balanced_split``: the FairFAL / LoGo reference's ``dir_balance`` (Sinkhorn-normalised
  Dirichlet priors, per-class largest-remainder allocation, then samples moved until client sizes are equal).
- ``dirichlet_split``: client class proportions ~ Dir(alpha), EQUAL client sizes, class totals kept, each
  sample drawn from its client's prior in turn (ours; less skewed than the reference at small alpha).
- ``long_tail_indices``: global class imbalance (rho), applied BEFORE any split.
- ``kmeans_split``: 20% homogeneous + 80% by k-means cluster of the inputs (cluster j -> client j).
- ``shot_noise``: Poisson (shot) noise on chosen samples, e.g. every sample of one "corrupted client".
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_PHOTONS = 3.0


def _labels(labels) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"labels must be a 1-D array of non-negative integers, got shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int64)


def _check_clients(n_clients: int, n: int) -> None:
    if not 1 <= n_clients <= n:
        raise ValueError(f"n_clients must be in [1, {n}] (the number of samples), got {n_clients}")


def _sorted_parts(parts: list[list[np.ndarray]] | list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for part in parts:
        arr = np.concatenate(part) if isinstance(part, list) and part else np.asarray(part)
        out.append(np.sort(arr.astype(np.int64)))
    return out


def _deal(y: np.ndarray, allocation: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Client k gets allocation[k, c] samples of class c: each class's samples, shuffled, dealt in client order."""
    parts: list[list[np.ndarray]] = [[] for _ in range(len(allocation))]
    for c in range(allocation.shape[1]):
        members = rng.permutation(np.flatnonzero(y == c))
        bounds = np.concatenate([[0], np.cumsum(allocation[:, c])])
        for k in range(len(allocation)):
            parts[k].append(members[bounds[k]:bounds[k + 1]])
    return _sorted_parts(parts)


def homogeneous_split(labels, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Stratified split: each class's samples, shuffled, are dealt to the clients in turn.

    The deal continues from client to client across classes, so client sizes differ by at most one and
    each client's count of class c differs from the others' by at most one.

    Args:
        labels: (N,) integer class labels.
        n_clients: K.
    Returns:
        K disjoint sorted int64 index arrays covering range(N).
    """
    y = _labels(labels)
    _check_clients(n_clients, len(y))
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    position = 0
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        owners = (position + np.arange(len(members))) % n_clients
        for k in range(n_clients):
            parts[k].append(members[owners == k])
        position += len(members)
    return _sorted_parts(parts)


def dirichlet_split(labels, n_clients: int, alpha: float, seed: int = 0) -> list[np.ndarray]:
    """Non-i.i.d. split with client class proportions ~ Dir(alpha), equal client sizes, class totals kept.

    Each client k draws a prior p_k ~ Dir(alpha * 1_C). The N samples are then handed out one slot at a
    time, slots visited in a random order with client k owning N // K slots (+1 for the first N % K
    clients): the slot's client draws a class from its prior restricted to the classes that still have
    samples left. A client whose prior has no mass left on the remaining classes draws in proportion to what
    remains. Small alpha (0.1) gives clients dominated by one or two classes; large alpha (100) gives nearly
    uniform class mixes.

    Args:
        labels: (N,) integer class labels.
        n_clients: K.
        alpha: Dirichlet concentration, > 0.
    Returns:
        K disjoint sorted int64 index arrays covering range(N); sizes N // K or N // K + 1.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    y = _labels(labels)
    n = len(y)
    _check_clients(n_clients, n)
    rng = np.random.default_rng(seed)
    num_classes = int(y.max()) + 1
    remaining = np.bincount(y, minlength=num_classes).astype(np.int64)
    prior = rng.dirichlet(np.full(num_classes, float(alpha)), size=n_clients)
    sizes = np.full(n_clients, n // n_clients)
    sizes[: n % n_clients] += 1
    slots = rng.permutation(np.repeat(np.arange(n_clients), sizes))
    draws = rng.random(n)

    available = remaining > 0
    cumulative: dict[int, np.ndarray] = {}  # client -> cumsum of its prior over available classes
    allocation = np.zeros((n_clients, num_classes), dtype=np.int64)
    for k, u in zip(slots.tolist(), draws.tolist()):
        cum = cumulative.get(k)
        if cum is None:
            weights = prior[k] * available
            if weights.sum() <= 0:
                weights = remaining.astype(np.float64)
            cum = cumulative[k] = np.cumsum(weights)
        c = int(np.searchsorted(cum, u * cum[-1], side="right"))
        if c >= num_classes or not available[c]:  # u * total rounded up to the total
            c = int(np.flatnonzero(available)[-1])
        allocation[k, c] += 1
        remaining[c] -= 1
        if remaining[c] == 0:
            available[c] = False
            cumulative.clear()

    return _deal(y, allocation, rng)


SINKHORN_STEPS = 5
"""Alternating row / column normalisations of the reference's Dirichlet prior matrix."""


def balanced_allocation(prior, class_counts) -> np.ndarray:
    """Samples per (client, class) of the reference ``dir_balance`` from a prior matrix; deterministic.

    1. Per class j: client k gets floor(n_j * P[k, j] / sum_k P[k, j]); the n_j - sum of floors left over go
       one each to the clients with the largest fractional parts (ties to the lower id). A column without
       mass is split uniformly.
    2. Client k's target size is N // K, +1 for the first N % K clients. Until every client has its target,
       repeat passes over the classes j = 0 .. C-1; in a pass, clients with a deficit (receivers, largest
       deficit first) take class-j samples from clients with a surplus (donors: surplus clients holding
       class j, at most min(their class-j count, their surplus) each), each receiver filling its deficit from
       the donors with most left to give first; ties in every ordering go to the lower id.

    Args:
        prior: float (K, C) non-negative client-by-class weights.
        class_counts: int (C,) samples per class.
    Returns:
        int64 (K, C): column sums = class_counts, row sums = the target sizes.
    Raises:
        ValueError: the passes stop moving samples before the sizes are equal (cannot happen with K <= N).
    """
    prior = np.asarray(prior, dtype=np.float64)
    counts = np.asarray(class_counts, dtype=np.int64)
    n_clients, num_classes = prior.shape
    alloc = np.zeros((n_clients, num_classes), dtype=np.int64)
    for j in range(num_classes):
        if counts[j] == 0:
            continue
        column = np.clip(prior[:, j], 0.0, None)
        if column.sum() <= 0:
            column = np.full(n_clients, 1.0 / n_clients)
        share = column / column.sum() * counts[j]
        floor = np.floor(share).astype(np.int64)
        largest_fraction = np.argsort(-(share - floor), kind="stable")
        floor[largest_fraction[: counts[j] - floor.sum()]] += 1
        alloc[:, j] = floor
    total = int(counts.sum())
    target = np.full(n_clients, total // n_clients, dtype=np.int64)
    target[: total % n_clients] += 1
    deficit = target - alloc.sum(axis=1)          # > 0: must receive, < 0: must give
    while deficit.any():
        receivers = sorted(np.flatnonzero(deficit > 0).tolist(), key=lambda k: -deficit[k])
        donors = sorted(np.flatnonzero(deficit < 0).tolist(), key=lambda k: deficit[k])
        moved = 0
        for j in range(num_classes):
            supply = {k: int(min(alloc[k, j], -deficit[k])) for k in donors if alloc[k, j] > 0 and deficit[k] < 0}
            for r in receivers:
                for k in sorted(supply, key=lambda d: -supply[d]):
                    amount = min(supply[k], int(deficit[r]))
                    if amount <= 0:
                        continue
                    alloc[k, j] -= amount
                    alloc[r, j] += amount
                    supply[k] -= amount
                    deficit[k] += amount
                    deficit[r] -= amount
                    moved += amount
        if not moved:
            raise ValueError(f"balanced_allocation: client sizes stuck at {alloc.sum(axis=1).tolist()}, "
                             f"targets {target.tolist()}")
    return alloc


def dirichlet_balanced_split(labels, n_clients: int, alpha: float, seed: int = 0) -> list[np.ndarray]:
    """The reference non-i.i.d. split (``dir_balance`` of the FairFAL and LoGo code): equal client sizes,
    class totals kept, more skewed than ``dirichlet_split`` at small alpha.

    Draws P (K x C) with each row ~ Dir(alpha * 1_C), normalises rows then columns ``SINKHORN_STEPS`` times
    (each sum + 1e-12), turns P into counts with ``balanced_allocation``, then deals each class's samples,
    shuffled, to the clients in id order. The reference always uses the seed-0 split (it never passes its
    seed); ``data.split_seed`` reproduces that habit.

    Args:
        labels: (N,) integer class labels.
        n_clients: K.
        alpha: Dirichlet concentration, > 0.
    Returns:
        K disjoint sorted int64 index arrays covering range(N); sizes N // K or N // K + 1 (the larger first).
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    y = _labels(labels)
    _check_clients(n_clients, len(y))
    rng = np.random.default_rng(seed)
    num_classes = int(y.max()) + 1
    prior = rng.dirichlet(np.full(num_classes, float(alpha)), size=n_clients)
    for _ in range(SINKHORN_STEPS):
        prior = prior / (prior.sum(axis=1, keepdims=True) + 1e-12)
        prior = prior / (prior.sum(axis=0, keepdims=True) + 1e-12)
    return _deal(y, balanced_allocation(prior, np.bincount(y, minlength=num_classes)), rng)


def long_tail_counts(class_counts, rho: float) -> np.ndarray:
    """Per-class sizes after long-tail subsampling: class i keeps int(N_i * (1/rho)^(i/(C-1))).

    Class 0 keeps everything, class C-1 keeps a 1/rho fraction. A 1e-9 slack before truncation keeps
    float error from turning e.g. 50.0 into 49.
    """
    counts = np.asarray(class_counts, dtype=np.int64)
    if not rho >= 1:
        raise ValueError(f"rho must be >= 1, got {rho}")
    num_classes = len(counts)
    if num_classes == 1:
        return counts.copy()
    factors = (1.0 / rho) ** (np.arange(num_classes) / (num_classes - 1))
    return np.floor(counts * factors + 1e-9).astype(np.int64)


def long_tail_indices(labels, rho: float, seed: int = 0, num_classes: int | None = None) -> np.ndarray:
    """Indices kept by the global long-tail subsampling (imbalance ratio rho), to apply BEFORE splitting.

    Class i keeps a seeded random subset of int(N_i * (1/rho)^(i/(C-1))) of its N_i samples (see
    ``long_tail_counts``); with balanced classes the largest/smallest class ratio is rho (up to the
    truncation to integers). The test set is not touched by this.

    Args:
        labels: (N,) integer class labels.
        rho: imbalance ratio >= 1 (the reference uses 20).
        num_classes: C; default max(label) + 1.
    Returns:
        sorted int64 indices into labels.
    """
    y = _labels(labels)
    num_classes = num_classes if num_classes is not None else int(y.max()) + 1
    keep = long_tail_counts(np.bincount(y, minlength=num_classes), rho)
    rng = np.random.default_rng(seed)
    kept = [rng.choice(np.flatnonzero(y == c), size=keep[c], replace=False) for c in range(num_classes)]
    return np.sort(np.concatenate(kept).astype(np.int64))


def kmeans_split(x, labels, n_clients: int, seed: int = 0, homogeneous_fraction: float = 0.2) -> list[np.ndarray]:
    """Feature-skewed split: a stratified ``homogeneous_fraction`` of the data is dealt to all clients, the
    rest goes to client j when its input falls in k-means cluster j (K clusters on the flattened inputs).

    Client sizes follow the cluster sizes, so they differ.

    Args:
        x: (N, ...) inputs (array or tensor), flattened to (N, D) for k-means.
        labels: (N,) integer class labels (for the stratified part).
        n_clients: K (= number of clusters).
        homogeneous_fraction: share of the data split homogeneously, in [0, 1) (reference: 0.2).
    Returns:
        K disjoint sorted int64 index arrays covering range(N).
    """
    from sklearn.cluster import KMeans

    y = _labels(labels)
    n = len(y)
    _check_clients(n_clients, n)
    if not 0 <= homogeneous_fraction < 1:
        raise ValueError(f"homogeneous_fraction must be in [0, 1), got {homogeneous_fraction}")
    features = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    features = features.reshape(len(features), -1).astype(np.float32)
    if len(features) != n:
        raise ValueError(f"x has {len(features)} samples, labels {n}")

    rng = np.random.default_rng(seed)
    shared = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        shared.append(members[: int(round(homogeneous_fraction * len(members)))])
    shared_idx = np.sort(np.concatenate(shared))
    rest = np.setdiff1d(np.arange(n), shared_idx)

    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    if len(shared_idx):
        for k, part in enumerate(homogeneous_split(y[shared_idx], n_clients, seed)):
            parts[k].append(shared_idx[part])
    if len(rest):
        n_clusters = min(n_clients, len(rest))
        clusters = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit_predict(features[rest])
        for k in range(n_clusters):
            parts[k].append(rest[clusters == k])
    return _sorted_parts(parts)


def shot_noise(x: torch.Tensor, indices, mean: tuple[float, ...], std: tuple[float, ...],
               photons: float = DEFAULT_PHOTONS, seed: int = 0) -> torch.Tensor:
    """A copy of ``x`` with Poisson (shot) noise on the samples ``indices``; the others are unchanged.

    Noise acts on pixels in [0, 1]: the normalised input is mapped back with (mean, std), clipped to [0, 1],
    each pixel v becomes Poisson(v * photons) / photons (mean v, standard deviation sqrt(v / photons)),
    is clipped to [0, 1] again and re-normalised. Fewer photons means stronger noise; the default 3 is
    ImageNet-C's strongest shot-noise severity (std 0.58 at v = 1), the "strong shot noise" of the
    corrupted-client setting.

    Args:
        x: float (N, C, H, W) normalised inputs.
        indices: int indices of the samples to corrupt (e.g. one client's partition).
        mean, std: the per-channel normalisation of x (``Dataset.mean``, ``Dataset.std``).
        photons: expected photon count at intensity 1, > 0.
    Returns:
        a new tensor, same shape, dtype and device as x.
    """
    if not photons > 0:
        raise ValueError(f"photons must be > 0, got {photons}")
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < -len(x) or idx.max() >= len(x)):
        raise ValueError(f"indices out of range for {len(x)} samples")
    out = x.clone()
    if idx.size == 0:
        return out
    shape = (1, -1, 1, 1)
    m = np.asarray(mean, dtype=np.float64).reshape(shape)
    s = np.asarray(std, dtype=np.float64).reshape(shape)
    pixels = np.clip(x[torch.as_tensor(idx)].detach().cpu().numpy().astype(np.float64) * s + m, 0.0, 1.0)
    noisy = np.clip(np.random.default_rng(seed).poisson(pixels * photons) / photons, 0.0, 1.0)
    out[torch.as_tensor(idx)] = torch.as_tensor((noisy - m) / s, dtype=x.dtype).to(x.device)
    return out
