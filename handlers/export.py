"""``/export/{token}``: the one-time download of a user's data.

A browser (WeChat's own, where users tap the link) gets a page that shows the
data and carries the whole JSON to save: WeChat's browser does not download
attachments, and the link works once. Anything else (``curl``, a script,
``?format=json``) gets the JSON document itself.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from bot.agreement import CHINA
from bot.consent import ACTION_LABELS
from bot.merchants import STATUSES, changed_by
from bot.notices import SKIP_REASONS
from bot.qa_texts import KIND_LABELS
from bot.texts import CONSENT_STATUS
from handlers.base import BaseHandler
from service.runtime import Runtime
from storage.notices import CATEGORIES

#: Headings of the document's parts, in the order shown; parts not named here follow.
LABELS = {
    "openid": "微信用户标识（openid）",
    "exported_at": "导出时间",
    "consent_status": "协议状态",
    "consents": "同意记录",
    "merchant": "商家资料",
    "follower": "关注公众号",
    "preferences": "通知设置",
    "deliveries": "收到的通知",
    "notice_reads": "已读通知",
    "questions": "您的提问",
    "miniprogram_logins": "小程序登录",
    "dialog_drafts": "未完成的填写（注册资料草稿）",
}
#: Field names shown in Chinese; a field not named here shows as it is in the JSON.
FIELDS = {
    "status": "状态", "current_version": "当前协议版本", "version": "协议版本", "action": "操作", "at": "时间",
    "channel": "渠道", "text_sha256": "协议文本指纹（SHA-256）", "message_id": "消息编号",
    "subscribed": "关注中", "subscribed_at": "关注时间", "unsubscribed_at": "取消关注时间",
    "last_interaction_at": "最近互动时间", "entity_type": "主体类型", "entity_name": "主体名称",
    "credit_code": "统一社会信用代码", "contact_name": "联系人", "phone": "手机号", "email": "邮箱",
    "adult": "已满十八周岁", "created_at": "创建时间", "updated_at": "更新时间", "status_history": "状态历史",
    "by": "操作方", "reason": "原因", "notice": "通知编号", "category": "类别", "title": "标题",
    "errcode": "微信错误码", "read_at": "阅读时间", "question": "问题", "kind": "回答方式", "refs": "引用条款",
    "miniprogram_openid": "小程序 openid", "unionid": "unionid", "first_login_at": "首次登录",
    "last_login_at": "最近登录",
}
#: Values of these fields shown in Chinese.
VALUES = {
    "status": {**CONSENT_STATUS, **STATUSES, "pending": "待发送", "sending": "发送中", "sent": "已发送",
               "failed": "发送失败", "skipped": "未发送"},
    "action": ACTION_LABELS,
    "channel": {"official_account": "公众号", "miniprogram": "小程序", "admin_import": "微拓导入", "template": "模板消息",
                "custom": "客服消息", "mass": "群发"},
    "reason": SKIP_REASONS,
    "entity_type": {"individual": "个人", "enterprise": "企业"},
    "category": CATEGORIES,
    "kind": KIND_LABELS,
}
#: The notice preferences: category -> on/off.
SWITCH = {"on": "接收", "off": "已退订"}


class ExportHandler(BaseHandler):
    """Serves the export document behind a link once; 404 afterwards."""

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def get(self, token: str) -> None:
        page = self._wants_page()
        document = await self.runtime.exports.redeem(token)
        self.set_header("Cache-Control", "no-store")
        if document is None:
            message = "下载链接无效、已过期或已被使用，请在公众号中重新发送“导出我的数据”"
            if page:
                self.set_status(404)
                self._page(None, message)
                return
            self.send_error_json(404, "link_expired", message)
            return
        if page:
            self._page(document)
            return
        self.set_header("Content-Disposition", 'attachment; filename="wetoop-my-data.json"')
        self.write_json(document)

    def _page(self, document: dict | None, message: str = "") -> None:
        self.render(
            "export.html", document=document, message=message, cell=_cell,
            parts=_parts(document) if document else [],
            exported=_readable(document.get("exported_at")) if document else "",
            json_text=json.dumps(document, ensure_ascii=False, indent=2) if document else "",
        )

    def _wants_page(self) -> bool:
        if self.get_query_argument("format", "") == "json":
            return False
        return "text/html" in self.request.headers.get("Accept", "")


def _parts(document: dict) -> list[tuple[str, Any]]:
    """``(heading, value)`` for each part, made readable (``_readable``)."""
    order = [k for k in LABELS if k in document] + [k for k in document if k not in LABELS]
    parts = []
    for name in order:
        if name in ("openid", "exported_at"):
            continue
        value = document[name]
        if name == "preferences" and isinstance(value, dict):
            value = {CATEGORIES.get(k, k): SWITCH.get(v, v) for k, v in value.items()}
        parts.append((LABELS.get(name, name), _readable(value)))
    return parts


def _cell(value: Any) -> str:
    """One table cell: a list as its items (4.1、3), a record as its fields
    (状态：待审核，时间：…), records one per line."""
    if isinstance(value, dict):
        return "，".join(f"{k}：{_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ("\n" if any(isinstance(v, dict) for v in value) else "、").join(_cell(v) for v in value)
    return str(value)


def _readable(value: Any, field: str = "") -> Any:
    """Field names and known values in Chinese, times in Beijing time; dicts
    and lists kept as such for the template."""
    if value is None:
        return "无"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dict):
        return {FIELDS.get(k, k): _readable(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_readable(v, field) for v in value]
    if field == "by" and isinstance(value, str):
        return changed_by(value, for_admin=False)
    if isinstance(value, str) and value in VALUES.get(field, {}):
        return VALUES[field][value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if at.tzinfo is not None:
            return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)
