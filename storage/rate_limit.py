"""A send rate shared by every worker process (a reservation schedule in Redis)."""

from __future__ import annotations

import asyncio
import math

import redis.asyncio as aioredis

from storage.redis_store import key

#: Reserves ARGV[1] messages. Two rules, both in ms of Redis' own clock (so
#: hosts' clocks do not matter), and the later start wins:
#:
#: * pacing (GCRA): KEYS[1] holds the "theoretical arrival time", when the
#:   schedule is next free, at ARGV[2] ms a message; a start less than ARGV[3]
#:   ms ahead of it (the burst allowance) goes at once;
#: * at most ARGV[4] messages in any ARGV[5] ms: KEYS[2] lists the
#:   reservations of the last ARGV[5] ms (score: start, member "seq:n"; KEYS[3]
#:   numbers them, KEYS[4] sums them, so a call reads only the entries that
#:   leave the window, not all of them: 10,000 a second at 100,000 messages).
#:   Pacing alone lets a burst follow a full second (a sender that fell
#:   behind catches up), which a per-second limit refuses.
#:
#: Starts never go backwards, so a caller is not passed over by later ones.
#: Returns the wait in microseconds.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n, interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, span = tonumber(ARGV[4]), tonumber(ARGV[5])
-- The slowest rate a caller reserved with in the last minute paces everyone
-- (KEYS[5]: its interval): a process given a higher NOTICE_RATE does not push
-- the shared schedule past another's.
local floor = tonumber(redis.call('GET', KEYS[5]) or '0')
if interval >= floor then
  redis.call('SET', KEYS[5], ARGV[2], 'PX', 60000)
else
  interval = floor
  limit = math.max(1, math.ceil(1000 / floor - 1e-9))
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = math.max(now, tat - burst)
local function count(member) return tonumber(string.match(member, ':(%d+)$')) end
-- Forget what left the window before now. KEYS[4]: the messages KEYS[2]
-- holds; summed afresh if one of the two is gone without the other (evicted).
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - span)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - span)
local stored, total = redis.call('GET', KEYS[4]), 0
if stored and redis.call('ZCARD', KEYS[2]) > 0 then
  total = tonumber(stored)
  for _, member in ipairs(gone) do total = total - count(member) end
end
if total < 0 or (not stored) then
  total = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do total = total + count(member) end
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #last > 0 and tonumber(last[2]) > start then start = tonumber(last[2]) end
-- From the oldest, a page at a time: what is out of the window ending at start
-- no longer counts; while the rest and these n are over the limit, start
-- moves to when the oldest leaves. Usually one entry or none is read.
local inside, offset, found = total, 0, false
while not found do
  local rows = redis.call('ZRANGE', KEYS[2], offset, offset + 15, 'WITHSCORES')
  if #rows == 0 then break end
  for i = 1, #rows, 2 do
    local at = tonumber(rows[i + 1])
    if at > start - span and inside + n <= limit then found = true break end
    if at > start - span then start = at + span end
    inside = inside - count(rows[i])
  end
  offset = offset + 16
end
local ttl = math.ceil(start - now + span) + 1000
redis.call('ZADD', KEYS[2], string.format('%.3f', start), redis.call('INCR', KEYS[3]) .. ':' .. n)
redis.call('SET', KEYS[4], total + n, 'PX', ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
local after = math.max(tat, start) + n * interval
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
return math.floor((start - now) * 1000)
"""

#: The per-second rule counts over this many ms, a little over a second: a
#: message reaches WeChat some milliseconds after its start, not always the
#: same number, and two a second apart here must not land inside one second there.
SPAN_MS = 1030.0


class SharedRateLimit:
    """``await limit.acquire(n)`` before sending ``n`` messages; at most ``rate`` per second overall.

    Each call reserves its place in one schedule shared by every process, in
    the order the calls reach Redis, and sleeps until then: a caller cannot be
    passed over by others that keep asking (the fixed one-second windows this
    replaced let one task wait seconds while another sent). Messages are
    paced evenly, up to a tenth of a second of them at once (a second's worth
    below 10 a second), and no second, counted from any moment, holds more
    than ``rate`` of them (rounded up to a whole message): WeChat refuses what
    is over (45009), and senders that all back off together lose far more
    than the few that went early. A reservation of more messages than a
    second holds goes at once, in a second of its own: callers reserve a
    message at a time where that matters (a long notice's pieces). Callers
    given different rates (processes with different ``NOTICE_RATE``) all go at
    the lowest one that reserved within the last minute.
    """

    def __init__(self, redis: aioredis.Redis, rate: float, name: str = "notices") -> None:
        self._redis = redis
        self.rate = rate
        self._name = name
        self._interval_ms = 1000.0 / rate
        self._burst_ms = 100.0 if rate >= 10 else 1000.0
        # Whole messages: at 2.5 a second, some seconds hold 3 (pacing keeps the average).
        self._per_second = max(1, math.ceil(rate))
        self._reserve = redis.register_script(_RESERVE)

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` more messages may go."""
        if n <= 0:
            return
        wait_us = int(await self._reserve(
            keys=[key("rate", self._name), key("rate", self._name, "sent"), key("rate", self._name, "seq"),
                  key("rate", self._name, "sent", "total"), key("rate", self._name, "slowest")],
            args=[n, f"{self._interval_ms:.6f}", f"{self._burst_ms:.3f}", self._per_second, f"{SPAN_MS:.3f}"],
        ))
        if wait_us > 0:
            await asyncio.sleep(wait_us / 1_000_000)
