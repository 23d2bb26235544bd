"""The admin audit log: insert-only, one document per admin action.

Never updated or deleted here: like the consent ledger, it is evidence.
``before`` and ``after`` are small documents (what changed), ``target`` names
what was acted on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import AsyncIterator

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import as_datetime, exactly, filter_query


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    id: str
    at: dt.datetime
    actor: str
    action: str
    target: str
    before: dict | None
    after: dict | None
    address: str


class AuditLog:
    """The ``admin_audit`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["admin_audit"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("at", DESCENDING)], name="at"),
                IndexModel([("actor", ASCENDING), ("at", DESCENDING)], name="actor_at"),
                IndexModel([("action", ASCENDING), ("at", DESCENDING)], name="action_at"),
            ]
        )

    async def append(self, *, at: dt.datetime, actor: str, action: str, target: str,
                     before: dict | None, after: dict | None, address: str) -> str:
        entry_id = str(ObjectId())
        await self._coll.insert_one(
            {"_id": entry_id, "at": at, "actor": actor, "action": action, "target": target,
             "before": before, "after": after, "address": address}
        )
        return entry_id

    def _query(self, actor: str | None, action: str | None, since: dt.datetime | None, until: dt.datetime | None) -> dict:
        query = filter_query({"action": action}, since, until)
        if actor:
            query.update(actor_filter(actor))
        return query

    async def recent(self, *, actor: str | None = None, action: str | None = None, since: dt.datetime | None = None,
                     until: dt.datetime | None = None, limit: int = 200, skip: int = 0) -> list[AuditEntry]:
        """Newest first."""
        # _id breaks ties: entries of one millisecond would otherwise show on two pages, or on none.
        cursor = (self._coll.find(self._query(actor, action, since, until))
                  .sort([("at", DESCENDING), ("_id", DESCENDING)]).skip(skip).limit(limit))
        return [_entry(d) for d in await cursor.to_list(None)]

    async def scan(self, *, actor: str | None = None, action: str | None = None, since: dt.datetime | None = None,
                   until: dt.datetime | None = None) -> AsyncIterator[AuditEntry]:
        """Oldest first, streamed (exports)."""
        async for doc in self._coll.find(self._query(actor, action, since, until)).sort([("at", ASCENDING), ("_id", ASCENDING)]):
            yield _entry(doc)


def actor_filter(actor: str) -> dict:
    """The find filter for an actor as an admin types it: ``cli:NAME`` (or a
    console admin's name) exactly; a kind alone (``cli``, no colon) also every
    ``cli:NAME``, since the CLI records ``--by NAME`` after a colon and
    "everything done from the command line" is what ``cli`` is asked for.

    Admin names cannot hold a colon, so a bare name gains nothing but its own
    entries. The prefix is an anchored, escaped ``$regex``: MongoDB serves it
    from the ``(actor, at)`` index, and nx-27017 matches it the same."""
    if ":" in actor:
        return {"actor": exactly(actor)}
    return {"$or": [{"actor": exactly(actor)}, {"actor": {"$regex": "^" + re.escape(actor + ":")}}]}


def _entry(doc: dict) -> AuditEntry:
    return AuditEntry(
        id=doc["_id"], at=as_datetime(doc["at"]), actor=doc.get("actor", ""), action=doc.get("action", ""),
        target=doc.get("target", ""), before=doc.get("before"), after=doc.get("after"), address=doc.get("address", ""),
    )
