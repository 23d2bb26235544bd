"""Log-in and log-out of the admin console."""

from __future__ import annotations

import tornado.web

from bot.admin_accounts import LoginFailed, LoginLocked
from handlers.admin.base import SESSION_COOKIE, AdminHandler
from handlers.base import http_status

#: Remembers the browsers an admin logged in from (see AdminAccounts.authenticate).
DEVICE_COOKIE = "wb_admin_device"
DEVICE_DAYS = 90


def safe_next(target: str) -> str:
    """Only our own console pages are redirect targets (no open redirect; no
    space or control character, which a browser drops or a header refuses)."""
    if (target.startswith("/admin") and not target.startswith("//") and "\\" not in target and "/login" not in target
            and all(c.isprintable() and not c.isspace() for c in target)):
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
            _, token, device = await self.runtime.admins.authenticate(
                name, password, self.request.remote_ip or "", self._device(name))
        except (LoginLocked, LoginFailed) as exc:
            if isinstance(exc, LoginLocked):  # as the API's 429s say it, for scripts and proxies
                self.set_header("Retry-After", str(max(1, exc.seconds)))
            self.page("login.html", http_status=http_status(exc), next=target, name=name, error=exc.message)
            return
        self.set_signed_cookie(SESSION_COOKIE, token, expires_days=None, httponly=True, samesite="Lax")
        self.set_signed_cookie(DEVICE_COOKIE, f"{name.casefold()}|{device}", expires_days=DEVICE_DAYS, httponly=True,
                               samesite="Strict")  # both Secure over https (AdminHandler.set_cookie)
        self.redirect(target, status=303)

    def _device(self, name: str) -> str | None:
        """This browser's device id for ``name``, from its signed cookie (None: a stranger's)."""
        value = self.get_signed_cookie(DEVICE_COOKIE, max_age_days=DEVICE_DAYS)
        owner, _, device = (value or b"").decode(errors="replace").partition("|")
        return device if device and owner == name.strip().casefold() else None


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
