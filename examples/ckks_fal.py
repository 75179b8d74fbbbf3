"""Federated active learning on digits with every cross-client statistic summed by the ckks protocol.

    python examples/ckks_fal.py

Runs F-AL, FAL-Global and FairFAL for three short cycles (see digits_fal.py) and prints a table.
"""

from digits_fal import main

if __name__ == "__main__":
    main("ckks")
