"""End to end: one federated active-learning experiment under each protocol, secure against plaintext.

The same config (``secure_fal.experiment``) runs once per protocol, only ``secure.protocol`` differs; every
random draw derives from the config's seed, so the runs differ only by how their secure sums are computed
(plaintext and masking give bitwise equal sums, hence the same accuracy; CKKS within its error bound).
Reported per run: wall seconds and this process's CPU seconds (all threads; less sensitive than wall time
to other jobs on a shared machine), every cycle's accuracy, a digest of the selections (every client's labeled
set, in order, from the run's checkpoint) and what secure aggregation itself cost (rounds, bytes, server +
client seconds inside the protocol machines); per secure protocol, the ratios to the plaintext run, the
accuracy difference and ``identical``: whether every one of its runs selected the same samples and reached the
same accuracy in every cycle as plaintext's first run. The load average before each run is recorded with it.

Shared machines: torch runs with ``torch_threads`` intra-op threads (default 1). With 2 threads on 2 cores
shared with other jobs, OpenMP thread contention made identical training steps (and k-means ``index_add_``
calls) vary by 2-5x between runs, swamping the secure-aggregation cost; one thread makes runs repeatable.
The protocols run interleaved, ``repeats`` times (plaintext, masking, ckks, plaintext, ...), and the summary
takes the median per protocol, so a drift in load hits every protocol alike.

Experiments: a config file (``config``: its own schedule, e.g. examples/configs/fairfal_digits.toml), or the
built-in ``digits`` (bundled, always) and ``fmnist-lt`` (Fashion-MNIST long tail rho = 20, only when
``/usr/share/datasets/fashion-mnist`` exists). Both: 10 clients, Dirichlet(0.5) split, reference CNN with
the reference local training (5 local epochs, batch 64, SGD lr 0.01), 20 FedAvg rounds per cycle, FAL-Global
(FedAvg and federated k-means: every cross-client value goes through the secure sum), 4 cycles.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from .grid import ProtocolSpec

E2E_PROTOCOLS = ("plaintext", "masking", "ckks")
# the reference local training (5 local epochs, batch 64, SGD 0.01) with fewer rounds and cycles
COMMON = {"data.split": "dirichlet", "data.alpha": 0.5, "data.clients": 10, "training.model": "cnn",
          "training.rounds": 20, "active.strategy": "fal-global", "active.cycles": 4, "device": "cpu", "seed": 0}
EXPERIMENTS = {
    "digits": {**COMMON, "name": "bench-e2e-digits", "data.dataset": "digits"},
    "fmnist-lt": {**COMMON, "name": "bench-e2e-fmnist-lt", "data.dataset": "fmnist", "data.rho": 20.0},
}


def available_experiments() -> tuple[list[str], list[str]]:
    """(experiment names that can run here, one line per skipped experiment saying why)."""
    from ..data.datasets import DEBIAN_FMNIST_DIR

    names, skipped = ["digits"], []
    if DEBIAN_FMNIST_DIR.exists():
        names.append("fmnist-lt")
    else:
        skipped.append(f"fmnist-lt skipped: {DEBIAN_FMNIST_DIR} not found")
    return names, skipped


def run_one(overrides: Mapping[str, object], out_dir: Path, config_path: Path | None = None) -> dict:
    """Run one experiment (``config_path`` with ``overrides``, into a fresh ``out_dir``); returns the measured
    fields of its run."""
    from ..experiment import load_config, run_experiment

    config = load_config(config_path, dict(overrides))
    load = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results = run_experiment(config, out_dir, quiet=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    agg = results["secure_aggregation"]
    labeled = json.loads((out_dir / "checkpoint.json").read_text())["labeled"]
    return {"wall_s": wall, "cpu_s": cpu, "load_before": load, "final_accuracy": results["final_accuracy"],
            "cycle_accuracies": [c["accuracy"] for c in results["cycles"]],
            "selections": hashlib.sha256(json.dumps(labeled).encode()).hexdigest()[:16],
            "secagg_rounds": agg.get("rounds", 0), "secagg_bytes": agg.get("total_bytes", 0),
            "secagg_s": agg.get("server_seconds", 0.0) + agg.get("client_seconds", 0.0)}


def summarize(runs: list[dict]) -> list[dict]:
    """One row per (experiment, protocol): medians over its runs, ratios to plaintext's medians.

    ``final_accuracy`` is that of the first run (every run of a config computes the same model;
    ``accuracies`` lists them all); ``identical``: every run has plaintext's first run's selections and cycle
    accuracies.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["experiment"], run["protocol"]), []).append(run)
    rows = []
    for (experiment, protocol), group in groups.items():
        row = {"experiment": experiment, "protocol": protocol, "runs": len(group),
               "accuracies": [g["final_accuracy"] for g in group], "final_accuracy": group[0]["final_accuracy"],
               "load_before": [g["load_before"] for g in group]}
        for key in ("wall_s", "cpu_s", "secagg_s"):
            row[key] = statistics.median(g[key] for g in group)
        row["secagg_rounds"], row["secagg_bytes"] = group[0]["secagg_rounds"], group[0]["secagg_bytes"]
        rows.append(row)
    for row in rows:
        ref = next(r for r in rows if r["experiment"] == row["experiment"] and r["protocol"] == "plaintext")
        row["wall_ratio"] = row["wall_s"] / ref["wall_s"]
        row["cpu_ratio"] = row["cpu_s"] / ref["cpu_s"]
        row["accuracy_diff"] = row["final_accuracy"] - ref["final_accuracy"]
        first = next(r for r in runs if r["experiment"] == row["experiment"] and r["protocol"] == "plaintext")
        row["identical"] = all(r["selections"] == first["selections"] and r["cycle_accuracies"] ==
                               first["cycle_accuracies"] for r in runs
                               if r["experiment"] == row["experiment"] and r["protocol"] == row["protocol"])
    return rows


def run_end_to_end(out_dir: str | Path, *, experiments: list[str] | None = None, config: str | Path | None = None,
                   protocols: tuple[str, ...] = E2E_PROTOCOLS, extra: Mapping[str, object] | None = None,
                   repeats: int = 2, torch_threads: int = 1,
                   log: Callable[[str], None] = print) -> tuple[list[dict], list[dict], list[str]]:
    """Run each experiment under each protocol, interleaved, ``repeats`` times; returns (rows, runs, notes).

    Args:
        out_dir: run i of a protocol writes its results into out_dir/<experiment>/<protocol>-<i>/.
        experiments: names from EXPERIMENTS (default: all available here, unless ``config`` is given).
        config: a config file to run instead (named by its file name without extension in the results).
        protocols: protocol specs (``grid.ProtocolSpec`` syntax: a name, or e.g. ``ckks:mode=dealer``, whose
            options become the run's ``secure.options``); must include 'plaintext' (the reference of the ratios).
            A run's directory and its rows carry the spec as written.
        extra: config overrides applied to every run (dotted keys, e.g. {"training.rounds": 2}).
        torch_threads: torch intra-op threads during the runs (restored afterwards).
    Returns:
        rows: ``summarize(runs)``; runs: one dict per run; notes: skipped experiments.
    """
    import torch

    if "plaintext" not in protocols:
        raise ValueError(f"protocols must include 'plaintext' (the reference), got {protocols}")
    names, notes = available_experiments()
    plans = {}
    if config is not None:
        config = Path(config)
        if experiments is not None:
            raise ValueError("give either experiments or a config file, not both")
        names, notes, plans = [config.stem], [], {config.stem: ({}, config)}
    elif experiments is not None:
        unknown = [e for e in experiments if e not in EXPERIMENTS]
        if unknown:
            raise ValueError(f"unknown experiment {unknown[0]!r}; choose from {sorted(EXPERIMENTS)}")
        notes = [n for n in notes if n.split(" ")[0] in experiments]
        names = [e for e in experiments if e in names]
    plans = plans or {name: (EXPERIMENTS[name], None) for name in names}
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    runs = []
    try:
        for name in names:
            for i in range(repeats):
                for protocol in protocols:
                    base, path = plans[name]
                    spec = ProtocolSpec.parse(protocol)
                    overrides = {**base, **(extra or {}), "secure.protocol": spec.name}
                    if spec.options:
                        overrides["secure.options"] = dict(spec.options)
                    run = {"experiment": name, "protocol": protocol, "repeat": i,
                           **run_one(overrides, Path(out_dir) / name / f"{protocol}-{i}", path)}
                    log(format_run(run))
                    runs.append(run)
    finally:
        torch.set_num_threads(threads)
    rows = summarize(runs)
    for row in rows:
        log(format_e2e_row(row))
    return rows, runs, notes


def format_run(run: Mapping) -> str:
    return (f"  run {run['experiment']} {run['protocol']} #{run['repeat']}: wall {run['wall_s']:.1f} s, "
            f"cpu {run['cpu_s']:.1f} s, accuracy {run['final_accuracy']:.4f}, secure agg {run['secagg_s']:.2f} s, "
            f"load before {run['load_before']:.1f}")


def format_e2e_row(row: Mapping) -> str:
    return (f"end-to-end {row['experiment']} {row['protocol']} (median of {row['runs']}): wall {row['wall_s']:.1f} s "
            f"(x{row['wall_ratio']:.3f}), cpu {row['cpu_s']:.1f} s (x{row['cpu_ratio']:.3f}), final accuracy "
            f"{row['final_accuracy']:.4f} ({row['accuracy_diff']:+.4f}), secure agg {row['secagg_rounds']} rounds "
            f"{row['secagg_bytes'] / 1e6:.1f} MB {row['secagg_s']:.2f} s; selections and cycle accuracies "
            f"{'identical to' if row['identical'] else 'DIFFERENT from'} plaintext's")
