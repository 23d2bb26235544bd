"""Lua script calls made in the same event-loop turn, sent as one pipeline.

Under load many messages open and finish at once (:mod:`storage.inbound_gate`).
Each redis-py call pays for a pool checkout, its retry wrapper and a write of
its own; the webhook's CPU is what bounds its throughput. A call here queues
and is sent with every other call queued before the loop turns, on one pooled
connection, packed here and read back with redis-py's parser (hiredis): about
25 µs of CPU a call under load, against 90 µs through redis-py's pipeline and
115 µs alone (``bench/RESULTS.md``). Results and errors reach each caller as
if it had called the script itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import DataError, NoScriptError, ResponseError
from storage.redis_store import as_unavailable


class ScriptBatch:
    """Batches calls of scripts registered with :meth:`script`."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queue: list[tuple[AsyncScript, list, list, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()

    def script(self, source: str) -> "BatchedScript":
        return BatchedScript(self, self._client.register_script(source))

    async def call(self, script: AsyncScript, keys: list, args: list) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((script, keys, args, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        task = asyncio.ensure_future(self._run(queue))
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    async def _run(self, queue: list) -> None:
        try:
            results = await self._send([("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args, _ in queue])
        except asyncio.CancelledError:
            for *_, future in queue:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller gets the connection's error
            for *_, future in queue:
                _set(future, exception=exc)
            return
        for (script, keys, args, future), result in zip(queue, results):
            if isinstance(result, NoScriptError):
                # The server lost its scripts (restart, SCRIPT FLUSH): the
                # plain call loads it again.
                await _settle(future, script(keys=keys, args=args))
            elif isinstance(result, Exception):
                _set(future, exception=as_unavailable(result))  # a full disk's MISCONF: Redis unavailable
            else:
                _set(future, result=result)

    async def _send(self, commands: list[tuple]) -> list:
        """Send ``commands`` on one pooled connection, then read their replies
        in order (an error reply is returned as its exception). What redis-py's
        pipeline does, without its command stack, response callbacks and
        reset: half of its CPU a call (``bench/RESULTS.md``)."""
        packed = _packed(commands)  # a bad argument fails here, before a connection is taken
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(packed)
            results = []
            for _ in commands:
                try:
                    results.append(await connection.read_response())
                except ResponseError as exc:
                    results.append(exc)
            return results
        except BaseException:
            # Replies may be left unread: the connection cannot serve another call.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)


class BatchedScript:
    """A registered script whose calls go through a :class:`ScriptBatch`."""

    def __init__(self, batch: ScriptBatch, script: AsyncScript) -> None:
        self._batch = batch
        self._script = script

    async def __call__(self, keys: list, args: list) -> Any:
        return await self._batch.call(self._script, keys, args)


async def _settle(future: asyncio.Future, call) -> None:
    try:
        result = await call
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        _set(future, exception=exc)
    else:
        _set(future, result=result)


def _set(future: asyncio.Future, *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled (its deadline passed)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _packed(commands: list[tuple]) -> bytes:
    """``commands`` in RESP, encoded as redis-py encodes arguments (UTF-8 text,
    integers and floats as their digits); redis-py's own packing took a
    third of a script call's CPU."""
    parts = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        for arg in args:
            if isinstance(arg, str):
                data = arg.encode("utf-8")
            elif isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, int) and not isinstance(arg, bool):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode("ascii")
            else:  # as redis-py refuses them: None, bool and the rest
                raise DataError(f"Invalid input of type: {type(arg).__name__!r}. Convert to a bytes, string, int or float first.")
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
