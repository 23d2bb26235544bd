"""Lua script calls made in the same event-loop turn, sent as one pipeline.

Under load many messages open and finish at once (:mod:`storage.inbound_gate`).
Each redis-py call pays for a pool checkout, its retry wrapper and a write of
its own, about 115 µs of CPU under load against 41 µs a call in a pipeline of
eight (``bench/RESULTS.md``); the webhook's CPU is what bounds its throughput.
A call here queues and is sent with every other call queued before the loop
turns; alone, it goes out as a plain script call. Results and errors reach
each caller as if it had called the script itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


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
        if len(queue) == 1:
            script, keys, args, future = queue[0]
            await _settle(future, script(keys=keys, args=args))
            return
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in queue:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
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
                _set(future, exception=result)
            else:
                _set(future, result=result)


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
