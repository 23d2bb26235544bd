"""A send rate shared by every worker process (fixed one-second windows in Redis)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from storage.redis_store import key


class SharedRateLimit:
    """``await limit.acquire()`` before each message; at most ``rate`` per second overall."""

    def __init__(self, redis: aioredis.Redis, rate: float, name: str = "notices") -> None:
        self._redis = redis
        self.rate = max(1, int(rate))
        self._name = name

    async def acquire(self) -> None:
        while True:
            now = time.time()
            window = int(now)
            k = key("rate", self._name, str(window))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(k)
                pipe.expire(k, 2)
                count, _ = await pipe.execute()
            if count <= self.rate:
                return
            await asyncio.sleep(max(0.001, window + 1 - now))
