"""The consent gate: features that need acceptance ask for it first, then carry on."""

from __future__ import annotations

import contextlib

from bot import texts
from bot.chat_context import Chat
from bot.replies import Reply
from storage.redis_store import RedisUnavailable


async def require_consent(chat: Chat, resume: str) -> Reply | None:
    """``None`` if the user accepted the current version; otherwise the consent
    prompt, and ``resume`` (a command) runs by itself after ``同意``.

    The versions are read afresh: a version another process made effective a
    moment ago must stop the action (the cache is up to 5 s old)."""
    state = await chat.fresh_consent()
    if state.accepted:
        return None
    await chat.services.dialogs.set_resume(chat.openid, resume)
    await chat.asked_to_accept(state.current.version)
    if state.status == "outdated" and state.latest is not None:
        # An amendment since their consent, perhaps moments ago (before the
        # middleware's cached versions show it): what changed is said here,
        # or a 同意 would accept it unseen.
        with contextlib.suppress(RedisUnavailable):
            await chat.services.dialogs.once(chat.openid, f"reconsent:{state.current.version}")
        changed = await chat.services.terms.since(state.latest.version)
        return Reply(texts.consent_needed_after_update(state.current, state.latest.version, changed))
    return Reply(texts.consent_needed(state.current))
