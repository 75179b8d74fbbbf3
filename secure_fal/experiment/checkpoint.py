"""``checkpoint.json``: what a run needs to continue after its last finished cycle, checked before it is used.

A checkpoint is written (atomically) after every cycle. Resuming continues the checkpoint's OWN config; of that
config only the keys in ``RESUMABLE`` may change on resume: ``active.cycles`` (more cycles extend a finished run,
whose last cycle is then redone to select, exactly as an uninterrupted longer run would), ``device`` and ``name``.
Any other difference would mix two experiments in one results file and is refused, naming the keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .config import ExperimentConfig
from .loading import config_differences, config_with_overrides

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = "secure_fal.checkpoint/2"
RESUMABLE = ("active.cycles", "device", "name")
"""Config keys that may differ between a checkpoint and the run that resumes it."""


class ResumeError(UserError, ValueError):
    """The output directory's checkpoint cannot be continued (missing, damaged, another config, in the way)."""


@dataclass
class RunState:
    """What a checkpoint holds: everything needed to continue after the last finished cycle.

    Attributes:
        labeled: client k -> int64 train indices labeled so far (in labeling order).
        records: one dict per finished cycle (see ``runner.run_experiment``).
        strategy_state: the strategy's ``state_dict()`` after the last finished cycle.
        strategy_state_before: its ``state_dict()`` when the last finished cycle began (what redoing that cycle
            starts from when a finished run is extended).
        wall_seconds: wall time spent by the run so far, over every process that worked on it.
    """

    labeled: list[np.ndarray]
    records: list[dict]
    strategy_state: dict
    strategy_state_before: dict
    wall_seconds: float


def checkpoint_document(config: ExperimentConfig, state: RunState) -> dict:
    """The JSON content of ``checkpoint.json``."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "cycles_done": len(state.records),
        "labeled": [lab.tolist() for lab in state.labeled],
        "records": state.records,
        "strategy_state": state.strategy_state,
        "strategy_state_before": state.strategy_state_before,
        "wall_seconds": state.wall_seconds,
    }


def read_checkpoint(path: Path) -> dict:
    """The checkpoint document at ``path``, its format and fields checked.

    Raises:
        ResumeError: no file, not JSON (e.g. truncated by a full disk), another format, a missing or mistyped field.
    """
    if not path.exists():
        raise ResumeError(f"nothing to resume: {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResumeError(f"{path} is damaged (not JSON: {exc}); it may have been cut short. Delete it to start "
                          "the run over") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ResumeError(f"{path}: format {found!r}, expected {CHECKPOINT_FORMAT!r}")
    kinds = {"config": dict, "cycles_done": int, "labeled": list, "records": list, "strategy_state": dict,
             "strategy_state_before": dict, "wall_seconds": (int, float)}
    for key, kind in kinds.items():
        if not isinstance(doc.get(key), kind):
            raise ResumeError(f"{path}: field {key!r} is missing or not a {getattr(kind, '__name__', 'number')}")
    if doc["cycles_done"] != len(doc["records"]):
        raise ResumeError(f"{path}: cycles_done is {doc['cycles_done']} but {len(doc['records'])} cycle records "
                          "are stored")
    return doc


def resume_config(out_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The config saved in ``out_dir``'s checkpoint with dotted-key ``overrides`` (the ones the user gives now)."""
    return config_with_overrides(read_checkpoint(Path(out_dir) / CHECKPOINT_FILE)["config"], overrides)


def load_checkpoint(path: Path, config: ExperimentConfig, pools) -> RunState:
    """Read a checkpoint, check that ``config`` may continue it and that its labeled sets fit ``pools``.

    Args:
        pools: the run's ``ClientPools`` (each client's labeled indices must be distinct members of its pool).
    Raises:
        ResumeError: a damaged checkpoint, a config that differs in a key outside ``RESUMABLE`` (the differences
            are listed), fewer cycles than already done, or labeled indices that are out of range or repeated.
    """
    doc = read_checkpoint(path)
    differences = config_differences(doc["config"], config.to_dict())
    fixed = [d for d in differences if d.partition(":")[0] not in RESUMABLE]
    if fixed:
        raise ResumeError(f"{path} was written with a different config; refusing to resume. Differences "
                          f"(checkpoint -> now): {'; '.join(fixed)}. Only {', '.join(RESUMABLE)} may change")
    if config.active.cycles < doc["cycles_done"]:
        raise ResumeError(f"{path}: {doc['cycles_done']} cycles are done; active.cycles = {config.active.cycles} "
                          "cannot shorten the run")
    labeled = _labeled_sets(path, doc["labeled"], pools)
    return RunState(labeled, doc["records"], doc["strategy_state"], doc["strategy_state_before"],
                    float(doc["wall_seconds"]))


def _labeled_sets(path: Path, raw: list, pools) -> list[np.ndarray]:
    """Client k's labeled train indices as int64 arrays: distinct members of client k's pool."""
    if len(raw) != pools.n_clients:
        raise ResumeError(f"{path}: labeled sets of {len(raw)} clients, the run has {pools.n_clients}")
    out = []
    for k, indices in enumerate(raw):
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise ResumeError(f"{path}: client {k}'s labeled set is not a list of integer train indices")
        lab = np.asarray(indices, dtype=np.int64)
        outside = lab[~np.isin(lab, pools.pools[k])]
        if len(outside):
            raise ResumeError(f"{path}: client {k}'s labeled set holds index {int(outside[0])}, which is not in its "
                              f"pool of {len(pools.pools[k])} train samples")
        if len(np.unique(lab)) != len(lab):
            values, counts = np.unique(lab, return_counts=True)
            raise ResumeError(f"{path}: client {k}'s labeled set holds index {int(values[counts > 1][0])} twice")
        out.append(lab)
    return out
