"""Admin console sessions in Redis.

The cookie holds a random token; Redis holds ``wb:admin:session:<sha256>``
(so a leaked Redis dump holds no usable cookie) with the admin's name, and
``wb:admin:sessions:<name>``, the set of that admin's sessions, so an owner
(or the CLI) can revoke them all at once. A session expires after
``idle`` seconds without a request and ``absolute`` seconds after log-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import time

import redis.asyncio as aioredis

from storage.redis_store import key

IDLE_SECONDS = 2 * 3600
ABSOLUTE_SECONDS = 12 * 3600


@dataclasses.dataclass(frozen=True)
class Session:
    id: str
    name: str
    created: float
    address: str


def _sid(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AdminSessions:
    """Create, look up (sliding the idle expiry) and revoke sessions."""

    def __init__(self, redis: aioredis.Redis, idle: int = IDLE_SECONDS, absolute: int = ABSOLUTE_SECONDS) -> None:
        self._redis = redis
        self.idle = idle
        self.absolute = absolute

    async def create(self, name: str, address: str) -> str:
        """A new session for ``name``; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        sid = _sid(token)
        value = json.dumps({"name": name, "created": time.time(), "address": address})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key("admin", "session", sid), value, ex=self.idle)
            pipe.sadd(key("admin", "sessions", name), sid)
            pipe.expire(key("admin", "sessions", name), self.absolute)
            await pipe.execute()
        return token

    async def get(self, token: str, touch: bool = True) -> Session | None:
        """The live session of ``token``, or None; ``touch``: its idle expiry
        restarts (an admin's action, not a page's own polling)."""
        sid = _sid(token)
        raw = await self._redis.get(key("admin", "session", sid))
        if raw is None:
            return None
        data = json.loads(raw)
        if time.time() - data["created"] > self.absolute:
            await self.revoke(token)
            return None
        if touch:
            await self._redis.expire(key("admin", "session", sid), self.idle)
        return Session(sid, data["name"], data["created"], data.get("address", ""))

    async def revoke(self, token: str) -> None:
        sid = _sid(token)
        raw = await self._redis.get(key("admin", "session", sid))
        await self._redis.delete(key("admin", "session", sid))
        if raw is not None:
            await self._redis.srem(key("admin", "sessions", json.loads(raw)["name"]), sid)

    async def revoke_all(self, name: str) -> int:
        """End every session of ``name``; returns how many were live."""
        sids = await self._redis.smembers(key("admin", "sessions", name))
        live = 0
        if sids:
            live = await self._redis.delete(*[key("admin", "session", sid) for sid in sids])
        await self._redis.delete(key("admin", "sessions", name))
        return int(live)

    async def count(self, name: str) -> int:
        """Live sessions of ``name``."""
        sids = await self._redis.smembers(key("admin", "sessions", name))
        if not sids:
            return 0
        return int(await self._redis.exists(*[key("admin", "session", sid) for sid in sids]))
