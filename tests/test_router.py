"""The router's matching order, on plain Inbound values (no I/O)."""

from __future__ import annotations

import pytest

from bot.chat_context import Chat
from bot.inbound import Inbound
from bot.replies import Reply
from bot.router import PASS, Router, normalize_command
from storage.dialog_state import DialogState


def build() -> Router:
    router = Router()

    @router.event("subscribe")
    async def sub(chat):
        return Reply("event:subscribe")

    @router.event("click")
    async def any_click(chat):
        return Reply("event:click")

    @router.menu("HELP")
    async def menu_help(chat):
        return Reply("menu:HELP")

    @router.command("帮助", "help")
    async def help_(chat):
        return Reply("command:help")

    @router.state("registration")
    async def in_dialog(chat):
        if chat.message.text == "帮助":
            return PASS
        return Reply(f"state:{chat.state}")

    @router.message("image")
    async def image(chat):
        return Reply("kind:image")

    @router.fallback
    async def free(chat):
        return Reply("fallback")

    return router


def chat(kind="text", content="", event="", key="", state=None, known=True) -> Chat:
    message = Inbound(openid="o", kind=kind, create_time=1, content=content, event=event, event_key=key, known=known)
    return Chat(message=message, services=None, dialog=DialogState(state) if state else None)  # type: ignore[arg-type]


async def answer(router, **kwargs):
    reply = await router.dispatch(chat(**kwargs))
    return reply.text if reply else None


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"kind": "event", "event": "subscribe"}, "event:subscribe"),
        ({"kind": "event", "event": "click", "key": "HELP"}, "menu:HELP"),
        ({"kind": "event", "event": "click", "key": "OTHER"}, "event:click"),
        ({"kind": "event", "event": "view"}, None),
        ({"content": "帮助"}, "command:help"),
        ({"content": " HELP "}, "command:help"),
        ({"content": "帮助我注册"}, "fallback"),
        ({"content": "张三", "state": "registration:name"}, "state:registration:name"),
        ({"content": "帮助", "state": "registration:name"}, "command:help"),
        ({"content": "张三", "state": "unknown:step"}, "fallback"),
        ({"kind": "event", "event": "subscribe", "state": "registration:name"}, "event:subscribe"),
        ({"kind": "image"}, "kind:image"),
        ({"kind": "voice"}, None),
        ({"kind": "hologram", "known": False}, None),
    ],
)
async def test_matching_order(kwargs, expected):
    assert await answer(build(), **kwargs) == expected


def test_duplicate_condition_is_an_error():
    router = Router()

    @router.command("帮助")
    async def one(chat):
        return None

    with pytest.raises(ValueError):

        @router.command("帮助")
        async def two(chat):
            return None


async def test_include_merges_routers():
    main, extra = Router(), Router()

    @extra.command("条款")
    async def terms(chat):
        return Reply("terms")

    main.include(extra)
    assert await answer(main, content="条款") == "terms"


def test_normalize_command_folds_width_and_case():
    assert normalize_command("　ＨＥＬＰ！ ") == "help!"
    assert normalize_command("同意") == "同意"
    assert normalize_command("同\u200b意\ufeff") == "同意"  # pasted text carries zero-width characters


async def test_a_command_with_a_keyboards_punctuation_is_the_command_unless_exact():
    router = build()

    @router.command("同意", exact=True)
    async def agree(chat):
        return Reply("command:agree")

    for typed in ("帮助？", "帮助。", "帮助!", "help?", "帮助～"):
        assert await answer(router, content=typed) == "command:help", typed
        assert router.command_of(typed) == ("帮助" if typed.startswith("帮") else "help"), typed
    assert await answer(router, content="同意") == "command:agree"
    for typed in ("同意。", "同意？", "同意!"):  # a choice counts only as the word itself
        assert await answer(router, content=typed) == "fallback", typed
        assert router.command_of(typed) is None
    assert await answer(router, content="帮助一下") == "fallback"
