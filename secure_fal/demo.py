"""``secure-fal demo``: a short federated active-learning experiment with secure aggregation, beside a
random-sampling baseline, on the bundled scikit-learn digits.

The setting is ``examples/configs/fairfal_digits.toml`` (long tail rho = 10, 5 clients with Dirichlet(0.5)
class mixes, 10 % labeled at random, then 10 % of the train set queried per cycle) with an MLP instead of the
CNN, so that both runs finish in well under 90 s on 2 CPU cores. Both runs go through ``run_experiment``
(results.json, learning_curve.png and checkpoint.json per run) with the same protocol, seed, data and budgets;
only the query strategy differs. The baseline labels at random: the same strategy with the ``random`` sampler
when the strategy accepts it, else F-AL (FedAvg) with ``random``.

Cost of secure aggregation, "x plaintext": every secure sum of the run is repeated under the plaintext protocol
on the same contributors' inputs (``experiment.setup.ReferencedAggregator``); the ratio is the secure
protocol's bytes (or seconds) over the plaintext protocol's for the same sums. Bytes count whole encoded
messages in both directions; seconds are compute time inside the server's and every client's protocol state
machines, summed over parties (transport excluded).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from .experiment import ExperimentConfig, load_config, plot_learning_curve, run_experiment
from .experiment.metrics import class_balance
from .experiment.setup import cycle_budget
from .experiment.runner import CHECKPOINT_FILE, CURVE_FILE, RESULTS_FILE
from .experiment.summary import method_label, text_table

# Dotted config keys of the demo experiment (see secure_fal/experiment/config.py for each key).
DEMO_SETTINGS: dict[str, Any] = {
    "name": "demo",
    "data.dataset": "digits", "data.rho": 10, "data.split": "dirichlet", "data.alpha": 0.5, "data.clients": 5,
    "training.model": "mlp", "training.model_options": {"hidden": [128, 64]}, "training.rounds": 20,
    "training.local_epochs": 3, "training.lr": 0.1, "training.batch_size": 16, "training.alone_epochs": 20,
    "active.cycles": 4, "active.initial_fraction": 0.1, "active.query_fraction": 0.1, "active.threshold": 0.75,
    "secure.protocol": "masking", "secure.frac_bits": 24,
}
# What --quick changes: a smoke run of a few seconds (3 cycles, 5 short rounds, a small MLP).
QUICK_SETTINGS: dict[str, Any] = {
    "training.rounds": 5, "training.local_epochs": 2, "training.model_options": {"hidden": [64]},
    "training.alone_epochs": 5, "active.cycles": 3,
}
DEFAULT_STRATEGY = "fairfal"
# torch CPU threads during the demo: its small MLP trains fastest on one, and one thread does not stall when
# other processes share the cores (two spinning OpenMP threads on a busy 2-core machine can be several times slower).
DEFAULT_THREADS = 1
BASELINE_SAMPLER = "random"
BASELINE_LABEL = "random"   # the baseline run's name in the output (and its subdirectory of --out)


def demo_config(strategy: str = DEFAULT_STRATEGY, sampler: str | None = None, *, quick: bool = False,
                overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The demo experiment with ``strategy`` (and ``sampler``; None: the strategy's default).

    Args:
        quick: apply ``QUICK_SETTINGS``.
        overrides: dotted config keys applied last (e.g. {"secure.protocol": "ckks", "training.rounds": 3}).
    Raises:
        ConfigError: an invalid value (the message names the key).
    """
    settings = {**DEMO_SETTINGS, **(QUICK_SETTINGS if quick else {}), "active.strategy": strategy,
                "active.sampler": sampler, **(overrides or {})}
    return load_config(None, settings)


def baseline_of(strategy: str) -> tuple[str, str]:
    """(strategy, sampler) of the random-sampling baseline: ``strategy`` itself with the random sampler when it
    accepts one, else F-AL with it (FairFAL and FAL-Global only run their own samplers, the FairFAL paper's
    baselines none)."""
    from .strategies import STRATEGIES

    cls = STRATEGIES[strategy]
    if cls.default_sampler is not None and (cls.samplers is None or BASELINE_SAMPLER in cls.samplers):
        return strategy, BASELINE_SAMPLER
    return "f-al", BASELINE_SAMPLER


def cost_ratio(secure: Mapping[str, float], reference: Mapping[str, float] | None) -> tuple[float, float] | None:
    """(bytes ratio, seconds ratio) of a secure-aggregation cost record over its plaintext reference, or None
    when there is no reference (a plaintext run) or it is empty. Seconds = server + client (all clients)."""
    if not reference or not reference.get("total_bytes"):
        return None
    seconds = reference.get("server_seconds", 0.0) + reference.get("client_seconds", 0.0)
    secure_seconds = secure.get("server_seconds", 0.0) + secure.get("client_seconds", 0.0)
    return secure["total_bytes"] / reference["total_bytes"], (secure_seconds / seconds if seconds > 0 else math.nan)


def cycle_line(label: str, record: Mapping[str, Any], cycles: int) -> str:
    """One progress line for a finished cycle: labeled count and share, test accuracy, labeled-class balance,
    and that cycle's secure-aggregation cost (sums, MiB, seconds, and x plaintext when measured)."""
    agg = record["secure_aggregation"]
    ratio = cost_ratio(agg, record.get("plaintext_reference"))
    cost = (f"secagg {agg['rounds']:2d} sums {agg['total_bytes'] / 2**20:5.2f} MiB "
            f"{agg['server_seconds'] + agg['client_seconds']:5.2f} s")
    if ratio is not None:
        cost += f" = x{ratio[0]:.2f} bytes, x{ratio[1]:.1f} s vs plaintext"
    return (f"{label:<8} cycle {record['cycle'] + 1}/{cycles}  labeled {record['labeled']:4d} "
            f"({100 * record['labeled_fraction']:4.1f}%)  acc {100 * record['accuracy']:5.1f}%  "
            f"balance {class_balance(record['class_histogram']):.2f}  {cost}")


def summary(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """Final table, one row per run (label -> results document): last cycle's labeled count, accuracy and
    balance; secure sums, MiB, seconds of the whole run and their x plaintext ratios; wall seconds."""
    header = ["run", "labeled", "accuracy %", "balance", "secure sums", "secagg MiB", "x plain", "secagg s",
              "x plain", "wall s"]
    rows = []
    for label, results in runs.items():
        last, agg = results["cycles"][-1], results["secure_aggregation"]
        ratio = cost_ratio(agg, results.get("plaintext_reference"))
        rows.append([label, last["labeled"], f"{100 * last['accuracy']:.1f}",
                     f"{class_balance(last['class_histogram']):.2f}", int(agg.get("rounds", 0)),
                     f"{agg.get('total_bytes', 0) / 2**20:.1f}", f"{ratio[0]:.2f}" if ratio else "-",
                     f"{agg.get('server_seconds', 0) + agg.get('client_seconds', 0):.2f}",
                     f"{ratio[1]:.1f}" if ratio else "-", f"{results['wall_seconds']:.1f}"])
    return text_table(header, rows)


def run_demo(strategy: str = DEFAULT_STRATEGY, *, quick: bool = False, baseline: bool = True,
             overrides: Mapping[str, Any] | None = None, out: str | Path = "runs/demo", quiet: bool = False,
             threads: int | None = DEFAULT_THREADS, stream: TextIO | None = None) -> dict[str, dict]:
    """Run the demo: ``strategy`` and (with ``baseline``) its random-sampling baseline, printing as cycles finish.

    Each run writes results.json, learning_curve.png and checkpoint.json into ``out/<label>/`` (those three
    files of an earlier demo there are replaced); ``out/learning_curve.png`` plots both runs.

    Args:
        strategy: a federated strategy (``secure_fal.strategies.STRATEGIES`` with ``federated``).
        quick: the smoke-run settings (``QUICK_SETTINGS``).
        baseline: also run ``baseline_of(strategy)``.
        overrides: dotted config keys for both runs (protocol, seed, device, rounds, ...).
        out: output directory.
        quiet: print only the final table and the paths.
        threads: torch CPU threads while the demo runs (restored after); None: leave torch's setting.
        stream: where to print (default: sys.stdout).
    Returns:
        label -> results document, in run order.
    Raises:
        ConfigError: an invalid setting, or a strategy that never aggregates across clients.
    """
    import torch

    from .experiment import ConfigError

    if threads is not None and threads < 1:
        raise ConfigError(f"threads: expected >= 1, got {threads}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(strategy, quick, baseline, overrides, Path(out), quiet, stream or sys.stdout)
    finally:
        torch.set_num_threads(previous)


def _run_demo(strategy: str, quick: bool, baseline: bool, overrides: Mapping[str, Any] | None, out: Path,
              quiet: bool, stream: TextIO) -> dict[str, dict]:
    """``run_demo`` with torch's thread count set."""
    from .experiment import ConfigError
    from .experiment.setup import build_pools
    from .strategies import STRATEGIES

    configs = {strategy: demo_config(strategy, quick=quick, overrides=overrides)}
    if not STRATEGIES[strategy].federated:
        raise ConfigError(f"active.strategy: {strategy!r} never aggregates across clients; the demo needs a "
                          f"federated one: {', '.join(s for s, c in STRATEGIES.items() if c.federated)}")
    if baseline:
        base_strategy, base_sampler = baseline_of(strategy)
        configs[BASELINE_LABEL] = demo_config(base_strategy, base_sampler, quick=quick, overrides=overrides)
    first = configs[strategy]
    protocol = first.secure.protocol

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    if not quiet:
        from .device import get_device

        pools = build_pools(first)
        d, t, a = first.data, first.training, first.active
        sums = "FedAvg updates" + {"fal-global": ", k-means sums and counts", "fairfal": ", gamma"}.get(strategy, "")
        tail = f", long tail rho={d.rho:g}" if d.rho is not None else ""
        train_balance = class_balance(pools.y.bincount(minlength=pools.num_classes).tolist())
        say(f"{d.dataset}{tail}: {len(pools.y)} train / {len(pools.y_test)} test images (class balance "
            f"{train_balance:.2f}), {d.clients} clients with Dirichlet({d.alpha:g}) class mixes")
        widths = ", ".join(map(str, t.model_options["hidden"]))
        rule = "" if a.budget is not None else f" ({100 * a.query_fraction:g}% of the train set, {a.budget_rule} rule)"
        say(f"{t.model.upper()}({widths}); {a.cycles} cycles of: FedAvg ({t.rounds} rounds x "
            f"{t.local_epochs} local epochs), test, label {cycle_budget(first, len(pools.y))} more{rule}; "
            f"device {get_device(first.device)}")
        say(f"secure aggregation: {protocol} on every cross-client sum ({sums})"
            + (" -- in the clear (reference protocol)" if protocol == "plaintext" else ""))
        say("runs: " + " vs ".join(f"{label} (strategy {c.active.strategy}, sampler {c.active.sampler_name})"
                                   for label, c in configs.items()) + "; same data, seed and budgets")
    results: dict[str, dict] = {}
    for label, config in configs.items():
        run_dir = out / label
        for name in (CHECKPOINT_FILE, RESULTS_FILE, CURVE_FILE):
            (run_dir / name).unlink(missing_ok=True)
        show = None if quiet else (lambda record, name=label.ljust(max(map(len, configs))), n=config.active.cycles:
                                   say(cycle_line(name, record, n)))
        results[label] = run_experiment(config, run_dir, quiet=True, on_cycle=show,
                                        plaintext_reference=protocol != "plaintext")
    curve = out / CURVE_FILE
    rho = f" (long tail rho={first.data.rho:g})" if first.data.rho is not None else ""
    plot_learning_curve({f"{label}: {method_label(r)}": r for label, r in results.items()},
                        curve, title=f"{first.data.dataset}{rho}, {first.data.clients} clients, {protocol}")
    say(summary(results))
    n_classes = len(next(iter(results.values()))["cycles"][-1]["class_histogram"])
    say(f"balance: entropy of the labeled set's class shares / log({n_classes}), 1 = all classes equally often")
    if protocol != "plaintext":
        say("x plain: secure bytes (seconds) / plaintext bytes (seconds) of the same sums, each repeated in the "
            "clear;\n  seconds = protocol compute of the server + all clients, transport excluded")
    else:
        say("protocol plaintext: the server saw every input; --protocol masking or ckks to compare")
    say(f"wrote {curve} (learning curves), " + ", ".join(str(out / label / RESULTS_FILE) for label in results))
    return results
