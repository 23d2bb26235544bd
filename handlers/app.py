"""The Tornado application: one URL table for the whole service."""

from __future__ import annotations

import tornado.web

from handlers.base import NotFoundHandler
from handlers.export import ExportHandler
from handlers.health import HealthHandler
from handlers.wechat import WeChatHandler
from service.runtime import Runtime


def make_app(runtime: Runtime, **settings) -> tornado.web.Application:
    """The service's application for ``runtime``; ``settings`` go to Tornado."""
    routes = [
        (r"/wechat", WeChatHandler, {"runtime": runtime}),
        (r"/healthz", HealthHandler, {"runtime": runtime}),
        (r"/export/([A-Za-z0-9_-]{16,64})", ExportHandler, {"runtime": runtime}),
    ]
    return tornado.web.Application(
        routes,
        default_handler_class=NotFoundHandler,
        compress_response=False,
        **settings,
    )
