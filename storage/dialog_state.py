"""Dialog state per user in Redis, with an idle expiry (aiogram's FSM storage).

A state is a name (``"registration:phone"``) plus a small JSON-ready dict of
answers so far. Every save renews the expiry, so a dialog lapses only after
:data:`IDLE_TTL` seconds without a message.
"""

from __future__ import annotations

import dataclasses
import json

import redis.asyncio as aioredis

from storage.redis_store import key

#: A dialog forgotten after 30 minutes without a message.
IDLE_TTL = 30 * 60
#: Its answers are kept a week, so a user who comes back is offered to resume.
DRAFT_TTL = 7 * 24 * 3600
#: How long the version a user was asked to accept is remembered: longer than
#: the furthest ahead a version may be published (366 days), so a 同意 sent
#: long after its prompt is still checked against what it was asked for.
PROMPT_TTL = 400 * 24 * 3600


@dataclasses.dataclass(frozen=True)
class DialogState:
    name: str
    data: dict = dataclasses.field(default_factory=dict)


def dialog_key(openid: str) -> str:
    return key("dialog", openid)


def once_key(openid: str, marker: str) -> str:
    return key("once", openid, marker)


def decode(raw: str | None) -> DialogState | None:
    """The state stored as ``raw``; ``None`` for none or a value this version cannot read."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        return DialogState(name=str(doc["name"]), data=dict(doc.get("data") or {}))
    except (ValueError, KeyError, TypeError):
        return None


class DialogStates:
    """Load, save and clear users' dialog states."""

    def __init__(self, redis: aioredis.Redis, ttl: int = IDLE_TTL) -> None:
        self._redis = redis
        self._ttl = ttl

    async def load(self, openid: str) -> DialogState | None:
        raw = await self._redis.get(dialog_key(openid))
        state = decode(raw)
        if raw is not None and state is None:
            # A value this version cannot read is dropped, not fatal.
            await self.clear(openid)
        return state

    async def save(self, openid: str, state: DialogState) -> None:
        payload = json.dumps({"name": state.name, "data": state.data}, ensure_ascii=False)
        await self._redis.set(dialog_key(openid), payload, ex=self._ttl)

    async def clear(self, openid: str) -> None:
        await self._redis.delete(dialog_key(openid))

    async def set_resume(self, openid: str, command: str) -> None:
        """Remember a command to carry on with once a precondition (consent) is met."""
        await self._redis.set(key("resume", openid), command, ex=self._ttl)

    async def waiting_command(self, openid: str) -> str | None:
        """The remembered command, kept (:meth:`pop_resume` takes it)."""
        value = await self._redis.get(key("resume", openid))
        return value.decode() if isinstance(value, bytes) else value

    async def pop_resume(self, openid: str) -> str | None:
        """The remembered command, forgotten as it is read."""
        return await self._redis.getdel(key("resume", openid))

    async def remember_prompt(self, openid: str, version: str, ttl: int = PROMPT_TTL) -> None:
        """Note the version the user was last asked to accept."""
        await self._redis.set(key("prompted", openid), version, ex=ttl)

    async def prompted(self, openid: str) -> str | None:
        """The version the user was last asked to accept (``None``: not asked lately)."""
        raw = await self._redis.get(key("prompted", openid))
        return raw.decode() if isinstance(raw, bytes) else raw

    async def once(self, openid: str, marker: str, ttl: int = 90 * 24 * 3600) -> bool:
        """True the first time ``marker`` is seen for this user (e.g. one prompt per version)."""
        return bool(await self._redis.set(once_key(openid, marker), "1", nx=True, ex=ttl))

    async def save_draft(self, openid: str, dialog: str, draft: dict, ttl: int = DRAFT_TTL) -> None:
        """Keep a dialog's answers longer than its state, to offer resuming later."""
        await self._redis.set(key("draft", dialog, openid), json.dumps(draft, ensure_ascii=False), ex=ttl)

    async def load_draft(self, openid: str, dialog: str) -> dict | None:
        raw = await self._redis.get(key("draft", dialog, openid))
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    async def export(self, openid: str, dialogs: tuple[str, ...]) -> list[dict]:
        """The user's unfinished dialogs kept as drafts (their answers hold personal
        data, so the user's export shows them): ``[{"dialog", "step", "answers"}]``."""
        found = []
        for dialog in dialogs:
            draft = await self.load_draft(openid, dialog)
            if draft and draft.get("answers"):
                found.append({"dialog": dialog, "step": draft.get("step"), "answers": draft["answers"]})
        return found

    async def clear_draft(self, openid: str, dialog: str) -> None:
        await self._redis.delete(key("draft", dialog, openid))
