"""The mini-program API's login sessions and request counters, in Redis.

A session is kept under the SHA-256 of its token (``wb:api:session:<hash>``),
so a copy of Redis does not hand out working tokens. It expires on its own;
nothing else ever has to clean up.
"""

from __future__ import annotations

import hashlib
import json

import redis.asyncio as aioredis

from storage.redis_store import key


def _session_key(token: str) -> str:
    return key("api", "session", hashlib.sha256(token.encode("utf-8")).hexdigest())


class ApiSessions:
    """``wb:api:session:<sha256(token)>`` -> the session as JSON, with a TTL."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(self, token: str, session: dict, ttl: int) -> None:
        await self._redis.set(_session_key(token), json.dumps(session, ensure_ascii=False), ex=ttl)

    async def get(self, token: str) -> dict | None:
        raw = await self._redis.get(_session_key(token))
        return None if raw is None else json.loads(raw)

    async def delete(self, token: str) -> bool:
        return bool(await self._redis.delete(_session_key(token)))


class RequestCounters:
    """Fixed-window counters: ``wb:api:rate:<who>:<window>``, shared by all processes."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def hit(self, who: str, window: int, seconds: int) -> int:
        """Count one request of ``who`` in window number ``window``; the count so far."""
        name = key("api", "rate", who, str(window))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, seconds * 2)
            count, _ = await pipe.execute()
        return int(count)
