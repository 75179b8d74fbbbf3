"""``secure-fal bench``: the presets (quick, default, full) and the driver that runs them and writes results.

Presets (any command-line option overrides the preset's value):

| preset | protocols | workloads | clients | dropouts | repeats | n * L cap | Flower anchor points (L, n, dropout) |
|---|---|---|---|---|---|---|---|
| quick | plaintext, ckks, masking | smoke sizes (L = 2 .. 10,000) | 4, 10 | 0, 0.3 | 1 | - | none |
| default | + masking:neighbours=10 | all 7 | 10, 50, 100 | 0, 0.3 | 3 | 1.5e7 | (1e5, 10, 0), (1e5, 10, 0.3), (1e6, 10, 0) |
| full | as default | all 7 | 10, 50, 100 | 0, 0.1, 0.3 | 3 | - | + (1e6, 10, 0.3), (1e5, 50, 0) |

The cap skips the cells with n * L above it (in the default preset: vector-1m runs at n = 10 only); the
skipped cells are listed in results.json.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .anchor import run_anchor
from .end_to_end import E2E_PROTOCOLS, run_end_to_end
from .grid import FIELDS, ProtocolSpec, grid_cells, run_grid
from .output import RESULTS_FORMAT, format_table, write_outputs
from .workloads import QUICK_WORKLOAD_NAMES, WORKLOAD_NAMES, workloads_by_name

PROTOCOLS = ("plaintext", "ckks", "masking", "masking:neighbours=10")


@dataclass(frozen=True)
class BenchSettings:
    """What one ``secure-fal bench`` invocation runs (see the module docstring for the presets).

    Attributes:
        protocols: protocol specs (``grid.ProtocolSpec`` syntax).
        workloads: workload names (``workloads.py``).
        clients: client counts n.
        dropouts: dropout fractions in [0, 1).
        repeats: rounds per cell; the table shows medians over them.
        max_values: skip cells with n * L above this (None: no cap).
        anchor_points: (L, n, dropout) points for the Flower SecAgg+ anchor (empty: no anchor).
        frac_bits: fixed-point fractional bits of every sum.
        seed: seed of the inputs, dropout plans and session ids.
        end_to_end: run the end-to-end experiments instead of the grid.
        e2e_config: a config file for the end-to-end runs (None: the built-in experiments).
        e2e_overrides: config overrides for every end-to-end run.
        e2e_repeats: runs per protocol (interleaved; medians reported).
        e2e_threads: torch intra-op threads during the end-to-end runs.
        e2e_protocols: protocol specs of the end-to-end runs (``grid.ProtocolSpec`` syntax, plaintext included).
    """

    protocols: tuple[str, ...] = PROTOCOLS
    workloads: tuple[str, ...] = WORKLOAD_NAMES
    clients: tuple[int, ...] = (10, 50, 100)
    dropouts: tuple[float, ...] = (0.0, 0.3)
    repeats: int = 3
    max_values: float | None = 1.5e7
    anchor_points: tuple[tuple[int, int, float], ...] = ((100_000, 10, 0.0), (100_000, 10, 0.3), (1_000_000, 10, 0.0))
    frac_bits: int = 24
    seed: int = 0
    end_to_end: bool = False
    e2e_config: str | None = None
    e2e_overrides: dict = field(default_factory=dict)
    e2e_repeats: int = 2
    e2e_threads: int = 1
    e2e_protocols: tuple[str, ...] = E2E_PROTOCOLS

    def check(self) -> None:
        """ValueError naming the first bad setting."""
        if self.repeats < 1 or self.e2e_repeats < 1 or self.e2e_threads < 1:
            raise ValueError(f"repeats, e2e_repeats and e2e_threads must be >= 1, got {self.repeats}, "
                             f"{self.e2e_repeats}, {self.e2e_threads}")
        if not self.clients or min(self.clients) < 2:
            raise ValueError(f"clients must be >= 2 (masking needs 2), got {self.clients}")
        if not all(0 <= d < 1 for d in self.dropouts):
            raise ValueError(f"dropouts must be in [0, 1), got {self.dropouts}")
        for text in self.protocols + self.e2e_protocols:
            ProtocolSpec.parse(text).build()  # raises ValueError for an unknown name or bad options
        if "plaintext" not in self.e2e_protocols:
            raise ValueError(f"e2e_protocols must include plaintext (the reference), got {self.e2e_protocols}")
        workloads_by_name(self.workloads)


QUICK = BenchSettings(protocols=("plaintext", "ckks", "masking"), workloads=QUICK_WORKLOAD_NAMES, clients=(4, 10),
                      repeats=1, max_values=None, anchor_points=())
DEFAULT = BenchSettings()
FULL = replace(DEFAULT, dropouts=(0.0, 0.1, 0.3), max_values=None,
               anchor_points=DEFAULT.anchor_points + ((1_000_000, 10, 0.3), (100_000, 50, 0.0)))
PRESETS = {"quick": QUICK, "default": DEFAULT, "full": FULL}


def machine_description() -> dict:
    """CPU model and count (from /proc/cpuinfo), load average, Python and platform."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
            "affinity": sorted(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform()}


def run_bench(settings: BenchSettings, out_dir: str | Path, *, command: str = "",
              log: Callable[[str], None] = print) -> tuple[dict, list[Path]]:
    """Run the grid (and anchor) or the end-to-end experiments; write results; return (document, files)."""
    settings.check()
    out_dir = Path(out_dir)
    started = time.perf_counter()
    document: dict = {"format": RESULTS_FORMAT,
                      "meta": {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "machine_before": machine_description(), "settings": asdict(settings)},
                      "rows": [], "rounds": []}
    if settings.end_to_end:
        rows, runs, notes = run_end_to_end(out_dir, config=settings.e2e_config, extra=settings.e2e_overrides,
                                           repeats=settings.e2e_repeats, protocols=settings.e2e_protocols,
                                           torch_threads=settings.e2e_threads, log=log)
        for note in notes:
            log(note)
        document["end_to_end"] = {"rows": rows, "runs": runs, "notes": notes}
    else:
        _grid_and_anchor(settings, document, log)
    document["meta"]["machine_after"] = machine_description()
    document["meta"]["seconds"] = time.perf_counter() - started
    return document, write_outputs(document, out_dir)


def _grid_and_anchor(settings: BenchSettings, document: dict, log: Callable[[str], None]) -> None:
    protocols = [ProtocolSpec.parse(p) for p in settings.protocols]
    cells, skipped = grid_cells(protocols, workloads_by_name(settings.workloads), settings.clients,
                                settings.dropouts, settings.max_values)
    document["meta"]["skipped"] = [f"{c.protocol.label} {c.workload.name} n={c.clients} dropout={c.dropout:g}"
                                   for c in skipped]
    if skipped:
        log(f"skipping {len(skipped)} cells with n * L > {settings.max_values:g} (--max-values; --full runs all)")
    log(f"running {len(cells)} cells x {settings.repeats} rounds")

    def progress(res) -> None:  # noqa: ANN001
        r = res.row
        log(f"  {r['protocol']:<22} {r['workload']:<17} n={r['clients']:<4} dropout={r['dropout']:<4g} "
            + (f"client {r['client_s_median']:.4f} s server {r['server_s']:.4f} s" if r["rounds_ok"] else r["status"]))

    results = run_grid(cells, settings.repeats, frac_bits=settings.frac_bits, seed=settings.seed, progress=progress)
    document["rows"] = [{k: r.row[k] for k in FIELDS} for r in results]
    document["rounds"] = [{"protocol": r.row["protocol"], "workload": r.row["workload"], "clients": r.row["clients"],
                           "dropout": r.row["dropout"], "rounds": r.rounds} for r in results]
    log(format_table(document["rows"]))
    if settings.anchor_points:
        rows, reason = run_anchor(settings.anchor_points, log=log)
        if reason is not None:
            log(f"flower anchor unavailable: {reason}")
        document["anchor"] = {"rows": rows, "unavailable": reason}
    else:
        log("flower anchor skipped: no anchor points (--quick, or --anchor-points none)")


def default_out_dir() -> Path:
    return Path("runs") / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"


def settings_from(preset: str, overrides: dict) -> BenchSettings:
    """The preset with the given fields replaced (fields that are None are left as the preset has them)."""
    base = PRESETS[preset]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def parse_anchor_points(texts: Sequence[str]) -> tuple[tuple[int, int, float], ...]:
    """['100000,10,0.3', ...] -> ((100000, 10, 0.3), ...); ['none'] -> ()."""
    if list(texts) == ["none"]:
        return ()
    points = []
    for text in texts:
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(f"anchor point {text!r}: expected L,n,dropout e.g. 100000,10,0.3")
        points.append((int(float(parts[0])), int(parts[1]), float(parts[2])))
    return tuple(points)
