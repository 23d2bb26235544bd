"""One-use tokens of forms whose submission must not act twice (a double click,
a browser's retry): ``wb:admin:submit:<token>`` holds ``pending`` while the
first submission works, then its result (a notice id)."""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis_store import key

PENDING = "pending"
#: How long a used token is remembered (a form is not resubmitted hours later).
TTL = 3600


class SubmitTokens:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def begin(self, token: str) -> str | None:
        """Take ``token`` for a submission: ``None`` when this is its first, else
        what the first left (:data:`PENDING`, or its result)."""
        if await self._redis.set(key("admin", "submit", token), PENDING, nx=True, ex=TTL):
            return None
        return await self.result(token) or PENDING

    async def result(self, token: str) -> str | None:
        """What the first submission left (:data:`PENDING` while it works), ``None`` if nothing."""
        found = await self._redis.get(key("admin", "submit", token))
        return found.decode() if isinstance(found, bytes) else found

    async def done(self, token: str, result: str) -> None:
        await self._redis.set(key("admin", "submit", token), result, ex=TTL)

    async def release(self, token: str) -> None:
        """The submission failed: the form may be sent again."""
        await self._redis.delete(key("admin", "submit", token))
