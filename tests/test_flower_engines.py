"""Our secure sums running in Flower's engines, checked against the in-process ``Aggregator``.

- Deployment engine: a SuperLink and 3 SuperNodes on 127.0.0.1 (free ports), the masking protocol, one
  node SIGKILLed mid-round (right after it received the message of the masked-input phase): the result
  must equal, bit for bit, the in-process run with ``Faults(drop={node: "masked_input"})``. About a
  minute: Flower starts a fresh ClientApp process per message and SuperNodes poll every 3 s, and the
  exchange with the dead node waits its full timeout.
- Simulation engine (needs Ray, ``flwr[simulation]``): two rounds, in a child process; masking, and CKKS with
  its in-band key distribution (about 15 s each here).
- Simulation engine with differential privacy (masking, distributed discrete Gaussian, a noise seed): the same
  noised sums bit for bit, the same ledger and epsilon as the in-process ``Aggregator`` with the same settings.
- Flower's own SecAgg+ anchor (slow).

Every process is started in its own process group and killed (with all descendants) in ``finally``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("secure_fal.secagg.masking")

from secure_fal.flower.app_bundle import write_app_dir  # noqa: E402
from secure_fal.flower.loopback import HOST, LoopbackFederation  # noqa: E402
from secure_fal.flower.secure_sum.server_app import SessionSettings  # noqa: E402
from secure_fal.flower.secure_sum.synthetic import synthetic_input  # noqa: E402
from secure_fal.secagg import (Aggregator, DPSettings, Faults, PrivacySession, Statistic,  # noqa: E402
                               make_protocol)

CLIENTS = (0, 1, 2)
EXCHANGE_TIMEOUT = 15.0   # s, the floor of an exchange's wait; exchange.Patience waits longer on a slow machine
RUN_LIMIT = 900.0         # s: a guard against a hung run only (a loaded machine needs minutes)


def in_process(settings: SessionSettings, drop: dict[int, dict[int, str]], aggregator: list | None = None):
    """The same session in-process: (results per round, seconds spent in Aggregator.sum); the Aggregator is appended
    to ``aggregator`` when given."""
    privacy = (PrivacySession(DPSettings(**{"max_contributors": len(CLIENTS), **settings.privacy}))
               if settings.privacy else None)
    agg = Aggregator(settings.protocol, CLIENTS, frac_bits=settings.frac_bits, seed=settings.seed, privacy=privacy,
                     **settings.options)
    t0 = time.perf_counter()
    results = [agg.sum({c: synthetic_input(settings.seed, c, r, settings.length, settings.bound) for c in CLIENTS},
                       bound=settings.bound, faults=Faults(drop=drop.get(r, {})),
                       statistic=Statistic("fedavg-update") if privacy else None)
               for r in range(1, settings.rounds + 1)]
    if aggregator is not None:
        aggregator.append(agg)
    return results, time.perf_counter() - t0


def test_deployment_on_loopback_with_a_node_killed_mid_round(tmp_path):
    # Flower's default executor (a fresh ClientApp process per message); session-mode masking: one in-band setup
    # (advertise, share, ack) for both rounds, then 2 exchanges per round; node 1 dies as round 2 opens
    killed, phase, r = 1, "masked_input", 2
    options = {"threshold": 2, "rounds_per_setup": 2}
    exchange = make_protocol("masking", **options).CLIENT_PHASES.index(phase)  # exchange i: clients send in phase i
    result_file = tmp_path / "result.json"
    settings = SessionSettings(protocol="masking", options=options, rounds=2, length=200, seed=11,
                               timeout=EXCHANGE_TIMEOUT, min_nodes=len(CLIENTS), result_file=str(result_file))
    app = write_app_dir(tmp_path / "app", SessionSettings().to_run_config())
    nodes = [{"client-id": c, "protocols": "masking"} for c in CLIENTS]
    t0 = time.perf_counter()
    with LoopbackFederation(tmp_path / "federation", nodes) as fed:
        listening = fed.run_app_killing_node(app, settings.to_run_config(), node=killed,
                                             marker=f", ROUND {r}.{exchange}]", timeout=RUN_LIMIT)
    loopback_seconds = time.perf_counter() - t0
    assert listening and all(addr == HOST for addr, _ in listening), listening

    record = json.loads(result_file.read_text())
    assert "error" not in record, record["error"]
    assert [s["key_holders"] for s in record["setups"]] == [list(CLIENTS)]  # one setup for both rounds
    want, in_process_seconds = in_process(settings, {r: {killed: phase}})
    for got, exp in zip(record["rounds"], want, strict=True):
        assert got["contributors"] == list(exp.contributors)
        assert np.array_equal(np.array(got["total"]), exp.total)  # bit for bit
        assert got["report"]["total_bytes"] == exp.report.total_bytes  # the same protocol messages crossed
        assert len(got["wire"]["exchange_seconds"]) == 2
    assert record["rounds"][1]["contributors"] == [0, 2] and record["rounds"][1]["wire"]["unanswered"][exchange] == [1]
    rounds = [round(x["seconds"], 1) for x in record["rounds"]]
    print(f"\nloopback deployment: {loopback_seconds:.1f} s wall (start-up to exit), setup "
          f"{record['setup']['seconds']:.1f} s, rounds {rounds} s (exchanges "
          f"{[[round(s, 1) for s in x['wire']['exchange_seconds']] for x in record['rounds']]}); in-process: "
          f"{in_process_seconds:.3f} s")


SIMULATE = """
import json, sys
from secure_fal.flower.secure_sum.server_app import SessionSettings
from secure_fal.flower.simulation import simulate_session
settings = SessionSettings(**json.loads(sys.argv[1]))
print("RECORD " + json.dumps(simulate_session(settings, int(sys.argv[2]))))
"""


def simulate(settings: SessionSettings) -> dict:
    """The session's record from the simulation engine (in a child process: Ray alters the environment)."""
    out = subprocess.run([sys.executable, "-c", SIMULATE, json.dumps(asdict(settings)), str(len(CLIENTS))],
                         capture_output=True, text=True, timeout=RUN_LIMIT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RECORD ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads(lines[-1][len("RECORD "):])
    assert "error" not in record, record["error"]
    return record


def test_simulation_engine_two_rounds_equal_in_process():
    pytest.importorskip("ray")
    settings = SessionSettings(protocol="masking", options={"neighbours": 2}, rounds=2, length=300, seed=5,
                               timeout=60.0, min_nodes=len(CLIENTS))
    record = simulate(settings)
    wants, _ = in_process(settings, {})
    for got, want in zip(record["rounds"], wants, strict=True):
        assert got["contributors"] == list(want.contributors) == list(CLIENTS)
        assert np.array_equal(np.array(got["total"]), want.total)


def test_simulation_engine_with_differential_privacy_equals_in_process():
    # each node clips, encodes and adds its discrete-Gaussian share on its own (noise seed 7): the noised sums,
    # the ledger and the epsilon are the in-process ones
    pytest.importorskip("ray")
    privacy = {"mechanism": "ddg", "noise_multiplier": 1.0, "noise_seed": 7, "clip_norm": 2.0, "min_contributors": 2}
    settings = SessionSettings(protocol="masking", options={"threshold": 2}, rounds=2, length=100, seed=5,
                               timeout=60.0, min_nodes=len(CLIENTS), privacy=privacy)
    record = simulate(settings)
    aggregator: list = []
    wants, _ = in_process(settings, {}, aggregator)
    for got, want in zip(record["rounds"], wants, strict=True):
        assert got["contributors"] == list(want.contributors) == list(CLIENTS)
        assert got["report"]["length"] == 128   # the rotated, padded vector crossed the protocol
        assert np.array_equal(np.array(got["total"]), want.total)
    assert record["privacy_ledger"] == aggregator[0].ledger
    assert record["privacy"]["epsilon_spent"] == aggregator[0].privacy.spent()
    assert [e["mechanism"] for e in record["privacy_ledger"]] == ["ddg", "ddg"]


def test_simulation_engine_ckks_session_with_key_distribution_equals_in_process():
    """Threshold CKKS (the default mode) over the simulation engine: the share distribution, then rounds whose
    sums are bit for bit the in-process ones (both exact on the grid)."""
    pytest.importorskip("ray")
    pytest.importorskip("secure_fal.secagg.ckks")

    settings = SessionSettings(protocol="ckks", options={}, rounds=2, length=300, seed=5, timeout=60.0,
                               min_nodes=len(CLIENTS))
    t0 = time.perf_counter()
    record = simulate(settings)
    wall = time.perf_counter() - t0
    setup = record["setup"]
    assert setup["key_holders"] == list(CLIENTS) and setup["dealer"] is None and setup["wire"]["rejected"] == []
    wants, _ = in_process(settings, {})
    for got, want in zip(record["rounds"], wants, strict=True):
        assert got["contributors"] == list(want.contributors) == list(CLIENTS)
        assert np.array_equal(np.array(got["total"]), want.total)
    print(f"simulation ckks session: {wall:.1f} s wall; share distribution {setup['seconds']:.2f} s, "
          f"{setup['report']['total_bytes']} B of our messages, {setup['wire']['total_bytes']} B of Flower messages")


ANCHOR = """
import json
from secure_fal.bench.flower_secaggplus import time_secaggplus
r = time_secaggplus(100, 4, 0.25)
print("ANCHOR " + json.dumps({**r.__dict__, "total_bytes": r.total_bytes}))
"""


@pytest.mark.slow
def test_secaggplus_anchor_aggregates_and_measures():
    pytest.importorskip("ray")
    out = subprocess.run([sys.executable, "-c", ANCHOR], capture_output=True, text=True, timeout=RUN_LIMIT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("ANCHOR ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(lines[-1][len("ANCHOR "):])
    assert result["dropped"] == [0]
    assert result["max_abs_error"] < 2 * 1.0 / 2**21  # Flower quantizes [-1, 1] to 2^22 levels
    assert 0 < result["seconds"] < result["wall_seconds"]
    assert result["bytes_up"] > 3 * 100 * 4  # three survivors' masked vectors at least
