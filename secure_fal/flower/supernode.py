"""``flower-supernode`` whose idle poll of the SuperLink is a setting instead of Flower's fixed 3 s.

A SuperNode that has no message to run asks the SuperLink for one, and when there is none sleeps 3 s before it
asks again (flwr 1.41, ``start_client_internal``: not configurable); while a ClientApp runs it checks for the reply
every 0.5 s. A protocol whose secure sum is several exchanges pays the 3 s at (almost) every exchange: a node
answers, polls at once, finds nothing yet (the server is still collecting the other answers) and sleeps. This
launcher runs Flower's own SuperNode unchanged but for those two waits: ``--poll S`` replaces the 3 s and caps the
0.5 s. The price is S-spaced requests from each idle node to the SuperLink (3 nodes at 0.2 s: 15 requests per
second on loopback); keep Flower's 3 s for large federations.

    python -m secure_fal.flower.supernode --poll 0.2 --insecure --superlink HOST:9093 --node-config "client-id=0"

Every argument but ``--poll`` goes to ``flower-supernode``. Written against flwr 1.41 (the ``flower`` extra pins
it); on another SuperNode loop it refuses to start rather than patch blindly.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Sequence

IDLE_SLEEP_S = 3      # Flower's idle wait between polls of the SuperLink
REPLY_SLEEP_S = 0.5   # Flower's wait between checks for a ClientApp's reply


class PollClock:
    """Stand-in for the ``time`` module inside Flower's SuperNode loop: its two fixed waits become ``poll_s``
    (the reply check at most 0.5 s); everything else is ``time`` itself."""

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s

    def sleep(self, seconds: float) -> None:
        if seconds == IDLE_SLEEP_S:
            seconds = self.poll_s
        elif seconds == REPLY_SLEEP_S:
            seconds = min(REPLY_SLEEP_S, self.poll_s)
        time.sleep(seconds)

    def __getattr__(self, name: str):
        return getattr(time, name)


def set_poll(poll_s: float) -> None:
    """Make this process's Flower SuperNode loop poll every ``poll_s`` seconds when idle (see the module doc)."""
    from flwr.supernode import start_client_internal as loop

    source = inspect.getsource(loop)
    if f"time.sleep({IDLE_SLEEP_S})" not in source or f"time.sleep({REPLY_SLEEP_S})" not in source:
        raise RuntimeError("this flwr's SuperNode loop has no fixed idle wait to replace (written for flwr 1.41); "
                           "run flower-supernode itself")
    loop.time = PollClock(poll_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--poll", type=float, default=float(IDLE_SLEEP_S),
                        help="seconds between an idle node's polls of the SuperLink (Flower: 3)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not 0.01 <= args.poll <= 60:
        parser.error(f"--poll must be in [0.01, 60] s, got {args.poll}")
    set_poll(args.poll)
    from flwr.supernode.cli.flower_supernode import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
