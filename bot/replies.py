"""What the bot answers, as plain data the transport renders.

The domain returns a :class:`Reply` (or ``None`` for no answer); the WeChat
handler turns it into passive-reply XML, the customer-service sender into API
calls, the mini-program API into JSON. Replies are stored (for WeChat's
retries) through :func:`to_dict` and :func:`from_dict`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Reply:
    """A text answer to one user."""

    text: str


def to_dict(reply: Reply | None) -> dict:
    """A JSON-ready form of ``reply``; ``None`` (no answer) included."""
    if reply is None:
        return {"type": "none"}
    return {"type": "text", "text": reply.text}


def from_dict(data: dict) -> Reply | None:
    """The inverse of :func:`to_dict`."""
    if data.get("type") == "text":
        return Reply(text=str(data.get("text", "")))
    return None
