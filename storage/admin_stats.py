"""Read-only figures for the admin dashboard, across collections.

Kept apart from the repositories because it only reads, and with simple
queries (one ``$group``, projected scans) that every MongoDB stand-in answers.
"""

from __future__ import annotations

import datetime as dt

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import as_datetime
from storage.notices import Notice, _notice


class AdminStats:
    def __init__(self, db: AsyncDatabase) -> None:
        self._db = db

    async def merchants_by_status(self) -> dict[str, int]:
        pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        return {row["_id"]: int(row["n"]) async for row in await self._db["merchants"].aggregate(pipeline)}

    async def consents_since(self, since: dt.datetime) -> list[tuple[dt.datetime, str]]:
        """(at, action) of every ledger record since ``since``; a copy carried to
        a follower's openid is not a second choice (``storage.openid_moves``)."""
        cursor = self._db["consents"].find({"at": {"$gte": since}}, {"action": 1, "at": 1, "copied_from": 1})
        return [(as_datetime(doc["at"]), doc["action"]) async for doc in cursor if "copied_from" not in doc]

    async def recent_notices(self, limit: int = 50, skip: int = 0, category: str | None = None) -> list[Notice]:
        """Notices newest first, a page at a time, of one category if given."""
        query = {"category": category} if category else {}
        docs = await (self._db["notices"].find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                      .skip(skip).limit(limit).to_list(None))
        return [_notice(d) for d in docs]

    async def unfinished_notices(self) -> list[Notice]:
        """Broadcasts queued, sending or paused, whatever their age, newest first."""
        docs = await (self._db["notices"].find({"status": {"$in": ["queued", "sending", "paused"]}})
                      .sort("created_at", DESCENDING).limit(200).to_list(None))
        return [_notice(d) for d in docs]
