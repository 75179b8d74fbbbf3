"""The privacy ledger: one entry per value the server learned, DP or not.

``Aggregator.sum`` appends a ``sum_entry`` for every secure sum it releases (its ``ledger`` list); the experiment
runner adds the cycle, and a ``disclosure_entry`` for values the server receives in the clear (how many samples
each client selected). ``format_ledger`` prints the table of ``secure-fal ledger RUN_DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .mechanisms import Calibration
from .session import KINDS


def learned(protocol: str, n_contributors: int, cal: Calibration | None) -> str:
    """What the server learns from one sum: every input under plaintext, otherwise the sum of the contributors'
    inputs (with the noise the mechanism adds)."""
    if protocol == "plaintext":
        if cal is not None and cal.mechanism != "central-gaussian":
            return (f"every input ({n_contributors}), each with only its own noise share: the epsilon assumes a "
                    "secure sum and does not hold against this server")
        base = f"every input ({n_contributors})"
    else:
        base = f"sum of {n_contributors} inputs"
    return base if cal is None else f"{base} + noise of std {cal.noise_std:.3g} per value"


def sum_entry(*, round_id: int, kind: str | None, length: int, protocol: str, contributors: Sequence[int],
              cal: Calibration | None) -> dict:
    """The ledger entry of one secure sum (JSON-ready). ``kind`` None: a sum whose caller declared no statistic."""
    return {
        "round": round_id, "kind": kind or "undeclared", "shape": [length], "protocol": protocol,
        "contributors": [int(c) for c in contributors], "mechanism": cal.mechanism if cal is not None else "none",
        "noise": None if cal is None else {"std": cal.noise_std, "noise_multiplier": cal.noise_multiplier,
                                           "clip": cal.clip, "bits": cal.bits, "gamma": cal.gamma},
        "learned": learned(protocol, len(contributors), cal),
        "derived": KINDS.get(kind or "", ""),
        "calibration": cal.to_dict() if cal is not None else None,
    }


def disclosure_entry(*, kind: str, shape: Sequence[int], learned_text: str) -> dict:
    """The ledger entry of a value sent to the server in the clear (no secure sum, no noise)."""
    return {"round": None, "kind": kind, "shape": list(shape), "protocol": "clear", "contributors": [],
            "mechanism": "none", "noise": None, "learned": learned_text, "derived": "", "calibration": None}


def selected_counts_entry(counts: Sequence[int | None]) -> dict:
    """The ledger entry of the selection counts a server receives in the clear after a cycle's selection (one per
    client; None: a client that did not answer)."""
    return disclosure_entry(kind="selected-counts", shape=[len(counts)],
                            learned_text=f"how many samples each client labeled, in the clear: {list(counts)}")


def format_ledger(entries: Sequence[dict], privacy: dict | None) -> str:
    """The ledger as a text table (one line per entry) followed by the epsilon spent."""
    header = ("cycle", "round", "kind", "shape", "protocol", "n", "mechanism", "noise std", "server learned")
    rows = []
    for e in entries:
        noise = "-" if e["noise"] is None else f"{e['noise']['std']:.3g}"
        rows.append((str(e.get("cycle", "-")), "-" if e["round"] is None else str(e["round"]), e["kind"],
                     "x".join(str(s) for s in e["shape"]), e["protocol"], str(len(e["contributors"])),
                     e["mechanism"], noise, e["learned"]))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"{len(entries)} entries")
    if privacy is None or not privacy.get("enabled"):
        lines.append("differential privacy: off (every sum above is exact)")
    else:
        spent = privacy["epsilon_spent"]
        kinds = ", ".join(f"{k} {v:.3g}" for k, v in spent["per_kind"].items())
        lines.append(f"epsilon spent: {spent['total']:.4g} at delta {spent['delta']:g} "
                     f"({spent['releases']} releases, mechanism {privacy['mechanism']}; per kind: {kinds or 'none'})")
    return "\n".join(lines)
