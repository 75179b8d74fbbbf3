"""The active-learning cycle loop: train, evaluate, select, label, checkpoint; results JSON; resume.

Per cycle c = 0 .. cycles-1:

1. the strategy trains a fresh model (its way) on every client's labeled set and reports the test accuracy;
2. unless c is the last cycle: the global budget B is split across clients (``split_budget``), the strategy
   selects, the oracle reveals the labels (the picks join the labeled sets);
3. ``checkpoint.json`` is written (atomically): config, labeled train indices per client, the per-cycle
   records so far, the strategy's state.

Every random draw derives from (seed, purpose, cycle[, client]) and each cycle has its own secure-aggregation
session, so a run resumed from the checkpoint of cycle c computes exactly what an uninterrupted run computes.

Output directory: ``results.json`` (``results_document``), ``learning_curve.png``, ``checkpoint.json``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..device import seed_everything
from ..secagg import CostTotals, Faults, PrivacySession
from ..secagg.privacy.ledger import disclosure_entry
from ..strategies import ClientPools, Cycle, Strategy
from .config import ExperimentConfig, config_differences
from .plot import plot_learning_curve
from .privacy import build_privacy, privacy_summary
from .setup import (build_aggregator, build_pools, build_strategy, build_trainer, cycle_budget, initial_labeled,
                    split_budget)

RESULTS_FILE = "results.json"
CHECKPOINT_FILE = "checkpoint.json"
CURVE_FILE = "learning_curve.png"
RESULTS_FORMAT = "secure_fal.results/1"
CHECKPOINT_FORMAT = "secure_fal.checkpoint/1"


class ResumeError(ValueError):
    """The output directory's checkpoint cannot be continued with this config (or is missing / in the way)."""


@dataclass
class RunState:
    """What a checkpoint holds: everything needed to continue after the last finished cycle.

    Attributes:
        labeled: client k -> int64 train indices labeled so far (in labeling order).
        records: one dict per finished cycle (see ``run_experiment``).
        strategy_state: the strategy's ``state_dict()``.
        wall_seconds: wall time spent by the run so far, over every process that worked on it.
    """

    labeled: list[np.ndarray]
    records: list[dict]
    strategy_state: dict
    wall_seconds: float


def run_experiment(config: ExperimentConfig, out_dir: str | Path, *, resume: bool = False, quiet: bool = False,
                   faults: Callable[[int, int], Faults | None] | None = None,
                   on_cycle: Callable[[dict], None] | None = None, plaintext_reference: bool = False) -> dict:
    """Run (or resume) the experiment, writing results.json, learning_curve.png and checkpoint.json.

    Args:
        config: the experiment.
        out_dir: output directory (created if missing).
        resume: continue from ``out_dir/checkpoint.json``; its config must equal ``config``.
        quiet: no progress bars (they are also off when stderr is not a terminal).
        faults: (cycle, round id of the cycle's secure-aggregation session, 1-based) -> the fault plan of that
            secure sum, or None (tests: dropouts anywhere in FedAvg, k-means, ownership or gamma rounds).
        on_cycle: called with each finished cycle's record (the dict described below), after its checkpoint.
        plaintext_reference: also sum every secure input under the plaintext protocol
            (``setup.ReferencedAggregator``) and record that cost per cycle as ``plaintext_reference`` (and its
            total in the results), the denominator of "x plaintext" cost ratios. Not part of the config.
    Returns:
        the results document (also written to results.json).
    Raises:
        ResumeError: resume without a checkpoint, with a different config, or a fresh run into a directory
            that already holds one.
        ConfigError: settings that do not fit the data (e.g. a budget of 0).

    Each cycle record holds: cycle, labeled (count), labeled_fraction, labeled_per_client, class_histogram of
    the labeled set trained on, accuracy, client_accuracies (client-alone only), budgets and selected_per_client
    and selected_class_histogram (not in the last cycle), details (strategy specific, e.g. FairFAL's
    model_choice per client), privacy_ledger (what the server learned: one entry per secure sum of the cycle's
    session, then the selected counts it received in the clear), secure_aggregation (rounds, total_bytes,
    server_seconds, client_seconds, values of the cycle's session), plaintext_reference (same keys; only with ``plaintext_reference``),
    train_seconds, select_seconds, seconds (wall seconds).
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / CHECKPOINT_FILE
    seed_everything(config.seed)
    pools = build_pools(config)
    trainer = build_trainer(config, pools)
    strategy = build_strategy(config, pools, trainer)
    budget = cycle_budget(config, len(pools.y))
    privacy = build_privacy(config, pools, trainer, budget) if strategy.federated else None

    if resume:
        state = load_checkpoint(checkpoint_path, config)
        strategy.load_state_dict(state.strategy_state)
        if privacy is not None:
            privacy.restore([e for record in state.records for e in record["privacy_ledger"]])
    elif checkpoint_path.exists():
        raise ResumeError(f"{out} already holds a run ({CHECKPOINT_FILE}); pass --resume to continue it or "
                          "choose another output directory")
    else:
        state = RunState(initial_labeled(pools, config.active.initial_fraction, config.seed), [], {}, 0.0)
    prior_seconds = state.wall_seconds

    show = not quiet and sys.stderr.isatty()
    cycles = tqdm(range(len(state.records), config.active.cycles), desc=f"{config.name} cycles",
                  initial=len(state.records), total=config.active.cycles, disable=not show, unit="cycle")
    for c in cycles:
        plan = None if faults is None else functools.partial(faults, c)
        record = _run_cycle(config, pools, strategy, state.labeled, c, budget, show, plan, plaintext_reference,
                            privacy)
        state.records.append(record)
        state.strategy_state = strategy.state_dict()
        state.wall_seconds = prior_seconds + time.perf_counter() - started
        _write_json(checkpoint_path, checkpoint_document(config, state))
        cycles.set_postfix(acc=f"{record['accuracy']:.4f}", labeled=record["labeled"])
        if on_cycle is not None:
            on_cycle(record)
    cycles.close()

    state.wall_seconds = prior_seconds + time.perf_counter() - started
    results = results_document(config, pools, budget, state, privacy_summary(config, privacy))
    _write_json(out / RESULTS_FILE, results)
    plot_learning_curve(results, out / CURVE_FILE)
    return results


def _run_cycle(config: ExperimentConfig, pools: ClientPools, strategy: Strategy, labeled: list[np.ndarray],
               c: int, budget: int, show: bool, fault_plan: Callable[[int], Faults | None] | None,
               plaintext_reference: bool = False, privacy: PrivacySession | None = None) -> dict:
    """One cycle: train + evaluate, then (not in the last cycle) select and label. Updates ``labeled``."""
    t0 = time.perf_counter()
    aggregator = (build_aggregator(config, pools.n_clients, c, fault_plan, plaintext_reference=plaintext_reference,
                                   privacy=privacy) if strategy.federated else None)
    rounds = tqdm(total=config.training.rounds, desc=f"cycle {c} FedAvg", leave=False, disable=not show,
                  unit="round")

    def on_round(round_record) -> None:
        if rounds.n >= rounds.total:
            rounds.reset()
        rounds.update(1)

    cycle = Cycle(c, config.seed, aggregator, on_round)
    evaluation = strategy.train(cycle, labeled)
    rounds.close()
    t1 = time.perf_counter()
    all_labeled = np.concatenate(labeled)
    record: dict = {
        "cycle": c,
        "labeled": int(len(all_labeled)),
        "labeled_fraction": len(all_labeled) / len(pools.y),
        "labeled_per_client": [int(len(lab)) for lab in labeled],
        "class_histogram": _histogram(pools, all_labeled),
        "accuracy": evaluation.accuracy,
    }
    if evaluation.client_accuracies is not None:
        record["client_accuracies"] = evaluation.client_accuracies
    if c < config.active.cycles - 1:
        available = [len(p) - len(lab) for p, lab in zip(pools.pools, labeled)]
        budgets = split_budget(budget, available)
        selection = strategy.select(cycle, labeled, budgets)
        _check_selection(strategy.name, pools, labeled, selection.picks, budgets, c)
        for k, picked in enumerate(selection.picks):
            labeled[k] = np.concatenate([labeled[k], np.asarray(picked, dtype=np.int64)])
        record.update(budgets=budgets, selected_per_client=[int(len(p)) for p in selection.picks],
                      selected_class_histogram=_histogram(pools, np.concatenate(selection.picks)),
                      details=selection.details)
    t2 = time.perf_counter()
    ledger = [] if aggregator is None else [{"cycle": c, **entry} for entry in aggregator.ledger]
    if aggregator is not None and "selected_per_client" in record:
        ledger.append({"cycle": c, **disclosure_entry(
            kind="selected-counts", shape=[pools.n_clients],
            learned_text=f"how many samples each client labeled, in the clear: {record['selected_per_client']}")})
    record["privacy_ledger"] = ledger
    record["secure_aggregation"] = (aggregator.totals if aggregator is not None else CostTotals()).to_dict()
    if plaintext_reference:
        reference = getattr(aggregator, "reference_totals", None)
        record["plaintext_reference"] = (reference if reference is not None else CostTotals()).to_dict()
    record.update(train_seconds=t1 - t0, select_seconds=t2 - t1, seconds=t2 - t0)
    return record


def _check_selection(strategy: str, pools: ClientPools, labeled: Sequence[np.ndarray], picks: Sequence[np.ndarray],
                     budgets: Sequence[int], c: int) -> None:
    """The oracle labels only new, distinct samples of the client's own pool, and no more than the budget."""
    if len(picks) != pools.n_clients:
        raise RuntimeError(f"strategy {strategy!r}, cycle {c}: picks for {len(picks)} clients, "
                           f"expected {pools.n_clients}")
    for k, picked in enumerate(picks):
        picked = np.asarray(picked)
        problem = None
        if len(np.unique(picked)) != len(picked):
            problem = "picked a sample twice"
        elif not np.isin(picked, pools.pools[k]).all():
            problem = "picked a sample outside its pool"
        elif np.isin(picked, labeled[k]).any():
            problem = "picked an already labeled sample"
        if problem:
            raise RuntimeError(f"strategy {strategy!r}, cycle {c}, client {k}, field 'picks': {problem}")
    total = sum(len(p) for p in picks)
    if total > sum(budgets):
        raise RuntimeError(f"strategy {strategy!r}, cycle {c}: picked {total} samples, budget {sum(budgets)}")


def _histogram(pools: ClientPools, indices: np.ndarray) -> list[int]:
    labels = pools.y[np.asarray(indices, dtype=np.int64)].numpy()
    return np.bincount(labels, minlength=pools.num_classes).astype(int).tolist()


# -- documents --------------------------------------------------------------------------------------------

def results_document(config: ExperimentConfig, pools: ClientPools, budget: int, state: RunState,
                     privacy: dict | None = None) -> dict:
    """The results.json content: config, data sizes, per-cycle records, secure-aggregation totals (and
    ``plaintext_reference`` totals when the run measured them), wall time; ``privacy_ledger`` (every cycle's
    ledger entries in order) and ``privacy`` (``experiment.privacy.privacy_summary``; default: off)."""
    totals: dict[str, float] = {}
    reference: dict[str, float] = {}
    for record in state.records:
        for key, value in record["secure_aggregation"].items():
            totals[key] = totals.get(key, 0) + value
        for key, value in record.get("plaintext_reference", {}).items():
            reference[key] = reference.get(key, 0) + value
    doc = {
        "format": RESULTS_FORMAT,
        "config": config.to_dict(),
        "strategy": config.active.strategy,
        "sampler": config.active.sampler_name,
        "data": {"train_size": int(len(pools.y)), "test_size": int(len(pools.y_test)),
                 "num_classes": pools.num_classes, "client_sizes": [int(len(p)) for p in pools.pools],
                 "train_class_histogram": _histogram(pools, np.arange(len(pools.y)))},
        "budget_per_cycle": budget,
        "cycles": state.records,
        "final_accuracy": state.records[-1]["accuracy"] if state.records else None,
        "secure_aggregation": totals,
        "wall_seconds": state.wall_seconds,
        "strategy_state": state.strategy_state,
        "privacy_ledger": [e for record in state.records for e in record.get("privacy_ledger", [])],
        "privacy": privacy if privacy is not None else {"enabled": False},
    }
    if reference:
        doc["plaintext_reference"] = reference
    return doc


def checkpoint_document(config: ExperimentConfig, state: RunState) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "cycles_done": len(state.records),
        "labeled": [lab.tolist() for lab in state.labeled],
        "records": state.records,
        "strategy_state": state.strategy_state,
        "wall_seconds": state.wall_seconds,
    }


def load_checkpoint(path: Path, config: ExperimentConfig) -> RunState:
    """Read a checkpoint and check that it belongs to ``config``.

    Raises:
        ResumeError: no checkpoint, an unknown format, or a config that differs (the differences are listed).
    """
    if not path.exists():
        raise ResumeError(f"nothing to resume: {path} does not exist")
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"{path}: format {doc.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    differences = config_differences(doc["config"], config.to_dict())
    if differences:
        raise ResumeError(f"{path} was written with a different config; refusing to resume. Differences "
                          f"(checkpoint -> now): {'; '.join(differences)}")
    return RunState([np.asarray(lab, dtype=np.int64) for lab in doc["labeled"]], doc["records"],
                    doc["strategy_state"], float(doc["wall_seconds"]))


def _write_json(path: Path, doc: dict) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=_json_default)
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
