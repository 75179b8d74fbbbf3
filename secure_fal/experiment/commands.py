"""The ``secure-fal sweep`` and ``secure-fal compare`` subcommands (registered in ``secure_fal.cli.COMMANDS``)."""

from __future__ import annotations

import argparse
from pathlib import Path


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
