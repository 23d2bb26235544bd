"""Writes the webhook's hot path defers: buffered, then flushed a moment later.

The question log and last interactions are written a second's worth at a
time (:mod:`storage.qa_log`, :mod:`storage.followers`); :class:`FlushSoon`
is the timer both use.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Awaitable, Callable


class FlushSoon:
    """Runs ``flush`` ``delay`` seconds after :meth:`schedule` is first called
    since the last run; calls in between join that run."""

    def __init__(self, flush: Callable[[], Awaitable[None]], delay: float) -> None:
        self._flush = flush
        self._delay = delay
        self._task: asyncio.Task | None = None
        self._closed = False

    def schedule(self) -> None:
        """Call from the event loop; nothing once :meth:`close` was called."""
        if self._closed:
            return
        if self._task is None or self._task.done():
            # A fresh context: not bound by the time budget of the message that asked.
            self._task = asyncio.create_task(self._later(), context=contextvars.Context())

    async def _later(self) -> None:
        await asyncio.sleep(self._delay)
        await self._flush()

    async def close(self) -> None:
        """Run no more: a run still waiting is dropped (the owner flushes once
        itself before closing its client; a run after that would use a closed one)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
