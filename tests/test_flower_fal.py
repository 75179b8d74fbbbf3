"""F-AL over Flower (secure_fal.flower.fal_server / fal_client) against the in-process ``run_experiment``.

- Without a Flower runtime: ``FalServer`` driven through a channel that calls the clients' ``handle`` directly,
  with a client silent from one exchange of one round on; per cycle accuracy, contributors, budgets and
  selected counts must equal the in-process run with the same dropout (bit for bit).
- Deployment engine: SuperLink + 3 SuperNodes on 127.0.0.1, masking, node 1 SIGKILLed in the last cycle right
  after it received the masked-input exchange; same comparison. About 130 s on 2 cores; it
  runs in the default suite, since CI must run it.

The in-process run has no dropout hook, so the reference patches ``train_federated`` (as the Trainer calls it)
to pass ``faults`` for the chosen (cycle, round).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

pytest.importorskip("flwr")
pytest.importorskip("secure_fal.secagg.masking")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

from secure_fal.experiment import load_config, run_experiment  # noqa: E402
from secure_fal.experiment.setup import build_pools, initial_labeled  # noqa: E402
from secure_fal.flower.app_bundle import write_app_dir  # noqa: E402
from secure_fal.flower.fal_client import handle  # noqa: E402
from secure_fal.flower.fal_server import FalServer, FalSettings, fal_run_config  # noqa: E402
from secure_fal.flower.loopback import LoopbackFederation  # noqa: E402
from secure_fal.secagg import Faults, SecAggError  # noqa: E402
from secure_fal.secagg.masking import MaskingProtocol  # noqa: E402
from secure_fal.strategies import training  # noqa: E402

CLIENTS = (0, 1, 2)
FAL_APPS = ("secure_fal.flower.fal_server:app", "secure_fal.flower.fal_client:app")
TINY = {
    "device": "cpu", "data.clients": 3, "training.model": "mlp", "training.model_options": {"hidden": [32]},
    "training.rounds": 2, "training.local_epochs": 1, "training.lr": 0.1, "active.cycles": 2,
    "active.budget": 30, "active.strategy": "f-al", "secure.protocol": "masking",
    "secure.options": {"threshold": 2},
}
EXCHANGE_TIMEOUT = 20.0   # s an exchange waits for answers; an honest node needs ~4-9 s on 2 cores
RUN_LIMIT = 420.0         # s for the whole flwr run


def in_process(config, out_dir, drop: dict[tuple[int, int], dict[int, str]]):
    """run_experiment with Faults(drop=drop[(cycle, round)]) in FedAvg round ``round`` (0-based) of ``cycle``:
    (results, wall seconds)."""
    real = training.train_federated
    cycles = []

    def with_faults(*args, **kwargs):
        c = len(cycles)
        cycles.append(c)
        return real(*args, faults=lambda r: Faults(drop=drop.get((c, r), {})), **kwargs)

    t0 = time.perf_counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "train_federated", with_faults)
        results = run_experiment(config, out_dir, quiet=True)
    return results, time.perf_counter() - t0


def check_same(config, cycles: list[dict], want: dict, killed: int, drop_at: tuple[int, int]) -> None:
    """Flower records vs the in-process results: accuracy per cycle bit for bit, contributors, labeled counts."""
    assert len(cycles) == config.active.cycles == len(want["cycles"])
    labeled = [len(lab) for lab in initial_labeled(build_pools(config), config.active.initial_fraction, config.seed)]
    for got, exp in zip(cycles, want["cycles"]):
        assert got["accuracy"] == exp["accuracy"], (got["cycle"], got["accuracy"], exp["accuracy"])
        assert exp["labeled_per_client"] == labeled
        for r, rnd in enumerate(got["rounds"]):
            survivors = [k for k in CLIENTS if (got["cycle"], r) != drop_at or k != killed]
            assert rnd["contributors"] == survivors
        if "selection" in got:
            sel = got["selection"]
            assert sel["failed"] == {}
            assert sel["budgets"] == exp["budgets"]
            assert [sel["selected"][str(k)] for k in CLIENTS] == exp["selected_per_client"]
            labeled = [n + sel["selected"][str(k)] for k, n in enumerate(labeled)]


def local_channel(config_json: str, silent: dict[str, set[int]]):
    """A channel calling each client's ``handle`` in this process; clients in ``silent[group]`` do not answer
    that exchange (and are not addressed again in that round by the server machine)."""
    states = {k: RecordDict() for k in CLIENTS}
    node_config = {"protocols": "masking"}

    def send(message_type, group, batches):
        action = message_type.split(".", 1)[1]
        answers = {}
        for cid, content in batches.items():
            if cid in silent.get(group, set()):
                continue
            try:
                answers[cid] = handle(action, content, states[cid], cid, config_json, node_config)
            except SecAggError as exc:
                answers[cid] = str(exc)
        return answers

    return send


def test_fal_server_and_clients_without_flower_equal_in_process(tmp_path):
    config = load_config(None, TINY)
    killed, phase, cycle, r = 1, "masked_input", 0, 1
    exchange = MaskingProtocol.CLIENT_PHASES.index(phase)
    run_config = fal_run_config(config)
    channel = local_channel(run_config["experiment"], {f"{cycle}.{r + 1}.{exchange}": {killed}})
    cycles = FalServer(config, CLIENTS, channel).run()
    want, _ = in_process(config, tmp_path, {(cycle, r): {killed: phase}})
    check_same(config, cycles, want, killed, (cycle, r))
    assert cycles[cycle]["rounds"][r]["unanswered"][exchange] == [killed]


def test_fal_client_refuses_a_bad_selection_request():
    config = load_config(None, TINY)
    content = RecordDict({"secure_fal.select": ConfigRecord({"cycle": 0, "budget": -1})})
    with pytest.raises(SecAggError, match="client 2"):
        handle("secure_fal_select", content, RecordDict(), 2, fal_run_config(config)["experiment"], {})


def test_fal_deployment_on_loopback_with_a_node_killed_mid_round(tmp_path):
    config = load_config(None, {**TINY, "training.rounds": 1})
    killed, phase, cycle, r = 1, "masked_input", 1, 0
    exchange = MaskingProtocol.CLIENT_PHASES.index(phase)
    result_file = tmp_path / "result.json"
    run_config = fal_run_config(config, timeout=EXCHANGE_TIMEOUT, min_nodes=len(CLIENTS),
                                result_file=str(result_file))
    app = write_app_dir(tmp_path / "app", FalSettings().to_run_config(), name="secure-fal-fal",
                        what="F-AL experiments", apps=FAL_APPS)
    nodes = [{"client-id": c, "protocols": "masking"} for c in CLIENTS]
    t0 = time.perf_counter()
    with LoopbackFederation(tmp_path / "federation", nodes) as fed:
        run = fed.submit(app, run_config)
        marker = f", ROUND {cycle}.{r + 1}.{exchange}]"
        assert fed.wait_for_log(f"supernode-{killed}", marker, timeout=RUN_LIMIT / 2), \
            f"node {killed} never got {marker}; logs in {fed.workdir}"
        fed.kill_node(killed)
        try:
            run.wait(timeout=RUN_LIMIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"flwr run still going after {RUN_LIMIT} s; logs in {fed.workdir}")
    loopback_seconds = time.perf_counter() - t0

    record = json.loads(result_file.read_text())
    assert "error" not in record, record["error"]
    want, in_process_seconds = in_process(config, tmp_path / "in-process", {(cycle, r): {killed: phase}})
    check_same(config, record["cycles"], want, killed, (cycle, r))
    assert record["cycles"][cycle]["rounds"][r]["unanswered"][exchange] == [killed]
    print(f"\nF-AL loopback deployment: {loopback_seconds:.1f} s wall (start-up to exit), server run "
          f"{record['seconds']:.1f} s, cycles {[round(c['seconds'], 1) for c in record['cycles']]} s, Flower bytes "
          f"{record['wire']}; in-process run_experiment: {in_process_seconds:.2f} s; accuracies "
          f"{[c['accuracy'] for c in record['cycles']]}")
