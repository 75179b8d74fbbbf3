"""Secure rounds in Flower's deployment engine, side by side with Flower's own rounds, in one federation.

    python -m secure_fal.bench.deployment --length 100000 --clients 3 --reps 3 --executor flower --executor fork

One loopback federation (``flower.loopback``: a SuperLink and ``clients`` SuperNodes on 127.0.0.1) per executor;
in it, ``reps`` times in turn (interleaved, so that a change of machine load hits every variant alike), one
``flwr run`` of each variant:

- ``flower-plain``: Flower's plain FedAvg fit round (``flower_secaggplus``, ``plain``): one exchange, the inputs in
  the clear. Flower's floor for a round.
- ``flower-secaggplus``: Flower's SecAgg+ workflow (4 stages) on the same clients.
- ``masking``: our masking protocol, ``rounds`` secure sums per run (``server_app``), one per round; each variant
  of ``--masking`` (JSON protocol options) is one line.

Every client's input is ``synthetic_input`` of ``length`` values. What is timed is the round alone, in the
ServerApp: from the first message of the round to its result (after a warm-up / hello exchange, without the app's
start-up), so the figures compare what one round costs in a running federation. Per variant: the median seconds
per round, and that median over Flower's plain round's median (``x plain``) and over SecAgg+'s (``x SecAgg+``).
Executors (``loopback.LoopbackFederation(executor=...)``): ``flower`` (Flower's default: a fresh ClientApp process
per message) and ``fork`` (``flower.fork_executor``: forks of a warm process); ``--node-poll S``: SuperNodes that poll
every S seconds when idle (``flower.supernode``) instead of Flower's 3 s. Every variant runs on the same nodes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..flower.app_bundle import write_app_dir
from ..flower.loopback import LoopbackFederation
from ..flower.secure_sum.server_app import SessionSettings
from .flower_secaggplus import ANCHOR_APPS, AnchorSettings

RUN_LIMIT_S = 900.0


def _run(fed: LoopbackFederation, app: Path, run_config: dict, result_file: Path) -> dict:
    """One ``flwr run``; the ServerApp's result record (RuntimeError naming the logs if it wrote none)."""
    result_file.unlink(missing_ok=True)
    code = fed.run_app(app, run_config, timeout=RUN_LIMIT_S)
    if code != 0 or not result_file.exists():
        raise RuntimeError(f"run of {app.name} failed (exit code {code}); logs in {fed.workdir}")
    record = json.loads(result_file.read_text())
    if "error" in record:
        raise RuntimeError(f"run of {app.name}: {record['error']}; logs in {fed.workdir}")
    return record


def measure(executor: str, *, length: int, clients: int, reps: int, rounds: int, masking: Sequence[dict],
            timeout: float, workdir: Path, node_poll_s: float | None = None,
            log=print) -> list[dict]:  # noqa: ANN001
    """Interleaved runs of every variant in one federation; one dict per (variant, run) with its round seconds."""
    work = workdir / executor
    anchor_app = write_app_dir(work / "anchor-app", AnchorSettings().to_run_config(),
                               name="secure-fal-secaggplus-anchor", what="Flower rounds timed", apps=ANCHOR_APPS)
    ours_app = write_app_dir(work / "session-app", SessionSettings().to_run_config())
    result_file = work / "result.json"
    nodes = [{"client-id": c, "protocols": "masking"} for c in range(clients)]
    rows = []
    with LoopbackFederation(work / "federation", nodes, executor=executor, node_poll_s=node_poll_s,
                            preload=["secure_fal.bench.flower_secaggplus", "secure_fal.flower.secure_sum.client_app"]) as fed:
        for rep in range(reps):
            for plain in (True, False):
                settings = AnchorSettings(length, clients, timeout=timeout, plain=plain, result_file=str(result_file))
                record = _run(fed, anchor_app, settings.to_run_config(), result_file)
                rows.append({"executor": executor, "variant": record["protocol"], "rep": rep,
                             "seconds": [record["seconds"]], "bytes": record["bytes_down"] + record["bytes_up"]})
                log(f"  {executor} rep {rep} {record['protocol']}: {record['seconds']:.2f} s")
            for options in masking:
                settings = SessionSettings(protocol="masking", options=options, rounds=rounds, length=length,
                                           timeout=timeout, min_nodes=clients, result_file=str(result_file))
                record = _run(fed, ours_app, settings.to_run_config(), result_file)
                seconds = [r["seconds"] for r in record["rounds"]]
                name = "masking " + json.dumps(options, sort_keys=True) if options else "masking"
                rows.append({"executor": executor, "variant": name, "rep": rep, "seconds": seconds,
                             "setup_seconds": record.get("setup", {}).get("seconds"),
                             "bytes": sum(r["wire"]["total_bytes"] for r in record["rounds"]) / len(seconds)})
                log(f"  {executor} rep {rep} {name}: rounds {[round(s, 2) for s in seconds]} s")
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per (executor, variant): median seconds per round, and its ratio to Flower's plain round and SecAgg+ round
    (both medians, same executor)."""
    out = []
    for executor in dict.fromkeys(r["executor"] for r in rows):
        mine = [r for r in rows if r["executor"] == executor]
        medians = {}
        for variant in dict.fromkeys(r["variant"] for r in mine):
            seconds = [s for r in mine if r["variant"] == variant for s in r["seconds"]]
            medians[variant] = (statistics.median(seconds), len(seconds),
                                statistics.median([r["bytes"] for r in mine if r["variant"] == variant]))
        plain, secagg = medians["flower-plain"][0], medians["flower-secaggplus"][0]
        for variant, (median, n, nbytes) in medians.items():
            out.append({"executor": executor, "variant": variant, "rounds": n, "median_s": median,
                        "x_plain": median / plain, "x_secaggplus": median / secagg, "bytes_per_round": nbytes})
    return out


def format_table(summary: list[dict]) -> str:
    lines = ["| executor | round | rounds timed | median s per round | x Flower plain | x Flower SecAgg+ | "
             "Flower bytes per round |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in summary:
        lines.append(f"| {r['executor']} | {r['variant']} | {r['rounds']} | {r['median_s']:.2f} | "
                     f"{r['x_plain']:.2f} | {r['x_secaggplus']:.2f} | {r['bytes_per_round']:,.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=100_000, help="values per client (default 100000)")
    parser.add_argument("--clients", type=int, default=3, help="SuperNodes (default 3)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="our secure sums per run (default 2)")
    parser.add_argument("--executor", action="append", choices=("flower", "fork"),
                        help="ClientApp executor(s) (repeatable; default: flower)")
    parser.add_argument("--masking", action="append", type=json.loads,
                        help="JSON options of one masking variant (repeatable; default: {})")
    parser.add_argument("--timeout", type=float, default=60.0, help="floor of each exchange's wait, s")
    parser.add_argument("--node-poll", type=float, default=None,
                        help="idle poll of the SuperNodes, s (flower.supernode; default: Flower's 3 s)")
    parser.add_argument("--out", help="directory for results.json and the logs (default: a temporary one)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-deployment-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = []
    for executor in args.executor or ["flower"]:
        rows += measure(executor, length=args.length, clients=args.clients, reps=args.reps, rounds=args.rounds,
                        masking=args.masking or [{}], timeout=args.timeout, workdir=out,
                        node_poll_s=args.node_poll)
    summary = summarize(rows)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary,
                                                  "seconds": time.perf_counter() - t0}, indent=1))
    print(format_table(summary))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
