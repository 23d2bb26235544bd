"""One-time download links for a user's data export, in Redis.

Kept under the token's SHA-256, like sessions: whoever reads Redis (its
append-only file, a backup) cannot use the links in it.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from storage.redis_store import key


class ExportLinks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(self, token: str, openid: str, ttl: int) -> None:
        await self._redis.set(_key(token), openid, ex=ttl)

    async def take(self, token: str) -> str | None:
        """The openid behind ``token``, removing it so it works only once."""
        return await self._redis.getdel(_key(token))


def _key(token: str) -> str:
    return key("export", hashlib.sha256(token.encode()).hexdigest())
