"""The [privacy] section end to end (secure_fal.experiment.privacy, runner, `secure-fal ledger`): a run spends at
most its budget, refuses a config over it before starting, and its ledger lists every secure sum."""

import json

import pytest

from secure_fal.cli import main
from secure_fal.experiment import ConfigError, run_experiment
from secure_fal.experiment.runner import RESULTS_FILE

from .test_cli_run import CONFIG
from .test_strategies import tiny


def secure_entries(results):
    return [e for e in results["privacy_ledger"] if e["protocol"] != "clear"]


def test_ledger_lists_every_sum_of_a_run_without_dp(tmp_path):
    config = tiny(active__strategy="fairfal", secure__protocol="plaintext")
    results = run_experiment(config, tmp_path, quiet=True)
    entries = secure_entries(results)
    assert len(entries) == results["secure_aggregation"]["rounds"]
    assert [e["kind"] for e in entries].count("gamma") == 1
    assert all(e["learned"] == "every input (3)" and e["mechanism"] == "none" for e in entries)
    clear = [e for e in results["privacy_ledger"] if e["protocol"] == "clear"]
    assert [(e["cycle"], e["kind"]) for e in clear] == [(0, "selected-counts")]
    assert results["privacy"] == {"enabled": False} and "privacy" not in results["config"]


def test_dp_run_spends_at_most_its_budget_and_ledger_command_prints_it(tmp_path, capsys):
    config = tiny(active__strategy="fal-global", secure__protocol="masking", privacy__epsilon=8.0,
                  privacy__noise_seed=0)
    results = run_experiment(config, tmp_path, quiet=True)
    entries = secure_entries(results)
    assert len(entries) == results["secure_aggregation"]["rounds"]
    assert {e["kind"] for e in entries} == {"fedavg-update", "kmeans-stats"}
    assert all(e["mechanism"] == "ddg" and e["learned"].startswith("sum of 3 inputs + noise") for e in entries)
    spent = results["privacy"]["epsilon_spent"]
    assert spent["releases"] == len(entries) and 0 < spent["total"] <= 8.0
    assert set(spent["per_kind"]) == {"fedavg-update", "kmeans-stats"}
    assert main(["ledger", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("kmeans-stats") >= 1 and f"epsilon spent: {spent['total']:.4g} at delta 1e-05" in out
    with open(tmp_path / RESULTS_FILE) as f:
        assert json.load(f)["privacy"]["holds_against_server"] is True


def test_config_over_budget_is_refused_before_start(tmp_path):
    config = tiny(privacy__epsilon=1.0, privacy__noise_multiplier=0.5)
    with pytest.raises(ConfigError, match=r"spend epsilon [\d.]+ at noise_multiplier 0.5, over privacy.epsilon 1 "
                                          r"by [\d.]+; a noise_multiplier of at least [\d.]+"):
        run_experiment(config, tmp_path, quiet=True)
    assert not (tmp_path / "checkpoint.json").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"active__strategy": "fal-global", "active__quota": False}, "FAL-Global without quota"),
    ({"secure__protocol": "masking", "privacy__mechanism": "central-gaussian"}, "needs secure.protocol = plaintext"),
    ({"privacy__bits": 4}, r"privacy.bits: expected in \[8, 40\]"),
])
def test_invalid_privacy_configs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(privacy__epsilon=4.0, **overrides)


def test_resumed_dp_run_recharges_the_finished_cycles(tmp_path):
    config = tiny(privacy__noise_multiplier=3.0, privacy__noise_seed=0)
    full = run_experiment(config, tmp_path / "full", quiet=True)

    class Crash(Exception):
        pass

    def crash_after_first(record):
        if record["cycle"] == 0:
            raise Crash

    with pytest.raises(Crash):
        run_experiment(config, tmp_path / "crashed", quiet=True, on_cycle=crash_after_first)
    resumed = run_experiment(config, tmp_path / "crashed", resume=True, quiet=True)
    assert resumed["privacy"]["epsilon_spent"] == full["privacy"]["epsilon_spent"]
    assert resumed["privacy_ledger"] == full["privacy_ledger"]
    assert [c["accuracy"] for c in resumed["cycles"]] == [c["accuracy"] for c in full["cycles"]]


def test_flower_app_writes_a_dp_run(tmp_path):
    pytest.importorskip("flwr")
    import tomllib

    from secure_fal.experiment import ExperimentConfig

    assert main(["flower-app", "examples/configs/fairfal_digits.toml", "--out", str(tmp_path / "app"),
                 "--set", "privacy.epsilon=4"]) == 0
    run_config = tomllib.loads((tmp_path / "app" / "run-config.toml").read_text())
    assert ExperimentConfig.from_dict(json.loads(run_config["experiment"])).privacy.epsilon == 4.0




def test_dp_accuracy_sweeps_a_config_and_resumes(tmp_path, capsys):
    from secure_fal.bench import dp_accuracy

    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    argv = ["--config", str(config), "--set", "secure.protocol='masking'", "--set", "active.cycles=1",
            "--set", "training.rounds=1", "--set", "training.lr=0.2", "--epsilons", "4", "inf",
            "--mechanisms", "ddg", "skellam", "central-gaussian", "--seeds", "1", "--out", str(tmp_path / "out")]
    assert dp_accuracy.main(argv) == 0
    runs = json.loads((tmp_path / "out" / "dp_accuracy.json").read_text())["runs"]
    assert [(r["mechanism"], r["epsilon"]) for r in runs] == [
        ("none", float("inf")), ("ddg", 4.0), ("skellam", 4.0), ("central-gaussian", 4.0)]
    for r in runs:
        with open(tmp_path / "out" / "runs" / f"{r['mechanism']}-eps{r['epsilon']:g}-seed0" / RESULTS_FILE) as f:
            results = json.load(f)
        assert results["final_accuracy"] == r["accuracy"]
        protocol = "plaintext" if r["mechanism"] == "central-gaussian" else "masking"
        assert results["config"]["secure"]["protocol"] == protocol
        if r["mechanism"] != "none":
            assert results["privacy"]["mechanism"] == r["mechanism"] and 0 < r["epsilon_spent"] <= 4.0
    table = (tmp_path / "out" / "dp_accuracy.md").read_text()
    assert table.startswith("| epsilon | ddg | skellam | central-gaussian |") and "| 4 |" in table
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").glob("*/results.json")}
    capsys.readouterr()
    assert dp_accuracy.main(argv) == 0      # every run is read back, none redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((tmp_path / "out" / "dp_accuracy.json").read_text())["runs"][1]["accuracy"] == runs[1]["accuracy"]
