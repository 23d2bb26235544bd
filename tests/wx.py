"""Plays WeChat's server in tests: builds signed (and encrypted) pushes with wechatpy."""

from __future__ import annotations

# The builders and the signing live in wechat/push_client.py, shared with the
# chat simulator; this module keeps the names the tests import.
from wechat.push_client import PushClient, event_xml, message_xml, sign, text_xml

__all__ = ["WeChatServer", "event_xml", "message_xml", "sign", "text_xml"]


class WeChatServer(PushClient):
    """Sends pushes to ``/wechat`` as WeChat would, in plaintext, compatible or safe mode."""

    async def ask(self, openid: str, content: str, mode: str = "plain") -> str | None:
        """Send a text and return the reply's text (``None`` for ``success``)."""
        response = await self.post(text_xml(openid, content), mode)
        assert response.code == 200, response.body
        doc = self.reply(response)
        return None if doc is None else doc.get("Content")
