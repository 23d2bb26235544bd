"""Opt-outs of the last minutes, in Redis, for broadcasts already under way.

A sending worker reads the opt-outs of a batch's recipients from MongoDB once,
with the batch, and may hold the batch for seconds before a recipient's turn:
an opt-out made meanwhile (退订 服务公告 in chat) was not seen, and the notice
still went out. Each opt-out is also noted here (``wb:optouts:recent``, a
sorted set of ``openid:category`` by time); the worker asks for those noted
since it read the batch before each window it sends.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from storage.redis_store import key

#: How long an opt-out is kept here: longer than any batch is held.
KEEP_SECONDS = 15 * 60


class RecentOptOuts:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._key = key("optouts", "recent")

    async def noted(self, openid: str, category: str, out: bool) -> None:
        """Note an opt-out (``out``), or forget one undone by an opt-in."""
        member = f"{openid}:{category}"
        if not out:
            await self._redis.zrem(self._key, member)
            return
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._key, {member: now})
            pipe.zremrangebyscore(self._key, "-inf", now - KEEP_SECONDS)
            pipe.expire(self._key, KEEP_SECONDS)
            await pipe.execute()

    async def since(self, at: float) -> dict[str, set[str]]:
        """``openid -> categories`` opted out of since ``at`` (seconds since the epoch)."""
        members = await self._redis.zrangebyscore(self._key, at, "+inf")
        found: dict[str, set[str]] = {}
        for member in members:
            openid, _, category = (member.decode() if isinstance(member, bytes) else member).rpartition(":")
            found.setdefault(openid, set()).add(category)
        return found
