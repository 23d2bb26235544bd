"""The storage and outside services the chat handlers use, built once per process."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Callable

from storage.dialog_state import DialogStates
from storage.followers import Followers
from storage.locks import UserLocks
from storage.reply_cache import ReplyCache

if TYPE_CHECKING:
    from bot.answers import Answers
    from bot.consent import Consents
    from bot.dialogs import DialogEngine
    from bot.merchants import MerchantAccounts
    from bot.mini_sessions import MiniSessions
    from bot.notices import Broadcasts
    from bot.preferences import NoticePreferences
    from bot.export import Exports
    from bot.terms import Terms
    from storage.consent_keys import ConsentKeys
    from wechat.api import WeChatAPI


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass
class Services:
    """Repositories, domain services and clients handed to chat handlers.

    ``wechat`` is ``None`` without AppID and secret. ``clock`` is the one
    source of "now" (tests replace it). ``public_url`` is where users reach
    this service (links in replies).
    """

    followers: Followers
    dialogs: DialogStates
    replies: ReplyCache
    terms: "Terms"
    consents: "Consents"
    exports: "Exports"
    merchants: "MerchantAccounts"
    engine: "DialogEngine"
    preferences: "NoticePreferences"
    broadcasts: "Broadcasts"
    answers: "Answers"
    wechat: "WeChatAPI | None" = None
    clock: Callable[[], dt.datetime] = utcnow
    public_url: str = "http://127.0.0.1:8080"
    #: Mini-program identities (``bot.mini_sessions.MiniSessions``): chat links followers by unionid.
    mini: "MiniSessions | None" = None
    #: The per-user locks chat's messages hold; the API takes them too (``bot.my_account``).
    locks: UserLocks | None = None
    #: The API's idempotency keys of consent requests that recorded nothing (``bot.my_account``).
    consent_keys: "ConsentKeys | None" = None
