"""The active-learning cycle loop: train, evaluate, select, label, checkpoint; results JSON; resume.

Per cycle c = 0 .. cycles-1:

1. the strategy trains a fresh model (its way) on every client's labeled set and reports the test accuracy;
2. unless c is the last cycle: the global budget B is split across clients (``split_budget``), the strategy
   selects, the oracle reveals the labels (the picks join the labeled sets);
3. ``checkpoint.json`` is written (atomically): config, labeled train indices per client, the per-cycle
   records so far, the strategy's state.

Every random draw derives from (seed, purpose, cycle[, client]) and each cycle has its own secure-aggregation
session, so a run resumed from the checkpoint of cycle c computes exactly what an uninterrupted run computes.

Output directory: ``results.json`` (``results_document``), ``learning_curve.png``, ``checkpoint.json``,
``progress.log`` (``progress.Progress``), ``cycles.csv`` and ``rounds.csv`` (``metrics_log.MetricsLog``, with
``tensorboard/`` on request) and, on request, ``model.pt`` (the final model's weights).
"""

from __future__ import annotations

import functools
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..device import seed_everything
from ..federated import RoundRecord
from ..secagg import CostTotals, Faults, PrivacySession
from ..secagg.privacy.ledger import selected_counts_entry
from ..strategies import ClientPools, Cycle, Strategy
from . import choices
from .checkpoint import CHECKPOINT_FILE, ResumeError, RunState, checkpoint_document, load_checkpoint
from .config import ConfigWarning, ExperimentConfig
from .learnability import short_training_warning
from .metrics import mix_accuracies, worst_class_accuracy
from .metrics_log import MetricsLog
from .progress import Progress
from .provenance import provenance
from .plot import plot_learning_curve
from .privacy import build_privacy, privacy_summary
from .setup import (build_aggregator, build_pools, build_strategy, build_trainer, cycle_budget, initial_labeled,
                    split_budget)

RESULTS_FILE = "results.json"
CURVE_FILE = "learning_curve.png"
MODEL_FILE = "model.pt"
RESULTS_FORMAT = "secure_fal.results/1"


def run_experiment(config: ExperimentConfig, out_dir: str | Path, *, resume: bool = False, quiet: bool = False,
                   log_every: int = 0, tensorboard: bool = False, save_model: bool = False,
                   faults: Callable[[int, int], Faults | None] | None = None,
                   on_cycle: Callable[[dict], None] | None = None, plaintext_reference: bool = False) -> dict:
    """Run (or resume) the experiment, writing results.json, learning_curve.png and checkpoint.json.

    Args:
        config: the experiment.
        out_dir: output directory (created if missing).
        resume: continue from ``out_dir/checkpoint.json``; ``config`` may differ from the checkpoint's only in
            ``checkpoint.RESUMABLE`` keys (more ``active.cycles`` extend a finished run).
        quiet: no progress on stderr (``progress.Progress``: bars on a terminal, else a line per cycle);
            ``progress.log`` in ``out_dir`` is written anyway.
        log_every: also a progress line every this many FedAvg rounds (0: none).
        tensorboard: also write TensorBoard event files (``metrics_log.MetricsLog``; CSV files are always written).
        save_model: write the final cycle's model to ``model.pt`` (``MODEL_FILE``; strategies that report one
            model: every one but client-alone).
        faults: (cycle, round id of the cycle's secure-aggregation session, 1-based) -> the fault plan of that
            secure sum, or None (tests: dropouts anywhere in FedAvg, k-means, ownership or gamma rounds).
        on_cycle: called with each finished cycle's record (the dict described below), after its checkpoint.
        plaintext_reference: also sum every secure input under the plaintext protocol
            (``setup.ReferencedAggregator``) and record that cost per cycle as ``plaintext_reference`` (and its
            total in the results), the denominator of "x plaintext" cost ratios. Not part of the config.
    Returns:
        the results document (also written to results.json).
    Raises:
        ResumeError: resume without a checkpoint, from a damaged one, with a different config, or a fresh run into
            a directory that already holds one.
        ConfigError: settings that do not fit the data (e.g. a budget of 0).

    Each cycle record holds: cycle, labeled (count), labeled_fraction, labeled_per_client, class_histogram of
    the labeled set trained on, accuracy, test_loss (mean cross-entropy), train_loss (the participants' last local
    epoch in the last FedAvg round; None without FedAvg), class_accuracies (per class of the test set),
    worst_class_accuracy, client_mix_accuracies (per client: the class accuracies weighted by that client's pool's
    class shares, ``metrics.mix_accuracies``), client_accuracies (client-alone only: each local model's test
    accuracy), budgets and selected_per_client
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
    privacy = (build_privacy(config, trainer, split_budget(budget, [len(p) for p in pools.pools]), pools.x[:1])
               if strategy.federated else None)

    if resume:
        state = load_checkpoint(checkpoint_path, config, pools)
        if state.records and "budgets" not in state.records[-1] and len(state.records) < config.active.cycles:
            state.records.pop()                      # a finished run extended: its last cycle is redone to select
            state.strategy_state = state.strategy_state_before
        strategy.load_state_dict(state.strategy_state)
        if privacy is not None:
            privacy.restore([e for record in state.records for e in record["privacy_ledger"]])
    elif checkpoint_path.exists():
        raise ResumeError(f"{out} already holds a run ({CHECKPOINT_FILE}); pass --resume to continue it or "
                          "choose another output directory")
    else:
        state = RunState(initial_labeled(pools, config.active.initial_fraction, config.seed), [], {}, {}, 0.0)
    prior_seconds = state.wall_seconds
    if len(state.records) < config.active.cycles:
        text = short_training_warning(config, [len(lab) for lab in state.labeled], pools.num_classes,
                                      strategy.federated)
        if text:
            warnings.warn(ConfigWarning(text), stacklevel=2)

    progress = Progress(config.name, config.active.cycles, config.training.rounds, out, quiet=quiet,
                        log_every=log_every)
    logs = MetricsLog(out, config.training.rounds, tensorboard=tensorboard)
    try:
        progress.start(len(state.records))
        logs.start(len(state.records))
        for c in range(len(state.records), config.active.cycles):
            plan = None if faults is None else functools.partial(faults, c)
            state.strategy_state_before = strategy.state_dict()
            progress.cycle_started(c)

            def on_round(round_record, c=c) -> None:
                progress.round_done(c, round_record)
                logs.round_done(c, round_record)

            record = _run_cycle(config, pools, strategy, state.labeled, c, budget, on_round, plan,
                                plaintext_reference, privacy)
            state.records.append(record)
            state.strategy_state = strategy.state_dict()
            state.wall_seconds = prior_seconds + time.perf_counter() - started
            _write_json(checkpoint_path, checkpoint_document(config, state))
            progress.cycle_done(record)
            logs.cycle_done(state.records)
            if on_cycle is not None:
                on_cycle(record)
            if save_model and c == config.active.cycles - 1:
                _save_model(strategy, config, pools, out / MODEL_FILE)
    finally:
        progress.close()
        logs.close()

    state.wall_seconds = prior_seconds + time.perf_counter() - started
    results = results_document(config, pools, budget, state, str(trainer.device),
                               privacy_summary(config, privacy))
    _write_json(out / RESULTS_FILE, results)
    plot_learning_curve(results, out / CURVE_FILE)
    return results


def _run_cycle(config: ExperimentConfig, pools: ClientPools, strategy: Strategy, labeled: list[np.ndarray],
               c: int, budget: int, on_round: Callable[[RoundRecord], None],
               fault_plan: Callable[[int], Faults | None] | None, plaintext_reference: bool = False,
               privacy: PrivacySession | None = None) -> dict:
    """One cycle: train + evaluate, then (not in the last cycle) select and label. Updates ``labeled``."""
    t0 = time.perf_counter()
    aggregator = (build_aggregator(config, pools.n_clients, c, fault_plan, plaintext_reference=plaintext_reference,
                                   privacy=privacy) if strategy.federated else None)
    rounds: list[RoundRecord] = []

    def seen(round_record: RoundRecord) -> None:
        rounds.append(round_record)
        on_round(round_record)

    cycle = Cycle(c, config.seed, aggregator, seen)
    evaluation = strategy.train(cycle, labeled)
    t1 = time.perf_counter()
    all_labeled = np.concatenate(labeled)
    record: dict = {
        "cycle": c,
        "labeled": int(len(all_labeled)),
        "labeled_fraction": len(all_labeled) / len(pools.y),
        "labeled_per_client": [int(len(lab)) for lab in labeled],
        "class_histogram": _histogram(pools, all_labeled),
        "accuracy": evaluation.accuracy,
        "test_loss": evaluation.loss,
        "train_loss": rounds[-1].train_loss if rounds else None,
    }
    if evaluation.class_accuracies is not None:
        record.update(class_accuracies=evaluation.class_accuracies,
                      worst_class_accuracy=worst_class_accuracy(evaluation.class_accuracies),
                      client_mix_accuracies=mix_accuracies(evaluation.class_accuracies, _client_histograms(pools)))
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
        ledger.append({"cycle": c, **selected_counts_entry(record["selected_per_client"])})
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


def _client_histograms(pools: ClientPools) -> list[list[int]]:
    """Per client, the class histogram of its whole pool (the split's class mix)."""
    return [_histogram(pools, pool) for pool in pools.pools]


def _save_model(strategy: Strategy, config: ExperimentConfig, pools: ClientPools, path: Path) -> None:
    """``torch.save`` of {"state_dict", "model", "model_options", "in_channels", "image_size", "num_classes"}: what
    ``secure_fal.models.build_model`` (or the config's model plug-in) needs to rebuild the model and load it."""
    import torch

    model = strategy.reported_model()
    if model is None:
        warnings.warn(f"--save-model: strategy {strategy.name!r} reports no single model (it averages several); "
                      "nothing saved", UserWarning, stacklevel=3)
        return
    torch.save({"state_dict": model.state_dict(), "model": config.training.model,
                "model_options": config.training.model_options, "in_channels": int(pools.x.shape[1]),
                "image_size": int(pools.x.shape[2]), "num_classes": pools.num_classes}, path)


def _histogram(pools: ClientPools, indices: np.ndarray) -> list[int]:
    labels = pools.y[np.asarray(indices, dtype=np.int64)].numpy()
    return np.bincount(labels, minlength=pools.num_classes).astype(int).tolist()


# -- documents --------------------------------------------------------------------------------------------

def results_document(config: ExperimentConfig, pools: ClientPools, budget: int, state: RunState, device: str,
                     privacy: dict | None = None) -> dict:
    """The results.json content: config, data sizes and the split's per-client class histograms, per-cycle records,
    final accuracy and worst-class accuracy, secure-aggregation totals (and ``plaintext_reference`` totals when the
    run measured them), wall time, warnings, provenance (``provenance.provenance`` with ``device`` resolved);
    ``privacy_ledger`` (every cycle's ledger entries in order) and ``privacy`` (``experiment.privacy.privacy_summary``;
    default: off)."""
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
                 "train_class_histogram": _histogram(pools, np.arange(len(pools.y))),
                 "client_class_histograms": _client_histograms(pools)},
        "budget_per_cycle": budget,
        "cycles": state.records,
        "final_accuracy": state.records[-1]["accuracy"] if state.records else None,
        "final_worst_class_accuracy": state.records[-1].get("worst_class_accuracy") if state.records else None,
        "secure_aggregation": totals,
        "wall_seconds": state.wall_seconds,
        "strategy_state": state.strategy_state,
        "warnings": [],
        "provenance": provenance(device),
        "privacy_ledger": [e for record in state.records for e in record.get("privacy_ledger", [])],
        "privacy": privacy if privacy is not None else {"enabled": False},
    }
    if state.records:
        text = short_training_warning(config, state.records[0]["labeled_per_client"], pools.num_classes,
                                      choices.STRATEGIES[config.active.strategy].federated)
        doc["warnings"] += [text] if text else []
    if reference:
        doc["plaintext_reference"] = reference
    return doc


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
