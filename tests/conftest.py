"""Shared test helpers."""

import importlib

import pytest

PROTOCOLS = ("plaintext", "ckks", "masking")


def protocol_or_skip(name: str) -> str:
    """Return the protocol name, skipping the test when its module is not importable."""
    if name != "plaintext":
        pytest.importorskip(f"secure_fal.secagg.{name}")
    importlib.import_module("secure_fal.secagg.api")
    return name
