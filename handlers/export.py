"""``/export/{token}``: the one-time download of a user's data (JSON)."""

from __future__ import annotations

from handlers.base import BaseHandler
from service.runtime import Runtime


class ExportHandler(BaseHandler):
    """Serves the export document behind a link once; 404 afterwards."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self, token: str) -> None:
        document = await self.runtime.exports.redeem(token)
        if document is None:
            self.send_error_json(404, "link_expired", "下载链接无效、已过期或已被使用，请在公众号中重新发送“导出我的数据”")
            return
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Disposition", 'attachment; filename="wetoop-my-data.json"')
        self.write_json(document)
