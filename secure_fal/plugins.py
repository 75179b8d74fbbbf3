"""Plug-ins named in a config as ``module:function`` (a dataset loader, a model builder), imported on use.

``module`` is imported as Python imports anything: an installed package, a module on ``$PYTHONPATH``, or a module
in the current working directory (put on ``sys.path`` for this, as ``python -m`` does); ``function`` is an attribute
of it. What each plug-in must return is checked where it is used: ``secure_fal.data.load_dataset`` (a ``Dataset``)
and ``secure_fal.models.build_model`` (an ``EmbeddingClassifier``-like model).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable

from .errors import UserError

PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""What a plug-in reference looks like: ``package.module:function``."""


class PluginError(UserError, ValueError):
    """A plug-in cannot be imported, is not callable, or returned something unusable (the message names the key)."""


def is_plugin(name: str) -> bool:
    """Whether ``name`` is a ``module:function`` reference (rather than a built-in name)."""
    return bool(PLUGIN.match(name))


def load_plugin(reference: str, key: str) -> Callable:
    """The function ``reference`` (``module:function``) names; ``key`` is the config key, for the error message."""
    module_name, _, attribute = reference.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(f"{key} {reference!r}: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise PluginError(f"{key} {reference!r}: module {module_name!r} has no function {attribute!r}")
    return function
