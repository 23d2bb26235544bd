"""``/api/v1/me…`` and ``/api/v1/consents``: the signed-in user's own data."""

from __future__ import annotations

import re

from bot import api_texts, my_account, texts
from bot.consent import Origin
from bot.errors import BotError
from bot.merchants import STATUSES, profile_stamp
from bot.preferences import category_from_name
from bot.mini_sessions import ApiUser
from bot.validation import Invalid
from handlers.api import render
from handlers.api.base import MONGO_BUDGET, ApiHandler
from service.runtime import Runtime

#: An Idempotency-Key makes a repeated consent request record once.
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{8,64}")


async def user_state(runtime: Runtime, user: ApiUser) -> dict:
    """What the mini-program shows on its first screen: consent, account, unread notices."""
    services = runtime.services
    state = await services.consents.state(user.openid)
    merchant = await services.merchants.get(user.openid)
    items = await runtime.inbox.items(user.openid)
    return {
        "openid": user.miniprogram_openid,
        "linked_official_account": user.linked,
        "consent": render.consent_state(state, await services.terms.upcoming()),
        "registration": None
        if merchant is None
        else {"status": merchant.status, "status_label": STATUSES[merchant.status]},
        "unread_notices": sum(1 for item in items if not item.read),
    }


class MeHandler(ApiHandler):
    """GET: the user's state. DELETE: close the merchant account (chat's 注销账户)."""

    async def get(self) -> None:
        self.write_json(await user_state(self.runtime, self.user))

    async def delete(self) -> None:
        merchant = await my_account.close(self.services, self.user.openid)
        barred = await self.services.merchants.barred_from_registering(merchant.openid)
        self.write_json({"registration": render.registration(merchant, barred=barred),
                         "message": texts.CLOSED_BARRED if barred else api_texts.CLOSED})


class ConsentsHandler(ApiHandler):
    """POST ``{"version", "action"}``: accept, decline or withdraw one exact version."""

    async def post(self) -> None:
        body = self.json_body()
        key = self.request.headers.get("Idempotency-Key", "").strip()
        if key and not _IDEMPOTENCY_KEY.fullmatch(key):
            raise Invalid("Idempotency-Key 应为 8 到 64 位字母、数字或 _.:-", "Idempotency-Key")
        origin = Origin(
            channel="miniprogram",
            message_id=f"{self.user.miniprogram_openid}:{key}" if key else None,
            unionid=self.user.unionid,
            # What the request was, as proof of the choice: from where and which client.
            meta={"via": "api", "miniprogram_openid": self.user.miniprogram_openid,
                  "address": self.request.remote_ip or "",
                  "user_agent": self.request.headers.get("User-Agent", "")[:200]},
        )
        state, recorded = await my_account.record_consent(
            self.services, self.user.openid, body.get("version"), body.get("action"), origin
        )
        self.write_json(
            {"recorded": recorded, "consent": render.consent_state(state, await self.services.terms.upcoming())}
        )


class MyConsentsHandler(ApiHandler):
    """GET: the consent state and the user's ledger records, oldest first, a page at a time."""

    async def get(self) -> None:
        limit, offset = self.page_args()
        consents = self.services.consents
        state = await consents.state(self.user.openid)
        history = await consents.ledger.history(self.user.openid)
        self.write_json(
            {
                "consent": render.consent_state(state, await self.services.terms.upcoming()),
                "history": [render.consent_record(r) for r in history[offset:offset + limit]],
                **render.page(len(history), limit, offset),
            }
        )


class RegistrationHandler(ApiHandler):
    """GET: the merchant record (404 if none). PUT: register or change it, whole form."""

    async def get(self) -> None:
        merchant = await my_account.registration(self.services, self.user.openid)
        reason = await self.services.merchants.status_reason(merchant)
        # Said before the form is offered: a registration would be refused (account_suspended).
        barred = merchant.status == "closed" and await self.services.merchants.barred_from_registering(merchant.openid)
        self.set_header("ETag", f'"{profile_stamp(merchant)}"')
        self.write_json({"registration": render.registration(merchant, reason, barred)})

    async def put(self) -> None:
        # If-Match: the ETag(s) of the record the form was filled from; "*" or none: no check.
        tags = [t.strip().removeprefix("W/").strip('"') for t in self.request.headers.get("If-Match", "").split(",")]
        seen = None if not any(tags) or "*" in tags else [t for t in tags if t]
        # If-None-Match: * : register only, the app having found no record (RFC 9110 13.1.2).
        none_match = self.request.headers.get("If-None-Match", "").strip()
        if none_match not in ("", "*"):  # an ETag there would be taken for "no condition"
            raise BotError(api_texts.IF_NONE_MATCH_STAR, code="bad_request")
        create_only = none_match == "*"
        merchant, outcome = await my_account.save_registration(self.services, self.user.openid, self.json_body(), seen,
                                                                create_only=create_only)
        self.set_status(201 if outcome == "registered" else 200)
        self.set_header("ETag", f'"{profile_stamp(merchant)}"')
        self.write_json(
            {
                "registration": render.registration(merchant),
                "outcome": "resubmitted" if outcome == "corrected" else outcome,  # the contract's two
                "message": texts.registered(outcome, STATUSES[merchant.status], chat=False),
            }
        )


class NoticesHandler(ApiHandler):
    """GET: the inbox, newest first, a page at a time, with the unread count."""

    async def get(self) -> None:
        limit, offset = self.page_args()
        items = await self.runtime.inbox.items(self.user.openid)
        self.write_json(
            {
                "notices": [render.inbox_item(i) for i in items[offset:offset + limit]],
                "unread": sum(1 for i in items if not i.read),
                **render.page(len(items), limit, offset),
            }
        )


class NoticeReadHandler(ApiHandler):
    """POST: mark one notice of the inbox read (idempotent)."""

    async def post(self, notice_id: str) -> None:
        item = await self.runtime.inbox.mark_read(self.user.openid, notice_id)
        self.write_json({"notice": render.inbox_item(item)})


class PreferencesHandler(ApiHandler):
    """GET: every category on or off. PUT ``{"preferences": {category: bool}}``: change some."""

    async def get(self) -> None:
        self.write_json(render.preferences(await self.services.preferences.settings(self.user.openid)))

    async def put(self) -> None:
        wanted = self.json_body().get("preferences")
        if not isinstance(wanted, dict) or not wanted:
            raise Invalid(api_texts.PREFERENCES_EMPTY, "preferences")
        changes: dict[str, bool] = {}
        for name, on in wanted.items():
            try:
                category = category_from_name(name)
            except Invalid as exc:
                raise Invalid(exc.message, f"preferences.{name}") from None
            if not isinstance(on, bool):
                raise Invalid(api_texts.PREFERENCE_NOT_BOOL.format(category=name), f"preferences.{name}")
            if changes.get(category, on) != on:  # "service": false with "服务公告": true
                raise Invalid(api_texts.PREFERENCE_TWICE.format(category=name), f"preferences.{name}")
            changes[category] = on
        self.write_json(render.preferences(await my_account.set_preferences(self.services, self.user.openid, changes)))


class ExportHandler(ApiHandler):
    """GET: everything held about the user (the document chat's 导出我的数据 links to)."""

    read_budget = MONGO_BUDGET  # reads every record of the user
    async def get(self) -> None:
        self.set_header("Content-Disposition", 'inline; filename="wetoop-my-data.json"')
        self.write_json(await self.services.exports.document(self.user.openid))
