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
GROUP = "senders"
RECLAIM_IDLE_MS = 5000


class WorkQueue:
    def __init__(self, redis: aioredis.Redis, stream: str = STREAM) -> None:
        self._redis = redis
        self.stream = stream

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def add(self, notice_id: str, openids: list[str]) -> str:
        return await self._redis.xadd(self.stream, {"notice": notice_id, "openids": json.dumps(openids)})

    async def read(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, str, list[str]]]:
        """New entries for ``consumer``: ``(entry id, notice id, openids)``."""
        response = await self._redis.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return [_entry(entry_id, fields) for _stream, entries in response or [] for entry_id, fields in entries]

    async def reclaim(self, consumer: str, count: int) -> list[tuple[str, str, list[str]]]:
        """Entries idle longer than :data:`RECLAIM_IDLE_MS` (their worker died), now ``consumer``'s."""
        result = await self._redis.xautoclaim(self.stream, GROUP, consumer, RECLAIM_IDLE_MS, "0-0", count=count)
        entries = result[1] if len(result) > 1 else []
        return [_entry(entry_id, fields) for entry_id, fields in entries if fields]

    async def touch(self, consumer: str, entry_id: str) -> None:
        """Reset the idle time of an entry this consumer is still working on."""
        await self._redis.xclaim(self.stream, GROUP, consumer, 0, [entry_id], justid=True)

    async def ack(self, entry_id: str) -> None:
        await self._redis.xack(self.stream, GROUP, entry_id)
        await self._redis.xdel(self.stream, entry_id)

    async def backlog(self) -> int:
        """Entries not yet acknowledged (unread or being worked on)."""
        return int(await self._redis.xlen(self.stream))


def _entry(entry_id: str, fields: dict) -> tuple[str, str, list[str]]:
    return entry_id, fields.get("notice", ""), json.loads(fields.get("openids") or "[]")
