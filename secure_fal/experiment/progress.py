"""How a run shows progress: bars on a terminal, lines elsewhere (nohup, Slurm, CI), always a log file.

- stderr is a terminal (and not quiet): tqdm bars, one over cycles and one over each cycle's FedAvg rounds;
- stderr is not a terminal (and not quiet): one timestamped line per finished cycle on stderr, and one per
  ``log_every``-th FedAvg round (0: none), flushed at once so that a batch job's log shows them as they happen;
- in every case: the same lines appended to ``progress.log`` in the run's directory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

PROGRESS_FILE = "progress.log"


class Progress:
    """Progress of one run (see the module docstring).

    Args:
        name: the run's name, at the start of every line.
        cycles: the run's number of cycles; rounds: FedAvg rounds per cycle.
        out_dir: the run's directory (``progress.log`` is appended there).
        quiet: no bars and no lines on stderr (the log file is still written).
        log_every: a line every this many FedAvg rounds (0: cycle lines only).
        stream: where lines and bars go (default: sys.stderr).
    """

    def __init__(self, name: str, cycles: int, rounds: int, out_dir: Path, *, quiet: bool = False,
                 log_every: int = 0, stream: TextIO | None = None) -> None:
        self.name, self.cycles, self.rounds, self.log_every = name, cycles, rounds, log_every
        self.stream = stream or sys.stderr
        self.bars = not quiet and self.stream.isatty()
        self.lines = not quiet and not self.bars
        self.log = open(out_dir / PROGRESS_FILE, "a", encoding="utf-8")
        self.started = time.perf_counter()
        self._cycle_bar: tqdm | None = None
        self._round_bar: tqdm | None = None

    def start(self, done: int) -> None:
        """The run begins (or resumes) with ``done`` cycles finished."""
        self._say(f"{'resumed after cycle ' + str(done) if done else 'started'}, {self.cycles} cycles")
        if self.bars:
            self._cycle_bar = tqdm(total=self.cycles, initial=done, desc=f"{self.name} cycles", unit="cycle",
                                   file=self.stream)

    def cycle_started(self, c: int) -> None:
        if self.bars:
            self._round_bar = tqdm(total=self.rounds, desc=f"cycle {c} FedAvg", leave=False, unit="round",
                                   file=self.stream)

    def round_done(self, c: int, record) -> None:
        """A FedAvg round (``secure_fal.federated.RoundRecord``) of cycle ``c`` finished."""
        if self._round_bar is not None:
            if self._round_bar.n >= self._round_bar.total:
                self._round_bar.reset()
            self._round_bar.update(1)
        if self.log_every and record.round % self.log_every == 0:
            loss = f", train loss {record.train_loss:.4f}" if record.train_loss is not None else ""
            self._say(f"cycle {c + 1}/{self.cycles} round {record.round}/{self.rounds}: "
                      f"{len(record.contributors)}/{len(record.participants)} clients{loss}, "
                      f"train {record.train_seconds:.2f} s, secagg {record.aggregation_bytes / 2**20:.2f} MiB "
                      f"{record.aggregation_seconds:.2f} s")

    def cycle_done(self, record: dict) -> None:
        """A cycle finished (its record as ``runner.run_experiment`` describes it)."""
        if self._round_bar is not None:
            self._round_bar.close()
            self._round_bar = None
        if self._cycle_bar is not None:
            self._cycle_bar.set_postfix(acc=f"{record['accuracy']:.4f}", labeled=record["labeled"])
            self._cycle_bar.update(1)
        agg = record["secure_aggregation"]
        worst = record.get("worst_class_accuracy")
        self._say(f"cycle {record['cycle'] + 1}/{self.cycles}: accuracy {100 * record['accuracy']:.2f} %"
                  + (f" (worst class {100 * worst:.1f} %)" if worst is not None else "")
                  + f", labeled {record['labeled']} ({100 * record['labeled_fraction']:.1f} %), secagg "
                  f"{agg['total_bytes'] / 2**20:.2f} MiB {agg['server_seconds'] + agg['client_seconds']:.2f} s, "
                  f"cycle {record['seconds']:.1f} s")

    def close(self) -> None:
        for bar in (self._round_bar, self._cycle_bar):
            if bar is not None:
                bar.close()
        self._say(f"finished in {time.perf_counter() - self.started:.1f} s")
        self.log.close()

    def _say(self, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {self.name} {text}"
        print(line, file=self.log, flush=True)
        if self.lines:
            print(line, file=self.stream, flush=True)
