"""The command line starts without torch: --help, --version, argument and config errors answer at once."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from secure_fal.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def _cli(*argv, cwd=None):
    return subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"], ["sweep", "--help"],
                                  ["compare", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    done = _cli(*argv)
    assert done.returncode == 0 and "torch imported: False" in done.stderr


@pytest.mark.parametrize("toml, message", [
    ("[data]\nclients = 0\n", "data.clients: expected >= 2 under every protocol"),
    ("[active]\nstrategy = 'nope'\n", "active.strategy: unknown value 'nope'"),
    ("[training]\nmodel = 'vit'\n", "training.model: unknown value 'vit'"),
])
def test_config_errors_do_not_import_torch(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    done = _cli("run", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 1 and "torch imported: False" in done.stderr
    assert done.stderr.startswith("secure-fal run: error: ") and message in done.stderr


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "secure_fal", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("secure-fal ")
