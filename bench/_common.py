"""What the benchmark scripts share: the machine, the service as a subprocess,
signed pushes, and Markdown tables.

Nothing here is part of the product; the scripts only start processes on
127.0.0.1 and stop them again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.config import KEYS

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PYTHON = Path(sys.executable)
BIN = PYTHON.parent / "wetoop-bot"
TOKEN = "benchtoken42"

#: Settings a benchmark's processes must not inherit from the shell.
_CONFIG_KEYS = {*KEYS, "WETOOP_CONFIG"}


# -- the machine -----------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    """A Markdown block naming the machine, for the top of every report."""
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    return [
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}{mem}, {platform.system()} {platform.release()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- load average when the report was printed: {load}",
    ]


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(out)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- ports, processes ------------------------------------------------------------


@contextlib.contextmanager
def bench_mongo(prefix: str):
    """``(uri, engine)``: ``MONGODB_URI`` when set, else an nx-27017 of its own, stopped after."""
    from storage.embedded import EmbeddedServers

    uri = os.environ.get("MONGODB_URI")
    if uri:
        yield uri, "MONGODB_URI"
        return
    servers = EmbeddedServers(Path(tempfile.mkdtemp(prefix=prefix)), names=("mongo",)).start()
    try:
        yield servers.url("mongo"), "nx-27017 (embedded default)"
    finally:
        servers.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emit(report: str, output: str | Path | None) -> None:
    """Print a report, and also write it to ``output`` (``--output``) when given."""
    print(report)
    if output:
        Path(output).write_text(report + "\n", encoding="utf-8")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CONFIG_KEYS}
    env.update(extra)
    return env


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A blocking GET on 127.0.0.1 (health checks)."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, status: int = 200) -> float:
    """Poll ``url`` until it answers ``status``; returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(url, timeout=1.0)[0] == status:
                return time.monotonic() - started
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer {status} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; only this process (and, through
    the service's own shutdown, its children)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 if unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, iowait) CPU seconds of the whole machine so far, all cores together."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    tck = os.sysconf("SC_CLK_TCK")
    idle, iowait = fields[3], fields[4]
    busy = sum(fields[:8]) - idle - iowait
    return busy / tck, iowait / tck


def children(pid: int) -> list[int]:
    """All descendants of ``pid``."""
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                by_parent.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# -- the service -------------------------------------------------------------------


class Service:
    """``wetoop-bot serve`` as a real subprocess on the embedded default.

    ``data_dir`` None makes a new temporary one (removed on :meth:`stop`
    unless ``keep``).
    """

    def __init__(self, processes: int = 1, data_dir: Path | None = None, keep: bool = False, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="wetoop-bench-")
            data_dir = Path(self._tmp)
        self.data_dir = Path(data_dir)
        self.keep = keep
        self.processes = processes
        self.env = clean_env(WECHAT_TOKEN=TOKEN, DATA_DIR=str(self.data_dir), PORT=str(self.port), **env)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> float:
        """Start and wait for ``/healthz`` 200; returns the seconds it took."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "bench-service.log", "ab")
        started = time.monotonic()
        args = [str(BIN), "serve"] + (["--processes", str(self.processes)] if self.processes > 1 else [])
        try:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        finally:
            log.close()
        wait_http(self.url + "/healthz", timeout, self.proc)
        return time.monotonic() - started

    @property
    def embedded(self) -> dict:
        return json.loads((self.data_dir / "run" / "embedded.json").read_text())

    def workers(self) -> list[int]:
        """Pids that serve HTTP: the process itself, or its forked workers."""
        assert self.proc is not None
        if self.processes <= 1:
            return [self.proc.pid]
        state = self.embedded
        embedded = {state[name]["pid"] for name in state}
        ours = [p for p in children(self.proc.pid) if p not in embedded and p not in _descendants_of(embedded)]
        return ours

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self._tmp and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "Service":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _descendants_of(pids: set[int]) -> set[int]:
    out: set[int] = set()
    for pid in pids:
        out.update(children(pid))
    return out


# -- signed pushes -----------------------------------------------------------------

_nonces = itertools.count(1)


def signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()


def signed_query(token: str = TOKEN) -> str:
    """A fresh plaintext-mode query: new nonce, current timestamp, valid signature."""
    ts = str(int(time.time()))
    nonce = str(next(_nonces))
    return f"signature={signature(token, ts, nonce)}&timestamp={ts}&nonce={nonce}&openid=bench"


def text_xml(openid: str, content: str, msg_id: int, create_time: int | None = None) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    ).encode("utf-8")


def post_request(path_and_query: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    """One keep-alive HTTP/1.1 POST, as bytes."""
    return (
        f"POST {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


def post_once(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One blocking signed POST to ``url`` (``…/wechat``), for checks outside the timed runs."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", f"/{path}?{signed_query()}", body, {"Content-Type": "text/xml"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
