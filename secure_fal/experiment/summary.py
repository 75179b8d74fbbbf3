"""Plain-text tables of results documents (printed by ``secure-fal run`` and the example scripts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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


def results_table(results: Mapping) -> str:
    """Per-cycle table of one run: labeled count and share, test accuracy, picks, secure-aggregation cost,
    seconds; FairFAL runs add the number of clients querying with the global model; then the totals."""
    fairfal = any("model_choice" in c.get("details", {}) for c in results["cycles"])
    header = ["cycle", "labeled", "labeled %", "accuracy %", "selected", "secagg MiB", "secagg s", "cycle s"]
    if fairfal:
        header.append("global/local")
    rows = []
    for c in results["cycles"]:
        agg = c["secure_aggregation"]
        row = [c["cycle"], c["labeled"], f"{100 * c['labeled_fraction']:.1f}", f"{100 * c['accuracy']:.2f}",
               sum(c.get("selected_per_client", [])) if "selected_per_client" in c else "-",
               f"{agg['total_bytes'] / 2**20:.2f}", f"{agg['server_seconds'] + agg['client_seconds']:.2f}",
               f"{c['seconds']:.1f}"]
        if fairfal:
            choice = c.get("details", {}).get("model_choice")
            row.append(f"{choice.count('global')}/{choice.count('local')}" if choice else "-")
        rows.append(row)
    totals = results["secure_aggregation"]
    cfg = results["config"]
    lines = [
        f"{method_label(results)} on {cfg['data']['dataset']}, {cfg['data']['clients']} clients, "
        f"protocol {cfg['secure']['protocol']}",
        text_table(header, rows),
        f"final accuracy {100 * results['final_accuracy']:.2f} %; secure aggregation "
        f"{totals.get('rounds', 0):.0f} rounds, {totals.get('total_bytes', 0) / 2**20:.2f} MiB, "
        f"{totals.get('server_seconds', 0) + totals.get('client_seconds', 0):.2f} s; "
        f"wall time {results['wall_seconds']:.1f} s",
    ]
    return "\n".join(lines)
