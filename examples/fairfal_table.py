"""The FairFAL paper's FMNIST-LT comparison: Random, KAFAL, LoGo, IFAL and FairFAL at alpha 0.1 and 100, run
over several seeds and tabulated (mean +- std of the final test accuracy, and the class histogram of what the
clients labeled).

    python examples/fairfal_table.py --schedule reduced --seeds 0 1 2 --out runs/fairfal-table
    python examples/fairfal_table.py --schedule full --seeds 0 1 2 --out runs/fairfal-table-full   # GPU

Each run is ``secure-fal run examples/configs/fairfal_fmnist_lt_alpha{A}[_reduced].toml`` with the method's
flags (``METHODS``) and ``--seed S``, into OUT/alpha{A}/{method}/seed{S}; a finished run (results.json) is read
back, an interrupted one resumed, so the command can be repeated until the table is complete. The table goes to
OUT/table.md and to the terminal. ``--set KEY=VALUE`` overrides any config key of every run (e.g. a smoke test on
the bundled digits: ``--set data.dataset=digits --set data.rho=10 --set data.clients=5``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

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


def run_one(path: Path, overrides: dict, out: Path) -> dict:
    """The results document of one run: read back if finished, resumed if interrupted, else run."""
    if (out / RESULTS_FILE).exists():
        return json.loads((out / RESULTS_FILE).read_text())
    return run_experiment(load_config(path, overrides), out, resume=(out / CHECKPOINT_FILE).exists(), quiet=True)


def table(results: dict[tuple[str, str], list[dict]], alphas: list[str], methods: list[str]) -> str:
    """Markdown-ready text: per alpha, one row per method (final accuracy mean +- std over seeds, seeds,
    mean labeled class histogram at the last cycle, wall minutes per run)."""
    blocks = []
    for alpha in alphas:
        rows = []
        for method in methods:
            runs = results.get((alpha, method), [])
            if not runs:
                continue
            accs = [100 * r["final_accuracy"] for r in runs]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            hists = [r["cycles"][-1]["class_histogram"] for r in runs]
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
    args = parser.parse_args(argv)

    common = dict(parse_override(text) for text in args.set)
    if args.protocol:
        common["secure.protocol"] = args.protocol
    results: dict[tuple[str, str], list[dict]] = {}
    for alpha in args.alphas:
        for method in args.methods:
            for seed in args.seeds:
                out = args.out / f"alpha{alpha}" / method / f"seed{seed}"
                started = time.perf_counter()
                doc = run_one(config_path(alpha, args.schedule), {**common, **METHODS[method], "seed": seed}, out)
                results.setdefault((alpha, method), []).append(doc)
                print(f"alpha {alpha} {method} seed {seed}: final accuracy {100 * doc['final_accuracy']:.2f} % "
                      f"({time.perf_counter() - started:.0f} s here)", flush=True)
    text = table(results, args.alphas, args.methods)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
