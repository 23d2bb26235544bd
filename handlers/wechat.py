"""``/wechat``: the official account's endpoint that WeChat pushes to.

GET answers the console's URL check; POST takes messages and events in
plaintext, compatible or safe mode. Both only verify, parse, call
:meth:`bot.conversation.Conversation.respond` and render.

POST, the hot path, is answered by :class:`PushDelegate`, a bare
``HTTPMessageDelegate``, not a ``RequestHandler``: a push needs none of the
handler's machinery (cookies, xsrf, output transforms, default headers), which
cost 0.1-0.2 ms of CPU a request on the bench machine, a sixth of the whole
question path (``bench/RESULTS.md``). Every other method goes to
:class:`WeChatHandler`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING

from tornado import httputil
from tornado.log import access_log

from bot.errors import BotError
from handlers.base import JSON_TYPE, BaseHandler, declared_length, error_message, http_status, json_bytes
from service.runtime import Runtime
from wechat.protocol import MAX_BODY, ProtocolError, push_nonce, too_large

if TYPE_CHECKING:
    from handlers.app import ServiceApp

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f]")  # what Tornado's get_argument blanks
_XML_TYPE = "application/xml; charset=utf-8"
_TEXT_TYPE = "text/plain; charset=utf-8"


def _not_configured() -> ProtocolError:
    return ProtocolError(503, "not_configured", "服务未配置 WECHAT_TOKEN，无法接收微信消息")


def query_of(request: httputil.HTTPServerRequest) -> dict[str, str]:
    """The query as Tornado's ``get_query_argument`` reads it: the last value
    of each name, control characters blanked, stripped."""
    try:
        return {k: _CONTROL.sub(" ", v[-1].decode("utf-8")).strip() for k, v in request.query_arguments.items()}
    except UnicodeDecodeError:
        raise ProtocolError(400, *error_message(400)) from None


class WeChatHandler(BaseHandler):
    """GET (the URL check), and 405 for methods the endpoint does not take."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self) -> None:
        try:
            if self.runtime.endpoint is None:
                raise _not_configured()
            query = query_of(self.request)
            echostr = self.runtime.endpoint.verify_url(query)
        except ProtocolError as exc:
            self.send_error_json(http_status(exc), exc.code, exc.message)
            return
        await self.runtime.conversation.url_checked(push_nonce(query))
        self.set_header("Content-Type", _TEXT_TYPE)
        self.finish(echostr)

    #: Answered by :class:`PushDelegate` (``handlers.app.ServiceApp`` routes
    #: them there); named for the ``Allow`` header of a 405.
    delegated_methods = ("POST",)


class PushDelegate(httputil.HTTPMessageDelegate):
    """One POST to ``/wechat``, from its headers to the reply (see module docstring).

    The body is read into memory up to :data:`MAX_BODY` (a chunked one
    carries no length, so it is counted). The push is answered in a task of
    its own; a client gone meanwhile does not stop it (a 同意 is recorded all
    the same), only the reply is dropped. ``app`` counts the request until
    it is answered or its connection closes.
    """

    _tasks: set[asyncio.Task] = set()  # held until done: the loop keeps only weak references

    def __init__(self, app: "ServiceApp", request: httputil.HTTPServerRequest, runtime: Runtime) -> None:
        self._app = app
        self._request = request
        self._runtime = runtime
        self._chunks: list[bytes] = []
        self._size = 0
        self._refused = False  # answered before the body was read
        self._gone = False  # the connection closed
        self._written = False
        self._counted = True
        request.connection.set_close_callback(self._on_close)

    def headers_received(self, start_line, headers) -> None:
        if self._runtime.endpoint is None:
            self._refuse(_not_configured())
        elif declared_length(headers) > MAX_BODY:
            self._refuse(too_large())

    def data_received(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._size += len(chunk)
        if self._size > MAX_BODY:
            self._chunks.clear()
            self._refuse(too_large())
        else:
            self._chunks.append(chunk)

    def finish(self) -> None:
        if not self._refused:
            task = asyncio.ensure_future(self._answer(b"".join(self._chunks)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def on_connection_close(self) -> None:
        # Tornado calls this only before finish(): the push will not be answered.
        self._gone = True
        self._uncount()

    def _on_close(self) -> None:
        self._gone = True

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._app.done(self._request)

    def _refuse(self, exc: ProtocolError) -> None:
        # Answered at once, before the rest of any body; Tornado then closes
        # the connection rather than read a body nobody wants (and says so).
        self._refused = True
        self._error(http_status(exc), exc.code, exc.message, close=True)

    async def _answer(self, body: bytes) -> None:
        try:
            query = query_of(self._request)
            endpoint = self._runtime.endpoint
            opened = endpoint.open(query, body)
            reply = await self._runtime.conversation.respond(opened.inbound)
            payload = endpoint.seal(reply, opened, query).encode("utf-8")
        except (ProtocolError, BotError) as exc:  # BotError: a replayed push, for one
            self._error(http_status(exc), exc.code, exc.message)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - as RequestHandler: logged, JSON 500
            log.exception("Uncaught exception answering %s", self._summary())
            self._error(500, *error_message(500))
        else:
            self._write(200, _TEXT_TYPE if payload == b"success" else _XML_TYPE, payload)
        finally:
            self._uncount()  # whatever happened above: never counted for ever

    def _error(self, status: int, code: str, message: str, close: bool = False) -> None:
        self._write(status, JSON_TYPE, json_bytes({"error": {"code": code, "message": message}}), close)

    def _write(self, status: int, content_type: str, body: bytes, close: bool = False) -> None:
        if self._written:
            return
        self._written = True
        if not self._gone:
            headers = httputil.HTTPHeaders()
            headers["Content-Type"] = content_type
            headers["Content-Length"] = str(len(body))
            headers["Date"] = _date()
            if close:
                headers["Connection"] = "close"
            connection = self._request.connection
            reason = httputil.responses.get(status, "Unknown")
            connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", status, reason), headers, body)
            connection.finish()
        self._uncount()
        self._log(status)

    def _summary(self) -> str:
        return f"{self._request.method} {self._request.uri} ({self._request.remote_ip})"

    def _log(self, status: int) -> None:
        # As tornado.web.Application.log_request words it.
        method = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
        method("%d %s %.2fms", status, self._summary(), 1000.0 * self._request.request_time())


_date_cache: tuple[int, str] = (0, "")


def _date() -> str:
    """The Date header, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, httputil.format_timestamp(now))
    return _date_cache[1]
