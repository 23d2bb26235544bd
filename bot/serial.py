"""One change at a time where a rule reads, checks, then writes.

"At least one enabled owner", "versions in order of taking effect", "one
consent action of a person at a time": each check is only true while nobody
else writes in between, across processes. :func:`one_at_a_time` holds a
Redis lock (:meth:`storage.locks.UserLocks.exclusive`) for the check and the
write; when it cannot be had the caller is told to try again, never let
through unchecked.
"""

from __future__ import annotations

import contextlib

from bot.errors import BotError
from storage.locks import LockBusy, UserLocks

BUSY = "另一项操作正在进行，请稍后重试。"


class Busy(BotError):
    kind = "conflict"
    code = "busy"


@contextlib.asynccontextmanager
async def one_at_a_time(locks: UserLocks | None, name: str, wait: float | None = None):
    """Run the block holding the lock ``name``; :class:`Busy` if it cannot be
    had within ``wait`` seconds (the locks' default if ``None``).
    ``locks=None`` (no Redis configured, some tests) runs it unguarded."""
    if locks is None:
        yield
        return
    try:
        async with locks.exclusive(name, wait=wait):
            yield
    except LockBusy:
        raise Busy(BUSY) from None
