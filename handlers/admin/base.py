"""What every admin page shares: the session, the role check, xsrf, HTML errors."""

from __future__ import annotations

import datetime as dt
import json
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import tornado.escape
import tornado.web

from bot.admin_accounts import PERMISSIONS, ROLES, Actor, allowed
from bot.agreement import CHINA, typed_utc
from bot.errors import BotError
from handlers.base import budget_requests, http_status, name_allowed_methods
from storage.admin_users import AdminUser
from storage.mongo import MongoUnavailable
from storage.redis_store import RedisUnavailable

log = logging.getLogger(__name__)

SESSION_COOKIE = "wb_admin"
#: What the last action did, shown once on the next page. Signed, so a
#: crafted link cannot put words on our pages.
FLASH_COOKIE = "wb_admin_flash"

_STATUS_TEXT = {
    400: "请求有误",
    401: "需要登录",
    403: "没有权限",
    404: "找不到该页面",
    405: "不支持该请求方法",
    409: "操作未执行",
    422: "内容有误",
    429: "请求过于频繁",
    500: "服务器内部错误",
    503: "服务暂时不可用",
}


class AdminHandler(tornado.web.RequestHandler):
    """Base of every ``/admin`` page.

    ``permissions`` maps the HTTP method to the permission it needs at least
    (:data:`bot.admin_accounts.PERMISSIONS`); a method not listed is refused.
    Every non-GET request must carry Tornado's xsrf token. An anonymous
    request is redirected to the log-in form; too low a role gets 403.
    """

    permissions: dict[str, str] = {"GET": "read"}
    #: Pages that need no session (the log-in form).
    public = False
    #: Seconds of MongoDB time a request may take (``handlers.base.within_budget``):
    #: under the 10 s a proxy in front usually waits (the README's nginx), so a
    #: frozen database gives our 503 page, not the proxy's 504 after 15-20 s.
    mongo_budget = 8.0
    #: Errors as ``{"error": {"code", "message"}}`` (pages a script reads), not an HTML page.
    json_errors = False
    #: Whether a request here is the admin's doing, and so keeps the session from
    #: expiring when idle (a page's own polling is not: it would keep it for ever).
    activity = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        budget_requests(cls, cls.mongo_budget)

    def initialize(self, runtime) -> None:
        self.runtime = runtime
        self.console = runtime.console
        self.admin: AdminUser | None = None
        self.actor: Actor | None = None

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )

    async def prepare(self) -> None:
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            self.check_xsrf_cookie()
        if self.public:
            return
        token = self.get_signed_cookie(SESSION_COOKIE, max_age_days=1)
        user = await self.runtime.admins.session_user(token.decode(), touch=self.activity) if token else None
        if user is None:
            if self.json_errors:  # a script: a log-in page would be no answer it can read
                raise tornado.web.HTTPError(401)
            target = self.request.uri if self.request.method == "GET" else "/admin"
            self.redirect("/admin/login?next=" + quote(target, safe=""), status=303 if self.request.method != "GET" else 302)
            return
        self.admin = user
        self.actor = Actor(user.name, user.role, self.request.remote_ip or "")
        needed = self.permissions.get(self.request.method)
        if needed is None:
            raise tornado.web.HTTPError(405)
        if not allowed(user.role, needed):
            self.actor.require(needed)  # raises Forbidden with the role needed

    @property
    def secure_cookies(self) -> bool:
        """Whether the console is reached over https: behind nginx, serve's
        xheaders make the protocol follow X-Forwarded-Proto; an https
        PUBLIC_URL says the same when the proxy does not send it."""
        return self.request.protocol == "https" or self.runtime.config.base_url.startswith("https://")

    def set_cookie(self, name: str, value: str | bytes, *args: Any, **kwargs: Any) -> None:
        # Every cookie of the console, Tornado's own _xsrf included, is Secure over https.
        if self.secure_cookies:
            kwargs["secure"] = True
        super().set_cookie(name, value, *args, **kwargs)

    # -- rendering ------------------------------------------------------------------

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(
            admin=self.admin,
            roles=ROLES,
            can=lambda permission: self.admin is not None and allowed(self.admin.role, permission),
            local=local_time,
            # Who made a record, as the audit log names them (rvowner, cli:NAME): notices
            # a merchant's status change sent are made as admin:NAME (the history's form).
            who=lambda by: (by or "").removeprefix("admin:"),
            nav=getattr(self, "nav", ""),
            flash=self._flash(),
            tojson=lambda value: json.dumps(value, ensure_ascii=False, default=str),
        )
        return namespace

    def done(self, url: str, message: str) -> None:
        """Redirect (303, after a POST) to ``url``, which will say ``message`` once."""
        self.set_signed_cookie(FLASH_COOKIE, tornado.escape.url_escape(message[:300]), expires_days=None,
                               httponly=True, samesite="Lax", path="/admin")
        self.redirect(url, status=303)

    def _flash(self) -> str:
        raw = self.get_signed_cookie(FLASH_COOKIE, max_age_days=1)
        if not raw:
            return ""
        self.clear_cookie(FLASH_COOKIE, path="/admin")
        return tornado.escape.url_unescape(raw.decode())

    #: The stamp of the record a form edits (a draft's last save), sent back with the form.
    seen = ""

    def seen_stamp(self) -> str | None:
        """The stamp the submitted form carries (``None``: none, no check)."""
        value = self.get_argument("seen", None)
        if value is not None:
            self.seen = value  # shown again if the form is
        return value

    def page(self, template: str, http_status: int = 200, **values: Any) -> None:
        self.set_status(http_status)
        values.setdefault("seen", self.seen)
        self.render(f"admin/{template}", **values)

    def log_exception(self, typ, value, tb) -> None:
        # A refusal of the domain is an answer, not a server error.
        if isinstance(value, BotError):
            log.info("%s %s refused: %s", self.request.method, self.request.path, value.code)
            return
        super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        name_allowed_methods(self, status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = _STATUS_TEXT.get(status_code, "请求失败")
        detail = ""
        if isinstance(exc, BotError):
            status_code = http_status(exc)
            self.set_status(status_code)
            message, detail = _STATUS_TEXT.get(status_code, "请求失败"), exc.message
        elif isinstance(exc, tornado.web.HTTPError) and "xsrf" in (exc.log_message or "").lower():
            detail = "表单已过期或来源不明（缺少或不匹配的 xsrf 令牌）。请刷新页面后重新提交。"
        elif isinstance(exc, tornado.web.MissingArgumentError):
            detail = f"缺少参数 {exc.arg_name}"
        elif isinstance(exc, MongoUnavailable + RedisUnavailable):
            self.set_status(503)
            status_code, message, detail = 503, _STATUS_TEXT[503], "数据库暂时无法连接，请稍后再试。"
        self.clear_header("Content-Disposition")
        if self.json_errors:
            code = exc.code if isinstance(exc, BotError) else HTTPStatus(status_code).phrase.lower().replace(" ", "_")
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps({"error": {"code": code, "message": detail or message}}, ensure_ascii=False))
            return
        self.set_header("Content-Type", "text/html; charset=utf-8")
        try:
            self.render("admin/error.html", status=status_code, message=message, detail=detail)
        except Exception:  # the template itself failed: still no traceback
            log.exception("error page failed")
            self.finish(f"<!doctype html><meta charset=utf-8><title>{status_code}</title><p>{message}</p>")

    # -- input ----------------------------------------------------------------------

    def text(self, name: str, default: str = "", limit: int = 20_000) -> str:
        """A form field, stripped of surrounding space; too long is refused."""
        value = self.get_argument(name, default, strip=False)
        if len(value) > limit:
            raise BotError(f"字段 {name} 过长（最多 {limit} 个字符）", code="too_long")
        return value

    def day(self, name: str, end: bool = False) -> dt.datetime | None:
        """A ``YYYY-MM-DD`` field as the start (or end) of that Beijing day, in UTC."""
        value = self.get_argument(name, "").strip()
        if not value:
            return None
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise BotError(f"日期格式不正确：{value!r}，请使用 YYYY-MM-DD", code="bad_date") from None
        try:
            start = typed_utc(dt.datetime.combine(day, dt.time()))
        except ValueError as exc:
            raise BotError(f"{value}：{exc}", code="bad_date") from None
        return start + dt.timedelta(days=1) if end else start

    def stream_csv(self, filename: str) -> None:
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')


budget_requests(AdminHandler, AdminHandler.mongo_budget)


def local_time(value: dt.datetime | None, seconds: bool = False) -> str:
    """Beijing time as admins read it."""
    if value is None:
        return "—"
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


__all__ = ["AdminHandler", "PERMISSIONS", "SESSION_COOKIE", "local_time"]
