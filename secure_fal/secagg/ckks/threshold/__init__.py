"""Threshold CKKS: no one holds a decryption key (spec: protocols/ckks.md §Threshold mode).

    ring.py       R_q in RNS form: negacyclic NTT, samplers (ternary, centred binomial, uniform smudging), packing
    params.py     ``ThresholdParams`` (N, primes, committee, t) and ``ThresholdPlan`` (a round's noise and modulus)
    setup.py      the once-per-session share distribution and ``ThresholdKeys`` (what a member keeps)
    machines.py   the round: clients encrypt under their own secret, t responders decrypt the aggregate
    messages.py   wire messages (rounds: protocol id 6; setup: protocol id 7)
    protocol.py   ``ThresholdCKKSProtocol``, what ``CKKSProtocol()`` builds by default
"""
