"""What reached the bot: one message or event from a user, free of WeChat's XML."""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

#: What an openid looks like, wherever one comes in (a push, an admin's list,
#: the simulator): WeChat's are 28 characters of these; room is left to spare.
OPENID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclasses.dataclass(frozen=True)
class Inbound:
    """One inbound message or event.

    ``kind`` is WeChat's ``MsgType`` in lower case (``text``, ``image``,
    ``event`` …) or ``unknown`` for a type the bot does not know; ``event`` is
    the lower-case ``Event`` of an event (``subscribe``, ``click`` …).
    ``channel`` says where it came from (``official_account`` or
    ``miniprogram``), so records can name it. ``push_nonce`` (the signed
    timestamp and nonce) and ``push_digest`` (of the body) identify a signed
    push from WeChat: seen again, the pair must match (a replay check).
    """

    openid: str
    kind: str
    create_time: int
    to_user: str = ""
    content: str = ""
    event: str = ""
    event_key: str = ""
    msg_id: str = ""
    channel: str = "official_account"
    known: bool = True
    push_nonce: str = ""
    push_digest: str = ""
    raw: Mapping[str, object] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    @property
    def dedupe_key(self) -> str:
        """The identity WeChat keeps across its retries of this delivery.

        Messages carry a ``MsgId``; events do not, so WeChat's documented rule
        applies: ``FromUserName`` + ``CreateTime`` (+ the event name and its
        key, since two menu clicks of one user can share a second: 查看条款
        then 同意协议 must both be handled).
        """
        if self.msg_id:
            # With the sender: a MsgId repeated by another sender (a hand-made
            # push) must not get the first sender's reply, which may be private.
            return f"msg:{self.openid}:{self.msg_id}"
        key = f":{self.event_key}" if self.event_key else ""
        return f"evt:{self.openid}:{self.create_time}:{self.event}{key}"

    @property
    def opens_window(self) -> bool:
        """Whether WeChat counts this push as the user's interaction, opening its
        48 hours for customer-service messages: a message, a follow, a QR scan, a
        click or scan-code menu tap; not a link menu tap, an automatic location
        report, WeChat's own reports (TEMPLATESENDJOBFINISH …) or an unfollow."""
        if self.kind != "event":
            return self.kind != "unknown"
        return self.event in _WINDOW_EVENTS

    @property
    def text(self) -> str:
        """The text of a text message, stripped; empty for anything else."""
        return self.content.strip() if self.kind == "text" else ""


#: Events WeChat documents as opening the customer-service window.
_WINDOW_EVENTS = frozenset({"subscribe", "scan", "click", "scancode_push", "scancode_waitmsg"})
