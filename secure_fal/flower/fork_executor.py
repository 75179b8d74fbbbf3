"""A warm SuperExec for a SuperNode: each ClientApp task runs in a fork of a process that has already imported
Python, flwr and the app's modules, instead of a fresh ``flwr-clientapp`` interpreter per message.

Flower's deployment engine runs a ClientApp once per message. With its default isolation (``subprocess``), the
SuperNode's SuperExec starts a new ``flwr-clientapp`` process for every message: interpreter start-up, flwr's
imports and the app's imports (torch, for a training step) are paid again each time, several seconds on a small
machine. A protocol with several exchanges per secure sum pays that per exchange.

This executor keeps one process that imports all of that once (``--preload``) and forks it for each ClientApp
task; the child runs Flower's own ClientApp runtime (``flwr.supernode.runtime.run_clientapp``: pull the message,
context and FAB over the SuperNode's Runtime API, run the app, push the reply and the updated context) and exits.
Nothing else changes: the same app, the same node state (``Context.state`` lives in the SuperNode), one task at a
time as the SuperNode hands them out, and a crash in a task ends only that child. Other task types (none on a
SuperNode) go to Flower's subprocess executor.

Use it by starting the SuperNode with ``--isolation process`` and this executor beside it, pointed at the
SuperNode's Runtime API (``--host``/``--port`` of the SuperNode):

    flower-supernode --isolation process --host 127.0.0.1 --port 9094 --superlink ... --node-config ...
    python -m secure_fal.flower.fork_executor --runtime-api-address 127.0.0.1:9094 --insecure \\
        --preload secure_fal.flower.fal.node

The loop is Flower's own SuperExec loop (``run_superexec``: acquire a task, launch it, sleep
``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``), given this executor in place of the subprocess one (written against
flwr 1.41, which the ``flower`` extra pins). The parent never handles a message, so it holds no secret; each
child holds only its own task's data, like a ``flwr-clientapp`` process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from flwr.supercore.constant import TaskType
from flwr.supercore.superexec import run_superexec as superexec
from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor
from flwr.supercore.superexec.executor.types import ExecutionSpec, LaunchResult
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.runtime.run_clientapp import run_clientapp

log = logging.getLogger(__name__)


class ForkExecutor(SubprocessExecutor):
    """Flower's SuperExec executor interface; ClientApp tasks run in a fork of this (warm) process."""

    def __init__(self) -> None:
        self.children: set[int] = set()

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        """Fork a child that runs the ClientApp task ``spec``; other task types go to a fresh subprocess."""
        if spec.task_type != TaskType.CLIENT_APP:
            return super().launch(spec)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: run the task, then leave without running the parent's exit handlers
            code = 1
            try:
                run_clientapp(runtime_api_address=spec.runtime_api_address, token=spec.token, insecure=spec.insecure,
                              certificates=validate_and_resolve_root_certificates(spec.root_certificates_path,
                                                                                  spec.insecure),
                              parent_pid=None, runtime_dependency_install=spec.runtime_dependency_install)
                code = 0
            except SystemExit as exc:  # run_clientapp ends with flwr_exit (sys.exit)
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children.add(pid)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished children (called by the SuperExec loop before every poll)."""
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` now, so that every forked task finds them loaded."""
    for name in modules:
        importlib.import_module(name)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Warm SuperExec for a SuperNode started with --isolation process: "
                                                 "ClientApp tasks run in forks of this process.")
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API, HOST:PORT")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP to the Runtime API")
    parser.add_argument("--root-certificates", default=None, help="CA file of the Runtime API's TLS certificate")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the SuperNode) exits")
    parser.add_argument("--preload", action="append", default=[],
                        help="module to import before forking (repeatable), e.g. secure_fal.flower.fal.node")
    args = parser.parse_args(argv)
    preload(["secure_fal.flower.fal.client_app", *args.preload])
    executor = ForkExecutor()
    superexec.get_executor = lambda *_, **__: executor  # Flower's loop, with this executor
    superexec.run_superexec(runtime_api_address=args.runtime_api_address, insecure=args.insecure,
                            root_certificates_path=args.root_certificates, parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()
