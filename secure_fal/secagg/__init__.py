"""Secure aggregation: one interface (``Aggregator`` / ``secure_sum``), three interchangeable protocols.

The layer every protocol shares sits here; each protocol has its own subpackage. Specs: ``protocols/*.md``.

    api.py        ``Aggregator``, ``SecureSumProtocol``, ``make_protocol``, ``secure_sum``
    messages.py   the wire format: 30-byte header, encode / decode
    machine.py    the sans-I/O state-machine base (``ServerMachine``, ``ClientMachine``, ``RoundSpec``)
    transport.py  the in-process transport (``run_round``) and fault injection (``Faults``)
    encoding.py   fixed-point encoding of float vectors into integers mod 2^k
    report.py     bytes and seconds per party and phase
    errors.py     the exceptions, naming client, round and field
    identity.py   Ed25519 identities and the roster of the active modes (signed keys, consistency round)
    node.py       what a client's node enforces: its policy (pinned parameters) and its round registry
    plaintext.py  reference and baseline, no protection
    ckks/         CKKS homomorphic encryption (TenSEAL); the server holds only a public context
    masking/      pairwise masking with dropout recovery (SecAgg / SecAgg+), per-round or session mode
    privacy/      distributed differential privacy on every sum (discrete Gaussian, Skellam), its accountant and
                  the privacy ledger (protocols/dp.md)
"""

from .api import Aggregator, SecureSumProtocol, SumResult, make_protocol, run_setup, secure_sum
from .encoding import FixedPoint
from .privacy import DPSettings, PrivacyError, PrivacySession, Statistic
from .errors import (DecryptionError, DropoutError, InputError, MessageError, OutOfOrderError, ReplayError,
                     SecAggError)
from .report import CostTotals, Report
from .transport import Faults

__all__ = [
    "Aggregator", "SecureSumProtocol", "SumResult", "make_protocol", "run_setup", "secure_sum", "FixedPoint", "Faults",
    "Report", "CostTotals", "SecAggError", "InputError", "MessageError", "ReplayError", "OutOfOrderError",
    "DecryptionError", "DropoutError", "DPSettings", "PrivacyError", "PrivacySession", "Statistic",
]
