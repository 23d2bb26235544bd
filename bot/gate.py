"""The consent gate: features that need acceptance ask for it first, then carry on."""

from __future__ import annotations

from bot import texts
from bot.chat_context import Chat
from bot.replies import Reply


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
    return Reply(texts.consent_needed(state.current))
