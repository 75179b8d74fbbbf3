"""The benchmark grid: protocol x workload x clients x dropout, each cell a few rounds, medians over rounds.

A cell is one ``Aggregator`` session (key setup included, timed separately: out of band, or the in-band setup
run before round 1; ``setup_bytes`` counts every byte of it, ``setup_bytes_per_client`` that over n) running ``repeats`` rounds of
``Aggregator.sum``, round r on the inputs of repeat r. Inputs depend only on (seed, workload, repeat,
client id), so every protocol and dropout rate sums the same vectors; cells run workload by workload, and
for each (workload, n, dropout) the protocols run one after the other, so a drift in machine load hits
them alike. Costs come from each round's ``Report`` (bytes of whole encoded messages per client, seconds
inside each party's state machine); ``wall_s`` is the whole ``Aggregator.sum`` call (client machines'
construction and the in-process transport included). Errors are measured against the exact sum of the
contributors' fixed-point inputs (``exact_fixed_point_sum``).

Dropout: a fraction ``dropout`` of the n clients (round(dropout * n) of them, drawn per round) crash at
``drop_phase(protocol)``: for masking "masked_input", i.e. after sharing their keys and before sending
their masked vector, the case that makes the server reconstruct their mask keys (the expensive one); for
protocols without that phase (plaintext, CKKS) the first client phase, i.e. their input is simply missing.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..secagg import (Aggregator, Faults, FixedPoint, SecAggError, SecureSumProtocol, SumResult, make_protocol,
                      run_setup)
from .workloads import Workload

FLOAT32_BYTES = 4
EXPENSIVE_DROP_PHASE = "masked_input"

# Row fields that are medians over the successful rounds of a cell (in this order in CSV/JSON).
MEASURED = ("dropped", "contributors", "client_s_median", "client_s_max", "server_s", "wall_s",
            "up_bytes_median", "down_bytes_median", "total_bytes", "up_bytes_per_value", "x_float32",
            "max_abs_error", "max_rel_error")
# Row fields, in order.
FIELDS = ("protocol", "workload", "length", "clients", "dropout", "status", "rounds_ok", "ring_bits",
          *MEASURED, "setup_s", "setup_bytes", "setup_bytes_per_client")


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol and its constructor options, written ``name`` or ``name:key=value,key=value``.

    Examples: ``masking`` (complete graph, SecAgg), ``masking:neighbours=10`` (SecAgg+ with 10 neighbours),
    ``masking:neighbours=log``, ``masking:active=true`` (active mode). Option values are read as bool
    (true / false), int, then float, else kept as strings.
    """

    name: str
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ProtocolSpec:
        name, _, rest = text.partition(":")
        options = []
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"protocol option {item!r} in {text!r}: expected key=value")
            options.append((key.strip(), _option_value(value.strip())))
        return cls(name.strip(), tuple(options))

    @property
    def label(self) -> str:
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in self.options) if self.options else "")

    def build(self) -> SecureSumProtocol:
        """A fresh protocol object (one per session)."""
        return make_protocol(self.name, **dict(self.options))


def _option_value(text: str) -> object:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def drop_phase(protocol: SecureSumProtocol) -> str:
    """The client phase at which the benchmark's dropouts crash (see the module docstring)."""
    phases = protocol.CLIENT_PHASES
    return EXPENSIVE_DROP_PHASE if EXPENSIVE_DROP_PHASE in phases else phases[0]


def exact_fixed_point_sum(inputs: Mapping[int, np.ndarray], contributors: Iterable[int],
                          encoding: FixedPoint) -> np.ndarray:
    """sum over ``contributors`` of round(x * 2^f), computed exactly in int64, times 2^-f, as float64 (L,).

    The int64 sum cannot overflow: the encoding's ring (<= 64 bits) has room for n inputs.
    """
    total = None
    for cid in contributors:
        q = encoding.quantize(inputs[cid])
        total = q if total is None else total + q
    if total is None:
        raise ValueError("no contributors")
    return encoding.dequantize(total)


def sum_errors(total: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """(max |total - exact|, that divided by max |exact|): absolute and norm-wise relative error.

    The relative error is inf when exact is all zero but total is not, and 0 when both are zero.
    """
    err = float(np.max(np.abs(np.asarray(total, dtype=np.float64) - exact)))
    scale = float(np.max(np.abs(exact)))
    if scale == 0:
        return err, (0.0 if err == 0 else float("inf"))
    return err, err / scale


def round_metrics(result: SumResult, inputs: Mapping[int, np.ndarray], encoding: FixedPoint,
                  wall_s: float) -> dict[str, float]:
    """The MEASURED fields of one round; per-client figures are over the contributors."""
    rep = result.report
    who = result.contributors
    client_s = [rep.client_total_seconds(c) for c in who]
    up = [rep.bytes_up.get(c, 0) for c in who]
    down = [rep.bytes_down.get(c, 0) for c in who]
    per_client = [u + d for u, d in zip(up, down)]
    abs_err, rel_err = sum_errors(result.total, exact_fixed_point_sum(inputs, who, encoding))
    return {
        "dropped": len(rep.dropped), "contributors": len(who),
        "client_s_median": statistics.median(client_s), "client_s_max": max(client_s),
        "server_s": rep.server_total_seconds, "wall_s": wall_s,
        "up_bytes_median": statistics.median(up), "down_bytes_median": statistics.median(down),
        "total_bytes": rep.total_bytes, "up_bytes_per_value": statistics.median(up) / rep.length,
        "x_float32": statistics.median(per_client) / (FLOAT32_BYTES * rep.length),
        "max_abs_error": abs_err, "max_rel_error": rel_err,
    }


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    protocol: ProtocolSpec
    workload: Workload
    clients: int
    dropout: float

    @property
    def values(self) -> int:
        """n * L: the work of one round scales with it."""
        return self.clients * self.workload.length


@dataclass
class CellResult:
    """A row of the results (``row``) and the metrics of every successful round (``rounds``)."""

    row: dict
    rounds: list[dict] = field(default_factory=list)


class InputCache:
    """Client vectors by (workload, repeat, client id), each from its own generator seeded with
    (seed, crc32(workload name), repeat, client id); keeps one workload's vectors at a time."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._workload: str | None = None
        self._vectors: dict[tuple[int, int], np.ndarray] = {}

    def inputs(self, workload: Workload, clients: int, repeat: int) -> dict[int, np.ndarray]:
        """Vectors of clients 0 .. clients-1 for this repeat."""
        if workload.name != self._workload:
            self._workload, self._vectors = workload.name, {}
        key = zlib.crc32(workload.name.encode())
        for cid in range(clients):
            if (repeat, cid) not in self._vectors:
                rng = np.random.default_rng([self.seed, key, repeat, cid])
                self._vectors[(repeat, cid)] = workload.make(cid, rng)
        return {cid: self._vectors[(repeat, cid)] for cid in range(clients)}


def run_cell(cell: Cell, repeats: int, *, frac_bits: int = 24, seed: int = 0,
             cache: InputCache | None = None) -> CellResult:
    """Run ``repeats`` rounds of one session; the row holds medians over the rounds that succeeded.

    A round that raises (e.g. DropoutError: too many dropouts for the threshold) is counted in
    ``status``; the row's measured fields are None when no round succeeded. The dropout plan of round r
    is drawn from (seed, n, dropout, r): the same clients drop under every protocol.
    """
    n, w = cell.clients, cell.workload
    cache = cache or InputCache(seed)
    t0 = time.perf_counter()
    protocol = cell.protocol.build()
    agg = Aggregator(protocol, range(n), frac_bits=frac_bits, seed=seed)
    setup_bytes = getattr(getattr(protocol, "setup_cost", None), "bytes_sent", 0)
    if protocol.setup_due(1):     # an in-band setup (threshold CKKS shares, session masking keys): before round 1
        report = run_setup(protocol, agg.session, agg.clients, 1)
        setup_bytes += sum(report.bytes_up.values()) + sum(report.bytes_down.values())
    setup_s = time.perf_counter() - t0
    encoding = FixedPoint(w.bound, frac_bits, n, w.sum_bound)
    phase = drop_phase(protocol)
    out = CellResult({"protocol": cell.protocol.label, "workload": w.name, "length": w.length, "clients": n,
                      "dropout": cell.dropout, "ring_bits": encoding.ring_bits, "setup_s": setup_s,
                      "setup_bytes": setup_bytes, "setup_bytes_per_client": setup_bytes / n})
    failures = []
    for repeat in range(repeats):
        inputs = cache.inputs(w, n, repeat)
        plan = np.random.default_rng([seed, n, round(cell.dropout * 1e6), repeat])
        dropped = plan.choice(n, size=round(cell.dropout * n), replace=False)
        faults = Faults(drop={int(c): phase for c in dropped})
        t1 = time.perf_counter()
        try:
            result = agg.sum(inputs, bound=w.bound, faults=faults, sum_bound=w.sum_bound)
        except SecAggError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        out.rounds.append(round_metrics(result, inputs, encoding, time.perf_counter() - t1))
    for key in MEASURED:
        out.row[key] = statistics.median(r[key] for r in out.rounds) if out.rounds else None
    out.row["rounds_ok"] = len(out.rounds)
    out.row["status"] = "ok" if not failures else f"{len(failures)}/{repeats} failed: {failures[0]}"
    return out


def grid_cells(protocols: Sequence[ProtocolSpec], workloads: Sequence[Workload], clients: Sequence[int],
               dropouts: Sequence[float], max_values: float | None = None) -> tuple[list[Cell], list[Cell]]:
    """(cells to run, cells skipped because n * L > max_values), in workload, n, dropout, protocol order."""
    cells = [Cell(p, w, n, d) for w in workloads for n in clients for d in dropouts for p in protocols]
    if max_values is None:
        return cells, []
    return [c for c in cells if c.values <= max_values], [c for c in cells if c.values > max_values]


def warm_up(protocols: Sequence[ProtocolSpec], frac_bits: int = 24) -> None:
    """One tiny untimed round per protocol: imports and one-time initialisation stay out of the figures."""
    for spec in protocols:
        agg = Aggregator(spec.build(), range(3), frac_bits=frac_bits, seed=0)
        agg.sum({c: np.zeros(4) for c in range(3)}, bound=1.0)


def run_grid(cells: Sequence[Cell], repeats: int, *, frac_bits: int = 24, seed: int = 0,
             progress: Callable[[CellResult], None] | None = None) -> list[CellResult]:
    """Run every cell (after a warm-up per protocol), calling ``progress`` after each."""
    warm_up(list(dict.fromkeys(c.protocol for c in cells)), frac_bits)
    cache = InputCache(seed)
    results = []
    for cell in cells:
        res = run_cell(cell, repeats, frac_bits=frac_bits, seed=seed, cache=cache)
        results.append(res)
        if progress is not None:
            progress(res)
    return results
