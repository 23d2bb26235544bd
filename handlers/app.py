"""The Tornado application: one URL table for the whole service.

Each area (chat webhook, mini-program API, admin console, simulator) owns
its routes in its own module; this file only joins them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable

import tornado.httpserver
import tornado.web
from tornado import httputil
from tornado.log import access_log

from handlers import admin, api, simulator
from handlers.api.base import MAX_BODY as API_MAX_BODY
from handlers.base import NotFoundHandler, declared_length
from handlers.export import ExportHandler
from handlers.health import HealthHandler, IndexHandler, LiveHandler, ReadyHandler
from handlers.wechat import PushDelegate, WeChatHandler
from service.runtime import Runtime
from wechat.protocol import too_large

log = logging.getLogger(__name__)

#: An export link's path, its token kept out of the access log.
_EXPORT_TOKEN = re.compile(r"(/export/)[A-Za-z0-9_-]+")

ROOT = Path(__file__).resolve().parent.parent


class ServiceApp(tornado.web.Application):
    """Tornado's application, counting the requests it is answering, so that
    a shutdown can let them finish (:meth:`drained`) before it closes the
    connections: a reply cut off would leave a user not knowing that their
    同意 was recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answering: set[httputil.HTTPServerRequest] = set()

    @property
    def in_flight(self) -> int:
        return len(self._answering)

    def get_handler_delegate(self, request: httputil.HTTPServerRequest, target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None, *args: Any, **kwargs: Any):
        if declared_length(request.headers) > MAX_REQUEST_BODY:
            return _TooLarge(request)
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Counted by the delegate as it arrives and refused with the JSON
            # 413 past the limit; Tornado's own check would send a bare 400.
            request.connection.set_max_body_size(_UNCOUNTED)
        self._answering.add(request)
        if target_class is WeChatHandler and request.method == "POST":
            return PushDelegate(self, request, **(target_kwargs or {}))  # the hot path (handlers.wechat)
        return _Counted(super().get_handler_delegate(request, target_class, target_kwargs, *args, **kwargs), self, request)

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        self.done(handler.request)  # called when each request finishes
        status = handler.get_status()
        # A 503 is a store down or starting (/healthz, an API or console request
        # during an outage): said and logged as such, not an error of the service.
        method = access_log.info if status < 400 else access_log.warning if status < 500 or status == 503 else access_log.error
        # An export link's token is the user's data for a day: a 404 on a host
        # that cannot open it (another COOKIE_SECRET) left it usable in that log.
        summary = _EXPORT_TOKEN.sub(r"\1…", handler._request_summary())
        method("%d %s %.2fms", status, summary, 1000.0 * handler.request.request_time())

    def done(self, request: httputil.HTTPServerRequest) -> None:
        self._answering.discard(request)

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is being answered, at most ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self.in_flight


class _Counted(httputil.HTTPMessageDelegate):
    """Tornado's delegate for one request, which also takes the request off
    the count when its connection closes before the handler ran (a body cut
    off, or refused as too large): no handler would ever finish it."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, app: ServiceApp,
                 request: httputil.HTTPServerRequest) -> None:
        self._inner, self._app, self._request = inner, app, request
        self._handled = False
        self._size = 0  # of the body so far: a chunked one declares none
        self._refused = False

    def headers_received(self, start_line, headers):
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes):
        if self._refused:
            return None
        self._size += len(chunk)
        if self._size > MAX_REQUEST_BODY:
            self._refused = True
            body = _too_large_body(self._request.path)
            connection = self._request.connection
            connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", 413, "Payload Too Large"),
                                     httputil.HTTPHeaders({"Content-Type": "application/json; charset=utf-8",
                                                           "Content-Length": str(len(body)), "Connection": "close"}), body)
            connection.finish()  # then closed: the rest is never read
            return None
        return self._inner.data_received(chunk)

    def finish(self) -> None:
        self._handled = True  # the handler runs now, and log_request ends the count
        if self._refused:
            self._app.done(self._request)
            return
        self._inner.finish()

    def on_connection_close(self) -> None:
        if not self._handled:
            self._app.done(self._request)
        self._inner.on_connection_close()


class _TooLarge(httputil.HTTPMessageDelegate):
    """A request declaring a body over :data:`MAX_REQUEST_BODY`: answered
    413 with the JSON error before any of the body is read, then closed.
    (Left to Tornado, it is a bare 400 with no body.)"""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self._connection = request.connection
        self._path = request.path

    def headers_received(self, start_line, headers) -> None:
        body = _too_large_body(self._path)
        stream = self._connection.detach()  # the body is never read
        head = (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
        stream.write(head + body).add_done_callback(lambda _: stream.close())


#: The largest request body read at all (the JSON API allows 16 KiB, /wechat
#: 64 KiB, an agreement version published in the console some tens). A
#: larger one is refused before it is read (413 and the connection closed;
#: a chunked one as soon as it has grown past): Tornado's default, 100 MB, let
#: unauthenticated bodies fill memory.
MAX_REQUEST_BODY = 1024 * 1024
_UNCOUNTED = 1 << 62  # Tornado's limit for a chunked body, which the delegate counts instead


def _too_large_body(path: str) -> bytes:
    # What the route asked says of a body over its own limit (the API's 16 KiB,
    # /wechat's 64 KiB), not this backstop's 1 MiB.
    if path == "/wechat":
        message = too_large().message
    else:
        limit = API_MAX_BODY if path.startswith("/api/") else MAX_REQUEST_BODY
        message = f"请求体过大（最多 {limit // 1024 // 1024} MiB）" if limit >= 1024 * 1024 else f"请求体过大（最多 {limit // 1024} KiB）"
    return json.dumps({"error": {"code": "body_too_large", "message": message}}, ensure_ascii=False).encode()


#: Seconds a kept-alive connection may wait for its next request's headers
#: (above the 60 s after which proxies and load balancers usually drop an idle
#: one, so that they close it first), and a request's body may take to
#: arrive. Tornado's defaults, an hour each, let clients that send part of a
#: request hold thousands of connections.
IDLE_TIMEOUT = 75.0
BODY_TIMEOUT = 30.0


def make_server(app: tornado.web.Application, trust_proxy: Iterable[str] = ()) -> tornado.httpserver.HTTPServer:
    """The HTTP server for ``app``; ``trust_proxy``: the networks of the
    proxies (nginx) whose X-Real-IP / X-Forwarded-* headers give the client's
    address and scheme."""
    server = _Server(app, max_body_size=MAX_REQUEST_BODY, idle_connection_timeout=IDLE_TIMEOUT,
                     body_timeout=BODY_TIMEOUT)
    server.trusted = tuple(ipaddress.ip_network(n) for n in trust_proxy)
    return server


class _Server(tornado.httpserver.HTTPServer):
    """Believes the proxy headers only on connections from a trusted proxy.
    Tornado's ``xheaders`` believes them from anyone: a client reaching the
    port directly could claim any address and escape every per-address limit."""

    trusted: tuple = ()

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        context = getattr(request_conn, "context", None)
        peer = getattr(context, "_orig_remote_ip", None)
        if self.trusted and peer and _within(peer, self.trusted):
            delegate = tornado.httpserver._ProxyAdapter(delegate, request_conn)  # what xheaders=True adds
        elif peer and peer not in _UNTRUSTED_PROXIES_SEEN and _private(peer):
            delegate = _UntrustedProxyCheck(delegate, peer)
        return delegate


#: Private peers already warned about (a proxy left out of TRUST_PROXY); bounded.
_UNTRUSTED_PROXIES_SEEN: set[str] = set()


class _UntrustedProxyCheck(httputil.HTTPMessageDelegate):
    """Warns, once per peer, of proxy headers from a private address not in
    ``TRUST_PROXY``: a proxy left out of it makes every user one address (the
    per-address limits become the whole service's) and silently so. Public
    peers are not warned about: anyone can send the headers."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate, peer: str) -> None:
        self.delegate = delegate
        self.peer = peer

    def headers_received(self, start_line, headers):
        if ("X-Real-Ip" in headers or "X-Forwarded-For" in headers) and len(_UNTRUSTED_PROXIES_SEEN) < 100:
            if self.peer not in _UNTRUSTED_PROXIES_SEEN:
                _UNTRUSTED_PROXIES_SEEN.add(self.peer)
                log.warning("%s 发来 X-Real-IP/X-Forwarded-For，但不在 TRUST_PROXY 中：这些头被忽略，所有用户都记为 %s；"
                            "如果它是您的反向代理，请把它加入 TRUST_PROXY", self.peer, self.peer)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The peer's address (an IPv4 one mapped into IPv6 as IPv4); None for a unix socket's peer."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def _private(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_private


def _within(address: str, networks: tuple) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def make_app(runtime: Runtime, **settings) -> ServiceApp:
    """The service's application for ``runtime``; ``settings`` go to Tornado."""
    routes = [
        (r"/wechat", WeChatHandler, {"runtime": runtime}),
        (r"/", IndexHandler, {"runtime": runtime}),
        (r"/healthz", HealthHandler, {"runtime": runtime}),
        (r"/livez", LiveHandler),
        (r"/readyz", ReadyHandler, {"runtime": runtime}),
        (r"/export/([A-Za-z0-9_-]{16,64})", ExportHandler, {"runtime": runtime}),
    ]
    routes += api.routes(runtime)
    routes += admin.routes(runtime)
    routes += simulator.routes(runtime)
    settings.setdefault("template_path", str(ROOT / "templates"))
    settings.setdefault("static_path", str(ROOT / "static"))
    # Signed cookies and xsrf for the admin console (which checks xsrf itself;
    # not global, or /wechat and the JSON API would need tokens).
    settings.setdefault("cookie_secret", admin.cookie_secret(runtime.config))
    settings.setdefault("xsrf_cookie_kwargs", {"httponly": True, "samesite": "Strict"})
    if runtime.config.base_url.startswith("https://"):
        # A __Host- cookie cannot be set by a sibling subdomain or over plain
        # http: planted there, an _xsrf cookie would let another site's form
        # pass the check (it compares the form's token with the cookie only).
        settings.setdefault("xsrf_cookie_name", "__Host-xsrf")
    return ServiceApp(
        routes,
        default_handler_class=NotFoundHandler,
        compress_response=False,
        **settings,
    )
