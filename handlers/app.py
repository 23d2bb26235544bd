"""The Tornado application: one URL table for the whole service.

Each area (chat webhook, mini-program API, admin console, simulator) owns
its routes in its own module; this file only joins them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.web

from handlers import admin, api, simulator
from handlers.base import NotFoundHandler
from handlers.export import ExportHandler
from handlers.health import HealthHandler
from handlers.wechat import WeChatHandler
from service.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


class ServiceApp(tornado.web.Application):
    """Tornado's application, counting the requests it is answering, so that
    a shutdown can let them finish (:meth:`drained`) before it closes the
    connections: a reply cut off would leave a user not knowing that their
    同意 was recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0

    def get_handler_delegate(self, *args: Any, **kwargs: Any):
        self.in_flight += 1
        return super().get_handler_delegate(*args, **kwargs)

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        self.in_flight = max(0, self.in_flight - 1)  # called when each request finishes
        super().log_request(handler)

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is being answered, at most ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return not self.in_flight


#: The largest request body read at all (the JSON API allows 16 KiB, /wechat
#: 64 KiB, an agreement version published in the console some tens). A
#: larger one is refused before it is read (400 and the connection closed):
#: Tornado's default, 100 MB, let unauthenticated bodies fill memory.
MAX_REQUEST_BODY = 1024 * 1024


def make_server(app: ServiceApp, trust_proxy: bool = False) -> tornado.httpserver.HTTPServer:
    """The HTTP server for ``app``; ``trust_proxy``: take the client address
    and scheme from nginx's X-Real-IP / X-Forwarded-* headers."""
    return tornado.httpserver.HTTPServer(app, xheaders=trust_proxy, max_body_size=MAX_REQUEST_BODY)


def make_app(runtime: Runtime, **settings) -> ServiceApp:
    """The service's application for ``runtime``; ``settings`` go to Tornado."""
    routes = [
        (r"/wechat", WeChatHandler, {"runtime": runtime}),
        (r"/healthz", HealthHandler, {"runtime": runtime}),
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
    return ServiceApp(
        routes,
        default_handler_class=NotFoundHandler,
        compress_response=False,
        **settings,
    )
