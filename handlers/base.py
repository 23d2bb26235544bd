"""What every handler shares: JSON error bodies, never a traceback."""

from __future__ import annotations

import functools
import json
import math
import time
from http import HTTPStatus
from typing import Any, AsyncIterable, AsyncIterator, Callable, TypeVar

import pymongo
import tornado.web

from bot.errors import BotError
from wechat.protocol import ProtocolError

_MESSAGES = {
    400: "请求格式不正确",
    403: "没有权限",
    404: "找不到该地址",
    405: "不支持该请求方法",
    413: "请求体过大",
    429: "请求过于频繁，请稍后再试",
    500: "服务器内部错误",
    503: "服务暂时不可用",
}

#: The HTTP status of each kind of domain error (:data:`bot.errors.KINDS`).
HTTP_STATUS = {
    "bad_request": 400,
    "invalid": 422,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "precondition_failed": 412,
    "too_large": 413,
    "too_many": 429,
    "unavailable": 503,
}


def http_status(exc: BotError | ProtocolError) -> int:
    """The status a refusal is answered with: a domain error's by its kind; a
    WeChat push refused by the protocol layer carries its own."""
    return exc.status if isinstance(exc, ProtocolError) else HTTP_STATUS[exc.kind]


T = TypeVar("T")

JSON_TYPE = "application/json; charset=utf-8"


def json_bytes(data: Any) -> bytes:
    """``data`` as a JSON body (UTF-8, Chinese unescaped)."""
    text = json.dumps(data, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: escape it, still JSON
        return json.dumps(data).encode("ascii")


def declared_length(headers: Any) -> int:
    """The body length a request's ``Content-Length`` declares; 0 when there is
    none or it is no plain number (Tornado then refuses the request itself).
    ASCII digits only: ``"²".isdigit()`` holds, and ``int("²")`` raises."""
    value = headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() else 0


def error_message(status: int) -> tuple[str, str]:
    """The ``(code, message)`` of an error body for an HTTP status alone."""
    try:
        code = HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        code = "error"
    return code, _MESSAGES.get(status, "请求失败")

#: The entry points of a request that :func:`budget_requests` wraps.
_ENTRY_POINTS = ("prepare", "get", "post", "put", "delete", "patch")


#: Seconds of MongoDB time a request still gets when its budget is spent
#: (a call with none left would fail at once, even with the database well).
MIN_LEFT = 0.2


def within_budget(seconds: float | Callable[[Any], float]):
    """Decorator: the MongoDB calls of a request share ``seconds`` (or
    ``seconds(handler)``), counted from its first entry point (``prepare``,
    once the body has arrived; ``pymongo.timeout`` with what is left):
    ``prepare`` and the method it precedes share one budget, rather than each
    having its own. With the database down or frozen a request then fails
    within that, not after each call's own timeouts."""

    def decorate(method):
        @functools.wraps(method)
        async def wrapped(self, *args, **kwargs):
            budget = seconds(self) if callable(seconds) else seconds
            started = self.__dict__.setdefault("_budget_started", time.monotonic())
            with pymongo.timeout(max(MIN_LEFT, budget - (time.monotonic() - started))):
                result = method(self, *args, **kwargs)
                if hasattr(result, "__await__"):
                    result = await result
                return result

        return wrapped

    return decorate


def budget_requests(cls: type, seconds: float | Callable[[Any], float]) -> None:
    """Wrap the entry points ``cls`` itself defines in :func:`within_budget`,
    except those it names in ``budgets_itself`` (call from ``__init_subclass__``)."""
    for name in _ENTRY_POINTS:
        if name in cls.__dict__ and name not in cls.__dict__.get("budgets_itself", ()):
            setattr(cls, name, within_budget(seconds)(cls.__dict__[name]))


async def each_within_budget(items: AsyncIterable[T], seconds: float) -> AsyncIterator[T]:
    """``items``, each one fetched within ``seconds`` of MongoDB time: for a
    download that streams for longer than any one request's budget."""
    iterator = aiter(items)
    while True:
        with pymongo.timeout(seconds):
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
        yield item


def allowed_methods(handler: type[tornado.web.RequestHandler]) -> list[str]:
    """The HTTP methods ``handler`` implements, and those it names in
    ``delegated_methods`` (answered by a delegate of their own)."""
    base = tornado.web.RequestHandler
    delegated = getattr(handler, "delegated_methods", ())
    return [m for m in handler.SUPPORTED_METHODS
            if m in delegated or getattr(handler, m.lower(), None) is not getattr(base, m.lower(), None)]


def name_allowed_methods(handler: tornado.web.RequestHandler, status_code: int) -> None:
    """On a 405, the ``Allow`` header (RFC 9110): which methods the resource has.
    For every handler's ``write_error``, whatever page or body it writes."""
    if status_code == 405:
        handler.set_header("Allow", ", ".join(allowed_methods(type(handler))))


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's extension, no client's JSON


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e99999
        raise ValueError("number out of range")
    return value


def json_object(raw: bytes) -> tuple[dict | None, str]:
    """A request body as a JSON object: ``(object, "")``, or ``(None, why)``
    with ``why`` ``"bad_json"`` (not a JSON object) or ``"bad_text"``."""
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested thousands deep
        return None, "bad_json"
    if not isinstance(body, dict):
        return None, "bad_json"
    try:
        # "\ud800" is valid JSON but no text: it could be neither stored nor echoed in a message.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, "bad_text"
    return body, ""


class BaseHandler(tornado.web.RequestHandler):
    """Base class: errors render as ``{"error": {"code", "message"}}``."""

    def send_error_json(self, status: int, code: str, message: str) -> None:
        """Finish the request with an error body."""
        self.set_status(status)
        self.write_json({"error": {"code": code, "message": message}})

    def write_json(self, data: Any) -> None:
        self.set_header("Content-Type", JSON_TYPE)
        self.finish(json_bytes(data))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        name_allowed_methods(self, status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BotError):
            self.set_status(http_status(exc))
            self.write_json({"error": {"code": exc.code, "message": exc.message}})
            return
        code, message = error_message(status_code)
        self.write_json({"error": {"code": code, "message": message}})


class NotFoundHandler(BaseHandler):
    """Every unknown path: a JSON 404."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)
