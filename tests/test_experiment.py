"""Experiment runner (secure_fal.experiment): config loading and validation, budgets, results, plot, resume."""

import json
from pathlib import Path

import numpy as np
import pytest

from secure_fal.experiment import (ConfigError, ExperimentConfig, ResumeError, load_config, parse_override,
                                   run_experiment)
from secure_fal.experiment.loading import config_differences
from secure_fal.experiment.runner import CHECKPOINT_FILE, CURVE_FILE, RESULTS_FILE
from secure_fal.experiment.setup import build_pools, cycle_budget, initial_labeled, split_budget

from .conftest import protocol_or_skip
from .test_strategies import tiny

TIMING_KEYS = {"train_seconds", "select_seconds", "seconds"}
COST_TIMING_KEYS = {"server_seconds", "client_seconds"}


def _without_timing(records):
    out = []
    for r in records:
        r = {k: v for k, v in r.items() if k not in TIMING_KEYS}
        r["secure_aggregation"] = {k: v for k, v in r["secure_aggregation"].items() if k not in COST_TIMING_KEYS}
        out.append(r)
    return out


# -- config ---------------------------------------------------------------------------------------------------

def test_defaults_are_the_reference_settings():
    c = ExperimentConfig()
    assert (c.training.rounds, c.training.local_epochs, c.training.lr, c.training.momentum) == (100, 5, 0.01, 0.9)
    assert (c.training.weight_decay, c.training.batch_size, c.training.lr_decay_at) == (1e-5, 64, 0.75)
    assert (c.active.initial_fraction, c.active.query_fraction, c.active.budget) == (0.05, 0.05, None)
    assert c.training.effective_alone_epochs == 500
    assert c.active.sampler_name == "margin"
    assert load_config(None, {"active.strategy": "fairfal"}).active.sampler_name == "fairfal"


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[data]\nsplit = "dirichlet"\nalpha = 100\nclients = 4\n'
                    '[active]\nstrategy = "fal-global"\nquota = false\nbudget = 7\n'
                    '[secure]\nprotocol = "masking"\n[secure.options]\nthreshold = 3\n')
    c = load_config(path, {"training.rounds": 3, "active.sampler": "entropy"})
    assert (c.name, c.data.split, c.data.alpha, c.data.clients) == ("x", "dirichlet", 100.0, 4)
    assert isinstance(c.data.alpha, float)
    assert (c.active.strategy, c.active.quota, c.active.budget) == ("fal-global", False, 7)
    assert c.active.query_fraction is None
    assert c.secure.options == {"threshold": 3} and c.training.rounds == 3 and c.active.sampler == "entropy"
    # an override of the fraction clears the file's budget
    assert load_config(path, {"active.query_fraction": 0.1}).active.budget is None


@pytest.mark.parametrize("overrides, message", [
    ({"data.colour": 1}, "data.colour: unknown key; valid keys in data:"),
    ({"colour": 1}, "colour: unknown key; valid keys in top level:"),
    ({"training.rounds": "ten"}, "training.rounds: expected int, got str 'ten'"),
    ({"training.rounds": 2.5}, "training.rounds: expected int, got float"),
    ({"active.quota": 1}, "active.quota: expected bool, got int"),
    ({"training.rounds": 0}, "training.rounds: expected >= 1, got 0"),
    ({"data.split": "random"},
     "data.split: unknown value 'random'; choose one of homogeneous, dirichlet-balanced, dirichlet, kmeans"),
    ({"active.strategy": "greedy"}, "active.strategy: unknown value 'greedy'"),
    ({"active.sampler": "smart"}, "active.sampler: unknown value 'smart'"),
    ({"secure.protocol": "rsa"}, "secure.protocol: unknown value 'rsa'; choose one of plaintext, ckks, masking"),
    ({"active.strategy": "fairfal", "active.sampler": "margin"},
     "active.sampler: strategy 'fairfal' works with \\['fairfal'\\], got 'margin'"),
    ({"active.strategy": "fal-global", "active.sampler": "badge"}, "active.sampler: strategy 'fal-global' works with"),
    ({"active.strategy": "logo", "active.sampler": "margin"},
     "active.sampler: strategy 'logo' selects by its own rule and takes no sampler"),
    ({"active.strategy": "kafal", "active.sampler_options": {"beta": 2}}, "strategy 'kafal' selects by its own"),
    ({"active.budget_rule": "nearest"}, "active.budget_rule: unknown value 'nearest'; choose one of reference"),
    ({"training.alone_schedule": "long"}, "training.alone_schedule: unknown value 'long'"),
    ({"active.gradient_model": "local"}, "active.gradient_model: unknown value 'local'"),
    ({"active.prior_estimate": "mean"}, "active.prior_estimate: unknown value 'mean'"),
    ({"data.split_seed": -1}, "data.split_seed: expected >= 0"),
    ({"active.query_fraction": None}, "active: give exactly one of query_fraction"),
    ({"data.corrupted_client": 10}, "data.corrupted_client: expected a client id in \\[0, 10\\), got 10"),
    ({"data.rho": 0.5}, "data.rho: expected >= 1"),
    ({"active.initial_fraction": 1.0}, "active.initial_fraction: expected in \\(0, 1\\)"),
    ({"device": "tpu"}, "device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    ({"training.rounds": None}, "training.rounds: a value is required"),
    ({"data.clients": 3, "data.clients.x": 1}, "override data.clients.x: data.clients is not a table"),
    ({"data.clients.x": 1}, "data.clients: expected int, got dict"),
])
def test_invalid_configs_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unreadable_toml_is_a_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[data\nclients = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_parse_override():
    assert parse_override("training.rounds=3") == ("training.rounds", 3)
    assert parse_override("data.alpha = 0.5") == ("data.alpha", 0.5)
    assert parse_override("active.quota=false") == ("active.quota", False)
    assert parse_override("training.model_options={hidden = [16]}") == ("training.model_options", {"hidden": [16]})
    assert parse_override("data.rho=none") == ("data.rho", None)
    assert parse_override("active.strategy=fal-local") == ("active.strategy", "fal-local")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("training.rounds")


def test_config_differences_lists_dotted_keys():
    a, b = tiny().to_dict(), tiny(secure__protocol="masking", seed=3).to_dict()
    assert config_differences(a, b) == ["secure.protocol: 'plaintext' -> 'masking'", "seed: 0 -> 3"]


# -- budgets and initial sets ---------------------------------------------------------------------------------

def test_split_budget_even_remainder_to_lowest_ids_and_caps():
    assert split_budget(10, [100, 100, 100]) == [4, 3, 3]
    assert split_budget(10, [1, 100, 100]) == [1, 5, 4]        # client 0 capped, its excess re-dealt from id 1
    assert split_budget(10, [1, 2, 3]) == [1, 2, 3]            # not enough left anywhere
    assert split_budget(0, [5, 5]) == [0, 0]


def test_cycle_budget_and_initial_sets():
    config = tiny(active__budget=None, active__query_fraction=0.05)
    pools = build_pools(config)
    assert cycle_budget(config, len(pools.y)) == 3 * int(1300 * 0.05 / 3) == 63    # 3 clients, reference rule
    assert cycle_budget(tiny(active__budget=None, active__budget_rule="exact"), 1347) == round(0.05 * 1347)
    with pytest.raises(ConfigError, match="is a budget of 0"):
        cycle_budget(tiny(active__budget=None, active__query_fraction=1e-5), 1347)
    first, again = initial_labeled(pools, 0.05, 0), initial_labeled(pools, 0.05, 0)
    other = initial_labeled(pools, 0.05, 1)
    for k, lab in enumerate(first):
        assert len(lab) == round(0.05 * len(pools.pools[k])) and np.isin(lab, pools.pools[k]).all()
        assert np.array_equal(lab, again[k])
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert all(len(lab) == 2 for lab in initial_labeled(pools, 1e-4, 0))   # BatchNorm needs two


@pytest.mark.parametrize("rule, n_train, clients, budget", [
    ("reference", 20428, 10, 1020),   # FMNIST-LT: round(20428, -2) * 0.05 = 1020, 102 per client
    ("exact", 20428, 10, 1021),       # round(0.05 * 20428)
    ("reference", 20451, 10, 1020),   # round(20451, -2) = 20500 -> 1025 -> 102 per client
    ("reference", 1250, 4, 60),       # Python rounds the half to even: 1200 -> 60 -> 15 per client
    ("reference", 545, 5, 25),        # 500 * 0.05 = 25 -> 5 per client
])
def test_budget_rules(rule, n_train, clients, budget):
    config = tiny(active__budget=None, active__budget_rule=rule, data__clients=clients)
    assert cycle_budget(config, n_train) == budget
    assert split_budget(budget, [10_000] * clients) == [budget // clients] * clients or rule == "exact"


@pytest.mark.parametrize("path", sorted(Path("examples/configs").glob("*.toml")), ids=lambda p: p.stem)
def test_example_configs_load_for_every_method_of_the_fairfal_table(path):
    from examples.fairfal_table import METHODS

    config = load_config(path)
    if path.stem.startswith("fairfal_fmnist_lt"):
        assert (config.data.split, config.data.split_seed, config.active.budget_rule) == ("dirichlet-balanced", 0,
                                                                                          "reference")
        for overrides in METHODS.values():
            load_config(path, overrides)


@pytest.mark.filterwarnings("ignore::secure_fal.experiment.config.ConfigWarning")
def test_fairfal_table_record_carries_finished_runs_to_another_machine(tmp_path, capsys):
    """A run summarized into --record is read back from it (not run again, nothing written under the new OUT) and
    tabulated with its seed's accuracy; --table-only tabulates only what exists."""
    from examples.fairfal_table import main

    tiny_run = ["--methods", "Random", "--alphas", "0.1", "--set", "data.dataset=digits", "--set", "data.rho=10",
                "--set", "data.clients=3", "--set", "active.cycles=1", "--set", "training.rounds=1",
                "--set", "secure.protocol=plaintext"]
    record = tmp_path / "record.json"
    main([*tiny_run, "--seeds", "0", "--out", str(tmp_path / "a"), "--record", str(record)])
    first = json.loads(record.read_text())["runs"]
    assert list(first) == ["alpha0.1/Random/seed0"]
    assert (tmp_path / "a/alpha0.1/Random/seed0/results.json").exists()
    ran = json.loads((tmp_path / "a/alpha0.1/Random/seed0/results.json").read_text())
    assert first["alpha0.1/Random/seed0"]["final_accuracy"] == ran["final_accuracy"]
    assert first["alpha0.1/Random/seed0"]["class_histogram"] == ran["cycles"][-1]["class_histogram"]
    capsys.readouterr()
    main([*tiny_run, "--seeds", "0", "1", "--table-only", "--out", str(tmp_path / "b"), "--record", str(record)])
    printed = capsys.readouterr().out
    assert f"final accuracy {100 * ran['final_accuracy']:.2f} %" in printed and "seed 1" not in printed
    assert not (tmp_path / "b/alpha0.1").exists()
    assert json.loads(record.read_text())["runs"] == first


def test_long_tail_dirichlet_and_corrupted_client():
    config = tiny(data__rho=10.0, data__split="dirichlet", data__alpha=0.1, data__corrupted_client=1)
    pools = build_pools(config)
    counts = np.bincount(pools.y.numpy(), minlength=10)
    assert counts[0] >= 9 * counts[9]
    sizes = [len(p) for p in pools.pools]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(pools.y)
    clean = build_pools(tiny(data__rho=10.0, data__split="dirichlet", data__alpha=0.1))
    changed = (pools.x != clean.x).flatten(1).any(dim=1).numpy()
    others = np.setdiff1d(np.arange(len(changed)), pools.pools[1])
    assert changed[pools.pools[1]].mean() > 0.9 and not changed[others].any()


# -- results, plot, checkpoints, resume -----------------------------------------------------------------------

def test_results_document_and_png(tmp_path):
    config = tiny(active__strategy="fairfal")
    results = run_experiment(config, tmp_path, quiet=True)
    with open(tmp_path / RESULTS_FILE) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["config"] == config.to_dict()
    assert on_disk["data"]["client_sizes"] == [449, 449, 449]
    cycle0 = on_disk["cycles"][0]
    for key in ("accuracy", "labeled", "labeled_per_client", "class_histogram", "selected_per_client",
                "selected_class_histogram", "secure_aggregation", "details", "seconds"):
        assert key in cycle0
    choice = cycle0["details"]["model_choice"]
    assert len(choice) == 3 and set(choice) <= {"global", "local"}
    per_cycle = sum(c["secure_aggregation"]["total_bytes"] for c in on_disk["cycles"])
    assert on_disk["secure_aggregation"]["total_bytes"] == per_cycle > 0
    assert on_disk["wall_seconds"] > 0
    assert (tmp_path / CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class Crash(Exception):
    pass


@pytest.mark.parametrize("strategy", ["fairfal", "fal-global", "s-al"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(strategy, tmp_path):
    config = tiny(active__strategy=strategy, active__cycles=3, secure__protocol="plaintext")
    full = run_experiment(config, tmp_path / "full", quiet=True)

    def crash_after_first(record):
        if record["cycle"] == 0:
            raise Crash

    with pytest.raises(Crash):
        run_experiment(config, tmp_path / "crashed", quiet=True, on_cycle=crash_after_first)
    assert not (tmp_path / "crashed" / RESULTS_FILE).exists()
    with open(tmp_path / "crashed" / CHECKPOINT_FILE) as f:
        assert json.load(f)["cycles_done"] == 1
    finished = []
    resumed = run_experiment(config, tmp_path / "crashed", resume=True, quiet=True,
                             on_cycle=lambda record: finished.append(record["cycle"]))
    assert finished == [1, 2]                       # cycle 0 was not redone
    assert _without_timing(resumed["cycles"]) == _without_timing(full["cycles"])
    assert resumed["strategy_state"] == full["strategy_state"]
    with open(tmp_path / "full" / CHECKPOINT_FILE) as f, open(tmp_path / "crashed" / CHECKPOINT_FILE) as g:
        assert json.load(f)["labeled"] == json.load(g)["labeled"]


def test_resume_refuses_a_different_config(tmp_path):
    run_experiment(tiny(), tmp_path, quiet=True)
    with pytest.raises(ResumeError, match="different config.*training.rounds: 2 -> 3"):
        run_experiment(tiny(training__rounds=3), tmp_path, resume=True, quiet=True)


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(tmp_path):
    run_experiment(tiny(), tmp_path / "a", quiet=True)
    with pytest.raises(ResumeError, match="already holds a run"):
        run_experiment(tiny(), tmp_path / "a", quiet=True)
    with pytest.raises(ResumeError, match="nothing to resume"):
        run_experiment(tiny(), tmp_path / "b", resume=True, quiet=True)


def test_resume_of_a_finished_run_redoes_nothing(tmp_path):
    first = run_experiment(tiny(), tmp_path, quiet=True)
    called = []
    again = run_experiment(tiny(), tmp_path, resume=True, quiet=True, on_cycle=called.append)
    assert called == [] and again["cycles"] == json.loads(json.dumps(first["cycles"]))



def test_plaintext_reference_mirrors_every_secure_sum_and_changes_nothing(tmp_path):
    protocol_or_skip("masking")
    config = tiny(active__strategy="fairfal", secure__protocol="masking")
    plain = run_experiment(config, tmp_path / "a", quiet=True)
    seen = []
    measured = run_experiment(config, tmp_path / "b", quiet=True, plaintext_reference=True, on_cycle=seen.append)
    assert seen == measured["cycles"]
    assert "plaintext_reference" not in plain and "plaintext_reference" not in plain["cycles"][0]
    stripped = [{k: v for k, v in r.items() if k != "plaintext_reference"} for r in measured["cycles"]]
    assert _without_timing(stripped) == _without_timing(plain["cycles"])
    for record in measured["cycles"]:
        secure, reference = record["secure_aggregation"], record["plaintext_reference"]
        assert reference["rounds"] == secure["rounds"] > 0 and reference["values"] == secure["values"]
        assert 0 < reference["total_bytes"] < secure["total_bytes"]
    total = sum(r["plaintext_reference"]["total_bytes"] for r in measured["cycles"])
    assert measured["plaintext_reference"]["total_bytes"] == total
