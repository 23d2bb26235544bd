"""What a worker is doing with each recipient right now, in Redis.

Delivery outcomes reach MongoDB in one write per batch (``Deliveries.finish_many``),
not one per recipient: on nx-27017 a write costs a millisecond or more, which
would cap a broadcast at a few hundred messages a second. Between the send and
that write, the journal holds the truth: a worker marks a recipient
``attempt`` just before sending and replaces the mark with the outcome just
after. A worker taking over a dead one's batch reads it: an outcome is
recorded as it was, an ``attempt`` without outcome was in flight (recorded
as interrupted, never sent again), no mark means never tried (sent now).
Entries are removed once MongoDB has the outcome.
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from storage.redis_store import key

ATTEMPT = "attempt"
#: A journal outlives any broadcast.
TTL = 7 * 24 * 3600


def journal_key(notice_id: str) -> str:
    return key("journal", notice_id)


class DeliveryJournal:
    """One Redis hash per notice: openid -> ``attempt`` or the outcome (JSON)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def attempt(self, notice_id: str, openids: list[str]) -> None:
        """Mark ``openids`` as about to be sent."""
        k = journal_key(notice_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(k, mapping={o: ATTEMPT for o in openids})
            pipe.expire(k, TTL)
            await pipe.execute()

    async def record(self, notice_id: str, outcomes: dict[str, dict]) -> None:
        """The outcome of each send (``openid -> fields``)."""
        await self._redis.hset(
            journal_key(notice_id), mapping={o: json.dumps(f, ensure_ascii=False) for o, f in outcomes.items()}
        )

    async def read(self, notice_id: str, openids: list[str]) -> dict[str, dict | str]:
        """``openid -> outcome fields`` or ``ATTEMPT``; recipients without a mark are absent."""
        values = await self._redis.hmget(journal_key(notice_id), openids)
        found: dict[str, dict | str] = {}
        for openid, value in zip(openids, values):
            if value is not None:
                found[openid] = ATTEMPT if value == ATTEMPT else json.loads(value)
        return found

    async def forget(self, notice_id: str, openids: list[str]) -> None:
        if openids:
            await self._redis.hdel(journal_key(notice_id), *openids)
