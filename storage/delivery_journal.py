"""What workers are doing with each recipient right now, in Redis: claims and the journal.

A delivery record in MongoDB changes once while it is sent: from ``pending``
to its outcome, written a batch at a time (``Deliveries.finish_many``). On
nx-27017 every write costs about 0.3 ms per record of the server's time
(``bench/store_writes.py``), so everything in between lives in Redis, per
notice:

- the claims (``wb:claims:<notice>``, openid -> ``<token>:<ms>``): a
  worker claims a batch's recipients before it looks at them, so no two
  workers send the same one; a live worker refreshes its claims every
  second, and a claim not refreshed for ``stale_ms`` belongs to a dead
  worker and is taken over (:meth:`DeliveryJournal.claim`);
- the journal (``wb:journal:<notice>``, openid -> ``attempt`` or the outcome
  as JSON): a worker marks a recipient ``attempt`` just before sending, if
  its claim is still the worker's (one that stalled past the stale time may
  have lost it), and replaces the mark with the outcome just after. Whoever takes over a dead
  worker's claim reads it: an outcome is recorded as it was, an ``attempt``
  without outcome was in flight (recorded as interrupted, never sent again),
  no mark means never tried (sent now).

Once MongoDB has an outcome, its claim and journal entry are removed together.

WeChat's report on a template message (``TEMPLATESENDJOBFINISH``) can arrive
before the send's outcome, which carries the message id, reaches MongoDB; it
waits here (``wb:template_report:<msgid>``, a day) until the outcome is
written (:meth:`DeliveryJournal.keep_report`, :meth:`DeliveryJournal.take_reports`).
"""

from __future__ import annotations

import json

import redis.asyncio as aioredis

from storage.redis_store import key

ATTEMPT = "attempt"
#: Outlives any broadcast.
TTL = 7 * 24 * 3600
#: An early template report waits this long for its delivery's outcome.
REPORT_TTL = 24 * 3600
#: What :meth:`DeliveryJournal.claim` says of each recipient.
OURS, BUSY, TAKEN_OVER = 0, 1, 2

# KEYS[1] claims; ARGV: token, now ms, stale-before ms, ttl, openids…
# Returns a code per openid: OURS (free, or ours already), BUSY (a live
# worker's), TAKEN_OVER (a dead worker's, now ours).
_CLAIM = """
local mine = ARGV[1] .. ':' .. ARGV[2]
local codes = {}
for i = 5, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  local code = 0
  if held then
    local sep = string.find(held, ':', 1, true)
    if string.sub(held, 1, sep - 1) ~= ARGV[1] then
      if tonumber(string.sub(held, sep + 1)) >= tonumber(ARGV[3]) then code = 1 else code = 2 end
    end
  end
  if code ~= 1 then redis.call('HSET', KEYS[1], ARGV[i], mine) end
  codes[#codes + 1] = code
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return codes
"""

# KEYS[1] claims; ARGV: token, new value ('' = release), openids…
_RENEW = """
for i = 3, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
    if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[2]) end
  end
end
return 1
"""


# KEYS[1] claims, KEYS[2] journal; ARGV: token, ttl ('' to mark nothing), openids…
# The recipients whose claim is still the token's, each marked ``attempt``
# given a ttl: a worker that stalled (frozen, starved) past the stale time may
# have lost some to another worker, which sends those itself.
_OURS = """
local prefix = ARGV[1] .. ':'
local ours = {}
for i = 3, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and string.sub(held, 1, #prefix) == prefix then
    if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[i], 'attempt') end
    ours[#ours + 1] = ARGV[i]
  end
end
if ARGV[2] ~= '' and #ours > 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return ours
"""

# KEYS[1] claims, KEYS[2] journal; ARGV: token, openids… Drops the claim and
# the journal entry of each recipient whose claim is the token's (a worker that
# stalled must not drop what another worker now holds: its attempt mark).
_FORGET = """
local prefix = ARGV[1] .. ':'
for i = 2, #ARGV do
  local held = redis.call('HGET', KEYS[1], ARGV[i])
  if held and string.sub(held, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
  end
end
return 1
"""


def journal_key(notice_id: str) -> str:
    return key("journal", notice_id)


def claims_key(notice_id: str) -> str:
    return key("claims", notice_id)


class DeliveryJournal:
    """Claims and journal of every notice (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._ours = redis.register_script(_OURS)
        self._forget = redis.register_script(_FORGET)

    async def claim(self, notice_id: str, openids: list[str], token: str, now_ms: int, stale_ms: int) -> dict[str, int]:
        """Claim ``openids`` under ``token``: ``openid ->`` :data:`OURS`,
        :data:`BUSY` (claimed by someone who refreshed it at or after
        ``stale_ms``) or :data:`TAKEN_OVER` (an older claim, now ours)."""
        if not openids:
            return {}
        codes = await self._claim(keys=[claims_key(notice_id)], args=[token, now_ms, stale_ms, TTL, *openids])
        return {openid: int(code) for openid, code in zip(openids, codes)}

    async def refresh(self, notice_id: str, openids: list[str], token: str, now_ms: int) -> None:
        """Keep the claims ``token`` still holds fresh (its worker is alive)."""
        if openids:
            await self._renew(keys=[claims_key(notice_id)], args=[token, f"{token}:{now_ms}", *openids])

    async def release(self, notice_id: str, openids: list[str], token: str) -> None:
        """Give up the claims ``token`` holds on recipients it did not send."""
        if openids:
            await self._renew(keys=[claims_key(notice_id)], args=[token, "", *openids])

    async def claimed_openids(self, notice_id: str) -> list[str]:
        """The recipients of the notice some worker (live or dead) has claimed."""
        return await self._redis.hkeys(claims_key(notice_id))

    async def claimed(self, notice_id: str) -> int:
        """How many recipients of the notice are claimed right now."""
        return int(await self._redis.hlen(claims_key(notice_id)))

    async def attempt(self, notice_id: str, openids: list[str], token: str) -> list[str]:
        """Mark those of ``openids`` whose claim ``token`` still holds as about
        to be sent, and return them (in order): only those may be sent."""
        return await self._held_by(notice_id, openids, token, TTL)

    async def held(self, notice_id: str, openids: list[str], token: str) -> list[str]:
        """Those of ``openids`` whose claim ``token`` still holds (in order)."""
        return await self._held_by(notice_id, openids, token, "")

    async def _held_by(self, notice_id: str, openids: list[str], token: str, mark_ttl: int | str) -> list[str]:
        if not openids:
            return []
        ours = set(await self._ours(keys=[claims_key(notice_id), journal_key(notice_id)], args=[token, mark_ttl, *openids]))
        return [o for o in openids if o in ours]

    async def record(self, notice_id: str, outcomes: dict[str, dict]) -> None:
        """The outcome of each send (``openid -> fields``)."""
        if not outcomes:
            return
        await self._redis.hset(
            journal_key(notice_id), mapping={o: json.dumps(f, ensure_ascii=False) for o, f in outcomes.items()}
        )

    async def read(self, notice_id: str, openids: list[str]) -> dict[str, dict | str]:
        """``openid -> outcome fields`` or ``ATTEMPT``; recipients without a mark are absent."""
        if not openids:
            return {}
        values = await self._redis.hmget(journal_key(notice_id), openids)
        found: dict[str, dict | str] = {}
        for openid, value in zip(openids, values):
            if value is not None:
                found[openid] = ATTEMPT if value == ATTEMPT else json.loads(value)
        return found

    async def forget(self, notice_id: str, openids: list[str], token: str) -> None:
        """Drop claims and journal entries of recipients whose outcome MongoDB
        has, of those whose claim is still the token's."""
        if openids:
            await self._forget(keys=[claims_key(notice_id), journal_key(notice_id)], args=[token, *openids])

    async def keep_report(self, msgid: int, status: str) -> None:
        """Hold WeChat's report on template message ``msgid`` until its outcome is written."""
        await self._redis.set(key("template_report", str(msgid)), status, ex=REPORT_TTL)

    async def take_reports(self, msgids: list[int]) -> dict[int, str]:
        """The reports held for ``msgids`` (``msgid -> status``), removed as they are taken."""
        if not msgids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for msgid in msgids:
                pipe.getdel(key("template_report", str(msgid)))
            values = await pipe.execute()
        return {m: v for m, v in zip(msgids, values) if v is not None}

