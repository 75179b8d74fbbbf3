"""Side-by-side anchor: our masking protocol against Flower's own SecAgg+, in the same run.

For each point (L values, n clients, dropout rate) three measurements on the same synthetic inputs
(``flower.synthetic.synthetic_input(seed=0, cid, round 1, L, bound 1)``), the same dropout plan (the first
round(rate * n) client ids crash after sharing their keys, before sending their masked vector) and the
same parameters (complete graph, threshold floor(2n/3) + 1):

- ``flower``: Flower's SecAggPlusWorkflow + secaggplus_mod in Flower's simulation engine
  (``flower_secaggplus.time_secaggplus``): wall seconds of the 4-stage workflow in the ServerApp,
  and the bytes of every Flower Message it sent and received.
- ``ours_flower``: our masking protocol over the same engine (``flower.secure_sum.server_app`` / ``client_app``,
  dropouts by a mod that answers the masked-input exchange with an error): wall seconds of the round in
  the ServerApp (first send to result) and the bytes of every Flower Message of the round. Both sides
  poll for replies every 0.1 s and exclude start-up (each has an untimed warm-up exchange first), so
  ``time_ratio`` = ours_flower_s / flower_s and ``bytes_ratio`` = ours_flower_bytes / flower_bytes compare
  like with like.
- ``ours_inproc``: our protocol in-process (``Aggregator.sum``): compute seconds summed over the server
  and every client (one core, no transport), and the bytes of our messages.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from ..secagg import Aggregator, Faults
from .grid import EXPENSIVE_DROP_PHASE

ANCHOR_SEED = 0
ANCHOR_BOUND = 1.0


def anchor_unavailable() -> str | None:
    """Why the anchor cannot run here (flwr or the colleague's anchor module missing), or None."""
    try:
        import flwr  # noqa: F401

        from . import flower_secaggplus  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def dropped_ids(clients: int, dropout: float) -> tuple[int, ...]:
    """The anchor's dropout plan: the first round(dropout * clients) ids (as ``flower_secaggplus``)."""
    return tuple(range(round(dropout * clients)))


def ours_in_process(length: int, clients: int, dropout: float) -> dict:
    """Our masking protocol in-process on the anchor's inputs: compute seconds and bytes of one round."""
    from ..flower.secure_sum.synthetic import synthetic_input

    inputs = {c: synthetic_input(ANCHOR_SEED, c, 1, length, ANCHOR_BOUND) for c in range(clients)}
    agg = Aggregator("masking", range(clients), seed=ANCHOR_SEED)
    faults = Faults(drop={c: EXPENSIVE_DROP_PHASE for c in dropped_ids(clients, dropout)})
    rep = agg.sum(inputs, bound=ANCHOR_BOUND, faults=faults).report
    return {"ours_inproc_compute_s": rep.server_total_seconds + sum(rep.client_total_seconds(c) for c in rep.clients),
            "ours_inproc_server_s": rep.server_total_seconds, "ours_inproc_bytes": rep.total_bytes}


def _dropping_client_app(dropped: Iterable[int]):
    """Our ClientApp behind a mod that makes the clients in ``dropped`` answer the exchange carrying
    their RelayedShares (the one where they would send the masked input) with a Flower Error."""
    from flwr.app import Error, Message
    from flwr.clientapp import ClientApp

    from ..flower.carrier.node_config import client_id_of
    from ..flower.secure_sum.client_app import make_client_app
    from ..flower.carrier.envelope import HELLO_ACTION, ROUND_ACTION, ROUND_TYPE, unpack_messages
    from ..secagg.masking.messages import PROTOCOL_ID, RelayedShares
    from ..secagg.messages import peek_header

    inner = make_client_app()
    gone = frozenset(dropped)

    def dropout_mod(msg, context, call_next):  # noqa: ANN001, ANN202 (Flower's Mod signature)
        cid = client_id_of(context)
        if cid in gone and msg.metadata.message_type == ROUND_TYPE:
            kinds = {(h.protocol, h.kind) for h in map(peek_header, unpack_messages(msg.content, client=cid,
                                                                                   round_id=None))}
            if (PROTOCOL_ID, RelayedShares.KIND) in kinds:
                return Message(Error(0, f"client {cid} drops out (bench dropout plan)"), reply_to=msg)
        return call_next(msg, context)

    app = ClientApp(mods=[dropout_mod])

    @app.query(HELLO_ACTION)
    def hello(message, context):  # noqa: ANN001, ANN202
        return inner(message, context)

    @app.query(ROUND_ACTION)
    def secure_round(message, context):  # noqa: ANN001, ANN202
        return inner(message, context)

    return app


def ours_over_flower(length: int, clients: int, dropout: float, timeout: float = 120.0) -> dict:
    """Our masking protocol in Flower's simulation engine on the anchor's inputs (see module docstring)."""
    from flwr.simulation import run_simulation

    from .flower_secaggplus import SIMULATION_BACKEND
    from ..flower.secure_sum.server_app import SessionSettings, make_server_app

    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as work:
        result_file = Path(work) / "ours.json"
        settings = SessionSettings(protocol="masking", rounds=1, length=length, bound=ANCHOR_BOUND, seed=ANCHOR_SEED,
                                   timeout=timeout, min_nodes=clients, result_file=str(result_file))
        run_simulation(make_server_app(settings), _dropping_client_app(dropped_ids(clients, dropout)),
                       num_supernodes=clients, backend_config=SIMULATION_BACKEND)
        if not result_file.exists():
            raise RuntimeError("our round over Flower produced no result (see Flower's log above)")
        doc = json.loads(result_file.read_text())
    if "error" in doc or not doc["rounds"]:
        raise RuntimeError(f"our round over Flower failed: {doc.get('error', 'no round')}")
    rnd = doc["rounds"][0]
    return {"ours_flower_s": rnd["seconds"], "ours_flower_bytes": rnd["wire"]["total_bytes"],
            "ours_flower_contributors": len(rnd["contributors"]),
            "ours_flower_exchange_s": rnd["wire"]["exchange_seconds"]}


def anchor_point(length: int, clients: int, dropout: float) -> dict:
    """All three measurements of one point, and the ratios ours / Flower's."""
    from .flower_secaggplus import time_secaggplus

    row: dict = {"length": length, "clients": clients, "dropout": dropout,
                 "dropped": len(dropped_ids(clients, dropout))}
    t0 = time.perf_counter()
    theirs = time_secaggplus(length, clients, dropout, seed=ANCHOR_SEED, bound=ANCHOR_BOUND)
    row.update(flower_s=theirs.seconds, flower_bytes=theirs.total_bytes, flower_bytes_down=theirs.bytes_down,
               flower_bytes_up=theirs.bytes_up, flower_max_abs_error=theirs.max_abs_error)
    row.update(ours_over_flower(length, clients, dropout))
    row.update(ours_in_process(length, clients, dropout))
    row["time_ratio"] = row["ours_flower_s"] / row["flower_s"]
    row["bytes_ratio"] = row["ours_flower_bytes"] / row["flower_bytes"]
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_anchor(points: Iterable[tuple[int, int, float]], log=print) -> tuple[list[dict], str | None]:  # noqa: ANN001
    """(rows, None), or ([], reason) when the anchor is unavailable; a point that fails gets a status."""
    reason = anchor_unavailable()
    if reason is not None:
        return [], reason
    logging.getLogger("flwr").setLevel(logging.WARNING)
    rows = []
    for length, clients, dropout in points:
        try:
            row = anchor_point(length, clients, dropout)
            row["status"] = "ok"
        except Exception as exc:  # noqa: BLE001 (Flower/Ray raise many kinds; report, do not abort the bench)
            row = {"length": length, "clients": clients, "dropout": dropout,
                   "status": f"failed: {type(exc).__name__}: {exc}"}
        log(format_anchor_row(row))
        rows.append(row)
    return rows, None


def format_anchor_row(row: dict) -> str:
    """One line: the point, both timings and byte counts, and the ratios."""
    head = f"anchor L={row['length']:,} n={row['clients']} dropout={row['dropout']:g}: "
    if row.get("status") != "ok":
        return head + row["status"]
    return head + (f"Flower SecAgg+ {row['flower_s']:.3f} s {row['flower_bytes'] / 1e6:.2f} MB | ours over Flower "
                   f"{row['ours_flower_s']:.3f} s {row['ours_flower_bytes'] / 1e6:.2f} MB | ours in-process compute "
                   f"{row['ours_inproc_compute_s']:.3f} s {row['ours_inproc_bytes'] / 1e6:.2f} MB | ours/theirs "
                   f"time {row['time_ratio']:.2f} bytes {row['bytes_ratio']:.2f}")

