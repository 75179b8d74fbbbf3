"""Benchmark output: a text table, results.csv, results.json and PNG plots (log axes).

Files written into the output directory by ``write_outputs``:

- ``results.csv``: one row per cell, columns ``grid.FIELDS`` (seconds, bytes, errors; empty when no
  round of the cell succeeded).
- ``end_to_end.csv`` (``--end-to-end``): one row per experiment and protocol, columns ``E2E_FIELDS``.
- ``results.json``: {"format", "meta" (command, machine, settings), "rows" (as the CSV), "rounds" (every
  round's metrics per cell), "anchor" and "end_to_end" (when run)}.
- ``vs_length.png``: client and server seconds, and bytes per client, against the vector length L at
  the smallest client count of the grid, no dropout; one colour per protocol.
- ``vs_clients.png``: the same against the number of clients n for the workload with the most client
  counts (the longest such vector), no dropout.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .grid import FIELDS

RESULTS_FORMAT = "secure_fal.bench/1"
CSV_FILE, JSON_FILE, E2E_CSV_FILE = "results.csv", "results.json", "end_to_end.csv"
E2E_FIELDS = ("experiment", "protocol", "runs", "wall_s", "cpu_s", "wall_ratio", "cpu_ratio", "final_accuracy",
              "accuracy_diff", "identical", "secagg_rounds", "secagg_bytes", "secagg_s")
LENGTH_PLOT, CLIENTS_PLOT = "vs_length.png", "vs_clients.png"

# (header, row key, format) of the printed table
TABLE_COLUMNS = (
    ("protocol", "protocol", "{}"), ("workload", "workload", "{}"), ("L", "length", "{:,}"),
    ("n", "clients", "{}"), ("drop", "dropout", "{:g}"), ("client s med", "client_s_median", "{:.4f}"),
    ("client s max", "client_s_max", "{:.4f}"), ("server s", "server_s", "{:.4f}"),
    ("up B/client", "up_bytes_median", "{:,.0f}"), ("down B/client", "down_bytes_median", "{:,.0f}"),
    ("B/value up", "up_bytes_per_value", "{:.2f}"), ("x f32", "x_float32", "{:.2f}"),
    ("total MB", "total_bytes", "{:.2f}"), ("max abs err", "max_abs_error", "{:.1e}"),
    ("max rel err", "max_rel_error", "{:.1e}"), ("status", "status", "{}"),
)


def _cell_text(row: Mapping, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "total_bytes":
        value = value / 1e6
    if key == "status" and value != "ok":
        return value if len(value) <= 60 else value[:57] + "..."
    return fmt.format(value)


def format_table(rows: Sequence[Mapping]) -> str:
    """The results as a fixed-width text table (seconds, bytes and errors are medians over rounds)."""
    cells = [[h for h, _, _ in TABLE_COLUMNS]] + [[_cell_text(r, k, f) for _, k, f in TABLE_COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(text.ljust(w) if i < 2 or i == len(widths) - 1 else text.rjust(w)
                       for i, (text, w) in enumerate(zip(line, widths))).rstrip() for line in cells]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


def write_csv(rows: Sequence[Mapping], path: str | Path, fields: Sequence[str]) -> None:
    """One line per row, the given columns; None is written as an empty field."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})


def write_json(document: Mapping, path: str | Path) -> None:
    """``document`` as JSON (infinite floats as strings, so the file stays valid JSON)."""
    Path(path).write_text(json.dumps(_finite(document), indent=1))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _usable(rows: Sequence[Mapping]) -> list[Mapping]:
    return [r for r in rows if r.get("dropout") == 0 and r.get("client_s_median") is not None]


def _series(rows: Sequence[Mapping], x_key: str) -> dict[str, list[Mapping]]:
    out: dict[str, list[Mapping]] = {}
    for row in sorted(rows, key=lambda r: r[x_key]):
        out.setdefault(row["protocol"], []).append(row)
    return out


def _plot(rows: Sequence[Mapping], x_key: str, x_label: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (protocol, series) in enumerate(_series(rows, x_key).items()):
        c = colours[i % len(colours)]
        xs = [r[x_key] for r in series]
        # seconds of 0 (below the timer's resolution) cannot go on a log axis
        ax_t.plot(xs, [max(r["client_s_median"], 1e-6) for r in series], "o-", color=c,
                  label=f"{protocol} client (median)")
        ax_t.plot(xs, [max(r["server_s"], 1e-6) for r in series], "s--", color=c, label=f"{protocol} server")
        ax_b.plot(xs, [r["up_bytes_median"] + r["down_bytes_median"] for r in series], "o-", color=c,
                  label=protocol)
    for ax, ylabel in ((ax_t, "seconds per round"), (ax_b, "bytes per client per round (up + down)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if x_key == "clients":
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        for ax in (ax_t, ax_b):
            ax.set_xticks(sorted({r["clients"] for r in rows}))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
    if x_key == "length":
        xs = sorted({r["length"] for r in rows})
        ax_b.plot(xs, [4 * x for x in xs], ":", color="grey", label="float32 (4 B/value)")
        ax_b.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(rows: Sequence[Mapping], out_dir: str | Path) -> list[Path]:
    """Write the plots that the rows allow (a plot needs at least one protocol with 2 x values)."""
    out_dir = Path(out_dir)
    rows = _usable(rows)
    written = []
    if rows:
        n_ref = min(r["clients"] for r in rows)
        by_length = [r for r in rows if r["clients"] == n_ref]
        if len({r["length"] for r in by_length}) >= 2:
            _plot(by_length, "length", "vector length L (values)", f"cost vs L, n = {n_ref} clients, no dropout",
                  out_dir / LENGTH_PLOT)
            written.append(out_dir / LENGTH_PLOT)
        counts: dict[tuple[str, int], set[int]] = {}
        for r in rows:
            counts.setdefault((r["workload"], r["length"]), set()).add(r["clients"])
        (workload, length), ns = max(counts.items(), key=lambda item: (len(item[1]), item[0][1]))
        if len(ns) >= 2:
            _plot([r for r in rows if r["workload"] == workload], "clients", "clients n",
                  f"cost vs n, {workload} (L = {length:,}), no dropout", out_dir / CLIENTS_PLOT)
            written.append(out_dir / CLIENTS_PLOT)
    return written


def write_outputs(document: Mapping, out_dir: str | Path) -> list[Path]:
    """results.json, and results.csv + plots (grid) or end_to_end.csv (end to end); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / JSON_FILE]
    write_json(document, out_dir / JSON_FILE)
    if document["rows"]:
        write_csv(document["rows"], out_dir / CSV_FILE, FIELDS)
        written += [out_dir / CSV_FILE, *write_plots(document["rows"], out_dir)]
    if "end_to_end" in document:
        write_csv(document["end_to_end"]["rows"], out_dir / E2E_CSV_FILE, E2E_FIELDS)
        written.append(out_dir / E2E_CSV_FILE)
    return written
