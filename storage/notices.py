"""Notices to users (service, security, admin, amendment, other).

For now notices are recorded; delivery (template, customer-service and mass
messages, opt-outs) comes with the notices engine.
"""

from __future__ import annotations

import datetime as dt

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

CATEGORIES = {
    "service": "服务公告",
    "security": "安全通告",
    "admin": "管理消息",
    "amendment": "条款修改通知",
    "other": "其他",
}


class Notices:
    """The ``notices`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["notices"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([IndexModel([("created_at", ASCENDING)], name="created_at")])

    async def record(
        self,
        *,
        category: str,
        title: str,
        body: str,
        important: bool,
        audience: dict,
        created_at: dt.datetime,
        created_by: str,
        extra: dict | None = None,
    ) -> str:
        """Store a notice in status ``recorded``; returns its id."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown notice category {category!r}")
        notice_id = str(ObjectId())
        await self._coll.insert_one(
            {
                "_id": notice_id,
                "category": category,
                "title": title,
                "body": body,
                "important": important,
                "audience": audience,
                "status": "recorded",
                "created_at": created_at,
                "created_by": created_by,
                **(extra or {}),
            }
        )
        return notice_id

    async def all(self) -> list[dict]:
        return await self._coll.find({}).sort("created_at", ASCENDING).to_list(None)
