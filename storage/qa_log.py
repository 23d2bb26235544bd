"""Every question asked, with the clause chosen and its score; unanswered
ones are what admins review to improve the lexicon and examples."""

from __future__ import annotations

import datetime as dt

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase


class QALog:
    """The ``qa_log`` collection (insert-only)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["qa_log"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("kind", ASCENDING), ("at", DESCENDING)], name="kind_at"),
                IndexModel([("openid", ASCENDING)], name="openid"),
            ]
        )

    async def record(
        self, *, question: str, kind: str, refs: tuple[str, ...], score: float, version: str,
        openid: str | None, channel: str, at: dt.datetime,
    ) -> None:
        await self._coll.insert_one(
            {
                "_id": str(ObjectId()),
                "question": question,
                "kind": kind,
                "refs": list(refs),
                "score": round(float(score), 4),
                "version": version,
                "openid": openid,
                "channel": channel,
                "at": at,
            }
        )

    async def recent(self, kind: str | None = None, limit: int = 100) -> list[dict]:
        query = {"kind": kind} if kind else {}
        return await self._coll.find(query, {"_id": 0}).sort("at", DESCENDING).limit(limit).to_list(None)
