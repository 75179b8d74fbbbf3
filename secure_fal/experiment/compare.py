"""``secure-fal compare``: runs grouped into methods, mean +- std per method, paired tests against a baseline.

Per method (runs whose configs differ only in the seed, ``grouping.group_runs``), over its seeds:

- ``final_accuracy``: test accuracy after the last cycle; ``mean_accuracy``: mean over the cycles (the area under
  the learning curve, per cycle); ``worst_class_accuracy``: the lowest per-class test accuracy after the last cycle;
- ``balance``: class balance of the last cycle's labeled set (``metrics.class_balance``, 1 = even);
- ``secagg_mib`` and ``secagg_seconds``: bytes (MiB) and protocol seconds (server + all clients) of every secure
  sum of the run; ``wall_seconds``;
- the per-cycle accuracy curve (mean and std per cycle).

Every other method is paired with the baseline by seed (the seeds both ran) on ``TESTED`` metrics: the
Hodges-Lehmann shift (method - baseline) and the Wilcoxon signed-rank p-value (``stats``).
Writes ``compare.csv`` (a row per method), ``compare.json`` (everything, per-seed values included),
``accuracy.png`` and ``worst_class_accuracy.png`` (``plot.plot_learning_curve``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import UserError
from .grouping import group_runs, title_of
from .metrics import class_balance
from .plot import plot_learning_curve
from .stats import mean_std, paired
from .summary import text_table

METRICS = ("final_accuracy", "mean_accuracy", "worst_class_accuracy", "balance", "secagg_mib", "secagg_seconds",
           "wall_seconds")
TESTED = ("final_accuracy", "mean_accuracy", "worst_class_accuracy")
PERCENT = {"final_accuracy", "mean_accuracy", "worst_class_accuracy"}
COMPARE_FILES = ("compare.csv", "compare.json", "accuracy.png", "worst_class_accuracy.png")


def find_results(paths: Sequence[str | Path]) -> list[dict]:
    """The results documents of ``paths``: a run directory, a ``results.json``, or a folder searched recursively
    (a sweep); each document gets its directory as ``run_dir``.

    Raises:
        UserError: a path that does not exist or holds no results.json.
    """
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        files = [path] if path.is_file() else sorted(path.rglob("results.json"))
        if not files:
            raise UserError(f"{path}: no results.json in it or below it")
        for file in files:
            doc = json.loads(file.read_text())
            doc["run_dir"] = str(file.parent)
            runs.append(doc)
    return runs


def run_metrics(results: Mapping) -> dict[str, float]:
    """The ``METRICS`` of one run (accuracies in [0, 1]; nan where the run did not record a value)."""
    cycles = results["cycles"]
    agg = results["secure_aggregation"]
    worst = cycles[-1].get("worst_class_accuracy")
    return {"final_accuracy": cycles[-1]["accuracy"],
            "mean_accuracy": sum(c["accuracy"] for c in cycles) / len(cycles),
            "worst_class_accuracy": math.nan if worst is None else worst,
            "balance": class_balance(cycles[-1]["class_histogram"]),
            "secagg_mib": agg.get("total_bytes", 0) / 2**20,
            "secagg_seconds": agg.get("server_seconds", 0) + agg.get("client_seconds", 0),
            "wall_seconds": results["wall_seconds"]}


def compare(runs: Sequence[Mapping], baseline: str | None = None) -> dict:
    """The comparison document (what ``compare.json`` holds).

    Args:
        runs: results documents.
        baseline: the baseline method's label, or a text found in exactly one label (default: the first method).
    Returns:
        {"title", "differing_keys", "baseline", "methods": [{"label", "seeds", "run_dirs", "values": {metric: per
        seed}, "mean": {...}, "std": {...}, "curve": {"labeled_fraction", "mean", "std"}, "vs_baseline": {metric:
        {"n", "shift", "p_value"}} (not for the baseline)}]}.
    Raises:
        UserError: no runs, or a baseline that names no method or several.
    """
    if not runs:
        raise UserError("no runs to compare")
    groups, keys = group_runs(runs)
    labels = list(groups)
    base = labels[0] if baseline is None else _pick(baseline, labels)
    methods = []
    for label, members in groups.items():
        values = {m: [run_metrics(r)[m] for r in members] for m in METRICS}
        stats = {m: mean_std(v) for m, v in values.items()}
        n = min(len(r["cycles"]) for r in members)
        per_cycle = [mean_std([r["cycles"][c]["accuracy"] for r in members]) for c in range(n)]
        methods.append({"label": label, "seeds": [r["config"]["seed"] for r in members],
                        "run_dirs": [r.get("run_dir") for r in members], "values": values,
                        "mean": {m: s[0] for m, s in stats.items()}, "std": {m: s[1] for m, s in stats.items()},
                        "curve": {"labeled_fraction": [members[0]["cycles"][c]["labeled_fraction"] for c in range(n)],
                                  "mean": [m for m, _ in per_cycle], "std": [s for _, s in per_cycle]}})
    reference = next(m for m in methods if m["label"] == base)
    for method in methods:
        if method is not reference:
            method["vs_baseline"] = {m: _paired(method, reference, m) for m in TESTED}
    return {"title": title_of(runs, keys), "differing_keys": keys, "baseline": base, "methods": methods}


def _paired(method: dict, reference: dict, metric: str) -> dict:
    mine = dict(zip(method["seeds"], method["values"][metric]))
    theirs = dict(zip(reference["seeds"], reference["values"][metric]))
    seeds = [s for s in mine if s in theirs and not (math.isnan(mine[s]) or math.isnan(theirs[s]))]
    result = paired([mine[s] for s in seeds], [theirs[s] for s in seeds])
    return {"n": result.n, "shift": result.shift, "p_value": result.p_value}


def _pick(baseline: str, labels: Sequence[str]) -> str:
    if baseline in labels:
        return baseline
    found = [label for label in labels if baseline in label]
    if len(found) != 1:
        raise UserError(f"--baseline {baseline!r} matches {len(found)} methods; the methods are: "
                        f"{'; '.join(labels)}")
    return found[0]


def comparison_table(doc: Mapping) -> str:
    """The text table: per method n, mean +- std of each metric (accuracies and balance in %), and against the
    baseline the Hodges-Lehmann shift of the final accuracy (percentage points) with its Wilcoxon p-value."""
    header = ["method", "n", "final acc %", "mean acc %", "worst class %", "balance", "secagg MiB", "secagg s",
              f"final acc vs {doc['baseline']}: HL shift (p)"]
    rows = []
    for m in doc["methods"]:
        cells = [m["label"], len(m["seeds"])]
        for metric in METRICS[:-1]:
            scale, digits = (100, 1) if metric in PERCENT else (1, 2)
            cells.append(f"{scale * m['mean'][metric]:.{digits}f} +- {scale * m['std'][metric]:.{digits}f}")
        vs = m.get("vs_baseline", {}).get("final_accuracy")
        cells.append("baseline" if vs is None else f"{100 * vs['shift']:+.1f} pp (p={vs['p_value']:.3g}, n={vs['n']})")
        rows.append(cells)
    return f"{doc['title']}\n{text_table(header, rows)}"


def write_comparison(doc: Mapping, runs: Sequence[Mapping], out: Path) -> list[Path]:
    """Write ``COMPARE_FILES`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in COMPARE_FILES]
    with open(paths[0], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "n", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")),
                         *(f"{m}_vs_baseline_{k}" for m in TESTED for k in ("shift", "p_value"))])
        for m in doc["methods"]:
            vs = m.get("vs_baseline", {})
            writer.writerow([m["label"], len(m["seeds"]), *(m[s][k] for k in METRICS for s in ("mean", "std")),
                             *(vs[t][k] if t in vs else "" for t in TESTED for k in ("shift", "p_value"))])
    paths[1].write_text(json.dumps(_without_nan(doc), indent=1))
    groups = group_runs(runs)[0]
    for path, metric in zip(paths[2:], ("accuracy", "worst_class_accuracy")):
        plot_learning_curve(groups, path, title=doc["title"], metric=metric)
    return paths


def _without_nan(value):
    """``value`` with every float nan replaced by None (JSON has no nan)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(v) for v in value]
    return value
