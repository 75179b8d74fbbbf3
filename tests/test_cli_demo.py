"""`secure-fal demo`: the parser, a tiny run with plaintext, errors, and the full demo (slow)."""

import re

import pytest

from secure_fal.cli import build_parser, main


def table_value(out: str, key: str) -> str:
    match = re.search(rf"^{re.escape(key)}\s+(.+)$", out, re.MULTILINE)
    assert match, f"{key!r} missing from:\n{out}"
    return match.group(1)


def test_tiny_demo_prints_the_result_table(capsys):
    assert main(["demo", "--rounds", "2", "--local-epochs", "1", "--clients", "4", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert table_value(out, "protocol") == "plaintext"
    assert table_value(out, "rounds") == "2" and table_value(out, "clients") == "4"
    assert 0 <= float(table_value(out, "final test accuracy")) <= 1
    assert int(table_value(out, "secure-agg bytes").split()[0]) > 0
    assert table_value(out, "wall time").endswith(" s")
    assert len(re.findall(r"^round\s+\d+", out, re.MULTILINE)) == 2


def test_quiet_prints_only_the_table(capsys):
    assert main(["demo", "--rounds", "1", "--local-epochs", "1", "--clients", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert not re.search(r"^round\s", out, re.MULTILINE) and "final test accuracy" in out


def test_update_beyond_bound_is_a_one_line_error(capsys):
    assert main(["demo", "--rounds", "1", "--clients", "3", "--lr", "1e9", "--quiet"]) == 1
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
    args = build_parser().parse_args(["demo", "--protocol", "masking", "--hidden", "32,16"])
    assert args.protocol == "masking" and args.hidden == (32, 16) and callable(args.func)


@pytest.mark.slow
def test_full_demo_reaches_85_percent(capsys):
    assert main(["demo", "--quiet"]) == 0
    assert float(table_value(capsys.readouterr().out, "final test accuracy")) > 0.85
