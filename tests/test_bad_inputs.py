"""Every bad input a user can give ends in ONE line on stderr (``secure-fal COMMAND: error: ...``, exit 1), early,
naming only flags that exist; a configuration too short to learn is warned about."""

import json
import re

import pytest
import torch

from secure_fal.cli import build_parser, main

from .test_cli_run import CONFIG


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG)
    return path


def _one_line_error(capsys, command="run"):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": warning: " not in line]
    assert len(lines) == 1 and lines[0].startswith(f"secure-fal {command}: error: "), err
    return lines[0]


def _flags_exist(message):
    """Every --flag a message names is an option of `secure-fal run`."""
    options = {o for action in build_parser()._subparsers._group_actions[0].choices["run"]._actions
               for o in action.option_strings}
    named = set(re.findall(r"(--[a-z][a-z-]+)", message))
    assert named <= options, named - options


@pytest.mark.parametrize("protocol", ["plaintext", "ckks", "masking"])
def test_a_single_client_is_refused_up_front_under_every_protocol(config_file, tmp_path, capsys, protocol):
    assert main(["run", str(config_file), "--out", str(tmp_path / "o"), "--clients", "1",
                 "--protocol", protocol]) == 1
    assert "data.clients: expected >= 2 under every protocol" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_too_many_clients_for_batch_norm(config_file, tmp_path, capsys):
    argv = ["run", str(config_file), "--out", str(tmp_path / "o"), "--clients", "1000",
            "--set", "training.model=cnn", "--set", "training.model_options={}"]
    assert main(argv) == 1
    line = _one_line_error(capsys)
    assert "1000 clients for 1347 train samples leave" in line and "BatchNorm cannot train on a batch of one" in line
    _flags_exist(line)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(config_file, tmp_path, capsys):
    assert main(["run", str(config_file), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 1
    line = _one_line_error(capsys)
    assert "device 'cuda'" in line and "CUDA is not available on this machine" in line
    _flags_exist(line)


def test_a_missing_dataset_names_existing_flags(config_file, tmp_path, capsys):
    assert main(["run", str(config_file), "--out", str(tmp_path / "o"), "--set", "data.dataset=mnist",
                 "--set", f"data.root='{tmp_path / 'nowhere'}'"]) == 1
    line = _one_line_error(capsys)
    assert str(tmp_path / "nowhere") in line and "--set data.root=DIR" in line
    _flags_exist(line)


def _finished_run(config_file, tmp_path):
    out = tmp_path / "run"
    assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
    return out, out / "checkpoint.json"


def _edit_labeled(path, edit):
    doc = json.loads(path.read_text())
    edit(doc["labeled"])
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_text(p.read_text()[:200]), "is damaged (not JSON"),
    (lambda p: _edit_labeled(p, lambda lab: lab[0].append(10**6)), "holds index 1000000, which is not in its pool"),
    (lambda p: _edit_labeled(p, lambda lab: lab[1].append(lab[1][0])), "client 1's labeled set holds index"),
    (lambda p: _edit_labeled(p, lambda lab: lab.pop()), "labeled sets of 2 clients, the run has 3"),
    (lambda p: p.write_text("[]"), "format 'list', expected"),
])
def test_damaged_checkpoints(config_file, tmp_path, capsys, damage, message):
    out, checkpoint = _finished_run(config_file, tmp_path)
    damage(checkpoint)
    capsys.readouterr()
    assert main(["run", "--out", str(out), "--resume", "--quiet"]) == 1
    assert message in _one_line_error(capsys)


def test_too_short_training_is_warned_and_recorded(config_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", str(config_file), "--out", str(out), "--quiet", "--rounds", "1", "--cycles", "1"]) == 0
    captured = capsys.readouterr()
    assert "secure-fal run: warning: training: a client with the median initial labeled set" in captured.err
    assert "lr x steps = 0.100 < 0.12" in captured.err
    warnings = json.loads((out / "results.json").read_text())["warnings"]
    assert len(warnings) == 1 and warnings[0] in captured.out
