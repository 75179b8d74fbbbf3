"""``secure-fal sweep``: a config run over a grid (seeds x strategies x protocols x any ``--set`` key), resumable.

Cells: the product of the axes, the seed last. Each runs in ``OUT/<method>/seed-<s>/`` (``run_experiment``'s
files), ``<method>`` naming the cell's non-seed values (``strategy=fairfal+protocol=masking``; ``base`` when only
seeds vary). A cell whose results.json holds the cell's config is finished and skipped; one with a checkpoint and no
results is resumed; so re-running the same command after an interruption redoes nothing finished. With ``jobs > 1``
cells run in that many processes (spawned; torch threads split between them). At the end ``OUT/sweep.json`` lists
every cell and its state, and the finished cells are compared (``compare``: table, CSV, JSON, plots in ``OUT``).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from .config import ExperimentConfig
from .loading import config_differences, load_config, parse_override

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its config overrides (dotted key -> value, the seed included) and its directory."""

    overrides: dict[str, Any]
    out: Path


@dataclass
class SweepSpec:
    """What to sweep.

    Attributes:
        config: the TOML config every cell starts from.
        seeds: experiment seeds (the innermost axis).
        axes: dotted config key -> values to try, in axis order (e.g. {"active.strategy": ["fairfal", "f-al"]}).
        fixed: overrides every cell gets (dotted key -> value).
    """

    config: str
    seeds: list[int]
    axes: dict[str, list[Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)


def parse_seeds(text: str) -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,2,5-6`` -> [0, 2, 5, 6]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected integers and ranges, e.g. 0-4 or 0,2,5-6") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"--seeds {text!r}: expected distinct seeds >= 0")
    return seeds


def split_values(text: str) -> list[str]:
    """Comma-separated values, commas inside [...], {...} or quotes kept: ``a,[1, 2],"x,y"`` -> 3 values."""
    values, depth, quote, current = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += ch
    return values + [current]


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` -> (KEY, [V1, V2]), each value read as ``parse_override`` reads one."""
    key, sep, values = text.partition("=")
    if not sep or not values:
        raise UserError(f"--set {text!r}: expected KEY=VALUE[,VALUE...], e.g. training.lr=0.01,0.1")
    return key.strip(), [parse_override(f"{key}={v}")[1] for v in split_values(values)]


def cells_of(spec: SweepSpec, out: Path) -> list[Cell]:
    """The grid's cells in run order (the seed innermost)."""
    keys = list(spec.axes)
    short = {k: (k.rpartition(".")[2] if [x.rpartition(".")[2] for x in keys].count(k.rpartition(".")[2]) == 1
                 else k) for k in keys}
    cells = []
    for values in itertools.product(*spec.axes.values()):
        method = "+".join(f"{short[k]}={_folder_text(v)}" for k, v in zip(keys, values)) or "base"
        for seed in spec.seeds:
            cells.append(Cell({**spec.fixed, **dict(zip(keys, values)), "seed": seed}, out / method / f"seed-{seed}"))
    return cells


def _folder_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return "".join(ch if ch.isalnum() or ch in "-_.,=:" else "_" for ch in text)


def cell_state(cell: Cell, config: ExperimentConfig) -> str:
    """'done' (results.json of this config), 'resume' (a checkpoint, no results) or 'new'.

    Raises:
        UserError: the cell's directory holds a run of another config.
    """
    results, checkpoint = cell.out / "results.json", cell.out / "checkpoint.json"
    if results.exists():
        saved = json.loads(results.read_text())["config"]
        differences = config_differences(saved, config.to_dict())
        if differences:
            raise UserError(f"{cell.out} holds a run of another config ({'; '.join(differences)}); choose another "
                            "--out or remove it")
        return "done"
    return "resume" if checkpoint.exists() else "new"


def _run_cell(config: Mapping[str, Any], out: str, resume: bool, threads: int | None) -> dict:
    """A cell's run in this process (a worker's entry point); returns its results document."""
    import torch

    from .runner import run_experiment

    if threads is not None:
        torch.set_num_threads(threads)
    return run_experiment(ExperimentConfig.from_dict(config), out, resume=resume, quiet=True)


def run_sweep(spec: SweepSpec, out: str | Path, *, jobs: int = 1,
              say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)) -> list[dict]:
    """Run every unfinished cell of ``spec`` under ``out``; returns the results of every finished cell.

    Args:
        jobs: cells run at once (processes); 1 runs them in this process.
        say: where a line per cell goes (default: stderr).
    Raises:
        ConfigError: a cell's config is invalid (checked for every cell before any runs).
        UserError: a cell's directory holds another config's run.
    """
    out = Path(out)
    cells = cells_of(spec, out)
    configs = [load_config(spec.config, cell.overrides) for cell in cells]
    states = [cell_state(cell, config) for cell, config in zip(cells, configs)]
    out.mkdir(parents=True, exist_ok=True)
    todo = [i for i, state in enumerate(states) if state != "done"]
    say(f"sweep: {len(cells)} cells, {len(cells) - len(todo)} finished already, {len(todo)} to run"
        f"{f' in {jobs} processes' if jobs > 1 and todo else ''}")
    failed: dict[int, str] = {}
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    def report(i: int, results: dict | None, error: str | None) -> None:
        name = cells[i].out.relative_to(out)
        if error is None:
            states[i] = "done"
            say(f"[{len(cells) - sum(s != 'done' for s in states)}/{len(cells)}] {name}: final accuracy "
                f"{100 * results['final_accuracy']:.2f} % (run {results['wall_seconds']:.0f} s, sweep "
                f"{time.perf_counter() - started:.0f} s)")
        else:
            failed[i] = error
            say(f"{name}: failed: {error}")

    args = [(configs[i].to_dict(), str(cells[i].out), states[i] == "resume", threads) for i in todo]
    started = time.perf_counter()
    if jobs > 1 and len(todo) > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_run_cell, *a): i for i, a in zip(todo, args)}
            for future in concurrent.futures.as_completed(futures):
                error = future.exception()
                report(futures[future], None if error else future.result(), _describe(error))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("once", UserWarning)       # a warning every cell gives is shown once
            for i, a in zip(todo, args):
                try:
                    report(i, _run_cell(*a), None)
                except Exception as exc:  # a failed cell is reported; the others still run
                    report(i, None, _describe(exc))
    (out / SWEEP_FILE).write_text(json.dumps({
        "config": spec.config, "seeds": spec.seeds, "axes": spec.axes, "fixed": spec.fixed,
        "cells": [{"dir": str(c.out.relative_to(out)), "overrides": c.overrides, "state": states[i],
                   **({"error": failed[i]} if i in failed else {})} for i, c in enumerate(cells)]}, indent=1))
    if failed:
        raise UserError(f"{len(failed)} of {len(cells)} cells failed (see {out / SWEEP_FILE}); run the same command "
                        "again to retry them")
    return [json.loads((c.out / "results.json").read_text()) | {"run_dir": str(c.out)} for c in cells]


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def spec_from_arguments(config: str, seeds: str, strategies: str | None, protocols: str | None,
                        sets: Sequence[str]) -> SweepSpec:
    """A ``SweepSpec`` from the command line: ``--strategy a,b``, ``--protocol p,q``, ``--set k=v1,v2`` (a key with
    one value is fixed for every cell, with several it is an axis)."""
    axes: dict[str, list[Any]] = {}
    if strategies:
        axes["active.strategy"] = split_values(strategies)
    if protocols:
        axes["secure.protocol"] = split_values(protocols)
    fixed: dict[str, Any] = {}
    for text in sets:
        key, values = parse_axis(text)
        if key in axes or key == "seed":
            raise UserError(f"--set {key}: already swept by --strategy, --protocol or --seeds")
        if len(values) > 1:
            axes[key] = values
        else:
            fixed[key] = values[0]
    return SweepSpec(config, parse_seeds(seeds), axes, fixed)
