"""Experiments: a TOML config -> the active-learning loop -> results.json, learning_curve.png, checkpoints."""

from .config import ConfigError, ExperimentConfig, load_config, parse_override
from .plot import plot_learning_curve
from .runner import ResumeError, run_experiment
from .summary import results_table

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "parse_override", "plot_learning_curve",
           "ResumeError", "run_experiment", "results_table"]
