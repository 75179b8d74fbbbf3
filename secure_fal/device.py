"""Device choice and seeding.

CPU runs are reproducible bit for bit: the same seed, data and thread count give identical weights.
CUDA runs are reproducible only as far as cuDNN allows (``seed_everything`` asks it for deterministic kernels).
"""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICE_PREFERENCES = ("auto", "cpu", "cuda")


def get_device(pref: str = "auto") -> torch.device:
    """The torch device to run on.

    Args:
        pref: 'auto' (CUDA when available, else CPU), 'cpu', or 'cuda' (raises RuntimeError when no CUDA
            device is available). A specific CUDA device such as 'cuda:1' is accepted too.
    """
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "cuda" or pref.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {pref!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device(pref)
    raise ValueError(f"unknown device preference {pref!r}; choose one of {DEVICE_PREFERENCES} or 'cuda:N'")


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
