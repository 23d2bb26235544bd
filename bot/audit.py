"""The audit trail of admin actions: who did what to what, when, before and after.

Every admin action (console or CLI) is recorded through :meth:`Audit.record`,
called by the domain function that performs it, so no caller can forget it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import AsyncIterator, Callable

from bot.agreement import beijing_iso
from bot.spreadsheet import ExcelCsv
from storage.audit_log import AuditEntry, AuditLog

#: Action codes and how the console names them.
ACTIONS = {
    "login": "登录",
    "login_failed": "登录失败",
    "logout": "退出登录",
    "admin_create": "创建管理员",
    "admin_role": "修改角色",
    "admin_disable": "停用管理员",
    "admin_enable": "启用管理员",
    "admin_password": "重设密码",
    "admin_revoke_sessions": "注销会话",
    "notice_draft": "保存通知草稿",
    "notice_send": "发送通知",
    "notice_pause": "暂停发送",
    "notice_resume": "继续发送",
    "notice_cancel": "取消发送",
    "version_draft": "保存协议草稿",
    "version_publish": "发布协议版本",
    "version_withdraw": "撤回协议版本",
    "draft_discard": "放弃草稿",
    "merchant_status": "变更商家状态",
    "qa_edit": "修改问答数据",
    "export": "导出数据",
    "consents_import": "导入同意记录",
}

#: The CSV's headings, in Chinese as on the page (admins open it in Excel).
CSV_HEADINGS = ("时间（北京）", "管理员", "操作", "对象", "变更前", "变更后", "地址")


class Audit:
    """Records and reads the audit log."""

    def __init__(self, log: AuditLog, clock: Callable[[], dt.datetime]) -> None:
        self.log = log
        self._clock = clock

    async def record(self, actor: str, action: str, target: str = "", *, before: dict | None = None,
                     after: dict | None = None, address: str = "") -> str:
        return await self.log.append(
            at=self._clock(), actor=actor, action=action, target=target,
            before=_plain(before), after=_plain(after), address=address,
        )

    async def recent(self, **filters) -> list[AuditEntry]:
        return await self.log.recent(**filters)

    async def csv_chunks(self, **filters) -> AsyncIterator[str]:
        """The filtered log as CSV (UTF-8 with BOM so Excel reads Chinese), in chunks."""
        sheet = ExcelCsv(CSV_HEADINGS)
        async for entry in self.log.scan(**filters):
            sheet.row([
                beijing_iso(entry.at), entry.actor, ACTIONS.get(entry.action, entry.action), entry.target,
                "" if entry.before is None else json.dumps(entry.before, ensure_ascii=False, default=str),
                "" if entry.after is None else json.dumps(entry.after, ensure_ascii=False, default=str),
                entry.address,
            ])
            if sheet.size > 32_000:
                yield sheet.take()
        yield sheet.take()


def _plain(value: dict | None) -> dict | None:
    """Round-trip through JSON so only plain values are stored: datetimes as text
    in Beijing time with its offset, as the rest of the page and the CSV show times."""
    if value is None:
        return None
    return json.loads(json.dumps(value, ensure_ascii=False, default=_text))


def _text(value) -> str:
    return beijing_iso(value) if isinstance(value, dt.datetime) and value.tzinfo else str(value)
