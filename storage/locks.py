"""One message of a user at a time, across processes (a Redis lock per user)."""

from __future__ import annotations

import contextlib
import logging
from typing import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import LockError

from storage.redis_store import RedisUnavailable, key

log = logging.getLogger(__name__)


class UserLocks:
    """``async with locks.hold(openid):`` serialises a user's messages.

    A lock not released (a crashed process) expires after ``ttl`` seconds.
    If it cannot be had within ``wait`` seconds, or Redis is down, the message
    is handled anyway: answering beats silence.
    """

    def __init__(self, redis: aioredis.Redis, ttl: float = 10.0, wait: float = 4.0) -> None:
        self._redis = redis
        self._ttl = ttl
        self._wait = wait

    @contextlib.asynccontextmanager
    async def hold(self, openid: str) -> AsyncIterator[bool]:
        lock = self._redis.lock(key("lock", openid), timeout=self._ttl, blocking_timeout=self._wait)
        try:
            acquired = await lock.acquire()
        except RedisUnavailable:
            acquired = False
        if not acquired:
            log.warning("handling a message of %s without its lock", openid)
        try:
            yield acquired
        finally:
            if acquired:
                with contextlib.suppress(LockError, *RedisUnavailable):
                    await lock.release()
