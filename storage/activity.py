"""When each user last wrote to the account, in Redis, for WeChat's 48-hour window.

Customer-service messages reach only users who wrote within 48 hours. The
inbound gate (:mod:`storage.inbound_gate`) sets ``wb:seen:<openid>`` to the
time of every message in the round trip it makes anyway, so the broadcast
worker knows who is inside the window at once; ``followers.last_interaction_at``
in MongoDB is the durable copy, written in batches and at most every few
minutes per user (:meth:`storage.followers.Followers.touch`).
"""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis

from storage.redis_store import key

#: A mark outlives the window it serves by an hour.
SEEN_TTL = 49 * 3600


def seen_key(openid: str) -> str:
    return key("seen", openid)


class Activity:
    """Reads the marks the inbound gate writes."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def last_seen_many(self, openids: list[str]) -> dict[str, dt.datetime]:
        """``openid -> last message time`` for those with a mark."""
        if not openids:
            return {}
        values = await self._redis.mget([seen_key(o) for o in openids])
        return {
            openid: dt.datetime.fromtimestamp(int(value) / 1000, dt.timezone.utc)
            for openid, value in zip(openids, values)
            if value is not None and str(value).isdigit()
        }
