"""Request-body checks for the emulated WeChat endpoints.

Each function raises `ApiError` with the code WeChat would answer, and returns
nothing on success. Where WeChat's exact code for a case is unknown, the nearest
documented code is used (noted next to the check).
"""

from __future__ import annotations

import re
from typing import Any

from emulator.errors import ApiError

OPENID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

CONTENT_MAX_BYTES = 2048
MASS_MAX_RECIPIENTS = 10000

CUSTOM_MSGTYPES = frozenset({
    "text", "image", "voice", "video", "music", "news", "mpnews",
    "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage",
})
MASS_MSGTYPES = frozenset({"text", "image", "voice", "mpvideo", "mpnews", "wxcard"})
_MEDIA_MSGTYPES = frozenset({"image", "voice", "video", "mpvideo", "mpnews"})

_KEY_TYPES = frozenset({
    "click", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
    "pic_photo_or_album", "pic_weixin", "location_select",
})
_MEDIA_TYPES = frozenset({"media_id", "view_limited"})
_ARTICLE_TYPES = frozenset({"article_id", "article_view_limited"})
_URL_TYPES = frozenset({"view", "miniprogram"})
BUTTON_TYPES = _KEY_TYPES | _MEDIA_TYPES | _ARTICLE_TYPES | _URL_TYPES


def is_openid(value: Any) -> bool:
    return isinstance(value, str) and OPENID_RE.fullmatch(value) is not None


def check_openid(value: Any) -> None:
    if not is_openid(value):
        raise ApiError(40003)


def _utf8_len(value: str) -> int:
    return len(value.encode("utf-8"))


def _check_text(body: dict) -> None:
    text = body.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        raise ApiError(44004)
    if _utf8_len(content) > CONTENT_MAX_BYTES:
        raise ApiError(45002)


def _check_payload(body: dict, msgtype: str) -> None:
    """Checks the object named after ``msgtype`` (``{"text": {...}}`` and so on)."""
    if msgtype == "text":
        _check_text(body)
        return
    payload = body.get(msgtype)
    if msgtype == "news":
        articles = payload.get("articles") if isinstance(payload, dict) else None
        if not isinstance(articles, list) or not articles:
            raise ApiError(44003)
        return
    if not isinstance(payload, dict):
        raise ApiError(47001)
    if msgtype in _MEDIA_MSGTYPES and not payload.get("media_id"):
        raise ApiError(40007)


def check_custom_message(body: dict) -> None:
    """Checks a ``message/custom/send`` body (subscription is checked by the caller)."""
    check_openid(body.get("touser"))
    msgtype = body.get("msgtype")
    if msgtype not in CUSTOM_MSGTYPES:
        raise ApiError(40008)
    _check_payload(body, msgtype)


def check_template_message(body: dict) -> None:
    """Checks a ``message/template/send`` body."""
    check_openid(body.get("touser"))
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        raise ApiError(40037)
    if not isinstance(body.get("data", {}), dict):
        raise ApiError(47001)


def check_mass_message(body: dict) -> None:
    """Checks a ``message/mass/send`` body.

    Both a too short and a too long ``touser`` list get 40130: WeChat documents
    no separate code for more than 10000 openids.
    """
    touser = body.get("touser")
    if not isinstance(touser, list):
        raise ApiError(40130)
    if len(touser) < 2:
        raise ApiError(40130)
    if len(touser) > MASS_MAX_RECIPIENTS:
        raise ApiError(40130, "invalid openid list size, at most 10000 openid")
    for openid in touser:
        check_openid(openid)
    msgtype = body.get("msgtype")
    if msgtype not in MASS_MSGTYPES:
        raise ApiError(40008)
    _check_payload(body, msgtype)


def _check_url(url: Any, size_code: int, domain_code: int) -> None:
    if not isinstance(url, str) or not url or _utf8_len(url) > 1024:
        raise ApiError(size_code)
    if not url.startswith(("http://", "https://")):
        raise ApiError(domain_code)


def _check_button(button: Any, *, sub: bool) -> None:
    # WeChat has a parallel set of codes for sub buttons (40024..40027, 40054).
    type_code, name_code, key_code, url_size_code, url_domain_code = (
        (40024, 40025, 40026, 40027, 40054) if sub else (40017, 40018, 40019, 40020, 40055)
    )
    if not isinstance(button, dict):
        raise ApiError(type_code)
    name = button.get("name")
    if not isinstance(name, str) or not name or _utf8_len(name) > (60 if sub else 16):
        raise ApiError(name_code)
    subs = button.get("sub_button")
    if subs is not None and not isinstance(subs, list):
        raise ApiError(40023)
    if subs:
        if sub:
            raise ApiError(40022)
        if len(subs) > 5:
            raise ApiError(40023)
        for child in subs:
            _check_button(child, sub=True)
        return
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        raise ApiError(type_code)
    if kind in _KEY_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not key or _utf8_len(key) > 128:
            raise ApiError(key_code)
    elif kind in _URL_TYPES:
        _check_url(button.get("url"), url_size_code, url_domain_code)
        # A mini-program button without its target is a malformed button of that type.
        if kind == "miniprogram" and not (button.get("appid") and button.get("pagepath")):
            raise ApiError(type_code)
    elif kind in _MEDIA_TYPES:
        if not button.get("media_id"):
            raise ApiError(40007)
    elif not button.get("article_id"):
        raise ApiError(type_code)


def check_menu(body: dict) -> None:
    """Checks a ``menu/create`` body: 1..3 buttons, each a leaf or 1..5 leaves.

    Codes: 40016 button count, 40023 sub-button count (or a non-list
    ``sub_button``), 40022 nesting below sub buttons, 40017/40024 unknown type or
    missing type-specific field (``appid``/``pagepath`` of ``miniprogram``,
    ``article_id``), 40018/40025 name empty or over 16/60 bytes, 40019/40026 key
    empty or over 128 bytes, 40020/40027 url missing or over 1024 bytes,
    40055/40054 url not http(s), 40007 missing ``media_id``. The second code of
    each pair is for sub buttons.
    """
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise ApiError(40016)
    for button in buttons:
        _check_button(button, sub=False)
