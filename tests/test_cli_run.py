"""``secure-fal run``: writes results.json and the PNG, applies flags, resumes, reports errors in one line."""

import json

import pytest

from secure_fal.cli import main

CONFIG = """
name = "cli-test"
device = "cpu"

[data]
clients = 3

[training]
model = "mlp"
model_options = {hidden = [32]}
rounds = 2
local_epochs = 1
lr = 0.1
alone_epochs = 2

[active]
strategy = "f-al"
cycles = 2
budget = 30
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def test_run_writes_results_and_png(config_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["cycles"]) == 2 and results["config"]["name"] == "cli-test"
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "checkpoint.json").exists()
    printed = capsys.readouterr().out
    assert "final accuracy" in printed and str(out / "results.json") in printed


def test_flags_and_set_override_the_file(config_file, tmp_path):
    out = tmp_path / "out"
    argv = ["run", str(config_file), "--out", str(out), "--quiet", "--protocol", "masking", "--strategy", "fal-local",
            "--sampler", "entropy", "--seed", "5", "--cycles", "3", "--rounds", "1", "--budget", "12",
            "--set", "training.finetune_epochs=2", "--set", "data.split=dirichlet"]
    pytest.importorskip("secure_fal.secagg.masking")
    assert main(argv) == 0
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["secure"]["protocol"] == "masking" and config["active"]["strategy"] == "fal-local"
    assert config["active"]["sampler"] == "entropy" and config["seed"] == 5
    assert (config["active"]["cycles"], config["training"]["rounds"], config["active"]["budget"]) == (3, 1, 12)
    assert config["training"]["finetune_epochs"] == 2 and config["data"]["split"] == "dirichlet"


def test_resume_with_another_setting_fails_clearly(config_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(config_file), "--out", str(out), "--quiet", "--resume"]) == 0
    capsys.readouterr()
    assert main(["run", str(config_file), "--out", str(out), "--quiet", "--resume", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("secure-fal run: error:") and "different config" in err and "seed: 0 -> 1" in err


@pytest.mark.parametrize("argv_tail, message", [
    (["--set", "training.rounds=zero"], "training.rounds: expected int, got str 'zero'"),
    (["--set", "data.colour=1"], "data.colour: unknown key"),
    (["--strategy", "fairfal", "--sampler", "margin"], "strategy 'fairfal' works with ['fairfal']"),
])
def test_config_errors_exit_1_with_one_line(config_file, tmp_path, capsys, argv_tail, message):
    assert main(["run", str(config_file), "--out", str(tmp_path / "o"), "--quiet", *argv_tail]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--quiet"]) == 1
    assert "nope.toml" in capsys.readouterr().err


def test_switching_the_sampler_drops_the_files_sampler_options(tmp_path, capsys):
    path = tmp_path / "kappa.toml"
    path.write_text(CONFIG.replace('strategy = "f-al"', 'strategy = "fairfal"\nsampler_options = {kappa = 2}'))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--cycles", "1", "--strategy", "f-al",
                 "--sampler", "random"]) == 0
    assert "warning: active.sampler_options: dropping {'kappa': 2}, set for sampler 'fairfal'" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["config"]["active"]["sampler_options"] == {}


def test_resume_continues_the_checkpoints_own_config(config_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(config_file), "--out", str(out), "--quiet", "--protocol", "masking", "--cycles", "1"]) == 0
    capsys.readouterr()
    assert main(["run", str(config_file), "--out", str(out), "--quiet", "--resume"]) == 0     # no flag retyped
    err = capsys.readouterr().err
    assert "secure.protocol: 'masking' -> 'plaintext'" in err and "which is not used" in err
    assert json.loads((out / "results.json").read_text())["config"]["secure"]["protocol"] == "masking"


def test_more_cycles_extend_a_finished_run_as_if_it_had_run_longer(config_file, tmp_path):
    longer, extended = tmp_path / "longer", tmp_path / "extended"
    assert main(["run", str(config_file), "--out", str(longer), "--quiet", "--cycles", "3"]) == 0
    assert main(["run", str(config_file), "--out", str(extended), "--quiet"]) == 0
    assert main(["run", "--out", str(extended), "--quiet", "--resume", "--cycles", "3"]) == 0
    a, b = (json.loads((d / "results.json").read_text()) for d in (longer, extended))
    drop = {"train_seconds", "select_seconds", "seconds", "secure_aggregation"}
    assert [{k: v for k, v in c.items() if k not in drop} for c in a["cycles"]] == \
           [{k: v for k, v in c.items() if k not in drop} for c in b["cycles"]]
    assert b["config"]["active"]["cycles"] == 3


def test_progress_lines_and_rows_appear_as_cycles_finish_when_not_on_a_terminal(config_file, tmp_path, capsys):
    out = tmp_path / "out"
    seen = []

    def spy(record):
        seen.append(capsys.readouterr())      # what was printed by the time each cycle's record is known

    import secure_fal.experiment.progress as progress_module
    original = progress_module.Progress.cycle_done
    progress_module.Progress.cycle_done = lambda self, record: (original(self, record), spy(record))
    try:
        assert main(["run", str(config_file), "--out", str(out), "--log-every", "1"]) == 0
    finally:
        progress_module.Progress.cycle_done = original
    first = seen[0]
    assert "cycle    labeled" in first.out                               # the header came before cycle 1 ended
    assert "cli-test cycle 1/2 round 2/2: 3/3 clients, train loss" in first.err
    assert "cli-test cycle 1/2: accuracy" in first.err
    assert seen[1].out.startswith("0 ")                                # cycle 0's row, printed before cycle 1 ended
    log = (out / "progress.log").read_text()
    assert log.count("round") == 4 and "cycle 2/2: accuracy" in log and log.rstrip().endswith("s")
