"""A send rate shared by every worker process (a reservation schedule in Redis)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from storage.redis_store import key

#: Reserves ARGV[1] messages at ARGV[2] ms each (GCRA: KEYS[1] holds the
#: "theoretical arrival time", when the schedule is next free, in ms of Redis'
#: own clock, so hosts' clocks do not matter). The reservation starts when the
#: schedule is free, at the earliest now; a start less than ARGV[3] ms ahead
#: (the burst allowance) goes at once. Returns the wait in microseconds.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local after = tat + tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
local wait = tat - now - tonumber(ARGV[3])
if wait < 0 then return 0 end
return math.floor(wait * 1000)
"""


class SharedRateLimit:
    """``await limit.acquire(n)`` before sending ``n`` messages; at most ``rate`` per second overall.

    Each call reserves its place in one schedule shared by every process, in
    the order the calls reach Redis, and sleeps until then: a caller cannot be
    passed over by others that keep asking (the fixed one-second windows this
    replaced let one task wait seconds while another sent). Up to a tenth of a
    second of messages may go at once (a second's worth below 10 a second).
    """

    def __init__(self, redis: aioredis.Redis, rate: float, name: str = "notices") -> None:
        self._redis = redis
        self.rate = rate
        self._name = name
        self._interval_ms = 1000.0 / rate
        self._burst_ms = 100.0 if rate >= 10 else 1000.0
        self._reserve = redis.register_script(_RESERVE)

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` more messages may go."""
        if n <= 0:
            return
        wait_us = int(await self._reserve(
            keys=[key("rate", self._name)], args=[n, f"{self._interval_ms:.6f}", f"{self._burst_ms:.3f}"]
        ))
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1_000_000)
