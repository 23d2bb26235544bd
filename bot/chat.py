"""Every message type and event the official account handles, in one file.

Each handler is one decorated function (see :mod:`bot.router`). Later
capabilities (agreement, registration, Q&A …) add their routers here with
``router.include``.
"""

from __future__ import annotations

import logging

from bot import texts
from bot.chat_context import Chat
from bot.replies import Reply
from bot.router import Router
from storage.mongo import MongoUnavailable

log = logging.getLogger(__name__)

router = Router()

#: Menu keys declared in data/menu.json.
MENU_HELP = "HELP"


@router.event("subscribe")
async def welcome(chat: Chat) -> Reply:
    try:
        await chat.services.followers.subscribed(chat.openid, chat.services.clock())
    except MongoUnavailable:
        # The welcome matters more than the record; the next message retries it.
        log.warning("could not record the follow of %s", chat.openid)
    return Reply(texts.WELCOME)


@router.event("unsubscribe")
async def farewell(chat: Chat) -> None:
    await chat.services.followers.unsubscribed(chat.openid, chat.services.clock())
    return None


@router.command("帮助", "help", "菜单", "?", "？")
@router.menu(MENU_HELP)
async def help_(chat: Chat) -> Reply:
    return Reply(texts.HELP)


@router.message("image", "voice", "video", "shortvideo", "location", "link", "miniprogrampage")
async def only_text(chat: Chat) -> Reply:
    return Reply(texts.ONLY_TEXT)


@router.fallback
async def free_text(chat: Chat) -> Reply:
    # The Q&A takes over here once it exists.
    return Reply(texts.NOT_UNDERSTOOD)
