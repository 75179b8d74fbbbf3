"""Plain-text tables of results documents (printed by ``secure-fal run`` and the example scripts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .learnability import chance_note


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns right-aligned (the first left-aligned), a rule under the header."""
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def method_label(results: Mapping) -> str:
    """'strategy (sampler)', or the strategy alone when it selects by its own rule (no sampler)."""
    return results["strategy"] if results["sampler"] is None else f"{results['strategy']} ({results['sampler']})"


class CycleTable:
    """The per-cycle table of one run, printable a row at a time as cycles finish (fixed column widths).

    Columns: cycle, labeled count and share, test accuracy, samples selected after it, secure-aggregation MiB and
    seconds, cycle seconds; FairFAL runs add how many clients queried with the global / the local model.
    """

    HEADER = ("cycle", "labeled", "labeled %", "accuracy %", "selected", "secagg MiB", "secagg s", "cycle s")

    def __init__(self, strategy: str) -> None:
        self.fairfal = strategy == "fairfal"
        self.header = self.HEADER + (("global/local",) if self.fairfal else ())
        self.widths = [max(len(h), 7) for h in self.header]

    def head(self) -> str:
        """The header line and the rule under it."""
        return "\n".join([self._line(self.header), "  ".join("-" * w for w in self.widths)])

    def row(self, c: Mapping) -> str:
        """The line of one cycle record."""
        agg = c["secure_aggregation"]
        cells = [c["cycle"], c["labeled"], f"{100 * c['labeled_fraction']:.1f}", f"{100 * c['accuracy']:.2f}",
                 sum(c["selected_per_client"]) if "selected_per_client" in c else "-",
                 f"{agg['total_bytes'] / 2**20:.2f}", f"{agg['server_seconds'] + agg['client_seconds']:.2f}",
                 f"{c['seconds']:.1f}"]
        if self.fairfal:
            choice = c.get("details", {}).get("model_choice")
            cells.append(f"{choice.count('global')}/{choice.count('local')}" if choice else "-")
        return self._line([str(v) for v in cells])

    def _line(self, cells: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(cells, self.widths)))


def run_title(config: Mapping, sampler: str | None) -> str:
    """One line naming a run: strategy (sampler), dataset, clients, protocol (``config``: a ``to_dict``)."""
    method = method_label({"strategy": config["active"]["strategy"], "sampler": sampler})
    return (f"{method} on {config['data']['dataset']}, {config['data']['clients']} clients, "
            f"protocol {config['secure']['protocol']}")


def results_footer(results: Mapping) -> str:
    """The lines under the per-cycle table: final accuracy, secure-aggregation totals, wall time, the run's
    warnings and, when the final accuracy is near chance, a note saying so."""
    totals = results["secure_aggregation"]
    lines = [
        f"final accuracy {100 * results['final_accuracy']:.2f} %; secure aggregation "
        f"{totals.get('rounds', 0):.0f} rounds, {totals.get('total_bytes', 0) / 2**20:.2f} MiB, "
        f"{totals.get('server_seconds', 0) + totals.get('client_seconds', 0):.2f} s; "
        f"wall time {results['wall_seconds']:.1f} s",
        *(f"warning: {text}" for text in results.get("warnings", [])),
    ]
    note = chance_note(results["final_accuracy"], results["data"]["num_classes"])
    return "\n".join(lines + ([note] if note else []))


def results_table(results: Mapping) -> str:
    """The whole table of one run: title, per-cycle rows (``CycleTable``), footer (``results_footer``)."""
    table = CycleTable(results["strategy"])
    return "\n".join([run_title(results["config"], results["sampler"]), table.head(),
                      *(table.row(c) for c in results["cycles"]), results_footer(results)])
