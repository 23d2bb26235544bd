"""``/healthz``: the state of each backing service, for load balancers and
people; ``/``: where things are, for whoever opens the service's address."""

from __future__ import annotations

from handlers.base import BaseHandler
from service.runtime import Runtime


class HealthHandler(BaseHandler):
    """200 with ``{"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"}``; 503
    with ``"status": "degraded"`` when a backing service is down, or
    ``"starting"`` while the Q&A index is still being built."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self) -> None:
        checks = await self.runtime.health()
        healthy = all(state == "ok" for state in checks.values())
        self.set_status(200 if healthy else 503)
        self.set_header("Cache-Control", "no-store")
        status = "ok" if healthy else "degraded" if "down" in checks.values() else "starting"
        self.write_json({"status": status, **checks})

    async def head(self) -> None:  # some load balancers check with HEAD
        await self.get()


class ReadyHandler(BaseHandler):
    """``/readyz``: 200 once this process can answer (its Q&A index built),
    whatever its databases; 503 ``starting`` before. For a load balancer's
    membership: a database down is down for every process alike, and taking
    them all out would silence chat, which answers questions without them."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def get(self) -> None:
        state = self.runtime.qa_state()
        self.set_status(200 if state == "ok" else 503)
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": state})

    head = get


class LiveHandler(BaseHandler):
    """``/livez``: 200 while this process answers, whatever its databases: for a
    liveness probe (restart when it fails). ``/healthz`` (every store checked)
    is for monitoring; ``/readyz`` for a load balancer (see there)."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok"})

    head = get


class IndexHandler(BaseHandler):
    """``/``: the service's name and the addresses a newcomer looks for (it was a 404)."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def get(self) -> None:
        links = {"health": "/healthz", "ready": "/readyz", "admin": "/admin/", "api": "/api/v1/", "wechat": "/wechat"}
        if self.runtime.config.simulator:
            links["simulator"] = "/simulator"
        self.write_json({"service": "wetoop-bot", "description": "微拓公众号与小程序后端", "links": links})
