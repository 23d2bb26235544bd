"""Exactly-once handling of WeChat deliveries, and the same reply for retries.

WeChat re-sends a message up to three times when it gets no answer within
5 seconds. The first delivery claims the message's key; later deliveries find
either the stored reply (and send it again) or the claim still pending (and
wait for the first to finish, within their own deadline).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import redis.asyncio as aioredis

from storage.redis_store import key

PENDING = "pending"
#: A claim whose process died (killed mid-message) is released after this many
#: seconds, so that WeChat's retry about 10 s after the first delivery is handled
#: (with 30 every retry got ``success`` and the message was lost). A live
#: process resolves its claim by the reply deadline (4.5 s: the reply, or
#: ``success`` with the reply to follow), well inside it.
CLAIM_TTL = 8
#: WeChat's retries come within about 15 seconds; keep replies well past that.
REPLY_TTL = 10 * 60


def reply_key(delivery: str) -> str:
    return key("reply", delivery)


def parse_claim(value: str | None) -> "Claim | None":
    """The claim a delivery's stored value stands for (``None``: nothing stored)."""
    if value is None:
        return None
    if value == PENDING:
        return Claim("pending")
    return Claim("done", json.loads(value))


@dataclasses.dataclass(frozen=True)
class Claim:
    """Outcome of claiming a delivery (:meth:`storage.inbound_gate.InboundGate.open`).

    ``status`` is ``"new"`` (this delivery must be handled), ``"done"`` (the
    stored reply is in ``reply``) or ``"pending"`` (another delivery is being
    handled right now).
    """

    status: str
    reply: dict | None = None


class ReplyCache:
    """Waits for the reply of a delivery another worker is handling (claims
    and replies are written by :class:`storage.inbound_gate.InboundGate`)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def wait(self, delivery: str, timeout: float, poll: float = 0.05) -> dict | None:
        """The reply of a delivery another worker is handling, or ``None`` if it
        is not ready within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            value = await self._redis.get(reply_key(delivery))
            if value is not None and value != PENDING:
                return json.loads(value)
            await asyncio.sleep(poll)
        return None
