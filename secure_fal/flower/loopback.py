"""A Flower deployment on one machine: a SuperLink and SuperNodes on 127.0.0.1, as child processes.

Used by the tests, the SecAgg+ anchor and benchmarks to run a Flower App exactly as across machines,
only with every address on the loopback interface. Each Flower process runs in its own process group
(so killing a node also kills the ClientApp processes it started), logs to a file in the work
directory, and gets ``FLWR_HOME`` inside the work directory (Flower's config, installed app bundles).
Ports are chosen free by binding to port 0. Telemetry and update checks are turned off.

    with LoopbackFederation(tmp, [{"client-id": 0}, {"client-id": 1}]) as fed:
        fed.run_app(app_dir, {"rounds": 2}, timeout=120)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .app_bundle import ConfigValue, toml_table, toml_value

HOST = "127.0.0.1"
CONNECTION = "loopback"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Ids of every living descendant of ``pid`` (Linux ``/proc``; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal(pid: int, sig: int) -> None:
    """os.kill (a negative pid: a process group), ignoring processes that are already gone."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _ip(hex_addr: str, ipv6: bool) -> str:
    """Address column of /proc/net/tcp{,6} -> dotted IPv4 ('::' style for other IPv6 addresses)."""
    raw = bytes.fromhex(hex_addr)
    words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is host-endian
    packed = b"".join(words)
    if not ipv6:
        return socket.inet_ntop(socket.AF_INET, packed)
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed)


def _bin(name: str) -> str:
    """Path of a Flower console script installed beside this interpreter."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


class LoopbackFederation:
    """SuperLink + one SuperNode per node config, all on 127.0.0.1.

    Args:
        workdir: directory for logs, FLWR_HOME and run-config files (created if missing).
        node_configs: one mapping per SuperNode, passed as its ``--node-config``.
        startup_timeout: seconds to wait for the SuperLink to accept connections.
        task_poll_s: how often each SuperExec polls for ClientApp/ServerApp tasks to start (Flower's
            default is 1 s; 0.1 s here shortens every exchange).
        env: extra environment variables for every Flower process (e.g. FLWR_LOG_LEVEL=DEBUG).
        executor: how each SuperNode runs its ClientApp tasks: "flower" (Flower's default: a fresh
            ``flwr-clientapp`` process per message) or "fork" (``fork_executor``: a fork of a warm process that has
            imported ``preload``; the SuperNode runs with ``--isolation process``).
        preload: modules the "fork" executor imports before forking (e.g. ``secure_fal.flower.fal.node``).
        node_poll_s: seconds between an idle SuperNode's polls of the SuperLink; None: Flower's own 3 s
            (``flower-supernode``), else ``secure_fal.flower.supernode --poll``.
    """

    def __init__(self, workdir: str | Path, node_configs: Sequence[Mapping[str, ConfigValue]], *,
                 startup_timeout: float = 60.0, task_poll_s: float = 0.1,
                 env: Mapping[str, str] | None = None, executor: str = "flower",
                 preload: Sequence[str] = (), node_poll_s: float | None = None) -> None:
        if executor not in ("flower", "fork"):
            raise ValueError(f"executor must be 'flower' or 'fork', got {executor!r}")
        self.workdir = Path(workdir)
        self.node_configs = [dict(c) for c in node_configs]
        self.startup_timeout = startup_timeout
        self.executor = executor
        self.preload = tuple(preload)
        self.node_poll_s = node_poll_s
        self.port = 0
        self.superlink: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen | None] = []
        self.executors: list[subprocess.Popen | None] = []
        self.runs: list[subprocess.Popen] = []
        # Flower starts its helpers (flower-superexec, flwr-serverapp, flwr-clientapp) from PATH
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.env = {**os.environ, "PATH": path, "FLWR_HOME": str(self.workdir / "flwr-home"),
                    "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
                    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(task_poll_s), **(env or {})}

    def __enter__(self) -> LoopbackFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_path(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.log_path(name).open("ab")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env, cwd=self.workdir, start_new_session=True)
        finally:
            log.close()

    def start(self) -> None:
        """Start the SuperLink, wait until it listens, then start the SuperNodes."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "flwr-home"
        home.mkdir(exist_ok=True)
        self.port = free_port()
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{HOST}:{self.port}"\ninsecure = true\n')
        self.superlink = self._spawn("superlink", [
            _bin("flower-superlink"), "--insecure", "--host", HOST, "--port", str(self.port),
            "--disable-runtime-dependency-installation"])
        self._wait_listening(self.port, self.superlink, "superlink")
        for i, config in enumerate(self.node_configs):
            node_config = " ".join(f"{k}={toml_value(v)}" for k, v in config.items())
            runtime_port = free_port()
            isolation = ["--isolation", "process"] if self.executor == "fork" else []
            launcher = [_bin("flower-supernode")] if self.node_poll_s is None else [
                sys.executable, "-m", "secure_fal.flower.supernode", "--poll", str(self.node_poll_s)]
            node = self._spawn(f"supernode-{i}", [
                *launcher, "--insecure", "--superlink", f"{HOST}:{self.port}", *isolation,
                "--host", HOST, "--port", str(runtime_port), "--node-config", node_config])
            self.nodes.append(node)
            if self.executor == "fork":
                preload = [arg for module in self.preload for arg in ("--preload", module)]
                self.executors.append(self._spawn(f"executor-{i}", [
                    sys.executable, "-m", "secure_fal.flower.fork_executor", "--insecure",
                    "--runtime-api-address", f"{HOST}:{runtime_port}", "--parent-pid", str(node.pid), *preload]))

    def _wait_listening(self, port: int, proc: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {self.log_path(name)}")
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{name} did not listen on {HOST}:{port} within {self.startup_timeout} s; "
                           f"see {self.log_path(name)}")

    def submit(self, app_dir: str | Path, run_config: Mapping[str, ConfigValue]) -> subprocess.Popen:
        """Start ``flwr run APP_DIR loopback --run-config FILE --stream`` (submits a run and follows it
        to its end); its output goes to the log ``flwr-run-N``. The caller waits for (or kills) it."""
        n = len(list(self.workdir.glob("run-config-*.toml")))
        config_file = self.workdir / f"run-config-{n}.toml"
        config_file.write_text(toml_table(run_config) + "\n")
        proc = self._spawn(f"flwr-run-{n}", [_bin("flwr"), "run", str(app_dir), CONNECTION,
                                              "--run-config", str(config_file), "--stream"])
        self.runs.append(proc)
        return proc

    def run_app(self, app_dir: str | Path, run_config: Mapping[str, ConfigValue], *, timeout: float) -> int:
        """``submit`` and wait; returns flwr's exit code. Raises subprocess.TimeoutExpired (after killing
        it) if the run takes longer than ``timeout`` seconds."""
        proc = self.submit(app_dir, run_config)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            raise

    def run_app_killing_node(self, app_dir: str | Path, run_config: Mapping[str, ConfigValue], *, node: int,
                             marker: str, timeout: float) -> set[tuple[str, int]]:
        """``submit``, SIGKILL SuperNode ``node`` as soon as ``marker`` appears in its log (e.g. the group id of
        the exchange it must die in), and wait for the run to end; a node killed mid-round, deterministically.

        Returns the federation's ``listening_addresses`` taken just before the kill. Raises TimeoutError (after
        killing the run) if the marker does not appear within ``timeout / 2`` seconds or the run outlives
        ``timeout`` seconds; the message names the log directory.
        """
        proc = self.submit(app_dir, run_config)
        try:
            if not self.wait_for_log(f"supernode-{node}", marker, timeout=timeout / 2):
                raise TimeoutError(f"node {node} never logged {marker!r}; logs in {self.workdir}")
            listening = self.listening_addresses()
            self.kill_node(node)
            proc.wait(timeout=timeout)
        except (TimeoutError, subprocess.TimeoutExpired) as exc:
            self._kill_group(proc)
            raise TimeoutError(f"run with node {node} killed at {marker!r} did not finish: {exc}; logs in "
                               f"{self.workdir}") from None
        return listening

    def listening_addresses(self) -> set[tuple[str, int]]:
        """(IPv4 address, port) of every TCP socket listening in the federation's process trees (Linux)."""
        pids = set()
        for proc in [self.superlink, *self.nodes, *self.executors, *self.runs]:
            if proc is not None and proc.poll() is None:
                pids |= {proc.pid, *descendants(proc.pid)}
        inodes = set()
        for pid in pids:
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
        found = set()
        for table, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN, owned by one of ours
                    addr, port = cols[1].split(":")
                    found.add((_ip(addr, ipv6), int(port, 16)))
        return found

    def wait_for_log(self, name: str, text: str, timeout: float) -> bool:
        """Wait until ``text`` appears in the log of ``name`` (e.g. 'supernode-1'); False on timeout."""
        deadline = time.monotonic() + timeout
        path = self.log_path(name)
        while time.monotonic() < deadline:
            if path.exists() and text in path.read_text(errors="replace"):
                return True
            time.sleep(0.05)
        return False

    def kill_node(self, index: int) -> None:
        """SIGKILL SuperNode ``index``, its executor (if any) and every process they started (it stops answering
        at once)."""
        for procs in (self.nodes, self.executors):
            proc = procs[index] if index < len(procs) else None
            if proc is not None:
                self._kill_group(proc, signal.SIGKILL)
                procs[index] = None

    @staticmethod
    def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        """Signal ``proc``, its process group and every descendant (Flower detaches some children into
        their own sessions); SIGKILL whatever is still alive after ``wait`` seconds."""
        tree = [proc.pid] + descendants(proc.pid)
        for pid in tree:
            _signal(pid, sig)
        _signal(-proc.pid, sig)
        deadline = time.monotonic() + wait
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass
        while time.monotonic() < deadline and any(_alive(p) for p in tree[1:]):
            time.sleep(0.1)
        for pid in tree:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
        _signal(-proc.pid, signal.SIGKILL)
        proc.wait(timeout=wait)

    def stop(self) -> None:
        """Terminate every ``flwr run``, SuperNode, then the SuperLink (SIGKILL after 10 s), with all their
        descendants."""
        for proc in self.runs:
            if proc.poll() is None:
                self._kill_group(proc)
        for procs in (self.executors, self.nodes):
            for i, proc in enumerate(procs):
                if proc is not None:
                    self._kill_group(proc)
                    procs[i] = None
        if self.superlink is not None:
            self._kill_group(self.superlink)
            self.superlink = None
