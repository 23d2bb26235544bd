"""WeChat's side of the push protocol: build, sign and encrypt pushes as WeChat would.

The chat simulator (``handlers/simulator.py``) and the tests both play WeChat's
server with this one module: :func:`text_xml` and :func:`event_xml` build a
push, :meth:`PushClient.envelope` signs it (and encrypts it with wechatpy in
compatible or safe mode), :meth:`PushClient.post` POSTs it with Tornado's
non-blocking HTTP client, and :meth:`PushClient.reply` opens the passive reply.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from urllib.parse import urlencode

import xmltodict
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

#: How a push is carried: plaintext, compatible (both) or safe (ciphertext only).
MODES = ("plain", "compat", "safe")

#: WeChat gives up on an answer after 5 seconds.
WECHAT_TIMEOUT = 5.0

_ids = itertools.count(int(time.time() * 1000))


def next_msg_id() -> int:
    """A MsgId unique within this process (WeChat's are 64-bit integers)."""
    return next(_ids)


def sign(*parts: str) -> str:
    """WeChat's SHA-1 signature over the sorted parts."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _cdata(value: str) -> str:
    # A "]]>" inside the text must be split over two CDATA sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_xml(
    openid: str, content: str, msg_id: int | None = None, to_user: str = "gh_wetoop", create_time: int | None = None
) -> str:
    """A text message push."""
    msg_id = next_msg_id() if msg_id is None else msg_id
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(openid)}</FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


def event_xml(openid: str, event: str, key: str = "", create_time: int | None = None, to_user: str = "gh_wetoop") -> str:
    """An event push (``subscribe``, ``unsubscribe``, ``CLICK`` with its key, ``VIEW`` with its URL)."""
    key_xml = f"<EventKey>{_cdata(key)}</EventKey>" if key else ""
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(openid)}</FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType>"
        f"<Event>{_cdata(event)}</Event>{key_xml}</xml>"
    )


def message_xml(openid: str, msg_type: str, extra: str = "", msg_id: int | None = None, to_user: str = "gh_wetoop") -> str:
    """A push of any message type; ``extra`` is its type-specific XML."""
    msg_id = next_msg_id() if msg_id is None else msg_id
    return (
        f"<xml><ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(openid)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType>{_cdata(msg_type)}</MsgType>{extra}"
        f"<MsgId>{msg_id}</MsgId></xml>"
    )


def _field(xml: str, name: str) -> str | None:
    match = re.search(rf"<{name}>(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?</{name}>", xml, re.DOTALL)
    return match.group(1) if match else None


class PushClient:
    """Sends pushes to an official account's ``/wechat`` as WeChat does.

    ``aes_key`` (the EncodingAESKey) is needed for ``compat`` and ``safe``
    modes; without it :meth:`envelope` raises ``ValueError`` for them.
    """

    def __init__(self, base_url: str, token: str, aes_key: str | None = None, appid: str = "") -> None:
        self.url = base_url.rstrip("/") + "/wechat"
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None

    def query(self, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> dict[str, str]:
        """The signed query string WeChat adds to every push (a fresh nonce unless given)."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        return {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}

    def envelope(self, xml: str, mode: str) -> tuple[dict[str, str], str]:
        """The query and body of a push in ``mode`` (plain, compat or safe)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        query = self.query(openid=_field(xml, "FromUserName") or "")
        if mode == "plain":
            return query, xml
        if self.crypto is None:
            raise ValueError("an EncodingAESKey is needed for encrypted modes")
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, query["nonce"], query["timestamp"]))["xml"]
        query.update(encrypt_type="aes", msg_signature=sealed["MsgSignature"])
        to_user = _field(xml, "ToUserName") or "gh_wetoop"
        if mode == "safe":
            body = f"<xml><ToUserName>{_cdata(to_user)}</ToUserName><Encrypt>{_cdata(sealed['Encrypt'])}</Encrypt></xml>"
        else:  # compatible mode: plaintext fields and the ciphertext side by side
            body = xml.replace("</xml>", f"<Encrypt>{_cdata(sealed['Encrypt'])}</Encrypt></xml>")
        return query, body

    async def post(self, xml: str | bytes, mode: str = "plain", query: dict | None = None, **kwargs) -> HTTPResponse:
        """POST one push; the response is returned whatever its status.

        Bytes are sent as they are with a fresh signed query (for tests of
        malformed bodies); ``query`` replaces the computed one.
        """
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
        """The reply as a dict (decrypted when encrypted), or ``None`` for ``success``
        or an empty body. Raises ``ValueError`` for a body that is neither."""
        body = (response.body or b"").decode("utf-8")
        if body in ("", "success"):
            return None
        try:
            doc = xmltodict.parse(body, disable_entities=True)["xml"]
            if "Encrypt" in doc:
                if self.crypto is None:
                    raise ValueError("an encrypted reply, but no EncodingAESKey")
                plain = self.crypto.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
                doc = xmltodict.parse(plain, disable_entities=True)["xml"]
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - expat, bad ciphertext, wrong signature …
            raise ValueError(f"not a reply WeChat would accept: {exc}") from exc
        return doc


__all__ = ["MODES", "WECHAT_TIMEOUT", "PushClient", "event_xml", "message_xml", "next_msg_id", "sign", "text_xml"]
