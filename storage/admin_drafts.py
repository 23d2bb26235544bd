"""Drafts of notices and agreement versions, written by editors, published by owners.

One document per draft; an edit replaces the document's content fields whole,
so nothing half-written is ever read back. The fields are kept as JSON text:
nx-27017 mangles nested arrays written by ``$set``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from bson import ObjectId
from pymongo import DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import as_datetime

KINDS = ("notice", "version")


@dataclasses.dataclass(frozen=True)
class Draft:
    id: str
    kind: str
    title: str
    fields: dict
    created_by: str
    updated_by: str
    updated_at: dt.datetime | None
    status: str  # draft, published, discarded
    result: str = ""  # the notice id or version it became


class Drafts:
    """The ``admin_drafts`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["admin_drafts"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([IndexModel([("kind", 1), ("updated_at", DESCENDING)], name="kind_updated")])

    async def save(self, kind: str, title: str, fields: dict, by: str, at: dt.datetime, draft_id: str | None = None) -> str:
        """Create a draft, or replace an open one's content. Returns its id;
        raises KeyError when ``draft_id`` is not an open draft."""
        if kind not in KINDS:
            raise ValueError(kind)
        if draft_id is None:
            draft_id = str(ObjectId())
            await self._coll.insert_one(
                {"_id": draft_id, "kind": kind, "title": title, "fields": json.dumps(fields, ensure_ascii=False), "created_by": by,
                 "updated_by": by, "updated_at": at, "status": "draft", "result": ""}
            )
            return draft_id
        result = await self._coll.update_one(
            {"_id": draft_id, "kind": kind, "status": "draft"},
            {"$set": {"title": title, "fields": json.dumps(fields, ensure_ascii=False), "updated_by": by, "updated_at": at}},
        )
        if result.matched_count != 1:
            raise KeyError(draft_id)
        return draft_id

    async def close(self, draft_id: str, status: str, result: str, by: str, at: dt.datetime) -> bool:
        """Mark an open draft ``published`` or ``discarded``; False if it was not open."""
        outcome = await self._coll.update_one(
            {"_id": draft_id, "status": "draft"},
            {"$set": {"status": status, "result": result, "updated_by": by, "updated_at": at}},
        )
        return outcome.matched_count == 1

    async def get(self, draft_id: str) -> Draft | None:
        doc = await self._coll.find_one({"_id": draft_id})
        return _draft(doc) if doc else None

    async def open(self, kind: str, limit: int = 50) -> list[Draft]:
        docs = await self._coll.find({"kind": kind, "status": "draft"}).sort("updated_at", DESCENDING).limit(limit).to_list(None)
        return [_draft(d) for d in docs]


def _draft(doc: dict) -> Draft:
    return Draft(
        id=doc["_id"], kind=doc["kind"], title=doc.get("title", ""), fields=json.loads(doc.get("fields") or "{}"),
        created_by=doc.get("created_by", ""), updated_by=doc.get("updated_by", ""),
        updated_at=as_datetime(doc.get("updated_at")), status=doc.get("status", "draft"), result=doc.get("result", ""),
    )
