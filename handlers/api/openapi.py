"""``/api/v1/openapi.json``: the API's contract."""

from __future__ import annotations

from handlers.api import spec
from handlers.api.base import ApiHandler


class OpenAPIHandler(ApiHandler):
    public = True

    async def get(self) -> None:
        self.set_header("Cache-Control", "public, max-age=300")
        # PUBLIC_URL when set (behind a proxy), else the address this request came to.
        base = self.runtime.config.public_url or f"{self.request.protocol}://{self.request.host}"
        self.write_json(spec.document(base))
