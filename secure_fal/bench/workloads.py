"""What the benchmark aggregates: one vector per client, shaped and bounded like the project's real statistics.

Every workload is one secure sum per round. Its ``make(cid, rng)`` draws client ``cid``'s vector (float64,
shape (length,)) with every |value| <= ``bound``, the public bound passed to ``Aggregator.sum``.

- ``cnn``: a FedAvg round of the reference CNN (``build_model('cnn', 1, 28, 10)``): every float entry of
  its state_dict (parameters and BatchNorm running statistics, as FedAvg sends them) plus one for the
  weight, i.e. the vector [n_k * delta_k / T, n_k / T] that ``Aggregator.weighted_mean`` sums
  (``secagg/weighted.py``). delta ~ N(0, 0.01^2) per entry (standard deviation 0.01), n_k uniform in [50, 600]
  labeled samples, T = 2^16 (the weight total: a power of two >= 600 n for up to MAX_CLIENTS = 109 clients);
  public bounds from ``weighted_bounds``: update_bound 16 x weight_bound 1024 (power of two above the largest
  n_k) / T = 0.25 per input, 16 + 109 x 2^-25 on the sum (a 30-bit ring at frac_bits 24, any n).
- ``vector-1m``: 1,000,000 values ~ N(0, 0.01^2), bound 1.
- ``kmeans-k{k}-d{d}``: one federated k-means round (``federated/kmeans.py``): the output of
  ``cluster_stats`` [counts (k), sums (k*d), sums of squares (k*d)], length k * (2d + 1), for 500
  L2-normalised d-dimensional points per client (a Gaussian mixture around 2k directions) assigned to k
  unit-norm global centres (the same for every client, as in a real round); bound 512 = count_bound
  (power of two >= 500) x max(1, point_bound^2).
- ``gamma``: FairFAL's [gamma_k, 1] (length 2), gamma_k uniform in [0.3, 1], bound 1.

``quick`` workloads are the same generators at smoke-test sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..secagg.weighted import weighted_bounds, weighted_input

WEIGHT_STD = 0.01          # standard deviation of a FedAvg delta entry and of the vector-1m values
UPDATE_BOUND = 16.0        # experiment default training.update_bound
WEIGHT_BOUND = 1024.0      # power of two above the largest labeled count
MAX_CLIENTS = 109          # most clients of the FedAvg workloads: 109 x 600 labeled samples <= WEIGHT_TOTAL
WEIGHT_TOTAL = 65536.0     # T: public power of two >= every round's total labeled count
MIN_FRAC_BITS = 24         # the FedAvg sum bound's rounding slack holds for the bench's frac_bits >= 24 (default)
KMEANS_POINTS = 500        # points per client in the k-means workloads
KMEANS_COUNT_BOUND = 512.0  # power of two >= KMEANS_POINTS; point_bound = 1 (normalised embeddings)


@dataclass(frozen=True)
class Workload:
    """One kind of secure sum.

    Attributes:
        name: short id used on the command line and in results.
        length: values per client vector L.
        bound: public bound on every |value| (the ``bound`` of ``Aggregator.sum``).
        make: (client id, generator) -> that client's vector, float64 (length,).
        description: one line for tables and docs.
        sum_bound: public bound on |sum| per coordinate when tighter than n x bound (``FixedPoint.sum_bound``).
    """

    name: str
    length: int
    bound: float
    make: Callable[[int, np.random.Generator], np.ndarray]
    description: str
    sum_bound: float | None = None


@lru_cache(maxsize=1)
def cnn_state_length() -> int:
    """Float entries of the reference CNN's state_dict at 28x28, 1 channel, 10 classes (113,098)."""
    from ..models import build_model

    state = build_model("cnn", 1, 28, 10).state_dict()
    return sum(t.numel() for t in state.values() if t.is_floating_point())


def fedavg_workload(name: str, entries: int) -> Workload:
    """[n_k * delta_k / T, n_k / T] of a model with ``entries`` float state entries (length entries + 1), for up to
    MAX_CLIENTS clients."""

    def make(cid: int, rng: np.random.Generator) -> np.ndarray:
        weight = float(rng.integers(50, 601))
        return weighted_input(rng.normal(0.0, WEIGHT_STD, entries), weight, WEIGHT_TOTAL)

    bound, sum_bound = weighted_bounds(UPDATE_BOUND, WEIGHT_BOUND, WEIGHT_TOTAL, MAX_CLIENTS, MIN_FRAC_BITS)
    return Workload(name, entries + 1, bound, make, f"FedAvg [n_k*delta, n_k] / T, {entries} float state entries + 1",
                    sum_bound)


def gaussian_workload(name: str, length: int) -> Workload:
    """``length`` values ~ N(0, WEIGHT_STD^2), bound 1."""

    def make(cid: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, WEIGHT_STD, length)

    return Workload(name, length, 1.0, make, f"{length:,} values ~ N(0, {WEIGHT_STD}^2)")


def kmeans_workload(k: int, d: int, points: int = KMEANS_POINTS) -> Workload:
    """One round of federated k-means statistics for k clusters in d dimensions (length k * (2d + 1))."""
    import torch

    from ..federated.kmeans import cluster_stats

    count_bound = float(2 ** int(np.ceil(np.log2(points))))
    public = np.random.default_rng([k, d])  # the round's global centres and the data's modes, shared by all
    centres = torch.from_numpy(_unit_rows(public.normal(size=(k, d))))
    modes = _unit_rows(public.normal(size=(2 * k, d)))

    def make(cid: int, rng: np.random.Generator) -> np.ndarray:
        x = _unit_rows(modes[rng.integers(0, 2 * k, points)] + rng.normal(0.0, 0.3 / np.sqrt(d), (points, d)))
        return cluster_stats(torch.from_numpy(x), torch.ones(points, dtype=torch.float64), centres)

    return Workload(f"kmeans-k{k}-d{d}", k * (2 * d + 1), count_bound, make,
                    f"k-means counts + sums + squares, k={k}, d={d}, {points} points/client")


def gamma_workload() -> Workload:
    """FairFAL's [gamma_k, 1]."""

    def make(cid: int, rng: np.random.Generator) -> np.ndarray:
        return np.array([rng.uniform(0.3, 1.0), 1.0])

    return Workload("gamma", 2, 1.0, make, "FairFAL [gamma_k, 1]")


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def standard_workloads() -> dict[str, Workload]:
    """The issue's workloads, by name (building ``cnn`` imports torch and builds the model once)."""
    out = [fedavg_workload("cnn", cnn_state_length()), gaussian_workload("vector-1m", 1_000_000)]
    out += [kmeans_workload(k, d) for k in (10, 100) for d in (64, 640)]
    out.append(gamma_workload())
    return {w.name: w for w in out}


def quick_workloads() -> dict[str, Workload]:
    """Smoke-test sizes of the same generators (lengths 2 to 10,000)."""
    out = [fedavg_workload("fedavg-1k", 999), gaussian_workload("vector-10k", 10_000),
           kmeans_workload(4, 8, points=50), gamma_workload()]
    return {w.name: w for w in out}


WORKLOAD_NAMES = ("cnn", "vector-1m", "kmeans-k10-d64", "kmeans-k10-d640", "kmeans-k100-d64", "kmeans-k100-d640",
                  "gamma")
QUICK_WORKLOAD_NAMES = ("fedavg-1k", "vector-10k", "kmeans-k4-d8", "gamma")


def workloads_by_name(names: list[str] | tuple[str, ...]) -> list[Workload]:
    """Look up standard and quick workloads; ValueError naming an unknown one."""
    known = {**standard_workloads(), **quick_workloads()}
    unknown = [n for n in names if n not in known]
    if unknown:
        choices = ", ".join(dict.fromkeys(WORKLOAD_NAMES + QUICK_WORKLOAD_NAMES))
        raise ValueError(f"unknown workload {unknown[0]!r}; choose from {choices}")
    return [known[n] for n in names]
