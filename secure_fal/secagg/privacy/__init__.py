"""Distributed differential privacy on every secure sum, its accountant and the privacy ledger (protocols/dp.md).

    samplers.py    exact integer samplers from a ChaCha20 source: discrete Gaussian (Canonne-Kamath-Steinke) and
                   Skellam (exact Poisson inversion)
    mechanisms.py  clipping, randomized Hadamard rotation, conditional randomized rounding, modular clipping; the
                   calibration (grid step, noise share) of the distributed discrete Gaussian and Skellam mechanisms
    accountant.py  RDP curves of each release, composed and converted with Google's dp-accounting
    session.py     a run's settings (``DPSettings``), budget and noise keys (``PrivacySession``); ``Statistic``
    release.py     one noised release split by party (``open_release``, ``Release``, a node's ``NodePrivacy``): the
                   code path of ``Aggregator.sum`` and of the Flower apps
    ledger.py      what the server learned from each sum, DP or not; the ledger table

``Aggregator(..., privacy=PrivacySession(DPSettings(...)))`` noises every sum; callers only declare a ``Statistic``.
"""

from .mechanisms import MECHANISMS, Calibration, PrivacyError
from .session import KINDS, DPSettings, PrivacySession, Statistic

__all__ = ["MECHANISMS", "KINDS", "Calibration", "DPSettings", "PrivacyError", "PrivacySession", "Statistic"]
