"""The [privacy] section end to end (secure_fal.experiment.privacy, runner, `secure-fal ledger`): a run spends at
most its budget, refuses a config over it before starting, and its ledger lists every secure sum."""

import json

import pytest

from secure_fal.cli import main
from secure_fal.experiment import ConfigError, run_experiment
from secure_fal.experiment.runner import RESULTS_FILE

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


def test_flower_app_refuses_a_dp_config(tmp_path, capsys):
    pytest.importorskip("flwr")
    assert main(["flower-app", "examples/configs/fairfal_digits.toml", "--out", str(tmp_path / "app"),
                 "--set", "privacy.epsilon=4"]) == 1
    assert "not yet over Flower" in capsys.readouterr().err
