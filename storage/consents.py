"""The consent ledger: append-only records of accept, decline and withdraw.

There is deliberately no update or delete here: the ledger is evidence. A
person whose records were given under their mini-program openid before they
followed keeps them there; copies under the follower's openid are appended
(:meth:`ConsentLedger.carry`), each naming the openid it came from
(``copied_from``), so chat finds them and the originals stay as written. A
record bound to a message (a chat reply, an API request id) takes
``<channel>:<message id>`` as its ``_id``, so a retry of the same message
cannot add a second record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import AsyncIterator

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.mongo import as_datetime, filter_query

ACTIONS = ("accept", "decline", "withdraw")
CHANNELS = ("official_account", "miniprogram", "admin_import")


@dataclasses.dataclass(frozen=True)
class ConsentRecord:
    openid: str
    version: str
    text_sha256: str
    action: str
    channel: str
    at: dt.datetime
    message_id: str | None = None
    unionid: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)
    #: For a copy carried to a follower's openid: the openid the original is under.
    copied_from: str | None = None

    def to_export(self) -> dict:
        return {
            "version": self.version,
            "action": self.action,
            "at": self.at.astimezone(dt.timezone.utc).isoformat(),
            "channel": self.channel,
            "text_sha256": self.text_sha256,
            "message_id": self.message_id,
            **({"copied_from": self.copied_from} if self.copied_from else {}),
        }


class ConsentLedger:
    """The ``consents`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["consents"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("openid", ASCENDING), ("at", DESCENDING)], name="openid_at"),
                # nx-27017 does not use the compound index for {openid}; this one it does.
                IndexModel([("openid", ASCENDING)], name="openid"),
                IndexModel([("version", ASCENDING), ("action", ASCENDING)], name="version_action"),
                IndexModel([("at", ASCENDING)], name="at"),
                IndexModel([("copied_from", ASCENDING)], name="copied_from", sparse=True),
            ]
        )

    async def append(self, record: ConsentRecord) -> bool:
        """Add ``record``; ``False`` if its message was already recorded."""
        if record.action not in ACTIONS or record.channel not in CHANNELS:
            raise ValueError(f"bad consent record: {record.action}/{record.channel}")
        doc = dataclasses.asdict(record)
        doc["_id"] = f"{record.channel}:{record.message_id}" if record.message_id else str(ObjectId())
        for optional in ("unionid", "copied_from"):
            if doc[optional] is None:
                del doc[optional]
        try:
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def of_message(self, channel: str, message_id: str) -> ConsentRecord | None:
        """The record a message (or an API request's Idempotency-Key) made, if any."""
        doc = await self._coll.find_one({"_id": f"{channel}:{message_id}"})
        return _record(doc) if doc else None

    async def history(self, openid: str) -> list[ConsentRecord]:
        """Every record of one user, oldest first."""
        docs = await self._coll.find({"openid": openid}).sort("at", ASCENDING).to_list(None)
        return [_record(doc) for doc in docs]

    async def histories(self, openids: list[str]) -> dict[str, list[ConsentRecord]]:
        """:meth:`history` of each of ``openids`` (none for a user with no record),
        a thousand users a query rather than one query each."""
        found: dict[str, list[ConsentRecord]] = {}
        for start in range(0, len(openids), 1000):
            query = {"openid": {"$in": openids[start:start + 1000]}}
            async for doc in self._coll.find(query).sort("at", ASCENDING):
                found.setdefault(doc["openid"], []).append(_record(doc))
        return found

    async def latest(self, openid: str) -> ConsentRecord | None:
        docs = await self._coll.find({"openid": openid}).sort("at", DESCENDING).limit(1).to_list(1)
        return _record(docs[0]) if docs else None

    async def openids_with_action(self, action: str) -> list[str]:
        """Users who ever recorded ``action`` (e.g. everyone who accepted any
        version); not the openids whose records were carried to another."""
        # Grouped rather than distinct(): distinct's answer is one document, at most 16 MB
        # (some 400,000 openids), and the audience of an amendment notice is everyone who accepted.
        cursor = await self._coll.aggregate([{"$match": {"action": action}}, {"$group": {"_id": "$openid"}}],
                                            allowDiskUse=True)
        found = {doc["_id"] async for doc in cursor}
        return sorted(found - await self.carried_away())

    async def carried_away(self) -> set[str]:
        """Openids whose records were carried to another openid (:meth:`carry`)."""
        return await carried_away(self._coll)

    async def carry(self, old: str, new: str, at: dt.datetime) -> int:
        """Append under ``new`` a copy of each record of ``old`` (same time,
        version, text hash, channel, message id), marked ``copied_from``;
        the number appended. Run again, it appends only what is missing."""
        copies = []
        for doc in await self._coll.find({"openid": old}).to_list(None):
            copy = {**doc, "_id": f"copy:{new}:{doc['_id']}", "openid": new, "copied_from": old}
            copy["meta"] = {**(doc.get("meta") or {}), "copied_at": at.astimezone(dt.timezone.utc).isoformat()}
            copies.append(copy)
        appended = 0
        for copy in copies:
            try:
                await self._coll.insert_one(copy)
                appended += 1
            except DuplicateKeyError:
                pass
        return appended

    async def scan(
        self,
        version: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        openid: str | None = None,
    ) -> AsyncIterator[ConsentRecord]:
        """Records matching the filters, oldest first, streamed."""
        query = filter_query({"version": version, "action": action, "openid": openid}, since, until)
        async for doc in self._coll.find(query).sort("at", ASCENDING):
            yield _record(doc)

    async def newest(self, limit: int, **filters) -> tuple[list[ConsentRecord], int]:
        """The ``limit`` newest records matching ``scan``'s filters, and how many match."""
        query = filter_query({k: filters.get(k) for k in ("version", "action", "openid")},
                             filters.get("since"), filters.get("until"))
        docs = await self._coll.find(query).sort("at", DESCENDING).limit(limit).to_list(None)
        if filters.get("since") or filters.get("until"):
            # nx-27017's $match gets a range of dates wrong (all or nothing);
            # its count_documents, slower, gets it right, as real MongoDB does both.
            return [_record(doc) for doc in docs], await self._coll.count_documents(query)
        # $match + $group rather than count_documents, which nx-27017 runs in Python.
        rows = await (await self._coll.aggregate([{"$match": query}, {"$group": {"_id": None, "n": {"$sum": 1}}}])).to_list(None)
        return [_record(doc) for doc in docs], int(rows[0]["n"]) if rows else 0


async def carried_away(ledger: AsyncCollection, among: list[str] | None = None) -> set[str]:
    """The openids named by copies' ``copied_from`` in the ``consents``
    collection ``ledger`` (of ``among`` only, if given: by its index)."""
    if among is None:
        # Grouped rather than distinct(): its answer is one document, at most 16 MB.
        cursor = await ledger.aggregate([{"$match": {"copied_from": {"$exists": True}}},
                                         {"$group": {"_id": "$copied_from"}}], allowDiskUse=True)
        return {doc["_id"] async for doc in cursor}
    found: set[str] = set()
    for start in range(0, len(among), 1000):
        found |= set(await ledger.distinct("copied_from", {"copied_from": {"$in": among[start:start + 1000]}}))
    return found


def _record(doc: dict) -> ConsentRecord:
    return ConsentRecord(
        openid=doc["openid"],
        version=doc["version"],
        text_sha256=doc["text_sha256"],
        action=doc["action"],
        channel=doc["channel"],
        at=as_datetime(doc["at"]),
        message_id=doc.get("message_id"),
        unionid=doc.get("unionid"),
        meta=doc.get("meta") or {},
        copied_from=doc.get("copied_from"),
    )
