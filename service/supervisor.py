"""Run the service: one process, or several listening on one port.

With ``processes > 1`` the parent binds the sockets, forks the workers and
only supervises: a worker that dies is replaced, SIGINT/SIGTERM stop them
all. Workers die with the parent even if it is killed (``PR_SET_PDEATHSIG``).
The parent also owns the embedded servers, so they stop last.

Where the system has ``SO_REUSEPORT`` (Linux), each worker listens on a
socket of its own on the port and the kernel spreads new connections evenly
among them. On one shared socket, whichever worker woke first accepted a whole
burst of connections: nginx's (or a load generator's) keep-alive connections,
opened together, ended up mostly in one worker while the other idled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from typing import Awaitable, Callable

import tornado.netutil

from storage.embedded import die_with_parent

log = logging.getLogger(__name__)

#: ``main(sockets, stop_event)`` runs one worker until ``stop_event`` is set.
WorkerMain = Callable[[list[socket.socket], asyncio.Event], Awaitable[None]]

RESTART_BACKOFF = 1.0
#: Seconds a stopping worker process has before SIGKILL: it drains requests
#: for up to 6 s while its notice sends in flight finish (5 s), closes
#: connections (3 s) and its database clients (up to 5 s).
STOP_WAIT = 15.0
#: Whether workers can each listen on the port (see module docstring).
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


#: Set in each forked worker to its index (0, 1 …): what is said once is said by worker 0.
WORKER_INDEX = "WETOOP_WORKER_INDEX"


def first_worker() -> bool:
    """True in worker 0, and in a service that does not fork."""
    return os.environ.get(WORKER_INDEX, "0") == "0"


#: Seconds between calls of ``tick`` (the embedded servers' watchdog).
TICK_EVERY = 2.0


#: A worker's exit code for "refused to start" (a configuration mistake such as a
#: wrong password): replacing it would fail alike, for ever; the service stops.
REFUSED = 2


def run(main: WorkerMain, sockets: list[socket.socket], processes: int = 1,
        tick: Callable[[], object] | None = None, refused: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main`` in this process, or in ``processes`` forked workers; the
    exit code (:data:`REFUSED` when a worker met one of ``refused``, said on
    stderr, at start: it is not replaced, and the service stops).

    ``tick`` (blocking) is called every :data:`TICK_EVERY` seconds in this
    process, which holds the embedded servers, until the workers stop.
    """
    if processes <= 1:
        run_loop(_worker(main, sockets, tick))
        return 0
    return _supervise(main, sockets, processes, tick, refused)


async def _worker(main: WorkerMain, sockets: list[socket.socket], tick=None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    ticking = asyncio.create_task(tick_until(tick, stop)) if tick is not None else None
    await main(sockets, stop)
    if ticking is not None:
        stop.set()
        await ticking


async def tick_until(tick: Callable[[], object], stop: asyncio.Event) -> None:
    """Call ``tick`` (blocking, in a thread) every :data:`TICK_EVERY` seconds until ``stop``."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TICK_EVERY)
            return
        await asyncio.to_thread(_tick_safely, tick)


def _tick_safely(tick: Callable[[], object]) -> None:
    try:
        tick()
    except Exception:  # noqa: BLE001 - the watchdog must not take the service down
        log.exception("watchdog tick failed")


def _supervise(main: WorkerMain, sockets: list[socket.socket], processes: int, tick=None,
               refused: tuple[type[BaseException], ...] = ()) -> int:
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    code = 0

    def request_stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # With SO_REUSEPORT on the parent's sockets, each worker opens its own on
    # the same addresses; the parent's are closed once the workers listen.
    own_sockets = REUSE_PORT and all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    addresses = [(s.family, s.getsockname()) for s in sockets]

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            die_with_parent()
            os.environ[WORKER_INDEX] = str(index)
            code = 0
            try:
                listening = sockets
                if own_sockets:
                    listening = [sock for family, address in addresses for sock in _listen_again(family, address)]
                    for inherited in sockets:
                        inherited.close()
                run_loop(_worker(main, listening))
            except refused as exc:
                if first_worker():  # said once, not by every worker
                    print(f"wetoop-bot: {exc}", file=sys.stderr, flush=True)
                code = REFUSED
            except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index

    for index in range(processes):
        spawn(index)
    log.info("started %d worker processes", processes)
    if own_sockets:
        for sock in sockets:
            sock.close()

    next_tick = time.monotonic() + TICK_EVERY
    while children:
        if stopping:
            break
        if tick is not None and time.monotonic() >= next_tick:
            _tick_safely(tick)
            next_tick = time.monotonic() + TICK_EVERY
        exited = _exited(children)
        if not exited:
            time.sleep(0.1)
            continue
        for pid, status in exited:
            index = children.pop(pid)
            if status > 0 and os.waitstatus_to_exitcode(status) == REFUSED:
                stopping, code = True, REFUSED  # the others would refuse alike: stop them
                break
            log.warning("worker %d (pid %d) exited with status %d; restarting", index, pid, status)
            time.sleep(RESTART_BACKOFF)
            spawn(index)

    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_WAIT
    while children and time.monotonic() < deadline:
        exited = _exited(children)
        for pid, _status in exited:
            children.pop(pid, None)
        if not exited:
            time.sleep(0.05)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return code


def _exited(children: dict[int, int]) -> list[tuple[int, int]]:
    """The workers among ``children`` that have exited, reaped: ``(pid, status)``.
    Only these pids: waiting for any child reaped the embedded servers too, whose
    watchdog then read a SIGKILLed server's exit as 0."""
    exited = []
    for pid in list(children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere
            exited.append((pid, -1))
            continue
        if done:
            exited.append((pid, status))
    return exited


def _listen_again(family: int, address) -> list[socket.socket]:
    """A worker's own listening socket on ``address`` (``SO_REUSEPORT``), made
    by the same Tornado helper as the parent's."""
    host, port = address[0], address[1]
    return tornado.netutil.bind_sockets(port, host, family=family, reuse_port=True)


def run_loop(coro):
    """``asyncio.run``, on uvloop when it is installed (a faster event loop:
    the service, the notice worker and the emulator each spend most of their
    CPU in it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
