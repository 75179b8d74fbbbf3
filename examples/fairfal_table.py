"""The FairFAL paper's FMNIST-LT comparison: Random, KAFAL, LoGo, IFAL and FairFAL at alpha 0.1 and 100, run
over several seeds and tabulated (mean +- std of the final test accuracy, and the class histogram of what the
clients labeled).

    python examples/fairfal_table.py --schedule reduced --seeds 0 1 2 --out runs/fairfal-table \
        --record docs/fairfal_table/reduced.json
    python examples/fairfal_table.py --schedule full --seeds 0 1 2 --out runs/fairfal-table-full   # GPU

Each run is ``secure-fal run examples/configs/fairfal_fmnist_lt_alpha{A}[_reduced].toml`` with the method's
flags (``METHODS``) and ``--seed S``, into OUT/alpha{A}/{method}/seed{S}; a finished run (results.json) is read
back, an interrupted one resumed, so the command can be repeated until the table is complete. ``--record FILE``
keeps a small JSON summary of every finished run (``summarize``: accuracies, labeled class histogram, wall time,
commit, threads), adds each run to it as it finishes and reads runs back from it, so a table can be completed over
several machines (docs/fairfal_table/ holds ours). The table goes to OUT/table.md and to the terminal.
``--set KEY=VALUE`` overrides any config key of every run (e.g. a smoke test on the bundled digits:
``--set data.dataset=digits --set data.rho=10 --set data.clients=5``); ``--table-only`` prints the table of
what the record and OUT already hold, running nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from secure_fal.experiment import load_config, parse_override, run_experiment
from secure_fal.experiment.runner import CHECKPOINT_FILE, RESULTS_FILE
from secure_fal.experiment.summary import text_table

CONFIGS = Path(__file__).parent / "configs"
ALPHAS = ("0.1", "100")
METHODS = {
    "Random": {"active.strategy": "f-al", "active.sampler": "random"},
    "KAFAL": {"active.strategy": "kafal"},
    "LoGo": {"active.strategy": "logo"},
    "IFAL": {"active.strategy": "ifal"},
    "FairFAL": {"active.strategy": "fairfal"},
}
"""The paper's table, in its order: method -> config overrides."""


def config_path(alpha: str, schedule: str) -> Path:
    return CONFIGS / f"fairfal_fmnist_lt_alpha{alpha}{'_reduced' if schedule == 'reduced' else ''}.toml"


def cell(alpha: str, method: str, seed: int) -> str:
    """A run's key in the record and its directory under OUT: ``alpha{A}/{method}/seed{S}``."""
    return f"alpha{alpha}/{method}/seed{seed}"


def summarize(doc: dict) -> dict:
    """What the table needs of a results document: final and per-cycle accuracy (in [0, 1]), the labeled class
    histogram of the last cycle (samples per class, summed over clients), wall seconds, and where it ran (commit,
    timestamp, device, torch threads of the process that tabulated it)."""
    prov = doc.get("provenance", {})
    return {"final_accuracy": doc["final_accuracy"],
            "cycle_accuracy": [c["accuracy"] for c in doc["cycles"]],
            "class_histogram": doc["cycles"][-1]["class_histogram"],
            "wall_seconds": doc["wall_seconds"],
            "protocol": doc.get("config", {}).get("secure", {}).get("protocol"),
            "git_commit": prov.get("git_commit"), "timestamp": prov.get("timestamp"), "device": prov.get("device"),
            "torch_threads": torch.get_num_threads()}


def run_one(path: Path, overrides: dict, out: Path) -> dict:
    """The results document of one run: read back if finished, resumed if interrupted, else run."""
    if (out / RESULTS_FILE).exists():
        return json.loads((out / RESULTS_FILE).read_text())
    return run_experiment(load_config(path, overrides), out, resume=(out / CHECKPOINT_FILE).exists(), quiet=True)


def read_record(path: Path | None) -> dict[str, dict]:
    """The record's runs by ``cell`` key ({} when there is none yet)."""
    if path is None or not path.exists():
        return {}
    return json.loads(path.read_text())["runs"]


def write_record(path: Path, runs: dict[str, dict]) -> None:
    """Rewrite the record, one run per line in key order (via a temporary file: an interrupted write leaves the
    old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    lines = [f"  {json.dumps(key)}: {json.dumps(runs[key])}" for key in sorted(runs)]
    tmp.write_text('{"runs": {\n' + ",\n".join(lines) + "\n}}\n")
    os.replace(tmp, path)


def table(results: dict[tuple[str, str], list[dict]], alphas: list[str], methods: list[str]) -> str:
    """Markdown-ready text from ``summarize`` documents: per alpha, one row per method (final accuracy mean +- std
    over seeds, seeds, mean labeled class histogram at the last cycle, wall minutes per run)."""
    blocks = []
    for alpha in alphas:
        rows = []
        for method in methods:
            runs = results.get((alpha, method), [])
            if not runs:
                continue
            accs = [100 * r["final_accuracy"] for r in runs]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            hists = [r["class_histogram"] for r in runs]
            mean_hist = [round(sum(h[c] for h in hists) / len(hists)) for c in range(len(hists[0]))]
            minutes = statistics.mean(r["wall_seconds"] for r in runs) / 60
            rows.append([method, f"{statistics.mean(accs):.2f} +- {spread:.2f}", len(runs),
                         " ".join(map(str, mean_hist)), f"{minutes:.1f}"])
        blocks.append(f"alpha = {alpha}\n" + text_table(
            ["method", "final accuracy %", "seeds", "labeled per class (mean)", "min / run"], rows))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedule", choices=("reduced", "full"), default="reduced")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", nargs="+", choices=ALPHAS, default=list(ALPHAS))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--protocol", choices=("plaintext", "masking", "ckks"), help="default: the config's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--out", type=Path, default=Path("runs/fairfal-table"))
    parser.add_argument("--record", type=Path, help="JSON summary of finished runs, read and extended")
    parser.add_argument("--table-only", action="store_true", help="tabulate what is there, run nothing")
    args = parser.parse_args(argv)

    common = dict(parse_override(text) for text in args.set)
    if args.protocol:
        common["secure.protocol"] = args.protocol
    results: dict[tuple[str, str], list[dict]] = {}
    for alpha in args.alphas:
        for method in args.methods:
            for seed in args.seeds:
                key, out = cell(alpha, method, seed), args.out / cell(alpha, method, seed)
                recorded = read_record(args.record).get(key)
                if recorded is None and args.table_only and not (out / RESULTS_FILE).exists():
                    continue
                started = time.perf_counter()
                if recorded is None:
                    recorded = summarize(run_one(config_path(alpha, args.schedule),
                                                 {**common, **METHODS[method], "seed": seed}, out))
                    if args.record is not None:
                        write_record(args.record, {**read_record(args.record), key: recorded})
                results.setdefault((alpha, method), []).append(recorded)
                print(f"alpha {alpha} {method} seed {seed}: final accuracy {100 * recorded['final_accuracy']:.2f} % "
                      f"({time.perf_counter() - started:.0f} s here)", flush=True)
    text = table(results, args.alphas, args.methods)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
