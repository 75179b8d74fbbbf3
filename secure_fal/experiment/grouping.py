"""Runs grouped by what differs between their configs: the seed aside, runs with equal configs are one method.

A method's label names only the config keys that differ between the methods compared (``strategy=fairfal,
protocol=masking``), by their last dotted component unless two differing keys share it; a title names what all
runs share (dataset, split, clients, protocol, ...), so that neither repeats the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

IGNORED = ("seed", "name")
"""Keys that never tell methods apart."""
TITLE_KEYS = ("data.dataset", "data.rho", "data.split", "data.alpha", "data.clients", "training.model",
              "active.strategy", "secure.protocol")
"""Keys a title names when all runs share them (in this order; alpha only for a Dirichlet split)."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested ``ExperimentConfig.to_dict`` as dotted key -> value (tables of options stay one value)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and not key.endswith("options"):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dotted keys (outside ``IGNORED``) whose values are not the same in every config, in config order."""
    flat = [flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if k not in IGNORED and len({_text(f.get(k)) for f in flat}) > 1]


def group_runs(runs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[Mapping[str, Any]]], list[str]]:
    """(label -> that method's results documents in seed order, the differing keys), labels in first-seen order.

    Args:
        runs: results documents (``runner.results_document``).
    """
    keys = differing_keys([r["config"] for r in runs])
    short = _short_names(keys)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        flat = flatten(run["config"])
        label = ", ".join(f"{short[k]}={_text(flat.get(k))}" for k in keys) or run["strategy"]
        groups.setdefault(label, []).append(run)
    for members in groups.values():
        members.sort(key=lambda r: r["config"]["seed"])
    return groups, keys


def title_of(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """What every run shares (``TITLE_KEYS`` not in ``keys``), then what differs and how many seeds."""
    flat = flatten(runs[0]["config"])
    shown = [k for k in TITLE_KEYS if k not in keys and flat.get(k) is not None
             and not (k == "data.alpha" and flat.get("data.split") != "dirichlet")]
    shared = [f"{k.rpartition('.')[2]} {_text(flat[k])}" for k in shown]
    seeds = len({r["config"]["seed"] for r in runs})
    differ = f"; runs differ in {', '.join(_short_names(keys).values())}" if keys else ""
    return f"{', '.join(shared)}{differ} ({seeds} seed{'s' if seeds != 1 else ''})"


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    last = [k.rpartition(".")[2] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
