"""Sweeps (grid, resumption, processes), the comparison table and files, and the paired statistics against scipy
and hand-computed values."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from secure_fal.cli import main
from secure_fal.errors import UserError
from secure_fal.experiment import sweep as sweep_module
from secure_fal.experiment.compare import comparison_table, compare
from secure_fal.experiment.plot import plot_learning_curve
from secure_fal.experiment.stats import hodges_lehmann, mean_std, paired, wilcoxon
from secure_fal.experiment.sweep import SweepSpec, cells_of, parse_axis, parse_seeds, split_values

from .test_cli_run import CONFIG


# -- statistics ---------------------------------------------------------------------------------------------------

def test_hodges_lehmann_is_the_median_of_walsh_averages_by_hand():
    # d = [1, 2, 4]: Walsh averages 1, 1.5, 2.5, 2, 3, 4 -> sorted 1, 1.5, 2, 2.5, 3, 4 -> median 2.25
    assert hodges_lehmann([11, 12, 14], [10, 10, 10]) == 2.25
    # d = [-3, 1]: averages -3, -1, 1 -> median -1 (the plain median of d would be -1 too; mean of d is -1)
    assert hodges_lehmann([0, 2], [3, 1]) == -1.0
    assert hodges_lehmann([1.0], [0.5]) == 0.5


def test_wilcoxon_matches_scipy_on_known_inputs():
    x = [0.91, 0.88, 0.93, 0.90, 0.87, 0.95, 0.89]
    y = [0.89, 0.89, 0.90, 0.86, 0.88, 0.90, 0.85]
    assert wilcoxon(x, y) == pytest.approx(scipy_stats.wilcoxon(x, y).pvalue)
    assert wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(2 / 2**5)     # exact: all 5 signs agree
    assert wilcoxon([1, 2], [1, 2]) == 1.0
    result = paired(x, y)
    assert result.n == 7 and result.shift == hodges_lehmann(x, y)


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_std([4.0]) == (4.0, 0.0)


# -- comparison of given runs -------------------------------------------------------------------------------------

def _doc(strategy, seed, accuracies, worst):
    cycles = [{"cycle": c, "accuracy": a, "labeled_fraction": 0.1 * (c + 1), "class_histogram": [5, 5],
               "worst_class_accuracy": w} for c, (a, w) in enumerate(zip(accuracies, worst))]
    config = {"name": "x", "seed": seed, "data": {"dataset": "digits", "clients": 5},
              "active": {"strategy": strategy}, "secure": {"protocol": "masking"}}
    return {"config": config, "strategy": strategy, "sampler": "s", "cycles": cycles, "wall_seconds": 1.0,
            "secure_aggregation": {"total_bytes": 2**20, "server_seconds": 0.5, "client_seconds": 0.25}}


def test_compare_pairs_by_seed_against_the_baseline(tmp_path):
    rng = np.random.default_rng(0)
    base = {s: rng.uniform(0.5, 0.7, 3) for s in range(5)}
    runs = [_doc("f-al", s, base[s], base[s] - 0.2) for s in range(5)]
    runs += [_doc("fairfal", s, base[s] + 0.01 * (s + 1), base[s] - 0.1) for s in (4, 2, 0, 1, 3)]
    doc = compare(runs, baseline="f-al")
    assert doc["baseline"] == "strategy=f-al" and doc["differing_keys"] == ["active.strategy"]
    fairfal = doc["methods"][1]
    assert fairfal["seeds"] == [0, 1, 2, 3, 4]
    assert fairfal["mean"]["final_accuracy"] == pytest.approx(np.mean([base[s][-1] + 0.01 * (s + 1) for s in range(5)]))
    vs = fairfal["vs_baseline"]["final_accuracy"]
    assert vs["n"] == 5 and vs["shift"] == pytest.approx(0.03) and vs["p_value"] == pytest.approx(0.0625)
    assert fairfal["vs_baseline"]["worst_class_accuracy"]["shift"] == pytest.approx(0.1)
    table = comparison_table(doc)
    assert "runs differ in strategy (5 seeds)" in table and "+3.0 pp (p=0.0625, n=5)" in table
    with pytest.raises(UserError, match="matches 0 methods"):
        compare(runs, baseline="badge")
    plot_learning_curve(runs, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


# -- sweeps -------------------------------------------------------------------------------------------------------

def test_grid_parsing():
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(UserError, match="--seeds"):
        parse_seeds("a-b")
    assert split_values('1,[2, 3],{a = 1, b = 2},"x,y"') == ["1", "[2, 3]", "{a = 1, b = 2}", '"x,y"']
    assert parse_axis("training.model_options={hidden = [8]},{hidden = [16, 8]}") == (
        "training.model_options", [{"hidden": [8]}, {"hidden": [16, 8]}])
    cells = cells_of(SweepSpec("c.toml", [0, 1], {"active.strategy": ["a", "b"], "data.alpha": [0.1]}), Path("out"))
    assert [str(c.out) for c in cells][:2] == ["out/strategy=a+alpha=0.1/seed-0", "out/strategy=a+alpha=0.1/seed-1"]
    assert cells[3].overrides == {"active.strategy": "b", "data.alpha": 0.1, "seed": 1}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG.replace("cycles = 2", "cycles = 1"))
    return path


def test_sweep_runs_the_grid_compares_and_resumes_without_redoing_finished_cells(config_file, tmp_path, capsys,
                                                                                  monkeypatch):
    out = tmp_path / "sweep"
    argv = ["sweep", str(config_file), "--seeds", "0-1", "--strategy", "f-al,s-al", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "sweep: 4 cells, 0 finished already, 4 to run" in printed.err
    assert "strategy=s-al  2" in printed.out and "baseline" in printed.out
    for name in ("compare.csv", "compare.json", "accuracy.png", "worst_class_accuracy.png", "sweep.json"):
        assert (out / name).exists()
    with open(out / "compare.csv", newline="") as f:
        assert [row["method"] for row in csv.DictReader(f)] == ["strategy=f-al", "strategy=s-al"]

    interrupted = out / "strategy=s-al" / "seed-1"
    (interrupted / "results.json").unlink()                     # as if killed after its checkpoint
    calls = []
    real = sweep_module._run_cell
    monkeypatch.setattr(sweep_module, "_run_cell", lambda *a: calls.append(a[1:3]) or real(*a))
    assert main(argv) == 0
    assert calls == [(str(interrupted), True)]                  # only that cell, resumed
    assert "sweep: 4 cells, 3 finished already, 1 to run" in capsys.readouterr().err
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    assert [c["state"] for c in cells] == ["done"] * 4

    assert main([*argv, "--set", "training.rounds=1"]) == 1     # the folders hold another config's runs
    assert "holds a run of another config (training.rounds: 2 -> 1)" in capsys.readouterr().err


def test_sweep_in_two_processes(config_file, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", str(config_file), "--seeds", "3", "--protocol", "plaintext,ckks", "--jobs", "2",
                 "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert [m["label"] for m in doc["methods"]] == ["protocol=plaintext", "protocol=ckks"]
    plain, ckks = (m["values"]["final_accuracy"] for m in doc["methods"])
    assert plain == ckks                                        # CKKS sums are exact here: same model, same accuracy


def test_compare_command_on_run_dirs(config_file, tmp_path, capsys):
    for seed in (0, 1):
        assert main(["run", str(config_file), "--out", str(tmp_path / f"r{seed}"), "--quiet", "--seed", str(seed)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "r0"), str(tmp_path / "r1"), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^f-al\s+2\s", out, re.MULTILINE) and (tmp_path / "cmp" / "accuracy.png").exists()
    assert main(["compare", str(tmp_path / "nothing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
