"""results.json's losses, per-class / worst-class / per-client accuracies, split summary and provenance; the CSV
logs; TensorBoard skipped gracefully when not installed; the exported model."""

import csv
import importlib.util
import json

import pytest
import torch

from secure_fal.cli import main
from secure_fal.experiment.metrics import class_balance, mix_accuracies, worst_class_accuracy
from secure_fal.models import build_model

from .test_cli_run import CONFIG


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    (tmp / "tiny.toml").write_text(CONFIG)
    out = tmp / "out"
    assert main(["run", str(tmp / "tiny.toml"), "--out", str(out), "--quiet", "--save-model"]) == 0
    return out


def test_results_hold_losses_class_and_client_accuracies_split_and_provenance(run_dir):
    doc = json.loads((run_dir / "results.json").read_text())
    last = doc["cycles"][-1]
    assert last["test_loss"] > 0 and last["train_loss"] > 0
    assert len(last["class_accuracies"]) == 10 and last["worst_class_accuracy"] == min(last["class_accuracies"])
    assert doc["final_worst_class_accuracy"] == last["worst_class_accuracy"]
    histograms = doc["data"]["client_class_histograms"]
    assert len(histograms) == 3 and [sum(h) for h in histograms] == doc["data"]["client_sizes"]
    assert last["client_mix_accuracies"] == pytest.approx(mix_accuracies(last["class_accuracies"], histograms))
    prov = doc["provenance"]
    assert prov["package_version"] == "0.1.0" and prov["device"] == "cpu" and prov["torch_version"] == torch.__version__
    assert prov["timestamp"].endswith("+00:00") and "git_commit" in prov


def test_csv_logs(run_dir):
    with open(run_dir / "cycles.csv", newline="") as f:
        cycles = list(csv.DictReader(f))
    with open(run_dir / "rounds.csv", newline="") as f:
        rounds = list(csv.DictReader(f))
    doc = json.loads((run_dir / "results.json").read_text())
    assert [float(r["accuracy"]) for r in cycles] == [c["accuracy"] for c in doc["cycles"]]
    assert [(r["cycle"], r["round"]) for r in rounds] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]


def test_exported_model_reloads_and_reproduces_the_final_accuracy(run_dir):
    saved = torch.load(run_dir / "model.pt")
    model = build_model(saved["model"], saved["in_channels"], saved["image_size"], saved["num_classes"],
                        hidden=tuple(saved["model_options"]["hidden"]))
    model.load_state_dict(saved["state_dict"])
    from secure_fal.data import load_dataset

    data = load_dataset("digits")
    model.eval()
    with torch.no_grad():
        accuracy = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert accuracy == pytest.approx(json.loads((run_dir / "results.json").read_text())["final_accuracy"])


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_is_a_warning_not_an_error(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(CONFIG)
    assert main(["run", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "o"), "--quiet", "--cycles", "1",
                 "--tensorboard"]) == 0
    assert "warning: --tensorboard: the tensorboard package is not installed" in capsys.readouterr().err
    assert (tmp_path / "o" / "cycles.csv").exists()


def test_metric_helpers_on_known_inputs():
    assert class_balance([5, 5]) == pytest.approx(1.0)
    assert worst_class_accuracy([0.9, None, 0.5]) == 0.5
    assert mix_accuracies([1.0, 0.5, None], [[3, 1, 7], [0, 2, 0]]) == [pytest.approx(0.875), 0.5]
