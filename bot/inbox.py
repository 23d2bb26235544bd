"""A user's notice inbox: the notices delivered to them, read or unread.

What was delivered comes from :meth:`bot.notices.Broadcasts.inbox` (sent
deliveries only); when the user read each is kept in ``notice_reads``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Awaitable, Callable

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
    def __init__(self, broadcasts: Broadcasts, reads: NoticeReads, clock: Callable[[], dt.datetime],
                 aliases: Callable[[str], Awaitable[list[str]]] | None = None) -> None:
        self._broadcasts = broadcasts
        self.reads = reads
        self._clock = clock
        # The mini-program openids that became this person: a notice finished
        # under one after the join (it was pending then) is theirs too.
        self._aliases = aliases

    async def items(self, openid: str) -> list[InboxItem]:
        """Delivered notices, newest first."""
        openids = [openid, *(await self._aliases(openid) if self._aliases else [])]
        pairs, read, seen = [], {}, set()
        for one in openids:
            for notice, delivery in await self._broadcasts.inbox(one):
                if notice.id not in seen:
                    seen.add(notice.id)
                    pairs.append((notice, delivery))
            if pairs:
                read = {**await self.reads.read_at(one), **read}  # the person's own openid wins
        pairs.sort(key=lambda pair: pair[1].updated_at or self._clock(), reverse=True)
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
