"""WeChat's push protocol: verify, decrypt and parse; render and encrypt replies.

Plaintext mode signs the query (``signature`` over token, timestamp, nonce).
Compatible and safe modes (an EncodingAESKey configured, ``encrypt_type=aes``
in the query) carry an ``Encrypt`` element signed by ``msg_signature``;
wechatpy does the cryptography. Parsing refuses any DOCTYPE or entity
declaration before the XML parser sees the text, so entity expansion and
external entities are impossible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from typing import Mapping
from xml.etree import ElementTree
from xml.parsers import expat

from wechatpy.crypto import WeChatCrypto
from wechatpy.events import EVENT_TYPES
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.messages import MESSAGE_TYPES
from wechatpy.replies import TextReply

from bot.inbound import OPENID, Inbound
from bot.replies import Reply

#: WeChat's pushes are a few KiB; anything larger is refused.
MAX_BODY = 64 * 1024
#: Seconds a push's signed timestamp may be off our clock. Without a bound, one
#: signed query string (they reach access logs) would sign pushes for ever.
MAX_SKEW = 300



class ProtocolError(Exception):
    """A push that cannot be accepted: HTTP ``status``, a stable ``code``, a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def too_large() -> ProtocolError:
    """The refusal of a body over :data:`MAX_BODY` (also said before it is read)."""
    return ProtocolError(413, "body_too_large", f"消息体超过 {MAX_BODY // 1024} KiB")


def _forbidden() -> ProtocolError:
    return ProtocolError(403, "bad_signature", "签名校验失败")


@dataclasses.dataclass(frozen=True)
class Opened:
    """A verified push: the message, and whether the reply must be encrypted."""

    inbound: Inbound
    encrypted: bool


#: The console's 消息加解密方式: which pushes each accepts (plaintext, encrypted).
MODES = {"plain": (True, False), "compatible": (True, True), "safe": (False, True)}


class Endpoint:
    """The official account's side of WeChat's push protocol.

    ``aes_key`` (the EncodingAESKey) enables compatible and safe modes; without
    it only plaintext pushes are accepted. ``mode`` (a key of :data:`MODES`,
    default ``compatible`` with a key, else ``plain``) is the one chosen in
    WeChat's console: in ``safe`` mode a plaintext push is refused, since its
    signature does not cover its text; in ``plain`` mode an encrypted one.
    """

    def __init__(
        self, token: str, aes_key: str | None = None, appid: str | None = None, clock=time.time,
        mode: str | None = None,
    ) -> None:
        self.token = token
        self._crypto = WeChatCrypto(token, aes_key, appid or "") if aes_key else None
        self._clock = clock
        self.mode = mode or ("compatible" if aes_key else "plain")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}")
        if self.mode != "plain" and self._crypto is None:
            raise ValueError(f"{self.mode} mode needs an EncodingAESKey")

    def verify_url(self, query: Mapping[str, str]) -> str:
        """Answer the console's URL check: the ``echostr`` if the signature holds
        and its timestamp is fresh (a verification URL copied from a log would
        otherwise make the service echo anything, for ever). The same signature
        signs a plaintext push: the caller remembers its :func:`push_nonce` as
        used, or the URL, seen in a log, could sign one push of anyone's making."""
        self._check_query_signature(query)
        self._check_fresh(query)
        return query.get("echostr", "")

    def open(self, query: Mapping[str, str], body: bytes) -> Opened:
        """Verify and parse one POSTed push. Raises :class:`ProtocolError`.

        The signature covers the timestamp and nonce but not the body: the
        inbound message carries ``push_nonce`` and ``push_digest`` so that a
        signed query seen again with another body is refused
        (:mod:`storage.inbound_gate`), and a timestamp more than
        :data:`MAX_SKEW` seconds off is refused here.
        """
        if len(body) > MAX_BODY:
            raise too_large()
        encrypted = query.get("encrypt_type", "raw").lower() == "aes"
        push = {"push_nonce": push_nonce(query), "push_digest": hashlib.sha1(body).hexdigest()}
        plaintext_accepted, encrypted_accepted = MODES[self.mode]
        if encrypted:
            if not encrypted_accepted and self._crypto is not None:
                raise ProtocolError(400, "encrypted_refused", "服务配置为明文模式（WECHAT_ENCRYPT_MODE=plain），不接收加密消息")
            inbound = self._open_encrypted(query, body, push)
        else:
            if not plaintext_accepted:
                # Checked before the signature: the answer is the same whoever asks.
                raise ProtocolError(403, "plaintext_refused", "服务配置为安全模式（WECHAT_ENCRYPT_MODE=safe），只接收加密消息")
            self._check_query_signature(query)
            self._check_fresh(query)
            inbound = parse(body, **push)
        return Opened(inbound, encrypted=encrypted)

    def seal(self, reply: Reply | None, opened: Opened, query: Mapping[str, str]) -> str:
        """The HTTP body answering ``opened``: reply XML (encrypted when the push
        was), or ``success`` when there is nothing to say."""
        if reply is None or not reply.text:
            return "success"
        message = opened.inbound
        # The reply text sits in CDATA: a "]]>" in it (users' own words shown
        # back) must be split across two sections to keep the XML well formed.
        content = reply.text.replace("]]>", "]]]]><![CDATA[>")
        xml = TextReply(source=message.to_user, target=message.openid, content=content).render()
        if opened.encrypted and self._crypto is not None:
            return self._crypto.encrypt_message(xml, query.get("nonce", ""), query.get("timestamp"))
        return xml

    def _check_fresh(self, query: Mapping[str, str]) -> None:
        try:
            skew = abs(self._clock() - int(query.get("timestamp", "")))
        except (ValueError, OverflowError):  # not a number, or too large for one
            raise _forbidden() from None
        if skew > MAX_SKEW:
            raise ProtocolError(403, "stale_timestamp", f"时间戳与服务器时间相差超过 {MAX_SKEW // 60} 分钟，请检查服务器时钟")

    def _check_query_signature(self, query: Mapping[str, str]) -> None:
        _check_signature(query.get("signature", ""), self.token, query.get("timestamp", ""), query.get("nonce", ""))

    def _open_encrypted(self, query: Mapping[str, str], body: bytes, push: dict[str, str]) -> Inbound:
        if self._crypto is None:
            raise ProtocolError(400, "aes_not_configured", "收到加密消息，但服务未配置 EncodingAESKey")
        if "signature" in query:
            # Both signatures come with every real push; msg_signature alone
            # already authenticates the ciphertext.
            self._check_query_signature(query)
        envelope = _parse_xml(body)
        if not isinstance(envelope.get("Encrypt"), str):
            raise ProtocolError(400, "bad_message", "加密消息缺少 Encrypt 字段")
        # Checked here too, in constant time: wechatpy compares with != .
        _check_signature(query.get("msg_signature", ""), self.token, query.get("timestamp", ""),
                         query.get("nonce", ""), envelope["Encrypt"])
        try:
            plain = self._crypto.decrypt_message(
                envelope, query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", "")
            )
        except InvalidSignatureException:
            raise _forbidden() from None
        except Exception:  # noqa: BLE001 - bad padding, wrong AppID, bad base64 …
            raise ProtocolError(400, "bad_ciphertext", "无法解密消息") from None
        self._check_fresh(query)
        return parse(plain.encode("utf-8") if isinstance(plain, str) else plain, **push)


def _check_signature(given: str, *parts: str) -> None:
    """WeChat's signature: SHA-1 of the sorted ``parts`` joined, compared in
    constant time (a comparison that stops at the first wrong character
    would tell, over many tries, how much of a guess is right)."""
    expected = hashlib.sha1(b"".join(sorted(part.encode("utf-8", "surrogatepass") for part in parts))).hexdigest()
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("utf-8", "surrogatepass")):
        raise _forbidden()


def push_nonce(query: Mapping[str, str]) -> str:
    """What identifies a signed query (its timestamp and nonce), remembered so
    that it signs one body only (:mod:`storage.inbound_gate`)."""
    return f"{query.get('timestamp', '')}:{query.get('nonce', '')}"


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(400, "bad_encoding", "消息体必须是 UTF-8 编码的 XML") from None
    # NUL is no XML character. UTF-16 of ASCII is valid UTF-8 with NULs between:
    # expat would read it as UTF-16, past the declarations check below.
    if "\x00" in text:
        raise ProtocolError(400, "bad_encoding", "消息体必须是 UTF-8 编码的 XML，且不能含有 NUL 字符")
    return text


class _Declaration(Exception):
    """A DOCTYPE or entity declaration met while parsing."""


def _refuse(*_args) -> None:
    raise _Declaration


def _tree(text: str) -> ElementTree.Element:
    """``text`` parsed by expat, refusing a DOCTYPE or entity declaration as
    expat meets it: nothing is ever expanded. (A regular expression over the
    text was fooled by a declaration between comments that looked like CDATA;
    the parser knows what is a comment, CDATA or a user's words.)"""
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(text, True)
    except _Declaration:
        raise ProtocolError(400, "hostile_xml", "不接受含 DOCTYPE 或实体声明的 XML") from None
    return builder.close()


def _parse_xml(body: bytes) -> dict:
    """The ``<xml>`` root's fields: an element holding only text gives its
    stripped text (``None`` when empty); one with children or attributes, or
    repeated, gives no string (``{}``), so it is never taken for a field.

    expat and ElementTree's builder rather than xmltodict: faster, on every
    message; declarations are refused by :func:`_tree`.
    """
    text = _text(body)
    try:
        root = _tree(text)
    except ProtocolError:
        raise
    except Exception:  # noqa: BLE001 - expat errors, ValueError …
        raise ProtocolError(400, "bad_xml", "无法解析 XML") from None
    if root.tag != "xml" or (len(root) == 0 and not root.attrib):
        raise ProtocolError(400, "bad_xml", "XML 的根元素必须是 <xml>")
    fields: dict = {}
    for child in root:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if tag in fields or len(child) or child.attrib:
            fields[tag] = {}
        else:
            fields[tag] = (child.text or "").strip() or None
    return fields


def parse(body: bytes, push_nonce: str = "", push_digest: str = "") -> Inbound:
    """Parse a plaintext push into an :class:`Inbound` (``push_nonce`` and
    ``push_digest``: see :meth:`Endpoint.open`). Raises :class:`ProtocolError`."""
    root = _parse_xml(body)
    for field in ("MsgType", "FromUserName", "CreateTime"):
        if not isinstance(root.get(field), str) or not root[field].strip():
            raise ProtocolError(400, "bad_message", f"消息缺少 {field} 字段")
    try:
        create_time = int(root["CreateTime"])
    except ValueError:
        raise ProtocolError(400, "bad_message", "CreateTime 必须是整数") from None
    if not OPENID.fullmatch(root["FromUserName"]):
        # WeChat's openids are 28 URL-safe characters; a 50,000-character one
        # became a follower, and a mass send with it failed as a whole (40003).
        raise ProtocolError(400, "bad_message", "FromUserName 不是有效的 openid")
    raw = {k: v for k, v in root.items() if isinstance(v, str)}
    kind = root["MsgType"].strip().lower()
    content = raw.get("Content", "") if kind == "text" else ""
    if kind == "voice" and raw.get("Recognition", "").strip():
        # WeChat's speech recognition (when the account turns it on): the user
        # said something, and is answered as if they had typed it.
        kind, content = "text", raw["Recognition"].strip()
    event = raw.get("Event", "").strip().lower() if kind == "event" else ""
    # wechatpy's tables of message and event types say what the bot knows.
    known = event in EVENT_TYPES if kind == "event" else kind in MESSAGE_TYPES
    return Inbound(
        openid=root["FromUserName"],
        to_user=raw.get("ToUserName", ""),
        kind=kind,
        create_time=create_time,
        content=content,
        event=event,
        event_key=raw.get("EventKey", ""),
        msg_id=raw.get("MsgId", "") if kind != "event" else "",
        known=known,
        raw=raw,
        push_nonce=push_nonce,
        push_digest=push_digest,
    )
