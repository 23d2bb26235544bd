"""Merchants and admin accounts."""

from __future__ import annotations

import datetime as dt


import tornado.escape

from bot.admin_accounts import ROLES
from bot.console import MERCHANT_HEADINGS, merchant_row
from bot.spreadsheet import ExcelCsv
from bot.errors import BotError
from bot.texts import CONSENT_STATUS
from bot.merchants import STATUSES, TRANSITIONS, NoAccount, changed_by, profile_stamp
from bot.validation import ENTITY_TYPES
from handlers.admin.base import AdminHandler
from handlers.base import http_status

PAGE = 200


class MerchantsHandler(AdminHandler):
    nav = "merchants"

    async def get(self) -> None:
        query, status = self.get_argument("q", "").strip()[:100], self.get_argument("status", "").strip()
        found = await self.console.search_merchants(self.actor, query, status or None)
        if status == "pending_review":  # the review queue: who waits longest first
            found.sort(key=lambda m: m.created_at or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
        try:
            page = min(max(1, int(self.get_argument("page", "1"))), max(1, -(-len(found) // PAGE)))
        except ValueError:
            page = 1
        self.page("merchants.html", merchants=found[(page - 1) * PAGE:page * PAGE], total=len(found), page=page,
                  pages=max(1, -(-len(found) // PAGE)), q=query, status=status,
                  statuses=STATUSES, kinds=ENTITY_TYPES)


class MerchantsCsvHandler(AdminHandler):
    async def get(self) -> None:
        query, status = self.get_argument("q", "").strip()[:100], self.get_argument("status", "").strip()
        found = await self.console.search_merchants(self.actor, query, status or None)
        await self.runtime.audit.record(self.actor.name, "export", "merchants.csv",
                                        after={"q": query, "status": status, "rows": len(found)},
                                        address=self.actor.address)
        sheet = ExcelCsv(MERCHANT_HEADINGS.values())
        for merchant in found:
            row = merchant_row(merchant)
            sheet.row([row[f] for f in MERCHANT_HEADINGS])
        self.stream_csv("merchants.csv")
        self.finish(sheet.take())


class MerchantHandler(AdminHandler):
    nav = "merchants"
    # Reviewing needs editor; suspending, reinstating, closing owner (checked by the console).
    permissions = {"GET": "read", "POST": "merchant_review"}

    async def get(self, openid: str) -> None:
        await self._show(openid)

    async def post(self, openid: str) -> None:
        status = self.get_argument("status", "")
        reason = self.text("reason", "")  # its length is the account rules' (REASON_LIMIT)
        before = await self.runtime.merchants.get(openid)  # for the message only
        try:
            await self.console.set_merchant_status(self.actor, openid, status, reason,
                                                   seen=self.get_argument("seen", "") or None)
        except BotError as exc:
            if exc.kind == "forbidden":
                raise
            await self._show(openid, error=exc.message, status=http_status(exc), reason=reason)
            return
        # The same status again is an action of its own (允许重新注册, 退回修改).
        same = TRANSITIONS.get((status, status)) if before is not None and before.status == status else None
        done = f"已{same}，并已通知商家" if same else f"状态已改为“{STATUSES[status]}”"
        self.done(f"/admin/merchants/{tornado.escape.url_escape(openid, plus=False)}", done)

    async def _show(self, openid: str, error: str = "", status: int = 200, reason: str = "") -> None:
        merchant = await self.runtime.merchants.get(openid)
        if merchant is None:
            raise NoAccount(f"没有 openid 为 {openid} 的商家")
        history = await self.runtime.merchants.repo.history(openid)
        moves = await self.runtime.merchants.moves(merchant)
        sharing, sharing_total = await self.runtime.merchants.sharing_credit_code(merchant)
        consent = await self.console.merchant_consent(openid)
        self.page("merchant.html", http_status=status, m=merchant, history=history, moves=moves, statuses=STATUSES,
                  sharing=sharing, sharing_total=sharing_total, changed_by=changed_by, consent=consent, consent_labels=CONSENT_STATUS,
                  kinds=ENTITY_TYPES, error=error, reason=reason, seen=profile_stamp(merchant))


class AdminsHandler(AdminHandler):
    nav = "users"
    permissions = {"GET": "manage_admins", "POST": "manage_admins"}

    async def get(self) -> None:
        await self._show()

    async def post(self) -> None:
        name = self.text("name", "", 64).strip()
        role = self.text("role", "viewer", 16)
        try:
            await self.runtime.admins.create(name, role, self.get_argument("password", "", strip=False), by=self.actor)
        except BotError as exc:
            await self._show(error=exc.message, status=http_status(exc), name=name)
            return
        self.done("/admin/users", f"已创建管理员 {name}")

    async def _show(self, error: str = "", status: int = 200, name: str = "") -> None:
        users = await self.runtime.admins.list()
        sessions = {u.name: await self.runtime.admins.sessions.count(u.name) for u in users}
        self.page("users.html", http_status=status, users=users, sessions=sessions, error=error, name=name)


class AdminUserHandler(AdminHandler):
    nav = "users"
    permissions = {"POST": "manage_admins"}

    async def post(self, name: str, action: str) -> None:
        admins = self.runtime.admins
        if action == "role":
            await admins.set_role(name, self.get_argument("role", ""), by=self.actor)
            done = f"{name} 的角色已改为 {ROLES.get(self.get_argument('role', ''), '')}"
        elif action in ("disable", "enable"):
            await admins.set_disabled(name, action == "disable", by=self.actor)
            done = f"已{'停用' if action == 'disable' else '启用'} {name}"
        elif action == "revoke":
            count = await admins.revoke_sessions(name, by=self.actor)
            done = f"已注销 {name} 的 {count} 个会话"
        else:
            await admins.set_password(name, self.get_argument("password", "", strip=False), by=self.actor)
            done = f"已重设 {name} 的密码，其会话已全部注销"
        self.done("/admin/users", done)
