"""The Flower App directory that ``flwr run`` bundles (a FAB) and sends to the SuperLink and SuperNodes.

Our apps are importable from the installed ``secure_fal`` package, so the bundle holds only a
``pyproject.toml`` naming the ServerApp and ClientApp components and declaring the run config keys with
their defaults (``flwr run --run-config`` may only override declared keys). It declares no
dependencies: every SuperLink and SuperNode machine must already have ``secure_fal[flower]`` installed
(and the SuperLink is started with ``--disable-runtime-dependency-installation``, so nothing is fetched
at run time).

    python -m secure_fal.flower.app_bundle DIR      # writes DIR/pyproject.toml for our secure-sum apps
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

SECURE_SUM_APPS = ("secure_fal.flower.secure_sum.server_app:app", "secure_fal.flower.secure_sum.client_app:app")
FAL_APPS = ("secure_fal.flower.fal.server_app:app", "secure_fal.flower.fal.client_app:app")
ConfigValue = bool | int | float | str

_TEMPLATE = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "0.1.0"
description = "secure_fal over Flower: {what}"
dependencies = []

[tool.flwr.app]
publisher = "secure_fal"

[tool.flwr.app.components]
serverapp = "{serverapp}"
clientapp = "{clientapp}"

[tool.flwr.app.config]
{config}
"""


def toml_value(value: ConfigValue) -> str:
    """One TOML scalar: bool, int, finite float or str (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"run config value {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"run config values are bool, int, float or str, got {type(value).__name__}")


def toml_table(config: Mapping[str, ConfigValue]) -> str:
    """``key = value`` lines, one per entry (keys are written as quoted TOML keys)."""
    return "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in config.items())


def write_app_dir(path: str | Path, config: Mapping[str, ConfigValue], *, name: str = "secure-fal-secure-sum",
                  what: str = "secure sums with our sans-I/O machines",
                  apps: tuple[str, str] = SECURE_SUM_APPS) -> Path:
    """Create ``path`` (if needed) with the ``pyproject.toml`` of a Flower App; returns the directory.

    Args:
        config: the run config keys and their defaults.
        name: project name of the bundle (letters, digits, dashes).
        what: one line for the description.
        apps: ("module:serverapp_object", "module:clientapp_object").
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    serverapp, clientapp = apps
    (path / "pyproject.toml").write_text(_TEMPLATE.format(name=name, what=what, serverapp=serverapp,
                                                          clientapp=clientapp, config=toml_table(config)))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m secure_fal.flower.app_bundle DIR")
    from .secure_sum.server_app import SessionSettings

    print(write_app_dir(sys.argv[1], SessionSettings().to_run_config()))
