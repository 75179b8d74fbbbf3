"""Experiments: a TOML config -> the active-learning loop -> results.json, learning_curve.png, checkpoints.

The names below are imported on first use (PEP 562): a Flower node that only needs the config (``config``) does
not import the runner, nor matplotlib through the plots.
"""

import importlib

_NAMES = {"ConfigError": "config", "ExperimentConfig": "config", "load_config": "loading",
          "parse_override": "loading", "plot_learning_curve": "plot", "ResumeError": "checkpoint",
          "run_experiment": "runner", "results_table": "summary"}

__all__ = list(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
