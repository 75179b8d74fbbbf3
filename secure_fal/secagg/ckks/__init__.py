"""CKKS homomorphic encryption, spec protocols/ckks.md. Two modes of ``CKKSProtocol`` (name "ckks"):
threshold (default; ``threshold/``: no key holder, t-of-m committee decryption, numpy RNS arithmetic on SEAL's
primes) and dealer (``mode="dealer"``; the modules below, over TenSEAL's SEAL bindings). One module per part:

    threshold/       threshold mode: ring, params, setup (share distribution), machines, messages, protocol
    protocol.py      ``CKKSProtocol``: the protocol object (keys, machines per round, node pins); dealer mode
    machines.py      the round's machines: clients encrypt, the server adds, one key holder decrypts
    messages.py      the round's wire messages (protocol id 2)
    params.py        ``CKKSParams``: ring, moduli, scale; the per-round plan and its error bound
    context.py       ``CKKSContext``: keys and parameters as one party holds them
    keys.py          the in-band key distribution: a dealer seals the secret context for each member
    key_messages.py  the key distribution's wire messages (protocol id 4) and public parameters
"""

from .protocol import CKKSProtocol

__all__ = ["CKKSProtocol"]
