"""Learning curves as PNG, drawn with matplotlib's Agg canvas: the mean over seeds per method, with a band and
error bars of +- one standard deviation when a method has several runs; the legend sits outside the axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .grouping import group_runs, title_of
from .summary import method_label

METRICS = {"accuracy": "test accuracy (%)", "worst_class_accuracy": "worst-class test accuracy (%)"}
"""Cycle-record keys a curve can show -> y-axis label."""


def plot_learning_curve(results: Mapping | Mapping[str, Mapping | Sequence[Mapping]], path: str | Path, *,
                        title: str | None = None, metric: str = "accuracy") -> None:
    """Write a PNG of ``metric`` (%) against the share of the train set labeled (%), one curve per method.

    Args:
        results: one results document (``runner.results_document``); or label -> a results document, or a list of
            them (one per seed: the curve is their mean, with a +- 1 std band and error bars); or a list of results
            documents, grouped into methods by what differs between their configs (``grouping.group_runs``).
        path: PNG file to write.
        title: figure title; default: what every run shares and what differs between them (``grouping.title_of``).
        metric: a key of ``METRICS``.
    Raises:
        ValueError: no run, or an unknown metric.
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}: choose one of {', '.join(METRICS)}")
    if isinstance(results, Mapping) and "cycles" in results:
        methods = {method_label(results): [results]}
    elif isinstance(results, Mapping):
        methods = {label: [runs] if isinstance(runs, Mapping) else list(runs) for label, runs in results.items()}
    else:
        methods = group_runs(results)[0]
    everything = [run for runs in methods.values() for run in runs]
    if not everything:
        raise ValueError("no run to plot")
    figure = Figure(figsize=(7.6, 4.4), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for label, runs in methods.items():
        n = min(len(r["cycles"]) for r in runs)
        x = np.mean([[100 * c["labeled_fraction"] for c in r["cycles"][:n]] for r in runs], axis=0)
        y = np.array([[100 * (c.get(metric) if c.get(metric) is not None else np.nan) for c in r["cycles"][:n]]
                      for r in runs])
        mean = np.nanmean(y, axis=0)
        if len(runs) > 1:
            std = np.nanstd(y, axis=0, ddof=1)
            line = ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=f"{label} (n={len(runs)})")
            ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=line.lines[0].get_color())
        else:
            ax.plot(x, mean, marker="o", label=label)
    ax.set_title(title or title_of(everything, group_runs(everything)[1]), fontsize="medium", wrap=True)
    ax.set_xlabel("labeled share of the train set (%)")
    ax.set_ylabel(METRICS[metric])
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    figure.savefig(path, format="png", bbox_inches="tight")
