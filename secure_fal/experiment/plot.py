"""Learning curves (test accuracy against labeled samples) as PNG, drawn with matplotlib's Agg canvas."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .summary import method_label


def plot_learning_curve(results: Mapping | Mapping[str, Mapping], path: str | Path, *,
                        title: str | None = None) -> None:
    """Write a PNG of accuracy (%) against the share of the train set labeled (%), one line per run.

    Args:
        results: one results document (``secure_fal.experiment.runner.results_document``), or a mapping
            label -> results document to compare runs.
        path: PNG file to write.
        title: figure title; default: dataset, split and protocol of the first run.
    """
    runs = {method_label(results): results} if "cycles" in results else dict(results)
    if not runs:
        raise ValueError("no run to plot")
    figure = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for label, run in runs.items():
        cycles = run["cycles"]
        ax.plot([100 * c["labeled_fraction"] for c in cycles], [100 * c["accuracy"] for c in cycles],
                marker="o", label=label)
    first = next(iter(runs.values()))["config"]
    ax.set_title(title or f"{first['data']['dataset']}, {first['data']['split']} split, "
                          f"{first['data']['clients']} clients, {first['secure']['protocol']}")
    ax.set_xlabel("labeled share of the train set (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    figure.savefig(path, format="png")
