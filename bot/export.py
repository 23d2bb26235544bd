"""A user's own data: one JSON document with everything held about them.

``export_user`` builds it (the CLI prints it, the one-time link serves it);
later capabilities add their parts here (merchant record, preferences,
deliveries).
"""

from __future__ import annotations

import datetime as dt
import secrets

from bot import texts
from bot.consent import Consents
from bot.merchants import STATUSES, MerchantAccounts
from bot.notices import Broadcasts
from bot.preferences import NoticePreferences
from storage.export_links import ExportLinks
from storage.followers import Followers

#: A download link works once, within this many seconds.
LINK_TTL = 24 * 3600


class Exports:
    """Builds export documents and one-time download links."""

    def __init__(
        self,
        followers: Followers,
        consents: Consents,
        merchants: MerchantAccounts,
        preferences: NoticePreferences,
        broadcasts: Broadcasts,
        links: ExportLinks,
        clock,
    ) -> None:
        self._followers = followers
        self._consents = consents
        self._merchants = merchants
        self._preferences = preferences
        self._broadcasts = broadcasts
        self._links = links
        self._clock = clock
        #: Further parts of the document by name: ``async (openid) -> data`` (e.g. the mini-program's).
        self.parts: dict = {}

    async def knows(self, openid: str) -> bool:
        """Whether anything is kept about ``openid``: a follower, a consent record,
        a merchant, or what the added parts hold (a mini-program log-in, questions)."""
        if (
            await self._followers.get(openid) is not None
            or await self._consents.ledger.latest(openid) is not None
            or await self._merchants.get(openid) is not None
        ):
            return True
        for part in self.parts.values():
            if await part(openid):
                return True
        return False

    async def document(self, openid: str) -> dict:
        follower = await self._followers.get(openid)
        history = await self._consents.ledger.history(openid)
        state = await self._consents.state(openid)
        extra = {name: await part(openid) for name, part in self.parts.items()}
        return {
            "openid": openid,
            "exported_at": _iso(self._clock()),
            "follower": None
            if follower is None
            else {
                "subscribed": follower.subscribed,
                "subscribed_at": _iso(follower.subscribed_at),
                "unsubscribed_at": _iso(follower.unsubscribed_at),
                "last_interaction_at": _iso(follower.last_interaction_at),
            },
            "consent_status": {"status": state.status, "current_version": state.current.version},
            "consents": [record.to_export() for record in history],
            "merchant": await self._merchants.export(openid),
            "preferences": await self._preferences.export(openid),
            "deliveries": await self._deliveries(openid),
            **extra,
        }

    async def _deliveries(self, openid: str) -> list[dict]:
        records = await self._broadcasts.deliveries.for_user(openid)
        notices = await self._broadcasts.notices.many([r.notice_id for r in records]) if records else {}
        return [
            {
                "notice": r.notice_id,
                "category": notices[r.notice_id].category if r.notice_id in notices else None,
                "title": notices[r.notice_id].title if r.notice_id in notices else None,
                "status": r.status,
                "channel": r.channel,
                "at": _iso(r.updated_at),
                "errcode": r.errcode,
                "reason": r.reason,
            }
            for r in records
        ]

    async def summary_with_link(self, openid: str, base_url: str) -> str:
        """The chat reply to 导出我的数据: a short summary and a one-time link."""
        doc = await self.document(openid)
        token = secrets.token_urlsafe(24)
        await self._links.create(token, openid, doc, LINK_TTL)  # as it is now: 确认注销 may follow before it is opened
        summary = {
            "consents": len(doc["consents"]),
            "consent_status": texts.CONSENT_STATUS[doc["consent_status"]["status"]],
            "merchant": "无" if doc["merchant"] is None else STATUSES[doc["merchant"]["status"]],
        }
        return texts.export_ready(summary, f"{base_url.rstrip('/')}/export/{token}")

    async def redeem(self, token: str) -> dict | None:
        """The document behind a link as it was when the link was made, once;
        ``None`` if unknown, used or expired."""
        kept = await self._links.take(token)
        if isinstance(kept, str):  # a link made before snapshots were kept
            return await self.document(kept)
        return kept


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None
