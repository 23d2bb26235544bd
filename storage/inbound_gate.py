"""The Redis work at the start and end of each inbound message, one round trip each.

Every message needs its delivery claimed (retry dedupe, :mod:`storage.reply_cache`),
the user's lock (:mod:`storage.locks`), the user's dialog state
(:mod:`storage.dialog_state`), the time the user was last seen
(:mod:`storage.activity`) and, every few minutes, a due write of it to MongoDB; afterwards its reply stored and the lock released. Done one command at
a time that is six round trips per message, the largest cost of the webhook
(``bench/RESULTS.md``); these two scripts do the same on the same keys in one
round trip each. The modules named keep the key names and formats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import redis.asyncio as aioredis

from storage.activity import SEEN_TTL, seen_key
from storage.mongo import epoch_ms
from storage.dialog_state import DialogState, decode, dialog_key, once_key
from storage.locks import LOCK_TTL, lock_key, new_token
from storage.reply_cache import CLAIM_TTL, PENDING, REPLY_TTL, Claim, parse_claim, reply_key
from storage.redis_store import key
from storage.script_batch import ScriptBatch

#: What a URL check's nonce is remembered with: no body's digest.
URL_CHECK = "url-check"

#: Seconds a push's nonce is remembered: a timestamp is accepted within 5
#: minutes either side of now (wechat.protocol.MAX_SKEW), so 10 cover it.
PUSH_TTL = 600

# Lua returns stop at the first nil, so "nothing" travels as "".
# A signed push seen before with another body is a replay: refused before
# anything is claimed (KEYS[6], ARGV[8] the body's digest, '' for none).
_OPEN = """
if ARGV[8] ~= '' then
  local seen = redis.call('GET', KEYS[6])
  if not seen then
    redis.call('SET', KEYS[6], ARGV[8], 'EX', ARGV[9])
  elseif seen ~= ARGV[8] then
    return {2}
  end
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {0, redis.call('GET', KEYS[1]) or ''}
end
local locked = redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4])
local dialog = ''
if locked then dialog = redis.call('GET', KEYS[3]) or '' end
local touch = false
if ARGV[6] ~= '' then
  touch = redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[5])
  redis.call('SET', KEYS[5], ARGV[6], 'EX', ARGV[7])
end
return {1, locked and 1 or 0, dialog, touch and 1 or 0}
"""

_FINISH = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""


@dataclasses.dataclass
class Opening:
    """What :meth:`InboundGate.open` found.

    ``claim``: ``new``, ``pending`` or ``done`` (see :class:`Claim`). For a new claim: ``lock_token`` is
    the user's lock when it was free (``None``: someone holds it, wait with
    :class:`UserLocks`); ``dialog`` and ``dialog_known`` the user's state, read
    under the lock (unknown without it); ``touch_due`` whether the last
    interaction should be written now. ``redis_down``: the gate could not
    reach Redis (nothing claimed, nothing locked). ``replayed``: the push's
    signed nonce came before with another body (nothing claimed).
    """

    claim: Claim
    lock_token: str | None = None
    dialog: DialogState | None = None
    dialog_known: bool = False
    touch_due: bool = False
    redis_down: bool = False
    replayed: bool = False


class InboundGate:
    """The two scripts (see module docstring)."""

    def __init__(self, redis: aioredis.Redis, touch_every: int) -> None:
        # Batched: many messages open and finish in the same loop turn under load.
        self._redis = redis
        batch = ScriptBatch(redis)
        self._open = batch.script(_OPEN)
        self._finish = batch.script(_FINISH)
        self._touch_every = touch_every

    async def open(
        self, delivery: str, openid: str, at: dt.datetime, push_nonce: str = "", push_digest: str = "",
        interacted: bool = True, token: str | None = None,
    ) -> Opening:
        """Claim ``delivery`` and, if it is new, take ``openid``'s lock, read its
        state and, when the push is the user's own doing (``interacted``), mark
        the user as seen at ``at`` (:mod:`storage.activity`).
        ``push_nonce`` and ``push_digest``: see :class:`bot.inbound.Inbound`.
        ``token``: the lock's token (made here if not given; a caller whose
        call timed out can then release a lock the script took after all)."""
        token = token or new_token()
        while True:
            result = await self._open(
                keys=[reply_key(delivery), lock_key(openid), dialog_key(openid), once_key(openid, "touch"), seen_key(openid),
                      key("push", push_nonce)],
                args=[PENDING, CLAIM_TTL, token, int(LOCK_TTL * 1000), self._touch_every,
                      epoch_ms(at) if interacted else "", SEEN_TTL,
                      push_digest if push_nonce else "", PUSH_TTL],
            )
            if int(result[0]) == 2:
                return Opening(Claim("new"), replayed=True)
            if int(result[0]) == 1:
                break
            claim = parse_claim(result[1] or None)
            if claim is not None:  # else the claim expired just now: try again
                return Opening(claim)
        locked = int(result[1]) == 1
        return Opening(
            claim=Claim("new"),
            lock_token=token if locked else None,
            dialog=decode(result[2]) if locked else None,
            dialog_known=locked,
            touch_due=int(result[3]) == 1,
        )

    async def url_checked(self, push_nonce: str) -> None:
        """Remember ``push_nonce`` as a URL check's: a push signed by the same
        query is then refused as a replay."""
        await self._redis.set(key("push", push_nonce), URL_CHECK, nx=True, ex=PUSH_TTL)

    async def finish(self, delivery: str, reply: dict, openid: str, lock_token: str | None) -> None:
        """Store the reply of ``delivery`` and release the lock ``lock_token``."""
        await self._finish(
            keys=[reply_key(delivery), lock_key(openid)],
            args=[json.dumps(reply, ensure_ascii=False), REPLY_TTL, lock_token or ""],
        )
