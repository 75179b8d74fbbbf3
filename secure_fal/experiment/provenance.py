"""Where a result came from: package and library versions, the git commit of the code, when, on what device."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path

from .. import __version__


def git_commit(directory: Path = Path(__file__).resolve().parent) -> str | None:
    """HEAD of the git checkout holding ``directory`` (with ``+dirty`` when tracked files changed), or None when
    the package is not run from a checkout or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance(device: str) -> dict:
    """The ``provenance`` block of results.json: package version, git commit (None outside a checkout), UTC
    timestamp (ISO 8601), the resolved torch device, torch / numpy / Python versions and the platform."""
    import numpy
    import torch

    return {"package_version": __version__, "git_commit": git_commit(),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": device, "torch_version": torch.__version__, "numpy_version": numpy.__version__,
            "python_version": platform.python_version(), "platform": platform.platform()}
