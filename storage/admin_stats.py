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

    async def recent_notices(self, limit: int = 50) -> list[Notice]:
        docs = await self._db["notices"].find({}).sort("created_at", DESCENDING).limit(limit).to_list(None)
        return [_notice(d) for d in docs]
