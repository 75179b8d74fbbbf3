"""Metrics files of a run, written as it goes: CSV always, TensorBoard event files on request.

- ``cycles.csv``: a row per finished cycle (``CYCLE_COLUMNS``), rewritten from the records after every cycle;
- ``rounds.csv``: a row per FedAvg round (``ROUND_COLUMNS``), appended as rounds finish (rows of a cycle that was
  cut short and is redone on resume are dropped first);
- ``tensorboard/`` (``tensorboard=True``): the same numbers as scalars (cycle metrics at step = cycle, round
  metrics at step = cycle x rounds + round). Needs the ``tensorboard`` package (``pip install
  'secure_fal[tensorboard]'``); without it a warning is given and the run goes on.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

from .metrics import class_balance

CYCLES_CSV = "cycles.csv"
ROUNDS_CSV = "rounds.csv"
TENSORBOARD_DIR = "tensorboard"
CYCLE_COLUMNS = ("cycle", "labeled", "labeled_fraction", "accuracy", "worst_class_accuracy", "test_loss", "train_loss",
                 "class_balance", "secagg_bytes", "secagg_seconds", "seconds")
ROUND_COLUMNS = ("cycle", "round", "lr", "participants", "contributors", "train_loss", "train_seconds",
                 "secagg_bytes", "secagg_seconds")


def cycle_row(record: dict) -> dict:
    """The ``cycles.csv`` values of a cycle record (secagg seconds: server + all clients; balance: of the
    labeled set trained on)."""
    agg = record["secure_aggregation"]
    return {"cycle": record["cycle"], "labeled": record["labeled"], "labeled_fraction": record["labeled_fraction"],
            "accuracy": record["accuracy"], "worst_class_accuracy": record.get("worst_class_accuracy"),
            "test_loss": record.get("test_loss"), "train_loss": record.get("train_loss"),
            "class_balance": class_balance(record["class_histogram"]), "secagg_bytes": agg["total_bytes"],
            "secagg_seconds": agg["server_seconds"] + agg["client_seconds"], "seconds": record["seconds"]}


class MetricsLog:
    """CSV (and optionally TensorBoard) logs of one run in ``out_dir`` (see the module docstring).

    Args:
        out_dir: the run's directory.
        rounds: FedAvg rounds per cycle (the TensorBoard step of a round).
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, out_dir: Path, rounds: int, *, tensorboard: bool = False) -> None:
        self.out, self.rounds = out_dir, rounds
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                warnings.warn("--tensorboard: the tensorboard package is not installed (pip install "
                              "'secure_fal[tensorboard]'); writing the CSV logs only", UserWarning, stacklevel=2)
            else:
                self.writer = SummaryWriter(str(out_dir / TENSORBOARD_DIR))

    def start(self, done: int) -> None:
        """Keep the round rows of the ``done`` finished cycles only."""
        path = self.out / ROUNDS_CSV
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["cycle"]) < done]
        self._write(path, ROUND_COLUMNS, rows)

    def round_done(self, c: int, record) -> None:
        """A FedAvg round (``secure_fal.federated.RoundRecord``) of cycle ``c`` finished."""
        row = {"cycle": c, "round": record.round, "lr": record.lr, "participants": len(record.participants),
               "contributors": len(record.contributors), "train_loss": record.train_loss,
               "train_seconds": record.train_seconds, "secagg_bytes": record.aggregation_bytes,
               "secagg_seconds": record.aggregation_seconds}
        with open(self.out / ROUNDS_CSV, "a", newline="") as f:
            csv.DictWriter(f, ROUND_COLUMNS).writerow(row)
        if self.writer is not None:
            step = c * self.rounds + record.round
            for key in ("train_loss", "secagg_bytes", "secagg_seconds"):
                if row[key] is not None:
                    self.writer.add_scalar(f"round/{key}", row[key], step)

    def cycle_done(self, records: Sequence[dict]) -> None:
        """Rewrite ``cycles.csv`` from every finished cycle's record (the last one just finished)."""
        rows = [cycle_row(r) for r in records]
        self._write(self.out / CYCLES_CSV, CYCLE_COLUMNS, rows)
        if self.writer is not None:
            for key, value in rows[-1].items():
                if key != "cycle" and value is not None:
                    self.writer.add_scalar(f"cycle/{key}", value, rows[-1]["cycle"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    @staticmethod
    def _write(path: Path, columns: Sequence[str], rows: Sequence[dict]) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
