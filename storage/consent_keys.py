"""Idempotency keys of the API's consent requests that recorded nothing.

A request that records a choice keeps its key in the ledger (the record's
``message_id``); one that changes nothing (accepting what is accepted) leaves
no record, so its key is kept here, with what it asked: a retry of it then
records nothing either (a withdrawal meanwhile is not undone by it), and
another request under the key is refused. ``wb:api:consent-key:<channel>:<key>``
holds ``action`` and ``version`` for :data:`TTL` seconds.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis_store import key

#: How long a key that recorded nothing is remembered (a client retries within minutes).
TTL = 24 * 3600


class ConsentKeys:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def get(self, channel: str, message_id: str) -> tuple[str, str] | None:
        """``(action, version)`` a request under this key asked, if it recorded nothing."""
        found = await self._redis.get(key("api", "consent-key", channel, message_id))
        if found is None:
            return None
        action, _, version = (found.decode() if isinstance(found, bytes) else found).partition("\t")
        return action, version

    async def remember(self, channel: str, message_id: str, action: str, version: str) -> None:
        await self._redis.set(key("api", "consent-key", channel, message_id), f"{action}\t{version}", ex=TTL, nx=True)
