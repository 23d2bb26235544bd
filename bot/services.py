"""The storage and outside services the chat handlers use, built once per process."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING, Callable

from storage.dialog_state import DialogStates
from storage.followers import Followers
from storage.reply_cache import ReplyCache

if TYPE_CHECKING:
    from wechat.api import WeChatAPI


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclasses.dataclass
class Services:
    """Repositories and clients; ``wechat`` is ``None`` without AppID and secret."""

    followers: Followers
    dialogs: DialogStates
    replies: ReplyCache
    wechat: "WeChatAPI | None" = None
    clock: Callable[[], dt.datetime] = utcnow
