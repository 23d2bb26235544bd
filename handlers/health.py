"""``/healthz``: the state of each backing service, for load balancers and people."""

from __future__ import annotations

from handlers.base import BaseHandler
from service.runtime import Runtime


class HealthHandler(BaseHandler):
    """200 with ``{"status": "ok", "mongo": "ok", "redis": "ok"}``; 503 when one is down."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self) -> None:
        checks = await self.runtime.health()
        healthy = all(state == "ok" for state in checks.values())
        self.set_status(200 if healthy else 503)
        self.set_header("Cache-Control", "no-store")
        self.write_json({"status": "ok" if healthy else "degraded", **checks})
