"""Command line: ``secure-fal COMMAND [options]``.

Each subcommand is registered by a function ``add_<name>(subparsers)`` listed in ``COMMANDS``; it adds its
parser and sets ``func`` to a handler ``(args) -> exit code``. A new subcommand (``run``, ``bench``) adds
its register function to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import warnings
from collections.abc import Callable, Sequence

from . import __version__
from .experiment.commands import add_compare, add_config_overrides, add_run, add_sweep, load_run_config

PROTOCOL_NAMES = ("plaintext", "ckks", "masking")


def _hidden_widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


# -- demo -------------------------------------------------------------------------------------------------

# FedAvg-only demo defaults (--fedavg-only); the active-learning demo's are in secure_fal.demo.DEMO_SETTINGS.
FEDAVG_DEFAULTS = {"clients": 10, "alpha": 0.5, "rounds": 20, "local_epochs": 3, "lr": 0.05, "hidden": (128, 64)}
# Flags of the active-learning demo only (dest -> flag), refused with --fedavg-only.
FAL_ONLY_FLAGS = {"strategy": "--strategy", "quick": "--quick", "cycles": "--cycles", "no_baseline": "--no-baseline",
                  "out": "--out", "threads": "--threads"}


def add_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="federated active learning on the bundled digits with secure aggregation (under 90 s on 2 CPU "
                     "cores; --quick: seconds)",
        description="A short federated active-learning experiment on scikit-learn's 8x8 digits (long tail rho=10, "
                    "5 clients with Dirichlet(0.5) class mixes, an MLP): a few cycles of FairFAL (default) with "
                    "every cross-client statistic summed securely (masking by default), beside the same setup "
                    "labeling at random. Prints per cycle the labeled count, test accuracy, labeled-class balance "
                    "and what secure aggregation cost (bytes, seconds, and x plaintext: the same sums repeated "
                    "under the plaintext protocol); then a table, and writes results.json per run and a learning "
                    "curve of both into --out. --fedavg-only runs the plain FedAvg demo instead.")
    p.add_argument("--protocol", choices=PROTOCOL_NAMES, default="masking",
                   help="secure aggregation protocol (default: masking)")
    p.add_argument("--strategy", default=None,
                   help="federated strategy: fairfal (default), fal-global, f-al, fal-local, s-al")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 short cycles, a small MLP (seconds)")
    p.add_argument("--no-baseline", action="store_true", help="skip the random-sampling baseline run")
    p.add_argument("--cycles", type=int, help="active-learning cycles (default: 4; --quick: 3)")
    p.add_argument("--out", help="output directory (default: runs/demo)")
    p.add_argument("--fedavg-only", action="store_true",
                   help="the plain FedAvg demo instead: 10 clients Dirichlet(0.5), one model trained on all data, "
                        "a line per round and a result table")
    p.add_argument("--clients", type=int, help="number of clients K (default: 5; --fedavg-only: 10)")
    p.add_argument("--alpha", type=float, help="Dirichlet concentration of the split (default: 0.5)")
    p.add_argument("--rounds", type=int, help="FedAvg rounds (per cycle) (default: 20; --quick: 5)")
    p.add_argument("--local-epochs", type=int, help="local epochs per round (default: 3; --quick: 2)")
    p.add_argument("--lr", type=float, help="local SGD learning rate (default: 0.1; --fedavg-only: 0.05)")
    p.add_argument("--hidden", type=_hidden_widths,
                   help="MLP hidden widths, comma-separated (default: 128,64; --quick: 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, model, sampling and sessions (default: 0)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA when available, else CPU) | cpu | cuda | cuda:N (default: auto)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: 1, the fastest for the demo's small MLP; --fedavg-only: torch's)")
    p.add_argument("--quiet", action="store_true", help="print only the result table (and where files went)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """The active-learning demo (``secure_fal.demo.run_demo``), or with --fedavg-only the FedAvg demo."""
    if args.fedavg_only:
        given = [flag for dest, flag in FAL_ONLY_FLAGS.items() if getattr(args, dest) not in (None, False)]
        if given:
            print(f"secure-fal demo: error: {', '.join(given)} apply to the active-learning demo, not to "
                  "--fedavg-only", file=sys.stderr)
            return 1
        for dest, value in FEDAVG_DEFAULTS.items():
            if getattr(args, dest) is None:
                setattr(args, dest, value)
        return run_fedavg_demo(args)

    from .demo import DEFAULT_STRATEGY, DEFAULT_THREADS
    from .demo import run_demo as run_fal_demo
    from .device import get_device

    flags = {"seed": "seed", "device": "device", "protocol": "secure.protocol", "clients": "data.clients",
             "alpha": "data.alpha", "rounds": "training.rounds", "local_epochs": "training.local_epochs",
             "lr": "training.lr", "cycles": "active.cycles"}
    overrides = {key: getattr(args, dest) for dest, key in flags.items() if getattr(args, dest) is not None}
    if args.hidden is not None:
        overrides["training.model_options"] = {"hidden": list(args.hidden)}
    get_device(args.device)   # an unknown or absent device: one line now, not a traceback later
    run_fal_demo(args.strategy or DEFAULT_STRATEGY, quick=args.quick, baseline=not args.no_baseline,
                 overrides=overrides, out=args.out or "runs/demo", quiet=args.quiet,
                 threads=args.threads if args.threads is not None else DEFAULT_THREADS)
    return 0


def run_fedavg_demo(args: argparse.Namespace) -> int:
    """FedAvg of an MLP over the digits with every update summed through ``args.protocol``."""
    from .data import dirichlet_split, load_dataset
    from .device import get_device, seed_everything
    from .federated import FedAvgConfig, SGDConfig, train_federated
    from .models import build_model
    from .secagg import Aggregator

    started = time.perf_counter()
    device = get_device(args.device)
    data = load_dataset("digits")
    parts = dirichlet_split(data.y_train, args.clients, args.alpha, seed=args.seed)
    clients = [(data.x_train[idx], data.y_train[idx]) for idx in parts]
    seed_everything(args.seed)
    model = build_model("mlp", data.in_channels, data.image_size, data.num_classes, hidden=args.hidden)
    aggregator = Aggregator(args.protocol, range(args.clients), seed=args.seed)
    config = FedAvgConfig(rounds=args.rounds, local_epochs=args.local_epochs, sgd=SGDConfig(lr=args.lr))

    if not args.quiet:
        print(f"FedAvg on digits ({len(data.y_train)} train / {len(data.y_test)} test), {args.clients} clients, "
              f"Dirichlet alpha={args.alpha}, MLP{tuple(args.hidden)}, protocol {aggregator.name}, device {device}")

    def show(record) -> None:
        print(f"round {record.round:3d}  test acc {record.test_accuracy:.4f}  loss {record.test_loss:.4f}  "
              f"clients {len(record.contributors)}/{len(record.participants)}  "
              f"secure-agg {record.aggregation_bytes / 2**20:.2f} MiB {record.aggregation_seconds:.3f} s")

    result = train_federated(model, clients, aggregator, config, test=(data.x_test, data.y_test), device=device,
                             seed=args.seed, progress=None if args.quiet else show)
    wall = time.perf_counter() - started
    totals = aggregator.totals
    rows = [
        ("protocol", aggregator.name),
        ("clients", str(args.clients)),
        ("rounds", str(len(result.history))),
        ("final test accuracy", f"{result.final_accuracy:.4f}"),
        ("wall time", f"{wall:.1f} s"),
        ("secure-agg bytes", f"{totals.total_bytes} ({totals.total_bytes / 2**20:.1f} MiB)"),
        ("secure-agg seconds", f"{totals.server_seconds + totals.client_seconds:.2f} s "
                               f"(server {totals.server_seconds:.2f}, clients {totals.client_seconds:.2f})"),
    ]
    print(format_table(rows))
    return 0


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column text table with a rule above and below."""
    width = max(len(k) for k, _ in rows)
    rule = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([rule, *(f"{k:<{width}}  {v}" for k, v in rows), rule])


# -- ledger -----------------------------------------------------------------------------------------------

def add_ledger(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ledger", help="print a run's privacy ledger: what the server learned from every sum, and the epsilon spent",
        description="Reads RUN_DIR/results.json (or a Flower run's result file, flower-app --result-file) and prints "
                    "one line per value the server learned (every secure sum of the run: cycle, round, statistic "
                    "kind, shape, protocol, contributors, mechanism, noise, what the server learned; then the values "
                    "it received in the clear), and the epsilon spent.")
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run's output directory (holding results.json), or a Flower run's JSON result file")
    p.set_defaults(func=run_ledger)


def run_ledger(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .errors import UserError
    from .secagg.privacy.ledger import format_ledger

    path = Path(args.run_dir)
    path = path if path.is_file() else path / "results.json"
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if "privacy_ledger" not in results:
        raise UserError(f"{path} has no privacy ledger (written before ledgers existed)")
    print(format_ledger(results["privacy_ledger"], results.get("privacy")))
    return 0


# -- flower-app -------------------------------------------------------------------------------------------

def add_flower_app(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "flower-app", help="write the Flower App directory and run config of a FAL experiment",
        description="Write DIR/pyproject.toml (the FAL ServerApp and ClientApp, for `flwr run`) and "
                    "DIR/run-config.toml (the experiment and the server settings), then print the commands that "
                    "start a SuperLink, one SuperNode per client and the run. Strategies s-al, f-al, fal-local, "
                    "fal-global, fairfal, logo, kafal, ifal; protocols masking, ckks, plaintext. See "
                    "protocols/flower.md.")
    p.add_argument("config", help="TOML config of the experiment (as for `secure-fal run`)")
    p.add_argument("--out", required=True, help="the App directory to write")
    p.add_argument("--min-nodes", type=int, help="SuperNodes that must connect before the run starts "
                                                  "(default: the config's number of clients)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="floor (s) of the server's wait per exchange; it waits longer for slow nodes (default 30)")
    p.add_argument("--wait-nodes", type=float, default=120.0, help="seconds to wait for the nodes (default 120)")
    p.add_argument("--result-file", default="", help="JSON record the ServerApp writes after every cycle")
    add_config_overrides(p)
    p.set_defaults(func=run_flower_app)


def run_flower_app(args: argparse.Namespace) -> int:
    from .experiment import ConfigError

    config = load_run_config(args)
    try:
        from .flower.app_bundle import FAL_APPS, toml_table, write_app_dir
        from .flower.fal.server_app import FLOWER_STRATEGIES, FalSettings, fal_run_config
    except ImportError as exc:
        print(f"secure-fal flower-app: error: {exc} (install the extra: pip install 'secure_fal[flower]')",
              file=sys.stderr)
        return 1
    if config.active.strategy not in FLOWER_STRATEGIES:
        raise ConfigError(f"strategy {config.active.strategy!r} does not run over Flower; choose one of "
                          f"{', '.join(FLOWER_STRATEGIES)}")
    out = write_app_dir(args.out, FalSettings().to_run_config(), name="secure-fal-fal", what="FAL experiments",
                        apps=FAL_APPS)
    run_config = fal_run_config(config, timeout=args.timeout, min_nodes=args.min_nodes or config.data.clients,
                                wait_nodes=args.wait_nodes, result_file=args.result_file)
    (out / "run-config.toml").write_text(toml_table(run_config) + "\n")
    protocol = config.secure.protocol
    print(f"wrote {out / 'pyproject.toml'}, {out / 'run-config.toml'} ({config.active.strategy}, {protocol}, "
          f"{config.data.clients} clients)\n"
          "every machine: pip install 'secure_fal[flower]'; drop --insecure for TLS (protocols/flower.md)\n"
          "  flower-superlink --insecure --host 0.0.0.0 --port 9093 --disable-runtime-dependency-installation\n"
          "  flower-supernode --insecure --superlink SUPERLINK:9093 --host 127.0.0.1 --port 9094 "
          f"--node-config \"client-id=K protocols='{protocol}'\"   # K = 0..{config.data.clients - 1}, one per client\n"
          f"  flwr run {out} CONNECTION --stream --run-config {out / 'run-config.toml'}"
          "   # CONNECTION: a [superlink.NAME] entry of $FLWR_HOME/config.toml")
    return 0


# -- bench ------------------------------------------------------------------------------------------------

def add_bench(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench", help="privacy-overhead benchmark: secure aggregation side by side with plaintext",
        description="Time and bytes of every protocol over workloads x clients x dropout rates (medians over "
                    "rounds), errors against the exact sum, Flower SecAgg+ anchor; or, with --end-to-end, a "
                    "whole FAL experiment per protocol. Writes results.csv, results.json and PNG plots into "
                    "--out. Presets and results: docs/benchmarks.md.")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke-test sizes (under a minute on 2 cores)")
    size.add_argument("--full", action="store_true", help="the whole grid of the issue (hours on 2 cores)")
    p.add_argument("--protocols", nargs="+", metavar="SPEC",
                   help="protocol specs, e.g. plaintext ckks masking masking:neighbours=10 (default: preset)")
    p.add_argument("--workloads", nargs="+", metavar="NAME",
                   help="cnn vector-1m kmeans-k{10,100}-d{64,640} gamma, or the quick ones (default: preset)")
    p.add_argument("--clients", nargs="+", type=int, metavar="N", help="client counts (default: 10 50 100)")
    p.add_argument("--dropouts", nargs="+", type=float, metavar="RATE", help="dropout fractions (default: 0 0.3)")
    p.add_argument("--repeats", type=int, help="rounds per cell, medians reported (default: 3)")
    p.add_argument("--max-values", type=float, help="skip cells with clients x length above this (default: 1.5e7)")
    p.add_argument("--anchor-points", nargs="+", metavar="L,N,DROPOUT",
                   help="Flower SecAgg+ anchor points, or 'none' (default: 100000,10,0 100000,10,0.3 1000000,10,0)")
    p.add_argument("--seed", type=int, help="seed of inputs, dropout plans and sessions (default: 0)")
    p.add_argument("--end-to-end", action="store_true",
                   help="run the end-to-end FAL experiments (digits; FMNIST long tail if installed) instead")
    p.add_argument("--e2e-config", metavar="TOML",
                   help="with --end-to-end: run this config file under every protocol instead of the built-in "
                        "experiments, e.g. examples/configs/fairfal_digits.toml")
    p.add_argument("--e2e-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every end-to-end run, e.g. training.rounds=2 (repeatable)")
    p.add_argument("--e2e-repeats", type=int, help="end-to-end runs per protocol, interleaved (default: 2)")
    p.add_argument("--e2e-threads", type=int, help="torch threads during the end-to-end runs (default: 1)")
    p.add_argument("--e2e-protocols", nargs="+", metavar="SPEC",
                   help="protocols of the end-to-end runs, plaintext included, e.g. plaintext masking ckks "
                        "ckks:mode=dealer (default: plaintext masking ckks)")
    p.add_argument("--out", help="output directory (default: runs/bench-<timestamp>)")
    p.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bench.run import default_out_dir, parse_anchor_points, run_bench, settings_from
    from .experiment import ConfigError, parse_override

    preset = "quick" if args.quick else "full" if args.full else "default"
    try:
        settings = settings_from(preset, {
            "protocols": tuple(args.protocols) if args.protocols else None,
            "workloads": tuple(args.workloads) if args.workloads else None,
            "clients": tuple(args.clients) if args.clients else None,
            "dropouts": tuple(args.dropouts) if args.dropouts else None,
            "repeats": args.repeats, "max_values": args.max_values, "seed": args.seed,
            "anchor_points": parse_anchor_points(args.anchor_points) if args.anchor_points else None,
            "end_to_end": args.end_to_end or None, "e2e_config": args.e2e_config,
            "e2e_overrides": dict(parse_override(t) for t in args.e2e_set) or None,
            "e2e_repeats": args.e2e_repeats, "e2e_threads": args.e2e_threads,
            "e2e_protocols": tuple(args.e2e_protocols) if args.e2e_protocols else None,
        })
        out = Path(args.out) if args.out else default_out_dir()
        _, files = run_bench(settings, out, command=" ".join(["secure-fal", *sys.argv[1:]]))
    except (ValueError, ConfigError) as exc:
        print(f"secure-fal bench: error: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


# -- entry point ------------------------------------------------------------------------------------------

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_demo, add_run, add_sweep, add_compare,
                                                                 add_ledger, add_flower_app, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secure-fal", description="Privacy-preserving federated active learning with secure aggregation.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]), run the subcommand, return its exit code.

    Errors a user can fix (``secure_fal.errors.UserError``: a config value, a missing dataset or checkpoint; an
    input beyond the public bound) print one line on stderr and return 1; warnings print one line each. Nothing
    heavy is imported before the arguments are parsed: torch loads only when a command starts to compute.
    """
    args = build_parser().parse_args(argv)
    from .errors import UserError
    from .secagg.errors import SecAggError

    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command)
        try:
            return args.func(args)
        except (UserError, SecAggError) as exc:
            print(f"secure-fal {args.command}: error: {exc}", file=sys.stderr)
            return 1


def _show_warning(command: str, message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` of the command line: a UserWarning as one line, anything else as Python shows it."""
    if issubclass(category, UserWarning):
        print(f"secure-fal {command}: warning: {message}", file=sys.stderr, flush=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


if __name__ == "__main__":
    sys.exit(main())
