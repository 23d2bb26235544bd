"""Plays WeChat's server in tests: builds signed (and encrypted) pushes with wechatpy."""

from __future__ import annotations

import itertools
import re
import time
from urllib.parse import urlencode

import xmltodict
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

_ids = itertools.count(int(time.time() * 1000))


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def text_xml(openid: str, content: str, msg_id: int | None = None, to_user: str = "gh_wetoop", create_time: int | None = None) -> str:
    msg_id = next(_ids) if msg_id is None else msg_id
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


def event_xml(openid: str, event: str, key: str = "", create_time: int | None = None, to_user: str = "gh_wetoop") -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key else ""
    return (
        f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{key_xml}</xml>"
    )


def message_xml(openid: str, msg_type: str, extra: str = "", msg_id: int | None = None) -> str:
    msg_id = next(_ids) if msg_id is None else msg_id
    return (
        f"<xml><ToUserName><![CDATA[gh_wetoop]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>{extra}"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


class WeChatServer:
    """Sends pushes to ``/wechat`` as WeChat would, in plaintext, compatible or safe mode."""

    def __init__(self, base_url: str, token: str, aes_key: str | None = None, appid: str = "") -> None:
        self.url = base_url.rstrip("/") + "/wechat"
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None

    def query(self, timestamp: str | None = None, nonce: str = "1234567", **extra: str) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        return {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}

    def envelope(self, xml: str, mode: str) -> tuple[dict[str, str], str]:
        """The query and body of a push in ``mode`` (plain, compat or safe)."""
        query = self.query(openid="o-test")
        if mode == "plain":
            return query, xml
        assert self.crypto is not None, "an AES key is needed for encrypted modes"
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"]))["xml"]
        query.update(encrypt_type="aes", msg_signature=sealed["MsgSignature"])
        match = re.search(r"<ToUserName>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</ToUserName>", xml)
        to_user = match.group(1) if match else "gh_wetoop"
        if mode == "safe":
            body = f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"
        else:  # compatible mode: plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>")
        return query, body

    async def post(self, xml: str | bytes, mode: str = "plain", query: dict | None = None, **kwargs) -> HTTPResponse:
        if query is None:
            query, body = self.envelope(xml, mode) if isinstance(xml, str) else (self.query(), xml)
        else:
            body = xml
        return await AsyncHTTPClient().fetch(
            self.url + "?" + urlencode(query),
            method="POST",
            body=body if isinstance(body, bytes) else body.encode("utf-8"),
            headers={"Content-Type": "text/xml"},
            raise_error=False,
            request_timeout=kwargs.pop("request_timeout", 15),
            **kwargs,
        )

    def reply(self, response: HTTPResponse) -> dict | None:
        """The reply as a dict (decrypted when encrypted), or ``None`` for ``success``."""
        body = response.body.decode("utf-8")
        if body == "success":
            return None
        doc = xmltodict.parse(body)["xml"]
        if "Encrypt" in doc:
            assert self.crypto is not None
            plain = self.crypto.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            doc = xmltodict.parse(plain)["xml"]
        return doc

    async def ask(self, openid: str, content: str, mode: str = "plain") -> str | None:
        """Send a text and return the reply's text (``None`` for ``success``)."""
        response = await self.post(text_xml(openid, content), mode)
        assert response.code == 200, response.body
        doc = self.reply(response)
        return None if doc is None else doc.get("Content")
