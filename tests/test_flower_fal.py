"""FAL experiments over Flower (secure_fal.flower.fal: server_app / client_app) against the in-process ``run_experiment``.

- Without a Flower runtime: ``FalServer`` driven through a channel that calls the clients' ``handle`` directly,
  every federated strategy, with a client silent from one exchange of one secure sum on (a FedAvg, gamma,
  k-means or ownership round); per cycle accuracy, contributors of every sum, the secure-aggregation totals,
  the selection details and every client's final labeled set (in order) must equal the in-process run with the
  same dropout (``run_experiment(faults=...)``), bit for bit.
- A node that loads its own data (node config ``data``: an ``.npz``) instead of its part of the simulated split:
  with the same rows the run is the same.
- Differential privacy (``[privacy]`` with a noise seed): FAL-Global under masking (ddg) and FairFAL under CKKS
  (skellam) without a Flower runtime, and one CKKS run in the simulation engine, equal the in-process run noise
  included: accuracies bit for bit, the privacy ledger and the epsilon spent; nodes refuse a round without noise or
  with a smaller noise multiplier than their config's; a config over its budget is refused before any message.
- Deployment engine: SuperLink + 3 SuperNodes on 127.0.0.1 that poll every 0.2 s when idle (``supernode``) and run
  their ClientApp tasks in forks of a warm process (``fork_executor``), F-AL under masking, node 1 SIGKILLed in the last cycle right after it received the
  masked-input exchange; same comparison. It runs in the default suite, since CI must run it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")
pytest.importorskip("secure_fal.secagg.masking")

from flwr.app import ConfigRecord, RecordDict  # noqa: E402

from secure_fal.experiment import ConfigError, load_config, run_experiment  # noqa: E402
from secure_fal.experiment.privacy import privacy_summary  # noqa: E402
from secure_fal.experiment.setup import build_pools, initial_labeled  # noqa: E402
from secure_fal.flower.app_bundle import FAL_APPS, write_app_dir  # noqa: E402
from secure_fal.flower.fal.client_app import LABELED_RECORD, handle  # noqa: E402
from secure_fal.flower.fal.server_app import FalServer, FalSettings, fal_run_config  # noqa: E402
from secure_fal.flower.loopback import LoopbackFederation  # noqa: E402
from secure_fal.flower.fal.node_data import DataSource, export_client_data, simulated_client_data  # noqa: E402
from secure_fal.flower.carrier.envelope import OPENING_RECORD, WORKLOAD_RECORD, NodePolicy  # noqa: E402
from secure_fal.secagg import Faults, SecAggError, make_protocol  # noqa: E402
from secure_fal.secagg.ckks.key_messages import CLIENT_PHASES as KEY_PHASES  # noqa: E402
from secure_fal.secagg.masking.protocol import MaskingProtocol  # noqa: E402

CLIENTS = (0, 1, 2)
TINY = {
    "device": "cpu", "data.clients": 3, "training.model": "mlp", "training.model_options": {"hidden": [32]},
    "training.rounds": 2, "training.local_epochs": 5, "training.lr": 0.1, "training.batch_size": 16, "training.alone_epochs": 2,
    "active.cycles": 2, "active.budget": 30, "active.strategy": "f-al", "secure.protocol": "masking",
    "secure.options": {"threshold": 2},
}
EXCHANGE_TIMEOUT = 15.0   # s, the floor of an exchange's wait; exchange.Patience waits longer on a slow machine
RUN_LIMIT = 900.0         # s: a guard against a hung run only (a loaded machine needs minutes)
POLICY = NodePolicy(frozenset({"plaintext", "masking", "ckks"}))


def in_process(config, out_dir, drop: dict[tuple[int, int], dict[int, str]]):
    """run_experiment with Faults(drop=drop[(cycle, round id)]) in that secure sum: (results, labeled sets from
    the checkpoint, wall seconds)."""
    t0 = time.perf_counter()
    results = run_experiment(config, out_dir, quiet=True,
                             faults=lambda c, round_id: Faults(drop=drop.get((c, round_id), {})))
    seconds = time.perf_counter() - t0
    labeled = json.loads((out_dir / "checkpoint.json").read_text())["labeled"]
    return results, labeled, seconds


def check_same(config, cycles: list[dict], want: dict, drop: dict[tuple[int, int], dict[int, str]]) -> None:
    """Flower records vs the in-process results: accuracy per cycle bit for bit, the contributors of every sum,
    the number and lengths of the secure sums, selection counts and details."""
    assert len(cycles) == config.active.cycles == len(want["cycles"])
    labeled = [len(lab) for lab in initial_labeled(build_pools(config), config.active.initial_fraction, config.seed)]
    for got, exp in zip(cycles, want["cycles"]):
        c = got["cycle"]
        assert got["accuracy"] == exp["accuracy"], (c, got["accuracy"], exp["accuracy"])
        assert exp["labeled_per_client"] == labeled
        sums = got["rounds"] + got.get("selection", {}).get("sums", [])
        assert [s["round"] for s in sums] == list(range(1, len(sums) + 1))
        for s in sums:
            assert s["contributors"] == [k for k in s["members"] if k not in drop.get((c, s["round"]), {})], s
        totals = exp["secure_aggregation"]
        assert len(sums) == totals["rounds"]
        # the values summed match; the bytes need not: the FedAvg ring is sized from the train-set size here,
        # from the largest labeled set in-process (fal/server_app.py's docstring)
        assert sum(s["length"] for s in sums) == totals["values"]
        if "selection" in got:
            sel = got["selection"]
            assert sel["failed"] == {}
            assert sel["budgets"] == exp["budgets"]
            assert [sel["selected"][str(k)] for k in CLIENTS] == exp["selected_per_client"]
            for key, value in sel["details"].items():
                if key in exp["details"]:
                    assert value == exp["details"][key], key
            labeled = [n + sel["selected"][str(k)] for k, n in enumerate(labeled)]


class LocalClients:
    """The clients in this process, reached through ``channel``: each keeps its node state here.

    A client in ``silent[kind]`` = (n, cid, exchange) does not answer that exchange of the n-th secure sum of that
    kind (1-based, counted over the whole run) nor the later exchanges of that sum; ``dropped`` records
    (cycle, round id) -> {cid: phase} of what happened, for the in-process run.
    """

    def __init__(self, config, silent: dict[str, tuple[int, int, int]] | None = None,
                 sources: dict[int, DataSource] | None = None) -> None:
        self.config_json = fal_run_config(config)["experiment"]
        self.sources = sources or {}
        self.states = {k: RecordDict() for k in CLIENTS}
        self.silent = silent or {}
        self.seen: dict[str, int] = {}
        self.kind_of: dict[str, str] = {}   # "cycle.round" -> kind of that sum
        self.dropped: dict[tuple[int, int], dict[int, str]] = {}
        self.phases = make_protocol(config.secure.protocol, **config.secure.options).CLIENT_PHASES

    def channel(self, message_type, group, batches):
        action = message_type.split(".", 1)[1]
        answers = {}
        for cid, content in batches.items():
            if self._silent(group, cid, content):
                continue
            try:
                answers[cid] = handle(action, content, self.states[cid], cid, self.config_json, POLICY,
                                      self.sources.get(cid, DataSource()))
            except SecAggError as exc:
                answers[cid] = str(exc)
        return answers

    def _silent(self, group: str, cid: int, content: RecordDict) -> bool:
        parts = group.split(".")
        if len(parts) != 3 or not (parts[1].isdigit() or parts[1] == "setup"):
            return False
        key, exchange = f"{parts[0]}.{parts[1]}", int(parts[2])
        if key not in self.kind_of and (parts[1] == "setup" or OPENING_RECORD in content.config_records):
            kind = "setup" if parts[1] == "setup" else content.config_records[WORKLOAD_RECORD]["kind"]
            self.kind_of[key] = kind
            self.seen[kind] = self.seen.get(kind, 0) + 1
        kind = self.kind_of.get(key)
        if kind not in self.silent:
            return False
        n, who, at = self.silent[kind]
        if self.seen[kind] != n or cid != who or exchange < at:
            return False
        round_id = 0 if kind == "setup" else int(parts[1])   # the key distribution's messages carry round 0
        self.dropped.setdefault((int(parts[0]), round_id), {})[cid] = (KEY_PHASES if kind == "setup"
                                                                      else self.phases)[at]
        return True

    def in_process_plan(self, cycles: list[dict]) -> dict[tuple[int, int], dict[int, str]]:
        """``dropped`` as the in-process run must replay it: a client silent in a cycle's key distribution
        holds no key, so it takes part in none of that cycle's sums (it drops out of each at "input")."""
        plan = {key: who for key, who in self.dropped.items() if key[1] != 0}
        for (c, r), who in self.dropped.items():
            if r == 0:
                for s in cycles[c]["rounds"] + cycles[c].get("selection", {}).get("sums", []):
                    plan.setdefault((c, s["round"]), {}).update({k: "input" for k in who})
        return plan

    def labeled(self, cid: int) -> list[int]:
        return np.frombuffer(self.state_record(cid)["indices"], dtype=np.int64).tolist()

    def state_record(self, cid: int):
        return self.states[cid].config_records[LABELED_RECORD]


MATRIX = {
    # name: (overrides, protocol, {kind of sum: (n-th sum of that kind, client, exchange it falls silent at)})
    "f-al masking, FedAvg dropout": ({}, "masking", {"fedavg": (2, 1, 2)}),
    "s-al plaintext": ({"active.strategy": "s-al"}, "plaintext", {}),
    "fal-local plaintext, FedAvg dropout": ({"active.strategy": "fal-local", "training.finetune_epochs": 1}, "plaintext",
                                             {"fedavg": (3, 2, 0)}),
    "fairfal masking, gamma dropout": ({"active.strategy": "fairfal"}, "masking", {"gamma": (1, 0, 2)}),
    "fal-global quota masking, k-means dropout": ({"active.strategy": "fal-global", "active.budget": 12}, "masking",
                                                  {"kmeans": (4, 1, 2)}),
    "fal-global no quota plaintext, ownership dropout": (
        {"active.strategy": "fal-global", "active.quota": False, "active.budget": 12}, "plaintext",
        {"owners": (3, 2, 0)}),
    "fairfal ckks, a client left without keys in cycle 0": ({"active.strategy": "fairfal"}, "ckks", {"setup": (1, 2, 0)}),
    # session-mode masking: keys for 2 sums per setup, so cycles set up again between sums; 2 exchanges per sum
    "fal-global quota masking session, k-means dropout": (
        {"active.strategy": "fal-global", "active.budget": 12, "secure.options": {"threshold": 2, "rounds_per_setup": 2}},
        "masking", {"kmeans": (3, 0, 0)}),
    # the FairFAL paper's baselines; KAFAL's client 1 trains in the last FedAvg round, then falls silent in it:
    # it still selects with the local model it trained (kept in its node state), as in process
    "logo plaintext": ({"active.strategy": "logo"}, "plaintext", {}),
    "kafal masking, last FedAvg round dropout": ({"active.strategy": "kafal"}, "masking", {"fedavg": (2, 1, 2)}),
    "ifal ckks": ({"active.strategy": "ifal"}, "ckks", {}),
    "fairfal masking session, FedAvg dropout": (
        {"active.strategy": "fairfal", "secure.options": {"threshold": 2, "rounds_per_setup": 3}}, "masking",
        {"fedavg": (2, 2, 0)}),
}


@pytest.mark.parametrize("name", list(MATRIX))
def test_fal_server_and_clients_without_flower_equal_in_process(tmp_path, name):
    overrides, protocol, silent = MATRIX[name]
    options = {"threshold": 2} if protocol == "masking" else {}
    config = load_config(None, {**TINY, "secure.options": options, **overrides, "secure.protocol": protocol})
    clients = LocalClients(config, silent)
    cycles = FalServer(config, CLIENTS, clients.channel).run()
    assert len(clients.dropped) == len(silent)  # every planned dropout happened
    plan = clients.in_process_plan(cycles)
    want, labeled, _ = in_process(config, tmp_path, plan)
    check_same(config, cycles, want, plan)
    assert [clients.labeled(k) for k in CLIENTS] == labeled
    session_rounds = config.secure.options.get("rounds_per_setup")
    if session_rounds:  # every sum of a cycle took 2 exchanges; a setup ran before sums 1, 1 + R, 1 + 2R, ...
        for c in cycles:
            sums = c["rounds"] + c.get("selection", {}).get("sums", [])
            assert {len(s["exchange_seconds"]) for s in sums} == {2}
            assert len(c["setups"]) == -(-len(sums) // session_rounds)
    if "setup" in silent:  # the keyless client is in no sum of that cycle, yet selects with the global model
        _, who, _ = silent["setup"]
        assert cycles[0]["setup"]["key_holders"] == [k for k in CLIENTS if k != who]
        assert all(who not in s["members"] for s in cycles[0]["rounds"] + cycles[0]["selection"]["sums"])
        assert who in {int(k) for k in cycles[0]["selection"]["selected"]}


def test_a_kafal_client_silent_from_the_start_of_the_last_fedavg_round_cannot_select(tmp_path):
    # it never trained in that round, so it holds no local model to query with: its selection fails, named,
    # and the others select as usual (in process every client trains before the sum, so none would fail)
    config = load_config(None, {**TINY, "active.strategy": "kafal", "active.cycles": 2})
    clients = LocalClients(config, {"fedavg": (2, 1, 0)})
    cycles = FalServer(config, CLIENTS, clients.channel).run()
    selection = cycles[0]["selection"]
    assert list(selection["failed"]) == ["1"] and "client 1" in selection["failed"]["1"]
    assert "no local model of the last FedAvg round of cycle 0" in selection["failed"]["1"]
    assert sorted(selection["selected"]) == ["0", "2"] and all(v == 10 for v in selection["selected"].values())


DP = {"privacy.noise_multiplier": 2.0, "privacy.noise_seed": 3, "privacy.clip_norm": 0.5}
DP_MATRIX = {
    # name: overrides (every sum kind a DP run allows: FedAvg, gamma, k-means; ownership needs the exact sum)
    "fal-global quota masking ddg": {"active.strategy": "fal-global", "active.budget": 12,
                                     "secure.options": {"threshold": 2}},
    "fairfal ckks skellam": {"active.strategy": "fairfal", "secure.protocol": "ckks", "secure.options": {},
                             "privacy.mechanism": "skellam"},
}


def check_same_privacy(record_cycles: list[dict], privacy: dict, want: dict) -> None:
    """A Flower run's ledger and epsilon equal the in-process run's (every sum: kind, shape, contributors, noise,
    calibration; the selected counts; the epsilon spent per kind and in total)."""
    ledger = [e for c in record_cycles for e in c["privacy_ledger"]]
    assert ledger == want["privacy_ledger"]
    assert privacy == want["privacy"] and privacy["enabled"]


@pytest.mark.parametrize("name", list(DP_MATRIX))
def test_dp_fal_server_and_clients_without_flower_equal_in_process(tmp_path, name):
    # same config and noise seed: the same noised sums (so the same accuracies, bit for bit), ledger and epsilon
    config = load_config(None, {**TINY, **DP, **DP_MATRIX[name]})
    clients = LocalClients(config)
    server = FalServer(config, CLIENTS, clients.channel)
    cycles = server.run()
    want, labeled, _ = in_process(config, tmp_path, {})
    check_same(config, cycles, want, {})
    assert [clients.labeled(k) for k in CLIENTS] == labeled
    check_same_privacy(cycles, privacy_summary(config, server.privacy), want)
    assert {e["mechanism"] for e in want["privacy_ledger"] if e["protocol"] != "clear"} == {config.privacy.mechanism}


def test_dp_fal_nodes_refuse_a_round_without_noise_or_with_less():
    config = load_config(None, {**TINY, **DP, "training.rounds": 1, "active.cycles": 1})
    weaker = load_config(None, {**TINY, **DP, "privacy.noise_multiplier": 1.0, "training.rounds": 1,
                                "active.cycles": 1})
    for server_config, skip_noise, reason in [(config, True, "the round carries no release parameters"),
                                              (weaker, False, "noise multiplier 1, below this node's 2")]:
        clients = LocalClients(config)          # the nodes' config: z = 2
        errors = []

        def channel(message_type, group, batches):
            answers = clients.channel(message_type, group, batches)
            errors.extend(a for a in answers.values() if isinstance(a, str))
            return answers

        server = FalServer(server_config, CLIENTS, channel)
        if skip_noise:
            server.privacy = None               # a lying server that asks for exact sums
        with pytest.raises(SecAggError):
            server.run()
        assert len(errors) == len(CLIENTS) and all(reason in e and "round 1" in e for e in errors), errors


def test_dp_fal_run_over_its_budget_is_refused_before_any_sum():
    config = load_config(None, {**TINY, **DP, "privacy.epsilon": 1.0})
    asked = []
    with pytest.raises(ConfigError, match="over privacy.epsilon 1 by"):
        FalServer(config, CLIENTS, lambda *args: asked.append(args) or {})
    assert asked == []


def test_a_node_with_its_own_data_file_runs_as_with_the_simulated_split(tmp_path):
    # client 1 loads its rows from an .npz (node config data=PATH); everything else as in the simulated split
    config = load_config(None, {**TINY, "active.strategy": "fairfal"})
    path = export_client_data(config, 1, tmp_path / "client1.npz")
    clients = LocalClients(config, sources={1: DataSource(path=str(path))})
    cycles = FalServer(config, CLIENTS, clients.channel).run()
    want, labeled, _ = in_process(config, tmp_path / "in-process", {})
    check_same(config, cycles, want, {})
    index = simulated_client_data(config, 1).index   # the file's rows are client 1's pool, in order
    assert index[clients.labeled(1)].tolist() == labeled[1]  # its labeled set, as positions in its own file
    assert [clients.labeled(k) for k in (0, 2)] == [labeled[0], labeled[2]]


SIMULATE = """
import json, sys
from secure_fal.experiment import load_config
from secure_fal.flower.simulation import simulate_fal
print("RECORD " + json.dumps(simulate_fal(load_config(None, json.loads(sys.argv[1])), int(sys.argv[2]))))
"""


def simulated_and_in_process(overrides: dict, out_dir) -> tuple[dict, dict]:
    """(the simulation engine's record of the FAL run ``overrides``, in a child process; the in-process results of
    the same config with one torch thread, as in the simulation's Ray workers (num_cpus=1): float sums depend on
    the split)."""
    out = subprocess.run([sys.executable, "-c", SIMULATE, json.dumps(overrides), str(len(CLIENTS))],
                         capture_output=True, text=True, timeout=RUN_LIMIT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RECORD ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    record = json.loads(lines[-1][len("RECORD "):])
    assert "error" not in record, record["error"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want, _, _ = in_process(load_config(None, overrides), out_dir, {})
    finally:
        torch.set_num_threads(threads)
    return record, want


def test_fairfal_under_ckks_in_the_simulation_engine_equals_in_process(tmp_path):
    pytest.importorskip("ray")
    overrides = {**TINY, "active.strategy": "fairfal", "secure.protocol": "ckks", "secure.options": {}}
    record, want = simulated_and_in_process(overrides, tmp_path)
    check_same(load_config(None, overrides), record["cycles"], want, {})
    assert all(c["setup"]["key_holders"] == list(CLIENTS) for c in record["cycles"])


def test_kafal_in_the_simulation_engine_equals_in_process(tmp_path):
    # the last round's local model stays in Flower's node state (Context.state) until the selection message
    pytest.importorskip("ray")
    overrides = {**TINY, "active.strategy": "kafal"}
    record, want = simulated_and_in_process(overrides, tmp_path)
    check_same(load_config(None, overrides), record["cycles"], want, {})


def test_dp_fal_under_ckks_in_the_simulation_engine_equals_in_process(tmp_path, capsys):
    # the nodes clip and add their ddg shares in Ray workers; same noised sums, accuracy, ledger and epsilon
    pytest.importorskip("ray")
    overrides = {**TINY, **DP, "active.cycles": 1, "secure.protocol": "ckks", "secure.options": {}}
    record, want = simulated_and_in_process(overrides, tmp_path / "in-process")
    config = load_config(None, overrides)
    check_same(config, record["cycles"], want, {})
    check_same_privacy(record["cycles"], record["privacy"], want)
    assert record["privacy_ledger"] == want["privacy_ledger"]
    result_file = tmp_path / "flower-result.json"
    result_file.write_text(json.dumps(record))
    from secure_fal.cli import main

    assert main(["ledger", str(result_file)]) == 0
    spent = record["privacy"]["epsilon_spent"]["total"]
    assert f"epsilon spent: {spent:.4g}" in capsys.readouterr().out


def test_fal_client_refuses_a_bad_selection_request():
    config = load_config(None, TINY)
    content = RecordDict({"secure_fal.select": ConfigRecord({"cycle": 0, "budget": -1})})
    with pytest.raises(SecAggError, match="client 2"):
        handle("secure_fal_select", content, RecordDict(), 2, fal_run_config(config)["experiment"], POLICY)


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
    with LoopbackFederation(tmp_path / "federation", nodes, executor="fork", preload=["secure_fal.flower.fal.node"],
                            node_poll_s=0.2) as fed:
        fed.run_app_killing_node(app, run_config, node=killed, marker=f", ROUND {cycle}.{r + 1}.{exchange}]",
                                 timeout=RUN_LIMIT)
    loopback_seconds = time.perf_counter() - t0

    record = json.loads(result_file.read_text())
    assert "error" not in record, record["error"]
    # The kill lands when the node has logged the exchange's message; on a loaded machine the node may already
    # have answered it, so it falls silent at that exchange or a later one of the round. The in-process
    # reference replays the exchange it actually fell silent at, read from the record.
    unanswered = record["cycles"][cycle]["rounds"][r]["unanswered"]
    silent = [e for e in range(exchange, len(unanswered)) if unanswered[e] == [killed]]
    assert silent and all(unanswered[e] == [] for e in range(silent[0])), unanswered
    plan = {(cycle, r + 1): {killed: MaskingProtocol.CLIENT_PHASES[silent[0]]}}
    want, _, in_process_seconds = in_process(config, tmp_path / "in-process", plan)
    # a node silent only at unmasking contributed its masked input: it stays among the contributors
    check_same(config, record["cycles"], want, plan if silent[0] == exchange else {})
    print(f"\nF-AL loopback deployment: {loopback_seconds:.1f} s wall (start-up to exit), server run "
          f"{record['seconds']:.1f} s, cycles {[round(c['seconds'], 1) for c in record['cycles']]} s, Flower bytes "
          f"{record['wire']}; in-process run_experiment: {in_process_seconds:.2f} s; accuracies "
          f"{[c['accuracy'] for c in record['cycles']]}")


@pytest.mark.slow
def test_fal_global_without_quota_deployment_on_loopback(tmp_path):
    # every sum kind but gamma over real SuperNodes: FedAvg, k-means, ownership; one exchange per plaintext sum
    config = load_config(None, {**TINY, "training.rounds": 1, "active.strategy": "fal-global", "active.quota": False,
                                "active.budget": 6, "secure.protocol": "plaintext", "secure.options": {}})
    result_file = tmp_path / "result.json"
    run_config = fal_run_config(config, timeout=EXCHANGE_TIMEOUT, min_nodes=len(CLIENTS),
                                result_file=str(result_file))
    app = write_app_dir(tmp_path / "app", FalSettings().to_run_config(), name="secure-fal-fal",
                        what="FAL experiments", apps=FAL_APPS)
    t0 = time.perf_counter()
    with LoopbackFederation(tmp_path / "federation", [{"client-id": c, "protocols": "plaintext"} for c in CLIENTS],
                            executor="fork", preload=["secure_fal.flower.fal.node"]) as fed:
        assert fed.run_app(app, run_config, timeout=3 * RUN_LIMIT) == 0, f"logs in {fed.workdir}"
    loopback_seconds = time.perf_counter() - t0
    record = json.loads(result_file.read_text())
    assert "error" not in record, record["error"]
    want, labeled, in_process_seconds = in_process(config, tmp_path / "in-process", {})
    check_same(config, record["cycles"], want, {})
    sums = record["cycles"][0]["selection"]["sums"]
    print(f"\nFAL-Global (no quota) loopback deployment: {loopback_seconds:.1f} s wall, {len(sums) + 1} secure sums "
          f"in cycle 0 ({sum(s['kind'] == 'owners' for s in sums)} ownership); in-process {in_process_seconds:.2f} s")


def test_cli_writes_the_app_dir_and_run_config(tmp_path, capsys):
    import tomllib

    from secure_fal.cli import main
    from secure_fal.experiment import ExperimentConfig

    argv = ["flower-app", "examples/configs/fairfal_digits.toml", "--out", str(tmp_path / "app"),
            "--strategy", "fal-global", "--protocol", "ckks", "--set", "active.quota=false", "--timeout", "45"]
    assert main(argv) == 0
    app = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    assert tuple(app["tool"]["flwr"]["app"]["components"].values()) == FAL_APPS
    run_config = tomllib.loads((tmp_path / "app" / "run-config.toml").read_text())
    assert set(run_config) == set(app["tool"]["flwr"]["app"]["config"])  # flwr run accepts declared keys only
    config = ExperimentConfig.from_dict(json.loads(run_config["experiment"]))
    assert (config.active.strategy, config.active.quota, config.secure.protocol) == ("fal-global", False, "ckks")
    assert run_config["min-nodes"] == config.data.clients and run_config["timeout"] == 45.0
    assert "protocols='ckks'" in capsys.readouterr().out
    assert main(["flower-app", "examples/configs/fairfal_digits.toml", "--out", str(tmp_path / "x"),
                 "--strategy", "client-alone"]) == 1
    assert "does not run over Flower" in capsys.readouterr().err


LIGHT_PATH = """
import json, sys
import numpy as np
from flwr.app import RecordDict
from secure_fal.flower.fal.candidates import keep_candidates, ownership_keys_of
from secure_fal.flower.fal.client_app import round_input
from secure_fal.flower.fal.node_data import DataSource
from secure_fal.secagg import FixedPoint
from secure_fal.secagg.machine import RoundSpec
state = RecordDict()
points = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
keep_candidates(state, 0, np.arange(5), points, np.linspace(0.1, 1, 5).astype(np.float32))
centres = np.eye(2, 3)
spec = RoundSpec(1, 1, (0, 1), 2 + 2 * 2 * 3, FixedPoint(10.0, 24, 2))
kmeans = round_input(state, 0, "{}", DataSource(), spec, {"kind": "kmeans", "cycle": 0, "centres": centres.tobytes(),
                                                          "m": 2})
keys = ownership_keys_of(points, centres, {"owners-members": [0, 1]}, 0)
spec = RoundSpec(1, 2, (0, 1), 2, FixedPoint(1.0, 24, 2))
owners = round_input(state, 0, "{}", DataSource(), spec, {
    "kind": "owners", "cycle": 0, "centroids": centres.tobytes(), "m": 2, "owners-members": [0, 1],
    "thresholds": np.array([keys[0], keys[1] - 1]).tobytes(), "active": np.ones(2, np.uint8).tobytes()})
heavy = sorted(m for m in ("torch", "scipy", "matplotlib", "sklearn") if m in sys.modules)
print("RESULT " + json.dumps([heavy, kmeans.tolist(), keys.tolist(), owners.tolist()]))
"""


def test_kmeans_and_ownership_inputs_need_no_torch_and_equal_the_in_process_code():
    # a fresh interpreter, as a deployment's ClientApp process: the k-means / ownership openings import no torch
    out = subprocess.run([sys.executable, "-c", LIGHT_PATH], capture_output=True, text=True, timeout=300)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert out.returncode == 0 and line, out.stderr[-2000:]
    heavy, kmeans, keys, owners = json.loads(line[0][len("RESULT "):])
    assert heavy == []
    from secure_fal.federated.kmeans import cluster_stats
    from secure_fal.federated.kmeans_stats import DISTANCE_BOUND
    from secure_fal.federated.ownership import ownership_keys
    from secure_fal.strategies.fal_global import Candidates

    points = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    weights = np.linspace(0.1, 1, 5).astype(np.float32)
    want = cluster_stats(torch.from_numpy(points), torch.from_numpy(weights), torch.eye(2, 3, dtype=torch.float64))
    assert kmeans == want.tolist()   # the strategy's in-process code, bit for bit
    closest = Candidates(np.arange(5), torch.from_numpy(points), torch.from_numpy(weights)).closest(np.eye(2, 3))
    assert keys == ownership_keys(closest, 0, 2, DISTANCE_BOUND).tolist()
    assert owners == [1.0, 0.0]   # key <= threshold on centroid 0 only
