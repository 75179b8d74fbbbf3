"""Pairwise masking (SecAgg / SecAgg+), spec protocols/masking.md. One module per part:

    protocol.py        ``MaskingProtocol`` (name "masking"): builds the machines, per-round or session mode
    client.py          the client machine of a classic round
    server.py          the server machine of a classic round
    messages.py        the round's wire messages (protocol id 3) and their sizes
    graph.py           who masks with whom (complete graph or SecAgg+ neighbourhoods) and the threshold t
    params.py          SecAgg+ degree and threshold from a corruption fraction and dropout rate (Bell et al. 2020)
    keys.py            X25519 key agreement and key screening, HKDF, AES-GCM share encryption, commitments,
                       signed statements of the active mode
    shamir.py          Shamir sharing of 32-byte secrets over GF(2^256 + 297)
    prg.py             the mask PRG (ChaCha20 keystream of a 32-byte seed) and the mask accumulator
    setup.py           session mode: the setup machines (R rounds' secrets shared in advance)
    setup_messages.py  session mode: the setup's wire messages (protocol id 5) and public parameters
    session_keys.py    session mode: the keys a setup leaves with a client and with the server
    session.py         session mode: the machines of one round run on those keys
"""

from .protocol import MaskingProtocol

__all__ = ["MaskingProtocol"]
