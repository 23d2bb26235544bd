"""Failed log-in counters in Redis, per account and per address.

``wb:admin:loginfail:name:<name>`` (or ``…:device:<name>:<device>`` from a
browser the admin logged in from before) and ``wb:admin:loginfail:addr:<address>``
count attempts that did not succeed (an attempt is counted before its password
is checked, and taken back when it was right); the first starts the window
(``window`` seconds), so a lock lifts by itself when the key expires. Shared
by every process.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from storage.redis_store import key

MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60


# The counter is created with its expiry (SET NX EX) so a lock always lifts;
# INCR keeps the TTL.
_ATTEMPT = """
local wait = 0
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') >= tonumber(ARGV[1]) then
    wait = math.max(wait, redis.call('TTL', k), 1)
  end
end
if wait > 0 then return wait end
for _, k in ipairs(KEYS) do
  redis.call('SET', k, 0, 'EX', ARGV[2], 'NX')
  redis.call('INCR', k)
end
return 0
"""

_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
return 1
"""


class LoginLimits:
    def __init__(self, redis: aioredis.Redis, limit: int = MAX_FAILURES, window: int = WINDOW_SECONDS) -> None:
        self._redis = redis
        self.limit = limit
        self.window = window
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)

    def _keys(self, name: str, address: str, device: str | None = None) -> list[str]:
        if device:
            # A browser this admin logged in from before: its own counter alone. Not the
            # address's either: behind one office NAT, another account's mistyping (or a
            # stranger guessing) locked every admin out of their own browsers.
            return [key("admin", "loginfail", "device", name.casefold(), device)]
        return [key("admin", "loginfail", "name", name.casefold()), key("admin", "loginfail", "addr", address)]

    async def attempt(self, name: str, address: str, device: str | None = None) -> int:
        """Count a log-in attempt before its password is checked; returns the
        seconds until log-in is allowed again (0: go ahead, counted).

        Counting first, in one script, is what bounds guessing: checking the
        counters and counting failures afterwards let 60 parallel attempts
        all be checked against a limit of 10. ``device``: the admin's own
        browser (a signed cookie from an earlier log-in) is counted apart from
        the account and the address, so strangers guessing at the name, or
        anyone failing from the same address, cannot lock its owner out.
        """
        return int(await self._attempt(keys=self._keys(name, address, device), args=[self.limit, self.window]))

    async def succeeded(self, name: str, address: str, device: str | None = None) -> None:
        """A right password clears the account's (or the device's) counter and
        takes back the address's count of this attempt (not its earlier
        failures: one good account must not whitewash guessing at others)."""
        await self._succeeded(keys=self._keys(name, address, device), args=[])

    async def clear_account(self, name: str) -> None:
        """Forget the account's failures (a new password was set: the guessing was at the
        old one), those counted per browser too (else the admin's own browser stayed locked)."""
        devices = [k async for k in self._redis.scan_iter(match=key("admin", "loginfail", "device", name.casefold(), "*"),
                                                           count=500)]
        await self._redis.delete(self._keys(name, "")[0], *devices)

    async def clear_all(self) -> None:
        """Forget every failure (the demo, whose password changes at every start)."""
        keys = [k async for k in self._redis.scan_iter(match=key("admin", "loginfail", "*"), count=500)]
        if keys:
            await self._redis.delete(*keys)
