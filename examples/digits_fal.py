"""Shared body of the per-protocol examples: a short FAL comparison on the bundled 8x8 digits.

Three strategies (F-AL with margin sampling, FAL-Global with quota, FairFAL) run the same short schedule with
the chosen secure-aggregation protocol; a table compares final accuracy and what secure aggregation cost.
Run one of ``plaintext_fal.py``, ``ckks_fal.py``, ``masking_fal.py`` (each under two minutes on 2 CPU cores).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from secure_fal.experiment import load_config, run_experiment
from secure_fal.experiment.summary import text_table

STRATEGIES = ("f-al", "fal-global", "fairfal")

# Digits, 4 clients with Dirichlet(1.0) class mixes, the reference CNN, 3 cycles from 5% to 15% labeled.
SETTINGS = {
    "device": "cpu",
    "data.dataset": "digits", "data.split": "dirichlet", "data.alpha": 1.0, "data.clients": 4,
    "training.model": "cnn", "training.rounds": 15, "training.local_epochs": 2, "training.lr": 0.05,
    "training.alone_epochs": 10,
    "active.cycles": 3, "active.initial_fraction": 0.05, "active.query_fraction": 0.05,
}


def main(protocol: str) -> None:
    """Run the three strategies under ``protocol`` and print one row per strategy."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in STRATEGIES:
            config = load_config(None, {**SETTINGS, "name": f"digits-{strategy}", "active.strategy": strategy,
                                        "secure.protocol": protocol})
            started = time.perf_counter()
            results = run_experiment(config, Path(tmp) / strategy, quiet=True)
            agg = results["secure_aggregation"]
            rows.append([strategy, results["sampler"],
                         " -> ".join(f"{100 * c['accuracy']:.1f}" for c in results["cycles"]),
                         results["cycles"][-1]["labeled"], int(agg["rounds"]), f"{agg['total_bytes'] / 2**20:.1f}",
                         f"{agg['server_seconds'] + agg['client_seconds']:.2f}",
                         f"{time.perf_counter() - started:.1f}"])
    print(f"FAL on digits, 4 clients (Dirichlet 1.0), CNN, 15 FedAvg rounds x 2 epochs per cycle, protocol {protocol}")
    print(text_table(["strategy", "sampler", "test accuracy % per cycle", "labeled", "secagg rounds", "secagg MiB",
                      "secagg s", "wall s"], rows))
