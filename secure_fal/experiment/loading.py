"""Reading an experiment: a TOML file plus command-line overrides (dotted keys) -> a checked ``ExperimentConfig``;
the differences between two configs (what ``--resume`` reports)."""

from __future__ import annotations

import copy
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import choices
from .config import ActiveConfig, ConfigError, ConfigWarning, ExperimentConfig


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read a TOML config (None: all defaults) and apply dotted-key ``overrides``.

    Setting ``active.budget`` (in the file's [active] table or as an override) without ``active.query_fraction``
    clears the default query_fraction, and vice versa. An override that switches the sampler (``active.sampler``,
    or ``active.strategy`` changing the default one) drops the file's ``active.sampler_options``, which were meant
    for the file's sampler, with a ``ConfigWarning``; overriding ``active.sampler_options`` too keeps those.

    Raises:
        ConfigError: a missing file, unreadable TOML, unknown key, wrong type or invalid value (the message names
            the key).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
    return config_with_overrides(raw, overrides)


def config_with_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The checked config of a raw document (a parsed TOML file, or a saved ``to_dict``) with dotted-key
    ``overrides`` applied as ``load_config`` describes; ``raw`` is not modified."""
    raw = copy.deepcopy(dict(raw))
    _exclusive_budget(raw.get("active"), None)
    file_sampler = _sampler_of(raw)
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
        _exclusive_budget(raw.get("active"), key)
    if "active.sampler_options" not in (overrides or {}):
        _drop_foreign_sampler_options(raw, file_sampler)
    return ExperimentConfig.from_dict(raw)



def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line: VALUE is read as a TOML value (``2``, ``0.5``, ``true``,
    ``"cnn"``, ``[64, 64]``, ``{kappa = 2}``); ``none`` means unset (None); anything else is a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. training.rounds=2")
    value = value.strip()
    if value.lower() == "none":
        return key, None
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value



def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``to_dict`` outputs, as 'key: old -> new'."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{name}.")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out



def _exclusive_budget(active: Any, overridden: str | None) -> None:
    """A budget given without a query_fraction replaces the default fraction (and vice versa for overrides)."""
    if not isinstance(active, dict):
        return
    if overridden is None:
        if "budget" in active and "query_fraction" not in active:
            active["query_fraction"] = None
    elif overridden == "active.budget" and active.get("budget") is not None:
        active["query_fraction"] = None
    elif overridden == "active.query_fraction" and active.get("query_fraction") is not None:
        active["budget"] = None



def _sampler_of(raw: Mapping[str, Any]) -> str | None:
    """The sampler a raw config document runs (its own or its strategy's default); None if not decidable."""
    active = raw.get("active")
    active = active if isinstance(active, Mapping) else {}
    if active.get("sampler") is not None:
        return active["sampler"]
    choice = choices.STRATEGIES.get(active.get("strategy", ActiveConfig.strategy))
    return choice.default_sampler if choice is not None else None



def _drop_foreign_sampler_options(raw: dict, file_sampler: str | None) -> None:
    """Remove ``active.sampler_options`` when the overrides switched the sampler away from ``file_sampler``."""
    active = raw.get("active")
    if not isinstance(active, dict) or not active.get("sampler_options"):
        return
    sampler = _sampler_of(raw)
    if sampler != file_sampler:
        warnings.warn(ConfigWarning(f"active.sampler_options: dropping {active['sampler_options']!r}, set for sampler "
                                    f"{file_sampler!r}; the sampler is now {sampler!r} (give --set "
                                    "active.sampler_options={...} to set its options)"), stacklevel=4)
        del active["sampler_options"]



def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:i + 1])} is not a table")
        node = child
    node[parts[-1]] = value
