"""A FAL experiment over Flower's simulation engine, checked against the same experiment in one process.

    python examples/flower_fal.py [STRATEGY] [PROTOCOL]      # default: fairfal masking

Flower's simulation engine (Ray, extra ``secure_fal[flower]``) runs the FAL ServerApp and one ClientApp per
simulated node: the server drives cycles, FedAvg rounds and every secure sum (k-means and ownership for
fal-global, gamma for fairfal, CKKS keys dealt in band); each client keeps its pool and labels. The same
experiment then runs in process (``run_experiment``) with one torch thread, as the simulation's Ray workers
use, and the two learning curves are printed side by side: they are equal. For real machines see
``secure-fal flower-app`` and protocols/flower.md. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import sys
import tempfile
import time

import torch

from secure_fal.experiment import load_config, run_experiment
from secure_fal.flower.simulation import simulate_fal

# Digits, 3 clients with Dirichlet(0.5) class mixes, a small MLP, 3 cycles of 30 labels each.
SETTINGS = {
    "device": "cpu", "data.clients": 3, "training.model": "mlp", "training.model_options": {"hidden": [32]},
    "training.rounds": 2, "training.local_epochs": 5, "training.lr": 0.1, "training.batch_size": 16,
    "training.alone_epochs": 5, "active.cycles": 3, "active.budget": 30,
}


def main(strategy: str = "fairfal", protocol: str = "masking") -> None:
    options = {"threshold": 2} if protocol == "masking" else {}
    config = load_config(None, {**SETTINGS, "active.strategy": strategy, "secure.protocol": protocol,
                                "secure.options": options})
    started = time.perf_counter()
    record = simulate_fal(config, config.data.clients)
    flower_seconds = time.perf_counter() - started
    if "error" in record:
        sys.exit(f"the Flower run failed: {record['error']}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        results = run_experiment(config, tmp, quiet=True)
        local_seconds = time.perf_counter() - started
    print(f"{strategy} under {protocol}, 3 clients on digits")
    print("cycle  Flower acc  in-process acc  secure sums  selected per client")
    for got, want in zip(record["cycles"], results["cycles"], strict=True):
        sums = len(got["rounds"]) + len(got.get("selection", {}).get("sums", []))
        selected = got.get("selection", {}).get("selected", {})
        print(f"{got['cycle']:>5}  {got['accuracy']:>10.4f}  {want['accuracy']:>14.4f}  {sums:>11}  "
              f"{[selected.get(str(k), 0) for k in range(config.data.clients)]}")
    same = all(g["accuracy"] == w["accuracy"] for g, w in zip(record["cycles"], results["cycles"]))
    print(f"equal: {same}; Flower simulation {flower_seconds:.1f} s (Ray start-up included), "
          f"in process {local_seconds:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
