"""Broadcast work shared by worker processes: a Redis Stream with a consumer group.

Each entry is a batch of recipients of one notice. Workers read with
XREADGROUP, acknowledge with XACK once every recipient of the batch is
finished, and take over a dead worker's entries with XAUTOCLAIM after
:data:`RECLAIM_IDLE_MS` (seconds, not minutes). A live worker busy with a
batch refreshes its claim (:meth:`WorkQueue.touch`) so nobody steals it.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from storage.redis_store import key

STREAM = key("notices", "work")
#: Small notices' entries, read before any of :data:`STREAM`'s.
URGENT = key("notices", "urgent")
GROUP = "senders"
RECLAIM_IDLE_MS = 5000
#: A consumer holding nothing and silent this long belongs to a worker gone
#: (killed): it is removed, else each start of a worker would add consumers for good.
IDLE_CONSUMER_MS = 10 * 60 * 1000
#: Running workers, each with the time (Redis' clock, ms) it last said so.
WORKERS = key("notices", "workers")
#: A worker says it is running every second; one silent this long is gone
#: (killed, or its host lost): a queued job then waits for nobody.
WORKER_SILENT_MS = 10_000

# KEYS: WORKERS; ARGV: a worker's name ('' to only count), silent ms. Drops the
# silent ones, then counts those left.
_PRESENCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return redis.call('ZCARD', KEYS[1])
"""

# KEYS: the streams; ARGV: group, idle ms, then consumer names removed whatever
# their idle time. Only consumers with no pending entry are removed (removing
# one with entries would drop them from the group's pending list: lost work).
_RETIRE = """
local named = {}
for i = 3, #ARGV do named[ARGV[i]] = true end
local removed = 0
for _, stream in ipairs(KEYS) do
  for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', stream, ARGV[1])) do
    local info = {}
    for j = 1, #consumer, 2 do info[consumer[j]] = consumer[j + 1] end
    if tonumber(info['pending']) == 0 and (named[info['name']] or tonumber(info['idle']) >= tonumber(ARGV[2])) then
      redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], info['name'])
      removed = removed + 1
    end
  end
end
return removed
"""


class WorkQueue:
    """Two streams: ``urgent`` entries are read before the others, so a notice
    to a few people (a merchant's suspension, a security notice to one user)
    does not wait behind a broadcast to everyone. An entry is known by a
    reference naming its stream (``"u/<id>"`` or ``"n/<id>"``)."""

    def __init__(self, redis: aioredis.Redis, stream: str = STREAM, urgent: str = URGENT) -> None:
        self._redis = redis
        self.stream = stream
        self._streams = {"u": urgent, "n": stream}
        self._retire = redis.register_script(_RETIRE)
        self._presence = redis.register_script(_PRESENCE)

    async def ensure_group(self) -> None:
        """Make the consumer group (and streams) if missing: at start, and
        again after Redis lost them (see :func:`queue_lost`)."""
        for stream in self._streams.values():
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def add(self, notice_id: str, openids: list[str], urgent: bool = False) -> str:
        tag = "u" if urgent else "n"
        entry_id = await self._redis.xadd(self._streams[tag], {"notice": notice_id, "openids": json.dumps(openids)})
        return f"{tag}/{entry_id}"

    async def read(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, str, list[str]]]:
        """New entries for ``consumer``: ``(entry reference, notice id, openids)``,
        urgent ones first: those waiting now, else the first of either stream
        within ``block_ms`` (both at once, rarely: the caller works them in order)."""
        urgent, normal = self._streams["u"], self._streams["n"]
        response = await self._redis.xreadgroup(GROUP, consumer, {urgent: ">"}, count=count)
        if not any(entries for _stream, entries in response or []):
            response = await self._redis.xreadgroup(GROUP, consumer, {urgent: ">", normal: ">"}, count=count,
                                                    block=block_ms)
        tags = {stream: tag for tag, stream in self._streams.items()}
        return [
            _entry(tags[_text(stream)], entry_id, fields)
            for stream, entries in response or [] for entry_id, fields in entries
        ]

    async def reclaim(self, consumer: str, count: int) -> list[tuple[str, str, list[str]]]:
        """Entries idle longer than :data:`RECLAIM_IDLE_MS` (their worker died), now ``consumer``'s."""
        found = []
        for tag, stream in self._streams.items():
            result = await self._redis.xautoclaim(stream, GROUP, consumer, RECLAIM_IDLE_MS, "0-0", count=count)
            entries = result[1] if len(result) > 1 else []
            found += [_entry(tag, entry_id, fields) for entry_id, fields in entries if fields]
        return found

    async def retire(self, names: list[str] = (), idle_ms: int = IDLE_CONSUMER_MS) -> int:
        """Remove consumers holding no entry: those in ``names`` (a stopping
        worker's own) and any silent for ``idle_ms``; how many were removed."""
        try:
            return int(await self._retire(keys=list(self._streams.values()), args=[GROUP, idle_ms, *names]))
        except ResponseError as exc:
            if "no such key" not in str(exc).lower() and "nogroup" not in str(exc).lower():
                raise
            return 0  # the streams or the group are gone (Redis lost its data): nobody to remove

    async def touch(self, consumer: str, ref: str) -> None:
        """Reset the idle time of an entry this consumer is still working on."""
        stream, entry_id = self._where(ref)
        await self._redis.xclaim(stream, GROUP, consumer, 0, [entry_id], justid=True)

    async def ack(self, ref: str) -> None:
        stream, entry_id = self._where(ref)
        await self._redis.xack(stream, GROUP, entry_id)
        await self._redis.xdel(stream, entry_id)

    async def backlog(self, of: str | None = None) -> int:
        """Entries not yet acknowledged (unread or being worked on); with ``of``
        (an entry reference, or a stream's tag ``"u"`` or ``"n"``), only in that stream."""
        streams = [self._where(of)[0]] if of else list(self._streams.values())
        return sum([int(await self._redis.xlen(stream)) for stream in streams])

    async def running(self, worker: str | None = None) -> int:
        """How many workers said within :data:`WORKER_SILENT_MS` that they run;
        with ``worker``, that one says so first (each running worker does every second)."""
        return int(await self._presence(keys=[WORKERS], args=[worker or "", WORKER_SILENT_MS]))

    async def stopped(self, worker: str) -> None:
        """``worker`` no longer runs."""
        await self._redis.zrem(WORKERS, worker)

    def _where(self, ref: str) -> tuple[str, str]:
        tag, _, entry_id = ref.partition("/")
        return self._streams[tag], entry_id


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(tag: str, entry_id: str, fields: dict) -> tuple[str, str, list[str]]:
    return f"{tag}/{entry_id}", fields.get("notice", ""), json.loads(fields.get("openids") or "[]")


def queue_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the streams' consumer group is gone (Redis wiped
    or restarted without its files): :meth:`WorkQueue.ensure_group` mends it."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")
