"""One-time download links for a user's data export, in Redis."""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis_store import key


class ExportLinks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(self, token: str, openid: str, ttl: int) -> None:
        await self._redis.set(key("export", token), openid, ex=ttl)

    async def take(self, token: str) -> str | None:
        """The openid behind ``token``, removing it so it works only once."""
        return await self._redis.getdel(key("export", token))
