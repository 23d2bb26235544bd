"""``/api/v1/openapi.json``: the API's contract."""

from __future__ import annotations

from handlers.api import spec
from handlers.api.base import ApiHandler


class OpenAPIHandler(ApiHandler):
    public = True

    async def get(self) -> None:
        if self.runtime.config.public_url:
            self.set_header("Cache-Control", "public, max-age=300")
        else:
            # Built from the request's Host header: a shared cache must not keep one client's for others.
            self.set_header("Cache-Control", "no-store")
        self.write_json(spec.document(self.base_url()))

    def base_url(self) -> str:
        # PUBLIC_URL when set (behind a proxy), else the address this request came to.
        return self.runtime.config.public_url or f"{self.request.protocol}://{self.request.host}"


class IndexHandler(OpenAPIHandler):
    """``/api/v1/``: where the contract is (the address the demo's banner shows)."""

    async def get(self) -> None:
        self.write_json({
            "name": "微拓小程序 API",
            "version": "v1",
            "openapi": self.base_url() + spec.PREFIX + "/openapi.json",
        })
