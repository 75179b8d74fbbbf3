"""Time every sampler on a synthetic pool: ``python -m secure_fal.bench.samplers [--device cpu]``.

The pool imitates a trained model's output: long-tailed Gaussian blobs per class as embeddings,
softmax of a linear head as probabilities, a random labeled fraction with true labels. Each sampler
first runs once on a small pool (warm-up, excluded), then selects ``--budget`` from ``--pool``
``--repeats`` times; the table shows the best wall-clock time (CUDA synchronised) and the best
CPU time of the process (all threads), in seconds. On a machine shared with other work the CPU time
is the steadier figure: with ``--threads 1`` it bounds the wall time of an idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from ..sampling import SAMPLERS, PoolView, get_sampler


def synthetic_pool(n: int, dim: int, n_classes: int, labeled_fraction: float, seed: int,
                   device: torch.device, imbalance: float = 20.0) -> PoolView:
    """Long-tailed Gaussian blobs (class i has weight ``imbalance ** (-i / (C - 1))``), ReLU features,
    probabilities from a linear head aligned with the class means, uniform labeled subset."""
    g = torch.Generator().manual_seed(seed)
    share = imbalance ** (-torch.arange(n_classes) / (n_classes - 1))
    y = torch.multinomial(share / share.sum(), n, replacement=True, generator=g)
    means = 3.0 * torch.randn(n_classes, dim, generator=g) / dim ** 0.5
    e = torch.relu(means[y] + 0.6 * torch.randn(n, dim, generator=g))
    head = torch.relu(means)
    logits = 2.0 * e @ head.T - (head * head).sum(1) + torch.randn(n, n_classes, generator=g)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[torch.randperm(n, generator=g)[: int(labeled_fraction * n)]] = True
    return PoolView(probs=torch.softmax(logits, 1).to(device), embeddings=e.to(device),
                    labeled_mask=labeled.to(device), labels=y.to(device))


def _timed(name: str, pool: PoolView, budget: int, seed: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one selection."""
    sampler = get_sampler(name)
    sync = torch.cuda.synchronize if pool.device.type == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    picked = sampler.select(pool, budget, torch.Generator().manual_seed(seed))
    sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if len(torch.unique(picked)) != budget or bool(pool.labeled_mask[picked].any()):
        raise RuntimeError(f"{name} returned an invalid selection")
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--pool", type=int, default=60_000)
    parser.add_argument("--budget", type=int, default=3_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--labeled", type=float, default=0.05, help="labeled fraction (default: 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per sampler, the best is shown (default: 3)")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    pool = synthetic_pool(args.pool, args.dim, args.classes, args.labeled, args.seed, device)
    warmup = synthetic_pool(2_000, args.dim, args.classes, args.labeled, args.seed + 1, device)
    print(f"pool {args.pool} x {args.dim}-d, {args.classes} classes, {int(pool.labeled_mask.sum())} labeled, "
          f"budget {args.budget}, device {device}, {torch.get_num_threads()} CPU threads")
    print(f"{'sampler':<18}{'wall s':>9}{'cpu s':>9}")
    for name in args.samplers:
        _timed(name, warmup, 100, args.seed)
        runs = [_timed(name, pool, args.budget, args.seed) for _ in range(args.repeats)]
        print(f"{name:<18}{min(w for w, _ in runs):>9.3f}{min(c for _, c in runs):>9.3f}", flush=True)


if __name__ == "__main__":
    main()
