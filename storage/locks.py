"""One message of a user at a time, across processes (a Redis lock per user).

A lock is the key ``wb:lock:<openid>`` holding a random token, set with NX and
an expiry; only the holder's token deletes it. :mod:`storage.inbound_gate`
takes the same lock in the same script as the delivery claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import redis.asyncio as aioredis

from storage.redis_store import RedisUnavailable, key

log = logging.getLogger(__name__)

#: A lock not released (a crashed process) expires after this many seconds.
LOCK_TTL = 10.0
#: How long a message waits for the user's previous one.
LOCK_WAIT = 4.0
POLL_SECONDS = 0.05

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LockBusy(Exception):
    """:meth:`UserLocks.exclusive` could not take the lock (held too long, or Redis down)."""


def lock_key(openid: str) -> str:
    return key("lock", openid)


def new_token() -> str:
    return secrets.token_hex(16)


class UserLocks:
    """Serialises a user's messages: :meth:`acquire` (when the inbound gate
    could not take the lock at once), then :meth:`release`.

    If the lock cannot be had within ``wait`` seconds, or Redis is down, the
    message is handled anyway: answering beats silence.
    """

    def __init__(self, redis: aioredis.Redis, ttl: float = LOCK_TTL, wait: float = LOCK_WAIT) -> None:
        self.redis = redis
        self._ttl = ttl
        self._wait = wait
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, openid: str, *, strict: bool = False, wait: float | None = None) -> str | None:
        """The token of the user's lock, waiting up to ``wait`` seconds (the
        default given at construction); ``None`` if it could not be had (held
        too long, or Redis down; ``strict``: Redis' error is raised instead)."""
        token = new_token()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._wait if wait is None else wait)
        try:
            while True:
                if await self.redis.set(lock_key(openid), token, nx=True, px=int(self._ttl * 1000)):
                    return token
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(POLL_SECONDS)
        except RedisUnavailable:
            if strict:
                raise
        log.warning("could not take the lock of %s", openid)
        return None

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str, wait: float | None = None):
        """Hold the lock ``name`` (an openid, or a rule's name such as
        ``admin:owners``) for a check and the write that depends on it;
        raises :class:`LockBusy` rather than go ahead without it (Redis' own
        error when it is down, so that callers say so)."""
        token = await self.acquire(name, strict=True, wait=wait)
        if token is None:
            raise LockBusy(name)
        try:
            yield
        finally:
            await self.release(name, token)

    async def release(self, openid: str, token: str | None) -> None:
        """Release a lock this process holds (a no-op for ``None``)."""
        if token is None:
            return
        with contextlib.suppress(*RedisUnavailable):
            await self._release(keys=[lock_key(openid)], args=[token])
