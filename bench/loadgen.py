"""A keep-alive HTTP/1.1 load generator in plain asyncio (no third-party code).

Each of ``connections`` sockets sends one request, waits for the whole
response, records the latency and sends the next (closed loop, like wrk) until
``duration`` seconds have passed or the request supply is exhausted. Requests
come from a callable returning bytes, so every request can carry a fresh
MsgId and signature. Responses are parsed just enough to find their end
(Content-Length or chunked) and their status; a byte string ``expect`` may be
checked in every body.

It uses :class:`asyncio.Protocol` rather than streams: about 3-4x less CPU per
request, so one core of generator can drive far more than one core of
Tornado (the report shows the generator's own CPU use to prove it).

Run alone: ``python bench/loadgen.py http://127.0.0.1:8080/healthz -c 32 -d 5``
(GET, for a quick look).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import dataclasses
import time
from collections import Counter
from typing import Callable

MakeRequest = Callable[[], "bytes | None"]


@dataclasses.dataclass
class Result:
    name: str
    completed: int
    elapsed: float
    latencies: array.array
    statuses: Counter
    mismatches: int
    timeouts: int
    conn_errors: int
    gen_cpu: float  # generator CPU seconds per wall second (1.0 = one core)
    exhausted: bool = False
    sample: bytes = b""

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[index] * 1000

    @property
    def errors(self) -> int:
        bad = sum(n for code, n in self.statuses.items() if code != 200)
        return bad + self.mismatches + self.timeouts + self.conn_errors

    def summary(self) -> str:
        return (
            f"{self.name}: {self.completed} in {self.elapsed:.2f} s = {self.rps:.0f} req/s, "
            f"p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms, "
            f"statuses {dict(self.statuses)}, mismatches {self.mismatches}, timeouts {self.timeouts}, "
            f"connection errors {self.conn_errors}, generator CPU {self.gen_cpu * 100:.0f}%"
            + (" (request supply exhausted)" if self.exhausted else "")
        )


class _Conn(asyncio.Protocol):
    def __init__(self, run: "_Run") -> None:
        self.run = run
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.in_flight = False
        self.closed = False

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.run.live.add(self)
        self.send_next()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.in_flight:
            parsed = _parse(self.buf)
            if parsed is None:
                return
            status, body, consumed, close = parsed
            del self.buf[:consumed]
            self.in_flight = False
            self.run.record(time.perf_counter() - self.sent_at, status, body)
            if close:
                self.close(reopen=True)
                return
            self.send_next()

    def connection_lost(self, exc) -> None:
        self.run.live.discard(self)
        if self.in_flight and not self.closed:
            self.run.conn_errors += 1
            self.in_flight = False
            self.run.reopen()
        self.closed = True

    # -- ours ------------------------------------------------------------------------

    def send_next(self) -> None:
        run = self.run
        if time.perf_counter() >= run.end or run.exhausted:
            self.close(reopen=False)
            return
        request = run.make_request()
        if request is None:
            run.exhausted = True
            self.close(reopen=False)
            return
        self.in_flight = True
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def close(self, reopen: bool) -> None:
        if not self.closed:
            self.closed = True
            self.run.live.discard(self)
            if self.transport is not None:
                self.transport.close()
        if reopen:
            self.run.reopen()
        else:
            self.run.maybe_done()


def _parse(buf: bytearray):
    """(status, body, bytes consumed, connection closes) or None if incomplete."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    length = None
    chunked = False
    close = parts[0] == "HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection":
            close = value.lower() == "close"
    start = head_end + 4
    if chunked:
        body = bytearray()
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            if size == 0:
                # No trailers: "0\r\n\r\n"; with trailers they end in an empty line.
                trailer_end = buf.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return None
                return status, bytes(body), trailer_end + 4, close
            if len(buf) < line_end + 2 + size + 2:
                return None
            body += buf[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
    if length is None:
        length = 0
    if len(buf) < start + length:
        return None
    return status, bytes(buf[start : start + length]), start + length, close


class _Run:
    def __init__(self, host, port, make_request, connections, duration, expect, timeout) -> None:
        self.loop = asyncio.get_running_loop()
        self.host, self.port = host, port
        self.make_request = make_request
        self.connections = connections
        self.expect = expect
        self.timeout = timeout
        self.start = time.perf_counter()
        self.end = self.start + duration
        self.latencies = array.array("d")
        self.statuses: Counter = Counter()
        self.mismatches = 0
        self.timeouts = 0
        self.conn_errors = 0
        self.last_done = self.start
        self.exhausted = False
        self.live: set[_Conn] = set()
        self.opening = 0
        self.done = self.loop.create_future()
        self.sample = b""

    def record(self, latency: float, status: int, body: bytes) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        self.last_done = time.perf_counter()
        if self.expect is not None and self.expect not in body:
            self.mismatches += 1
            if not self.sample:
                self.sample = body[:300]

    def reopen(self) -> None:
        if time.perf_counter() >= self.end or self.exhausted:
            self.maybe_done()
            return
        self.opening += 1
        self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.conn_errors += 1
            await asyncio.sleep(0.05)
            self.opening -= 1
            self.reopen()
            return
        self.opening -= 1

    def maybe_done(self) -> None:
        if not self.live and not self.opening and not self.done.done():
            self.done.set_result(None)

    async def watchdog(self) -> None:
        while not self.done.done():
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for conn in list(self.live):
                if conn.in_flight and now - conn.sent_at > self.timeout:
                    self.timeouts += 1
                    conn.in_flight = False
                    conn.close(reopen=True)
            self.maybe_done()


async def run_load(
    name: str,
    host: str,
    port: int,
    make_request: MakeRequest,
    *,
    connections: int = 32,
    duration: float = 10.0,
    expect: bytes | None = None,
    timeout: float = 10.0,
) -> Result:
    """Drive ``host:port`` with ``connections`` keep-alive connections for ``duration`` seconds."""
    cpu0 = time.process_time()
    run = _Run(host, port, make_request, connections, duration, expect, timeout)
    for _ in range(connections):
        run.reopen()
    dog = asyncio.ensure_future(run.watchdog())
    try:
        await asyncio.wait_for(run.done, duration + timeout + 5)
    except TimeoutError:
        run.timeouts += sum(1 for c in run.live if c.in_flight)
        for conn in list(run.live):
            conn.close(reopen=False)
    finally:
        dog.cancel()
    wall = time.perf_counter() - run.start
    elapsed = max(run.last_done, min(run.end, time.perf_counter())) - run.start
    return Result(
        name=name,
        completed=len(run.latencies),
        elapsed=elapsed,
        latencies=run.latencies,
        statuses=run.statuses,
        mismatches=run.mismatches,
        timeouts=run.timeouts,
        conn_errors=run.conn_errors,
        gen_cpu=(time.process_time() - cpu0) / wall if wall > 0 else 0.0,
        exhausted=run.exhausted,
        sample=run.sample,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT/PATH (GET)")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=5.0)
    args = parser.parse_args()
    rest = args.url.removeprefix("http://")
    host_port, _, path = rest.partition("/")
    host, _, port = host_port.partition(":")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("this generator only targets the loopback interface")
    request = f"GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    result = asyncio.run(
        run_load("GET /" + path, host, int(port), lambda: request, connections=args.connections, duration=min(args.duration, 120))
    )
    print(result.summary())


if __name__ == "__main__":
    main()
