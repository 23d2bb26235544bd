"""Log-in and log-out of the admin console."""

from __future__ import annotations

import tornado.web

from bot.admin_accounts import LoginFailed, LoginLocked
from handlers.admin.base import SESSION_COOKIE, AdminHandler


def safe_next(target: str) -> str:
    """Only our own console pages are redirect targets (no open redirect)."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target and "/login" not in target:
        return target
    return "/admin"


class LoginHandler(AdminHandler):
    public = True

    def get(self) -> None:
        self.page("login.html", next=safe_next(self.get_argument("next", "/admin")), name="", error="")

    async def post(self) -> None:
        name = self.get_argument("name", "").strip()[:64]
        password = self.get_argument("password", "", strip=False)[:1024]
        target = safe_next(self.get_argument("next", "/admin"))
        try:
            _, token = await self.runtime.admins.authenticate(name, password, self.request.remote_ip or "")
        except (LoginLocked, LoginFailed) as exc:
            self.page("login.html", http_status=exc.status, next=target, name=name, error=exc.message)
            return
        self.set_signed_cookie(
            SESSION_COOKIE, token, expires_days=None, httponly=True, samesite="Lax",
            # Behind nginx, serve's xheaders make protocol follow X-Forwarded-Proto;
            # an https PUBLIC_URL says the same when the proxy does not send it.
            secure=self.request.protocol == "https" or self.runtime.config.base_url.startswith("https://"),
        )
        self.redirect(target, status=303)


class LogoutHandler(AdminHandler):
    permissions = {"POST": "read"}

    async def post(self) -> None:
        token = self.get_signed_cookie(SESSION_COOKIE, max_age_days=1)
        if token:
            await self.runtime.admins.logout(token.decode(), self.actor)
        self.clear_cookie(SESSION_COOKIE)
        self.redirect("/admin/login", status=303)


class AdminNotFoundHandler(AdminHandler):
    """Unknown pages under /admin: log in first, then an HTML 404."""

    permissions = {"GET": "read", "POST": "read"}

    def get(self) -> None:
        raise tornado.web.HTTPError(404)

    post = get
