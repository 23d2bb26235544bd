"""Which delivered notices a user has read (the mini-program's inbox).

Insert-only: one document per notice and reader (``_id`` = ``<notice>:<openid>``),
so marking twice keeps the first time and needs no update.
"""

from __future__ import annotations

import datetime as dt

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.mongo import as_datetime


class NoticeReads:
    """The ``notice_reads`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["notice_reads"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([IndexModel([("openid", ASCENDING)], name="openid")])

    async def mark(self, openid: str, notice_id: str, at: dt.datetime) -> bool:
        """Record the first reading; ``False`` if it was read before."""
        try:
            await self._coll.insert_one({"_id": f"{notice_id}:{openid}", "openid": openid, "notice_id": notice_id, "at": at})
        except DuplicateKeyError:
            return False
        return True

    async def read_at(self, openid: str) -> dict[str, dt.datetime]:
        """Notice id -> when ``openid`` first read it."""
        docs = await self._coll.find({"openid": openid}).to_list(None)
        return {d["notice_id"]: as_datetime(d["at"]) for d in docs}
