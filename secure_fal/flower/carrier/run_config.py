"""Settings dataclasses <-> Flower run config (flat keys with dashes; values int, float, str or bool)."""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path

_CASTS = {int: int, float: float, str: str}


def settings_kwargs(cls: type, config: Mapping[str, object]) -> dict[str, object]:
    """Constructor kwargs of the dataclass ``cls`` from a run config.

    Keys use dashes for underscores; an unknown key raises ValueError naming it; values of int, float and str
    fields are cast to the field's type (Flower may hand an int where a float is declared). Other fields
    are passed through for the caller to decode.
    """
    known = {f.name.replace("_", "-") for f in fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown run config keys {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k.replace("-", "_"): v for k, v in config.items()}
    for name, value in kwargs.items():
        cast = _CASTS.get(hints[name])
        if cast is not None:
            kwargs[name] = cast(value)
    return kwargs


def to_run_config(settings: object) -> dict[str, object]:
    """The run config of a settings dataclass instance (field names with dashes)."""
    return {k.replace("_", "-"): v for k, v in asdict(settings).items()}


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (readers never see a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)
