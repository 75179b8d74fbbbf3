"""Secure aggregation: one interface (``Aggregator`` / ``secure_sum``), three interchangeable protocols.

- ``plaintext``: reference and baseline, no protection.
- ``ckks``: CKKS homomorphic encryption (TenSEAL); the server holds only a public context.
- ``masking``: pairwise masking with dropout recovery (SecAgg / SecAgg+).

Each protocol is a pair of sans-I/O state machines (``machine.py``) exchanging bytes (``messages.py``),
driven by a transport (``transport.py``). Specs: ``protocols/*.md``.
"""

from .api import Aggregator, SecureSumProtocol, SumResult, make_protocol, run_setup, secure_sum
from .encoding import FixedPoint
from .errors import (DecryptionError, DropoutError, InputError, MessageError, OutOfOrderError, ReplayError,
                     SecAggError)
from .report import CostTotals, Report
from .transport import Faults

__all__ = [
    "Aggregator", "SecureSumProtocol", "SumResult", "make_protocol", "run_setup", "secure_sum", "FixedPoint", "Faults",
    "Report", "CostTotals", "SecAggError", "InputError", "MessageError", "ReplayError", "OutOfOrderError",
    "DecryptionError", "DropoutError",
]
