"""`secure-fal demo`: the active-learning demo's quick mode end to end, its errors, and the FedAvg-only demo
(a tiny run with plaintext, errors, and the full run, slow)."""

import json
import re

import pytest

from secure_fal.cli import build_parser, main
from secure_fal.demo import baseline_of, class_balance, cost_ratio

from .conftest import protocol_or_skip


def table_value(out: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)}\s+(.+)$", out, re.MULTILINE)
    assert match, f"{key!r} missing from:\n{out}"
    return match.group(1)


# -- the active-learning demo (the default) ---------------------------------------------------------------

def test_quick_demo_sums_securely_and_learns(tmp_path, capsys):
    """FairFAL and its random baseline under masking: every cycle's sums went through the secure protocol
    (and were measured against plaintext), and both models are far above chance (10 classes: 0.1)."""
    protocol_or_skip("masking")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    runs = {label: json.loads((tmp_path / label / "results.json").read_text()) for label in ("fairfal", "random")}
    assert (runs["fairfal"]["strategy"], runs["random"]["strategy"], runs["random"]["sampler"]) == \
        ("fairfal", "f-al", "random")
    for label, results in runs.items():
        assert results["config"]["secure"]["protocol"] == "masking"
        cycles = results["cycles"]
        assert len(cycles) == 3 and cycles[-1]["labeled"] > cycles[0]["labeled"]
        for record in cycles:
            secure, reference = record["secure_aggregation"], record["plaintext_reference"]
            assert secure["rounds"] >= results["config"]["training"]["rounds"]   # every FedAvg round, securely
            assert secure["total_bytes"] > reference["total_bytes"] > 0 and reference["rounds"] == secure["rounds"]
        assert results["final_accuracy"] > 0.3, label
        assert len(re.findall(rf"^{label}\s+cycle \d/3 .* acc .* balance .* secagg", out, re.MULTILINE)) == 3
        assert re.search(rf"^{label}\s+{cycles[-1]['labeled']}\s+{100 * results['final_accuracy']:.1f}\s", out,
                         re.MULTILINE)
    # FairFAL's gamma is one more secure sum than the baseline's FedAvg rounds in the first cycle
    assert runs["fairfal"]["cycles"][0]["secure_aggregation"]["rounds"] == \
        runs["random"]["cycles"][0]["secure_aggregation"]["rounds"] + 1
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert str(tmp_path / "fairfal" / "results.json") in out and "x plain:" in out


def test_plaintext_demo_without_baseline_reports_no_ratio(tmp_path, capsys):
    argv = ["demo", "--quick", "--protocol", "plaintext", "--no-baseline", "--cycles", "2", "--strategy",
            "fal-global", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "fal-global" / "results.json").read_text())
    assert "plaintext_reference" not in results and not (tmp_path / "random").exists()
    assert results["secure_aggregation"]["rounds"] > 2 * results["config"]["training"]["rounds"]   # + k-means
    row = re.search(r"^fal-global\s+(.+)$", out, re.MULTILINE).group(1).split()
    assert row[5] == "-" and row[7] == "-" and "cycle 1/2" not in out


@pytest.mark.parametrize("argv_tail, message", [
    (["--strategy", "centralized"], "'centralized' never aggregates across clients"),
    (["--strategy", "nope"], "active.strategy: unknown value 'nope'"),
    (["--cycles", "0"], "active.cycles: expected >= 1"),
    (["--fedavg-only", "--quick", "--strategy", "f-al"], "--strategy, --quick, --out apply to the active-learning"),
    (["--device", "tpu"], "device 'tpu' (--device, or device in the config): unknown"),
    (["--threads", "0"], "threads: expected >= 1, got 0"),
])
def test_demo_errors_are_one_line(tmp_path, capsys, argv_tail, message):
    assert main(["demo", "--out", str(tmp_path), *argv_tail]) == 1
    err = capsys.readouterr().err
    assert err.startswith("secure-fal demo: error: ") and message in err and err.count("\n") == 1


def test_balance_ratio_and_baseline_helpers():
    assert class_balance([5, 5, 5, 5]) == pytest.approx(1.0) and class_balance([7, 0, 0]) == 0.0
    assert 0 < class_balance([30, 10, 5, 1]) < 1 and class_balance([]) == 0.0
    assert cost_ratio({"total_bytes": 300, "server_seconds": 1.0, "client_seconds": 2.0},
                      {"total_bytes": 100, "server_seconds": 0.5, "client_seconds": 0.5}) == (3.0, 3.0)
    assert cost_ratio({"total_bytes": 1}, None) is None
    assert baseline_of("fairfal") == ("f-al", "random") and baseline_of("fal-global") == ("f-al", "random")
    assert baseline_of("s-al") == ("s-al", "random")


# -- the FedAvg-only demo ---------------------------------------------------------------------------------

def test_tiny_fedavg_demo_prints_the_result_table(capsys):
    assert main(["demo", "--fedavg-only", "--protocol", "plaintext", "--rounds", "2", "--local-epochs", "1",
                 "--clients", "4", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert table_value(out, "protocol") == "plaintext"
    assert table_value(out, "rounds") == "2" and table_value(out, "clients") == "4"
    assert 0 <= float(table_value(out, "final test accuracy")) <= 1
    assert int(table_value(out, "secure-agg bytes").split()[0]) > 0
    assert table_value(out, "wall time").endswith(" s")
    assert len(re.findall(r"^round\s+\d+", out, re.MULTILINE)) == 2


def test_quiet_prints_only_the_table(capsys):
    assert main(["demo", "--fedavg-only", "--protocol", "plaintext", "--rounds", "1", "--local-epochs", "1",
                 "--clients", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"^round\s", out, re.MULTILINE) and "final test accuracy" in out


def test_update_beyond_bound_is_a_one_line_error(capsys):
    assert main(["demo", "--fedavg-only", "--protocol", "plaintext", "--rounds", "1", "--clients", "3",
                 "--lr", "1e9", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("secure-fal demo: error: client ") and "update_bound" in err


def test_parser_requires_a_known_command_and_protocol(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--protocol", "rot13"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--hidden", "12,x"])
    args = build_parser().parse_args(["demo", "--protocol", "ckks", "--hidden", "32,16"])
    assert args.protocol == "ckks" and args.hidden == (32, 16) and callable(args.func)
    assert build_parser().parse_args(["demo"]).protocol == "masking"


@pytest.mark.slow
def test_full_fedavg_demo_reaches_85_percent(capsys):
    assert main(["demo", "--fedavg-only", "--quiet"]) == 0
    assert float(table_value(capsys.readouterr().out, "final test accuracy")) > 0.85
