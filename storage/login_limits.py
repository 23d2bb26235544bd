"""Failed log-in counters in Redis, per account and per address.

``wb:admin:loginfail:name:<name>`` and ``wb:admin:loginfail:addr:<address>``
count failures; the first failure starts the window (``window`` seconds), so a
lock lifts by itself when the key expires. Shared by every process.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis_store import key

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60


class LoginLimits:
    def __init__(self, redis: aioredis.Redis, limit: int = MAX_FAILURES, window: int = WINDOW_SECONDS) -> None:
        self._redis = redis
        self.limit = limit
        self.window = window

    def _keys(self, name: str, address: str) -> tuple[str, str]:
        return key("admin", "loginfail", "name", name.casefold()), key("admin", "loginfail", "addr", address)

    async def locked_for(self, name: str, address: str) -> int:
        """Seconds until log-in is allowed again for this account or address; 0 if allowed."""
        wait = 0
        for k in self._keys(name, address):
            count = await self._redis.get(k)
            if count is not None and int(count) >= self.limit:
                wait = max(wait, int(await self._redis.ttl(k)), 1)
        return wait

    async def failed(self, name: str, address: str) -> None:
        for k in self._keys(name, address):
            # SET NX EX creates the counter with its expiry in one step (a
            # crash between INCR and EXPIRE would lock forever); INCR keeps the TTL.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(k, 0, ex=self.window, nx=True)
                pipe.incr(k)
                await pipe.execute()

    async def succeeded(self, name: str, address: str) -> None:
        """A right password clears the account's counter (not the address's:
        one good account must not whitewash guessing at others)."""
        await self._redis.delete(self._keys(name, address)[0])

    async def clear_account(self, name: str) -> None:
        """Forget the account's failures (a new password was set: the guessing was at the old one)."""
        await self._redis.delete(self._keys(name, "")[0])

    async def clear_all(self) -> None:
        """Forget every failure (the demo, whose password changes at every start)."""
        keys = [k async for k in self._redis.scan_iter(match=key("admin", "loginfail", "*"), count=500)]
        if keys:
            await self._redis.delete(*keys)
