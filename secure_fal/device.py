"""Device choice and seeding.

CPU runs are reproducible bit for bit: the same seed, data and thread count give identical weights.
CUDA runs are reproducible only as far as cuDNN allows (``seed_everything`` asks it for deterministic kernels).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .errors import UserError

DEVICE_PREFERENCES = ("auto", "cpu", "cuda")


class DeviceError(UserError, RuntimeError):
    """The requested device is unknown or not on this machine."""


def get_device(pref: str = "auto") -> torch.device:
    """The torch device to run on.

    Args:
        pref: 'auto' (CUDA when available, else CPU), 'cpu', or 'cuda'. A specific CUDA device such as 'cuda:1'
            is accepted too.
    Raises:
        DeviceError: an unknown preference, or CUDA (that CUDA device) not available on this machine.
    """
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    where = f"device {pref!r} (--device, or device in the config)"
    if pref == "cuda" or pref.startswith("cuda:"):
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise DeviceError(f"{where}: CUDA is not available on this machine ({why}); use cpu or auto")
        index = pref.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"{where}: this machine has CUDA devices cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(pref)
    raise DeviceError(f"{where}: unknown; choose one of {', '.join(DEVICE_PREFERENCES)} or cuda:N")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (every CUDA device included).

    Also selects deterministic cuDNN kernels. Code in this package that needs randomness per client or per
    round derives its own generator from an explicit seed; this covers the rest (model initialisation,
    dropout).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
