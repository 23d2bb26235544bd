"""A small declarative router for chat messages, in the manner of aiogram.

Handlers are declared next to the condition that selects them::

    router = Router()

    @router.command("帮助", "help")
    async def help_(chat: Chat) -> Reply: ...

    @router.event("subscribe")
    async def welcome(chat: Chat) -> Reply: ...

A message is matched in this order, first match wins:

1. events: a menu click by its ``EventKey`` (:meth:`Router.menu`), then any
   event by name (:meth:`Router.event`); an event nobody handles gets no reply;
2. the user's dialog state (:meth:`Router.state`, by exact name or by the
   group before ``:``), for messages only; a state handler may return
   :data:`PASS` to let the steps below have the message;
3. an exact command word (:meth:`Router.command`), compared after
   :func:`normalize_command` and, unless declared ``exact``, without the
   punctuation a phone keyboard adds (``帮助？``); then a command word followed by an argument
   that matches the handler's pattern (``条款 3``), the groups given to the
   handler as ``chat.args``;
4. the message type (:meth:`Router.message`: ``image``, ``voice`` …);
5. for text, the fallback (:meth:`Router.fallback`): free text that is no
   command (the Q&A, or the help reply).

Anything else, unknown message types included, gets no reply (WeChat's
``success``). Handlers are ``async def handler(chat) -> Reply | None``.

Middlewares (:meth:`Router.middleware`) wrap every dispatch, outermost first:
``async def mw(chat, call_next) -> Reply | None``.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Awaitable, Callable

from bot.replies import Reply
from bot.traditional import simplified
from bot.validation import TRAILING_PUNCTUATION

if TYPE_CHECKING:
    from bot.chat_context import Chat

Handler = Callable[["Chat"], Awaitable["Reply | None | object"]]
Middleware = Callable[["Chat", Callable[["Chat"], Awaitable["Reply | None"]]], Awaitable["Reply | None"]]

#: Returned by a state handler that does not take this message.
PASS = object()


def normalize_command(text: str) -> str:
    """Fold a typed command for comparison: NFKC (full-width to half-width),
    invisible characters (zero-width spaces a paste brings) and surrounding
    blanks removed, Latin letters in lower case, Traditional characters in
    their Simplified forms (條款 is 条款)."""
    return simplified(unicodedata.normalize("NFKC", text).translate(_INVISIBLE).strip().lower())


#: Zero-width space, non-joiner, joiner, word joiner, BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


class Router:
    """Maps (event, menu key, dialog state, command word, message type) to handlers."""

    def __init__(self) -> None:
        self._events: dict[str, Handler] = {}
        self._menu: dict[str, Handler] = {}
        self._states: dict[str, Handler] = {}
        self._commands: dict[str, Handler] = {}
        self._exact: set[str] = set()  # command words that count only as typed (同意)
        self._kinds: dict[str, Handler] = {}
        self._patterns: list[tuple[re.Pattern, Handler, str]] = []  # (pattern, handler, its word)
        self._middlewares: list[Middleware] = []
        self._fallback: Handler | None = None

    # -- registration -------------------------------------------------------

    def event(self, *names: str) -> Callable[[Handler], Handler]:
        """Handle events by name (lower case: ``subscribe``, ``unsubscribe`` …)."""
        return self._register(self._events, [n.lower() for n in names])

    def menu(self, *keys: str) -> Callable[[Handler], Handler]:
        """Handle clicks on custom-menu buttons by their ``key``."""
        return self._register(self._menu, keys)

    def menu_keys(self) -> frozenset[str]:
        """The click keys that have a handler (others get the generic click handler)."""
        return frozenset(self._menu)

    def state(self, *names: str) -> Callable[[Handler], Handler]:
        """Handle messages of users in a dialog state (``"registration"`` matches
        ``"registration:phone"`` too)."""
        return self._register(self._states, names)

    def command(self, *words: str, args: str | None = None, exact: bool = False) -> Callable[[Handler], Handler]:
        """Handle text that is one of ``words`` (see :func:`normalize_command`),
        also with trailing punctuation (``条款？``) unless ``exact``: a choice
        such as ``同意`` counts only as the word itself.

        With ``args`` (a regular expression with groups), handle instead a word
        followed by an argument matching it, e.g. ``command("条款", args=r"(\\d+)")``
        takes ``条款 3`` and ``条款3``; the groups arrive as ``chat.args``.
        """
        if args is None:
            if exact:
                self._exact.update(normalize_command(w) for w in words)
            return self._register(self._commands, [normalize_command(w) for w in words])

        def decorator(handler: Handler) -> Handler:
            for word in words:
                word = normalize_command(word)
                self._patterns.append((re.compile(rf"{re.escape(word)}\s*(?:{args})"), handler, word))
            return handler

        return decorator

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every dispatch (e.g. to ask for consent again after an amendment)."""
        self._middlewares.append(middleware)
        return middleware

    def message(self, *kinds: str) -> Callable[[Handler], Handler]:
        """Handle messages by type (``image``, ``voice``, ``location`` …)."""
        return self._register(self._kinds, kinds)

    def fallback(self, handler: Handler) -> Handler:
        """Handle free text that matched nothing else."""
        self._fallback = handler
        return handler

    def include(self, other: "Router") -> None:
        """Add every handler of ``other``; a condition declared twice is an error."""
        for mine, theirs in (
            (self._events, other._events),
            (self._menu, other._menu),
            (self._states, other._states),
            (self._commands, other._commands),
            (self._kinds, other._kinds),
        ):
            for key, handler in theirs.items():
                self._add(mine, key, handler)
        self._exact.update(other._exact)
        self._patterns.extend(other._patterns)
        self._middlewares.extend(other._middlewares)
        if other._fallback is not None:
            self._fallback = other._fallback

    def _register(self, table: dict[str, Handler], keys) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            for key in keys:
                self._add(table, key, handler)
            return handler

        return decorator

    @staticmethod
    def _add(table: dict[str, Handler], key: str, handler: Handler) -> None:
        if key in table and table[key] is not handler:
            raise ValueError(f"two handlers for {key!r}")
        table[key] = handler

    # -- dispatch -----------------------------------------------------------

    def commands(self) -> list[str]:
        """Every registered command word, for help texts and tests."""
        return list(self._commands)

    def command_of(self, text: str) -> str | None:
        """The command word ``text`` invokes, with or without its argument
        (``"条款 2"`` → ``"条款"``), or ``None`` when it is no command."""
        text = normalize_command(text)
        word = self._word(text)
        if word is not None:
            return word
        return next((word for pattern, _, word in self._patterns if pattern.fullmatch(text)), None)

    def _word(self, text: str) -> str | None:
        """The command word ``text`` (normalised) is, punctuation after it aside."""
        if text in self._commands:
            return text
        bare = text.rstrip(TRAILING_PUNCTUATION)
        if bare != text and bare in self._commands and bare not in self._exact:
            return bare
        return None

    async def dispatch(self, chat: "Chat") -> Reply | None:
        """Run the handler that matches ``chat`` (through the middlewares)."""
        call = self._route
        for middleware in reversed(self._middlewares):
            call = _wrap(middleware, call)
        return await call(chat)

    async def _route(self, chat: "Chat") -> Reply | None:
        message = chat.message
        if message.kind == "event":
            handler = None
            if message.event == "click":
                handler = self._menu.get(message.event_key)
            handler = handler or self._events.get(message.event)
            return await _call(handler, chat)
        if not message.known:
            return None
        if chat.state:
            handler = self._state_handler(chat.state)
            if handler is not None:
                reply = await handler(chat)
                if reply is not PASS:
                    return reply  # type: ignore[return-value]
        if message.kind == "text":
            text = normalize_command(message.content)
            word = self._word(text)
            if word is not None:
                return await _call(self._commands[word], chat)
            for pattern, handler, _ in self._patterns:
                match = pattern.fullmatch(text)
                if match:
                    chat.args = match.groups()
                    return await _call(handler, chat)
        handler = self._kinds.get(message.kind)
        if handler is not None:
            return await _call(handler, chat)
        if message.kind == "text":
            return await _call(self._fallback, chat)
        return None

    def _state_handler(self, state: str) -> Handler | None:
        return self._states.get(state) or self._states.get(state.split(":", 1)[0])


def _wrap(middleware: Middleware, call_next):
    async def wrapped(chat: "Chat") -> Reply | None:
        return await middleware(chat, call_next)

    return wrapped


async def _call(handler: Handler | None, chat: "Chat") -> Reply | None:
    if handler is None:
        return None
    reply = await handler(chat)
    return None if reply is PASS else reply  # type: ignore[return-value]
