"""The Tornado application: one URL table for the whole service.

Each area (chat webhook, mini-program API, admin console, simulator) owns
its routes in its own module; this file only joins them.
"""

from __future__ import annotations

from pathlib import Path

import tornado.web

from handlers import admin, api, simulator
from handlers.base import NotFoundHandler
from handlers.export import ExportHandler
from handlers.health import HealthHandler
from handlers.wechat import WeChatHandler
from service.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def make_app(runtime: Runtime, **settings) -> tornado.web.Application:
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
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        compress_response=False,
        **settings,
    )
