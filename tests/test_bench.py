"""The privacy-overhead benchmark: quick path end to end, error columns, dropout accounting, anchor fallback."""

import csv
import json

import numpy as np
import pytest

from secure_fal.bench import anchor as anchor_module
from secure_fal.bench.end_to_end import run_end_to_end, summarize
from secure_fal.bench.grid import (Cell, InputCache, ProtocolSpec, exact_fixed_point_sum, grid_cells, run_cell,
                                   run_grid, sum_errors)
from secure_fal.bench.output import CLIENTS_PLOT, CSV_FILE, JSON_FILE, LENGTH_PLOT
from secure_fal.bench.run import QUICK, BenchSettings, parse_anchor_points, run_bench
from secure_fal.bench.workloads import (QUICK_WORKLOAD_NAMES, WORKLOAD_NAMES, cnn_state_length, fedavg_workload,
                                        gamma_workload, gaussian_workload, kmeans_workload, quick_workloads,
                                        standard_workloads)
from secure_fal.cli import main
from secure_fal.secagg import FixedPoint
from secure_fal.secagg.plaintext import PlaintextProtocol, PlaintextServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_cli_writes_csv_json_and_plots(tmp_path, capsys):
    out = tmp_path / "bench"
    rc = main(["bench", "--quick", "--workloads", "gamma", "vector-10k", "--clients", "4", "10",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "flower anchor skipped" in printed and "max abs err" in printed
    with open(out / CSV_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 2 * 2  # protocols x workloads x clients x dropouts
    assert {r["protocol"] for r in rows} == {"plaintext", "ckks", "masking"}
    assert all(r["status"] == "ok" for r in rows)
    doc = json.loads((out / JSON_FILE).read_text())
    assert doc["meta"]["machine_before"]["cores"] >= 1 and len(doc["rows"]) == len(rows)
    assert all(len(r["rounds"]) == 1 for r in doc["rounds"])
    for plot in (LENGTH_PLOT, CLIENTS_PLOT):
        assert (out / plot).read_bytes()[:8] == PNG_MAGIC


def test_quick_preset_is_small():
    cells, skipped = grid_cells([ProtocolSpec.parse(p) for p in QUICK.protocols], list(quick_workloads().values()),
                                QUICK.clients, QUICK.dropouts, QUICK.max_values)
    assert not skipped and max(c.values for c in cells) <= 100_000 and QUICK.repeats == 1


class OffByOneStepServer(PlaintextServer):
    """A wrong protocol: its result is one grid step too high in coordinate 0."""

    def _finish(self) -> None:
        super()._finish()
        self.result = self.result.copy()
        self.result[0] += 2.0 ** -self.spec.encoding.frac_bits


class OffByOneStepProtocol(PlaintextProtocol):
    def server(self, spec):
        return OffByOneStepServer(spec)


class OffByOneStepSpec(ProtocolSpec):
    def build(self):
        return OffByOneStepProtocol()


def test_error_columns_catch_a_wrong_total():
    w = gaussian_workload("v", 50)
    good = run_cell(Cell(ProtocolSpec("plaintext"), w, 5, 0.0), 2).row
    bad = run_cell(Cell(OffByOneStepSpec("plaintext"), w, 5, 0.0), 2).row
    assert good["max_abs_error"] == 0 and good["max_rel_error"] == 0
    assert bad["max_abs_error"] == 2.0 ** -24
    assert bad["max_rel_error"] > 0


def test_exact_sum_is_the_integer_sum_of_the_fixed_point_inputs():
    rng = np.random.default_rng(1)
    enc = FixedPoint(3.0, 20, 4)
    inputs = {c: rng.uniform(-3, 3, 30) for c in range(4)}
    exact = exact_fixed_point_sum(inputs, [0, 2, 3], enc)
    by_hand = [sum(round(float(inputs[c][i]) * 2**20) for c in (0, 2, 3)) / 2**20 for i in range(30)]
    assert exact.tolist() == by_hand
    assert sum_errors(exact, exact) == (0.0, 0.0)
    shifted = exact.copy()
    shifted[7] += 0.5
    abs_err, rel_err = sum_errors(shifted, exact)
    assert abs_err == 0.5 and rel_err == pytest.approx(0.5 / np.max(np.abs(exact)))
    assert sum_errors(np.ones(3), np.zeros(3)) == (1.0, float("inf"))


@pytest.mark.parametrize("protocol", ["plaintext", "masking", "ckks"])
def test_dropouts_leave_the_sum_exact_over_the_contributors(protocol):
    res = run_cell(Cell(ProtocolSpec(protocol), gaussian_workload("v", 200), 10, 0.3), 2)
    row = res.row
    assert row["status"] == "ok" and row["rounds_ok"] == 2
    assert row["dropped"] == 3 and row["contributors"] == 7
    # an error against the sum of all 10 inputs would be ~1e-2, not a rounding error
    assert row["max_abs_error"] <= 7 * 2.0 ** -25


def test_plaintext_bytes_are_the_reports_wire_bytes():
    w = gamma_workload()
    row = run_cell(Cell(ProtocolSpec("plaintext"), w, 4, 0.0), 1).row
    # one Input message: 30-byte header, 4-byte length prefix, L packed values of k/8 bytes
    assert row["up_bytes_median"] == 30 + 4 + (w.length * row["ring_bits"] + 7) // 8
    assert row["down_bytes_median"] == 30  # the Request
    assert row["total_bytes"] == 4 * (row["up_bytes_median"] + 30)
    assert row["x_float32"] == (row["up_bytes_median"] + 30) / (4 * w.length)


def test_a_failing_cell_is_reported_not_raised():
    # SecAgg+ with 2 neighbours (t = 3 of 3): any dropout leaves a neighbourhood below the threshold
    res = run_cell(Cell(ProtocolSpec.parse("masking:neighbours=2"), gamma_workload(), 10, 0.3), 2)
    assert res.row["status"].startswith("2/2 failed: DropoutError")
    assert res.row["rounds_ok"] == 0 and res.row["client_s_median"] is None


def test_protocol_spec_parsing():
    spec = ProtocolSpec.parse("masking:neighbours=10,threshold=0.6")
    assert spec.name == "masking" and dict(spec.options) == {"neighbours": 10, "threshold": 0.6}
    assert spec.label == "masking:neighbours=10,threshold=0.6"
    assert ProtocolSpec.parse("masking:neighbours=log").options == (("neighbours", "log"),)
    assert spec.build().neighbours == 10
    with pytest.raises(ValueError, match="key=value"):
        ProtocolSpec.parse("masking:neighbours")
    with pytest.raises(ValueError, match="unknown protocol"):
        ProtocolSpec.parse("rot13").build()


def test_grid_cap_skips_large_cells():
    small, big = gamma_workload(), gaussian_workload("v", 1000)
    cells, skipped = grid_cells([ProtocolSpec("plaintext")], [small, big], [10, 100], [0.0], max_values=20_000)
    assert [(c.workload.name, c.clients) for c in skipped] == [("v", 100)]
    assert len(cells) == 3


def test_workloads_have_the_issue_shapes_and_stay_in_bound():
    assert tuple(standard_workloads()) == WORKLOAD_NAMES and tuple(quick_workloads()) == QUICK_WORKLOAD_NAMES
    assert cnn_state_length() == 113_098
    rng = np.random.default_rng(0)
    for w in [fedavg_workload("f", 100), kmeans_workload(10, 64), kmeans_workload(3, 5, points=40), gamma_workload(),
              gaussian_workload("g", 1000)]:
        for cid in range(3):
            v = w.make(cid, rng)
            assert v.shape == (w.length,) and np.all(np.abs(v) <= w.bound), w.name
    km = kmeans_workload(10, 64)
    assert km.length == 10 * 129
    counts = km.make(0, rng)[:10]
    assert counts.sum() == 500 and np.all(counts == np.round(counts))


def test_anchor_unavailable_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(anchor_module, "anchor_unavailable", lambda: "ImportError: No module named 'flwr'")
    lines = []
    settings = BenchSettings(protocols=("plaintext",), workloads=("gamma",), clients=(3,), dropouts=(0.0,),
                               repeats=1, max_values=None, anchor_points=((1000, 3, 0.0),))
    doc, _ = run_bench(settings, tmp_path, log=lines.append)
    assert "flower anchor unavailable: ImportError: No module named 'flwr'" in lines
    assert doc["anchor"] == {"rows": [], "unavailable": "ImportError: No module named 'flwr'"}


def test_run_grid_reports_progress_per_cell():
    seen = []
    cells = [Cell(ProtocolSpec("plaintext"), gamma_workload(), n, 0.0) for n in (2, 3)]
    results = run_grid(cells, 1, progress=seen.append)
    assert seen == results and [r.row["clients"] for r in results] == [2, 3]


@pytest.mark.filterwarnings("ignore::secure_fal.experiment.config.ConfigWarning")  # tiny on purpose
def test_end_to_end_masking_matches_plaintext_accuracy(tmp_path):
    tiny = {"training.rounds": 1, "training.local_epochs": 1, "active.cycles": 1, "data.clients": 3,
            "training.model": "mlp", "training.model_options": {"hidden": [16]}}
    rows, runs, notes = run_end_to_end(tmp_path, experiments=["digits"], protocols=("plaintext", "masking"),
                                       extra=tiny, repeats=1, log=lambda line: None)
    assert [r["protocol"] for r in runs] == ["plaintext", "masking"]
    assert [r["protocol"] for r in rows] == ["plaintext", "masking"]
    assert rows[0]["wall_ratio"] == 1.0 and rows[1]["accuracy_diff"] == 0.0
    assert rows[1]["secagg_rounds"] == rows[0]["secagg_rounds"] > 0
    assert rows[1]["secagg_bytes"] > 0 and rows[1]["cpu_s"] > 0
    assert rows[1]["identical"] and runs[0]["selections"] == runs[1]["selections"]
    assert runs[0]["cycle_accuracies"] == runs[1]["cycle_accuracies"] and len(runs[0]["cycle_accuracies"]) == 1
    with pytest.raises(ValueError, match="plaintext"):
        run_end_to_end(tmp_path, protocols=("masking",))


@pytest.mark.filterwarnings("ignore::secure_fal.experiment.config.ConfigWarning")  # tiny on purpose
def test_end_to_end_runs_a_config_file_under_each_protocol(tmp_path):
    config = tmp_path / "tiny_digits.toml"
    config.write_text('name = "tiny"\nseed = 1\ndevice = "cpu"\n[data]\ndataset = "digits"\nclients = 3\n'
                      '[training]\nmodel = "mlp"\nrounds = 1\nlocal_epochs = 1\n[active]\nstrategy = "fairfal"\n'
                      'cycles = 2\n')
    rows, runs, notes = run_end_to_end(tmp_path / "out", config=config,
                                       protocols=("plaintext", "masking", "ckks:mode=dealer"), repeats=1,
                                       log=lambda line: None)
    assert notes == [] and {r["experiment"] for r in rows} == {"tiny_digits"}
    assert (tmp_path / "out" / "tiny_digits" / "masking-0" / "results.json").exists()
    dealer = json.loads((tmp_path / "out" / "tiny_digits" / "ckks:mode=dealer-0" / "results.json").read_text())
    assert dealer["config"]["secure"] == {**dealer["config"]["secure"], "protocol": "ckks",
                                          "options": {"mode": "dealer"}}
    assert [r["protocol"] for r in rows] == ["plaintext", "masking", "ckks:mode=dealer"]
    assert all(r["identical"] for r in rows) and len(runs[1]["cycle_accuracies"]) == 2
    with pytest.raises(ValueError, match="not both"):
        run_end_to_end(tmp_path, config=config, experiments=["digits"])


def test_inputs_depend_only_on_seed_workload_repeat_and_client():
    cache = InputCache(seed=3)
    w = gaussian_workload("v", 20)
    first = cache.inputs(w, 4, repeat=0)
    assert all(np.array_equal(first[c], v) for c, v in cache.inputs(w, 6, repeat=0).items() if c < 4)
    assert not np.array_equal(first[0], cache.inputs(w, 4, repeat=1)[0])
    again = InputCache(seed=3).inputs(w, 4, repeat=0)
    assert all(np.array_equal(first[c], again[c]) for c in range(4))


def test_end_to_end_summary_takes_medians_and_ratios_to_plaintext():
    def run(protocol, wall, cpu, acc, selections="a"):
        return {"experiment": "digits", "protocol": protocol, "wall_s": wall, "cpu_s": cpu, "secagg_s": 0.5,
                "final_accuracy": acc, "load_before": 1.0, "secagg_rounds": 3, "secagg_bytes": 10,
                "cycle_accuracies": [0.3, acc], "selections": selections}

    rows = summarize([run("plaintext", 10, 8, 0.5), run("ckks", 13, 9, 0.49), run("plaintext", 12, 8, 0.5),
                      run("ckks", 11, 11, 0.49), run("plaintext", 100, 8, 0.5), run("ckks", 12, 10, 0.49),
                      run("masking", 12, 8, 0.5), run("masking", 12, 8, 0.5, selections="b")])
    by = {r["protocol"]: r for r in rows}
    # ckks: other accuracies; masking: the same accuracies, but its second run selected other samples
    assert by["plaintext"]["identical"] and not by["ckks"]["identical"] and not by["masking"]["identical"]
    assert by["plaintext"]["wall_s"] == 12 and by["ckks"]["wall_s"] == 12 and by["ckks"]["wall_ratio"] == 1.0
    assert by["ckks"]["cpu_ratio"] == 10 / 8 and by["ckks"]["accuracy_diff"] == pytest.approx(-0.01)
    assert by["ckks"]["runs"] == 3


def test_anchor_points_parse():
    assert parse_anchor_points(["1e5,10,0.3", "1000,3,0"]) == ((100_000, 10, 0.3), (1000, 3, 0.0))
    assert parse_anchor_points(["none"]) == ()
    with pytest.raises(ValueError, match="L,n,dropout"):
        parse_anchor_points(["1000,3"])
