"""A send rate shared by every worker process (fixed one-second windows in Redis)."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from storage.redis_store import key


#: Takes up to ARGV[1] of the window's budget ARGV[2]; returns how many it took.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local take = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used)
if take <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], take)
redis.call('EXPIRE', KEYS[1], 2)
return take
"""


class SharedRateLimit:
    """``await limit.acquire(n)`` before sending ``n`` messages; at most ``rate`` per second overall.

    Windows are a tenth of a second (a second below 10 messages per second),
    so bursts stay close to the rate.
    """

    def __init__(self, redis: aioredis.Redis, rate: float, name: str = "notices") -> None:
        self._redis = redis
        self.rate = rate
        self._name = name
        self._window = 0.1 if rate >= 10 else 1.0
        self._budget = max(1, round(rate * self._window))
        self._take = redis.register_script(_TAKE)

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` more messages may go (across several windows if the budget is short)."""
        while n > 0:
            now = time.time()
            window = int(now / self._window)
            n -= int(await self._take(keys=[key("rate", self._name, str(window))], args=[n, self._budget]))
            if n > 0:
                await asyncio.sleep(max(0.001, (window + 1) * self._window - now))
