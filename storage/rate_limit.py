"""A send rate shared by every worker process (fixed one-second windows in Redis)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from storage.redis_store import key


class SharedRateLimit:
    """``await limit.acquire()`` before each message; at most ``rate`` per second overall.

    Windows are a tenth of a second (a second below 10 messages per second),
    so bursts stay close to the rate.
    """

    def __init__(self, redis: aioredis.Redis, rate: float, name: str = "notices") -> None:
        self._redis = redis
        self.rate = rate
        self._name = name
        self._window = 0.1 if rate >= 10 else 1.0
        self._budget = max(1, round(rate * self._window))

    async def acquire(self) -> None:
        while True:
            now = time.time()
            window = int(now / self._window)
            k = key("rate", self._name, str(window))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(k)
                pipe.expire(k, 2)
                count, _ = await pipe.execute()
            if count <= self._budget:
                return
            await asyncio.sleep(max(0.001, (window + 1) * self._window - now))
