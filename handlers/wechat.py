"""``/wechat``: the official account's endpoint that WeChat pushes to.

GET answers the console's URL check; POST takes messages and events in
plaintext, compatible or safe mode. The handler only verifies, parses, calls
:meth:`bot.conversation.Conversation.respond` and renders.
"""

from __future__ import annotations

import tornado.web

from bot.conversation import ReplayedPush
from handlers.base import BaseHandler
from service.runtime import Runtime
from wechat.protocol import MAX_BODY, ProtocolError


@tornado.web.stream_request_body
class WeChatHandler(BaseHandler):
    """WeChat's push endpoint (see module docstring)."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False

    def prepare(self) -> None:
        if self.runtime.endpoint is None:
            self.send_error_json(503, "not_configured", "服务未配置 WECHAT_TOKEN，无法接收微信消息")
            return
        declared = self.request.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            self.send_error_json(413, "too_large", f"消息体超过 {MAX_BODY // 1024} KiB")

    def data_received(self, chunk: bytes) -> None:
        # Chunked bodies carry no length: count, and keep no more than allowed.
        self._size += len(chunk)
        if self._size > MAX_BODY:
            self._too_large = True
            self._chunks.clear()
        elif not self._too_large:
            self._chunks.append(chunk)

    def _query(self) -> dict[str, str]:
        return {k: self.get_query_argument(k) for k in self.request.query_arguments}

    def get(self) -> None:
        try:
            echostr = self.runtime.endpoint.verify_url(self._query())
        except ProtocolError as exc:
            self.send_error_json(exc.status, exc.code, exc.message)
            return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(echostr)

    async def post(self) -> None:
        if self._too_large:
            self.send_error_json(413, "too_large", f"消息体超过 {MAX_BODY // 1024} KiB")
            return
        query = self._query()
        endpoint = self.runtime.endpoint
        try:
            opened = endpoint.open(query, b"".join(self._chunks))
        except ProtocolError as exc:
            self.send_error_json(exc.status, exc.code, exc.message)
            return
        try:
            reply = await self.runtime.conversation.respond(opened.inbound)
        except ReplayedPush as exc:
            self.send_error_json(exc.status, exc.code, exc.message)
            return
        body = endpoint.seal(reply, opened, query)
        self.set_header("Content-Type", "application/xml; charset=utf-8" if body != "success" else "text/plain; charset=utf-8")
        self.finish(body)
