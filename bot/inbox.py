"""A user's notice inbox: the notices delivered to them, read or unread.

What was delivered comes from :meth:`bot.notices.Broadcasts.inbox` (sent
deliveries only); when the user read each is kept in ``notice_reads``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable

from bot import api_texts
from bot.notices import Broadcasts, NoticeNotFound
from storage.notice_reads import NoticeReads
from storage.notices import Notice


@dataclasses.dataclass(frozen=True)
class InboxItem:
    notice: Notice
    delivered_at: dt.datetime | None
    read_at: dt.datetime | None

    @property
    def read(self) -> bool:
        return self.read_at is not None


class Inbox:
    def __init__(self, broadcasts: Broadcasts, reads: NoticeReads, clock: Callable[[], dt.datetime]) -> None:
        self._broadcasts = broadcasts
        self.reads = reads
        self._clock = clock

    async def items(self, openid: str) -> list[InboxItem]:
        """Delivered notices, newest first."""
        pairs = await self._broadcasts.inbox(openid)
        read = await self.reads.read_at(openid) if pairs else {}
        return [InboxItem(notice, delivery.updated_at, read.get(notice.id)) for notice, delivery in pairs]

    async def mark_read(self, openid: str, notice_id: str) -> InboxItem:
        """Mark a delivered notice read (again is fine: the first time is kept).

        Raises :class:`~bot.notices.NoticeNotFound` for a notice not in the inbox.
        """
        for item in await self.items(openid):
            if item.notice.id == notice_id:
                if item.read:
                    return item
                await self.reads.mark(openid, notice_id, self._clock())
                read = await self.reads.read_at(openid)
                return dataclasses.replace(item, read_at=read.get(notice_id))
        raise NoticeNotFound(api_texts.NOTICE_NOT_FOUND.format(notice_id=notice_id))

    async def export(self, openid: str) -> list[dict]:
        """When the user read which notice, for their data export."""
        read = await self.reads.read_at(openid)
        return [{"notice": nid, "read_at": at.isoformat() if at else None} for nid, at in sorted(read.items())]
