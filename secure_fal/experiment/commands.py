"""The experiment subcommands ``secure-fal run``, ``sweep`` and ``compare`` (registered in ``secure_fal.cli.COMMANDS``),
and the config-override flags that ``run`` shares with ``flower-app``. Nothing heavy is imported before a command
starts."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from .config import PROTOCOLS as PROTOCOL_NAMES


# -- run --------------------------------------------------------------------------------------------------

# Command-line flags that override a key of the TOML config (flag dest -> dotted config key).
RUN_OVERRIDES = {
    "protocol": "secure.protocol", "strategy": "active.strategy", "sampler": "active.sampler", "seed": "seed",
    "device": "device", "cycles": "active.cycles", "rounds": "training.rounds",
    "local_epochs": "training.local_epochs", "clients": "data.clients", "budget": "active.budget",
}


def add_run(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run a federated active-learning experiment from a TOML config",
        description="Run (or resume) the active-learning cycles of a config: per cycle a fresh model is trained "
                    "by the strategy, evaluated, and (but the last cycle) clients select samples to label. Writes "
                    "results.json, learning_curve.png and checkpoint.json (after every cycle) into --out. "
                    "--resume continues the checkpoint's own config: flags given now change only their keys "
                    "(--cycles N extends a finished run; --device moves it).")
    p.add_argument("config", nargs="?",
                   help="TOML config (see secure_fal/experiment/config.py and examples/configs/); with --resume "
                        "optional, the checkpoint's config being used")
    p.add_argument("--out", help="output directory (default: runs/<config file name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in the output directory")
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (bars on a terminal, else a line per cycle); progress.log is written")
    p.add_argument("--log-every", type=int, default=0, metavar="N",
                   help="also a progress line every N FedAvg rounds (default 0: a line per cycle only)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars into OUT/tensorboard (needs the tensorboard package; "
                        "cycles.csv and rounds.csv are always written)")
    p.add_argument("--save-model", action="store_true", help="write the final model's weights to OUT/model.pt")
    add_config_overrides(p)
    p.set_defaults(func=run_run)


def add_config_overrides(p: argparse.ArgumentParser) -> None:
    """The flags of ``RUN_OVERRIDES`` and ``--set`` (read back by ``load_run_config``)."""
    p.add_argument("--protocol", choices=PROTOCOL_NAMES, help="secure aggregation protocol")
    p.add_argument("--strategy", help="s-al | f-al | fal-local | fal-global | fairfal | logo | kafal | ifal | "
                                      "centralized | client-alone")
    p.add_argument("--sampler", help="client-local sampler (e.g. margin, badge, iwkmeans, fairfal)")
    p.add_argument("--seed", type=int, help="experiment seed")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--cycles", type=int, help="active-learning cycles")
    p.add_argument("--rounds", type=int, help="FedAvg rounds per cycle")
    p.add_argument("--local-epochs", type=int, help="local epochs per FedAvg round")
    p.add_argument("--clients", type=int, help="number of clients")
    p.add_argument("--budget", type=int, help="samples labeled per cycle (replaces query_fraction)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set data.alpha=100 --set active.quota=false (repeatable)")


def command_line_overrides(args: argparse.Namespace) -> dict:
    """Dotted config key -> value of the flags of ``add_config_overrides`` that were given."""
    from .loading import parse_override

    overrides = dict(parse_override(text) for text in args.set)
    overrides.update({key: getattr(args, dest) for dest, key in RUN_OVERRIDES.items()
                      if getattr(args, dest) is not None})
    return overrides


def load_run_config(args: argparse.Namespace):
    """The ExperimentConfig of ``args.config`` with the flags of ``add_config_overrides`` applied; raises
    ConfigError (a missing file included)."""
    from .config import ConfigError
    from .loading import load_config

    if args.config is None:
        raise ConfigError("no config file given (or --resume with --out DIR to continue a run)")
    return load_config(args.config, command_line_overrides(args))


def resumed_run_config(args: argparse.Namespace, out):
    """The config saved in ``out``'s checkpoint with the flags given now; a warning lists what a config file given
    as well would have changed (it is not used)."""
    from .checkpoint import resume_config
    from .loading import config_differences

    config = resume_config(out, command_line_overrides(args))
    if args.config is not None:
        ignored = config_differences(config.to_dict(), load_run_config(args).to_dict())
        if ignored:
            warnings.warn(f"--resume continues the checkpoint's config; {args.config} differs in "
                          f"{'; '.join(ignored)} (checkpoint -> file), which is not used. Give a flag or --set to "
                          "change a key", UserWarning, stacklevel=2)
    return config


def run_run(args: argparse.Namespace) -> int:
    """Run or resume; on a fresh run the per-cycle table is printed a row at a time as cycles finish."""
    from pathlib import Path

    from .config import ConfigError

    if args.out is None and args.config is None:
        raise ConfigError("give a config file, or --out DIR with --resume")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    config = resumed_run_config(args, out) if args.resume else load_run_config(args)
    from .runner import run_experiment
    from .metrics_log import CYCLES_CSV
    from .runner import CURVE_FILE, RESULTS_FILE
    from .summary import CycleTable, results_footer, results_table, run_title

    table = CycleTable(config.active.strategy)
    if not args.resume:
        print(run_title(config.to_dict(), config.active.sampler_name), table.head(), sep="\n", flush=True)
    on_cycle = None if args.resume else lambda record: print(table.row(record), flush=True)
    results = run_experiment(config, out, resume=args.resume, quiet=args.quiet, log_every=args.log_every,
                             tensorboard=args.tensorboard, save_model=args.save_model, on_cycle=on_cycle)
    print(results_table(results) if args.resume else results_footer(results))
    privacy = results["privacy"]
    if privacy["enabled"]:
        spent = privacy["epsilon_spent"]
        print(f"differential privacy ({privacy['mechanism']}, noise multiplier {privacy['noise_multiplier']:.4g}): "
              f"epsilon spent {spent['total']:.4g} at delta {spent['delta']:g} over {spent['releases']} noised sums "
              f"(client level; `secure-fal ledger {out}` lists them)")
    print(f"wrote {out / RESULTS_FILE}, {out / CURVE_FILE}, {out / CYCLES_CSV}")
    return 0


def add_sweep(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a config over seeds x strategies x protocols x --set values, then compare",
        description="Run every cell of a grid (one folder per cell: OUT/<method>/seed-<s>/), skipping finished cells "
                    "and resuming interrupted ones, so the same command continues an interrupted sweep; then "
                    "compare the methods (table on stdout; compare.csv, compare.json, accuracy.png, "
                    "worst_class_accuracy.png and sweep.json in OUT). Statistics: see `secure-fal compare --help`.")
    p.add_argument("config", help="TOML config every cell starts from")
    p.add_argument("--seeds", default="0-2", help="seeds, e.g. 0-4 or 0,2,7 (default 0-2)")
    p.add_argument("--strategy", help="strategies to sweep, comma-separated, e.g. fairfal,f-al")
    p.add_argument("--protocol", help="protocols to sweep, comma-separated, e.g. plaintext,masking")
    p.add_argument("--set", action="append", default=[], metavar="KEY=V1[,V2...]",
                   help="a config key for every cell (one value) or swept (several), e.g. training.lr=0.01,0.1 "
                        "(repeatable; commas inside [..], {..} or quotes do not split)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, in separate processes (default 1)")
    p.add_argument("--baseline", help="the method others are tested against (default: the first)")
    p.add_argument("--out", help="output directory (default: runs/sweep-<config file name>)")
    p.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from .sweep import run_sweep, spec_from_arguments

    if args.jobs < 1:
        raise UserError(f"--jobs: expected >= 1, got {args.jobs}")
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{Path(args.config).stem}"
    runs = run_sweep(spec_from_arguments(args.config, args.seeds, args.strategy, args.protocol, args.set), out,
                     jobs=args.jobs)
    return _compare_and_report(runs, args.baseline, out)


def add_compare(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare", help="compare runs: mean +- std per method, paired Wilcoxon tests and Hodges-Lehmann shifts",
        description="Group runs into methods (runs whose configs differ only in the seed), print per method the "
                    "mean +- std over seeds of final, mean-over-cycles and worst-class accuracy, labeled class "
                    "balance and secure-aggregation MiB and seconds, and against the baseline, paired by seed, the "
                    "Hodges-Lehmann shift (median of the Walsh averages of the differences) and the two-sided "
                    "Wilcoxon signed-rank p-value (scipy; n seeds cannot give p below 2/2^n). Writes compare.csv, "
                    "compare.json, accuracy.png and worst_class_accuracy.png (mean curve, +- 1 std band).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories, results.json files, or folders searched for them (a sweep)")
    p.add_argument("--baseline", help="the method others are tested against: its label or a text found only in "
                                      "it (default: the first)")
    p.add_argument("--out", help="where the files go (default: the only RUN_DIR given, else runs/compare)")
    p.set_defaults(func=run_compare_command)


def run_compare_command(args: argparse.Namespace) -> int:
    from .compare import find_results

    out = Path(args.out) if args.out else Path(args.runs[0]) if len(args.runs) == 1 else Path("runs/compare")
    return _compare_and_report(find_results(args.runs), args.baseline, out)


def _compare_and_report(runs: list[dict], baseline: str | None, out: Path) -> int:
    from .compare import compare, comparison_table, write_comparison

    doc = compare(runs, baseline)
    print(comparison_table(doc))
    print("wrote " + ", ".join(str(p) for p in write_comparison(doc, runs, out)))
    return 0
