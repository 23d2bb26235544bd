"""Each user's latest consent choice, kept beside the ledger for the dashboard.

The ledger (:mod:`storage.consents`) is append-only evidence, and "the latest
record of every user" over it means reading all of it: 12 s at 100,000
records on nx-27017, two minutes at a million. The ``consent_latest``
collection holds one document per user, ``{_id: openid, openid, version,
action, at_ms, record}``, derived from the ledger and never consulted for a
consent decision (those read the ledger itself).

It is brought up to date by replaying the ledger from a watermark
(``views.consent_latest.through_ms``) rather than by a second write in each
append: a process killed between the two writes would leave the figure
wrong for good, while a replay from the watermark heals whatever any process
missed. The replay starts :data:`SLACK` before the watermark, since a record
whose time was taken before a catch-up may be inserted after it read that
range. Replays are idempotent: a user's document is replaced only by a record
at least as recent as the one it holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import AsyncIterator

from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from storage.consents import carried_away
from storage.mongo import PAGE, as_datetime, epoch_ms, exactly, read_all

#: How far before the watermark a replay starts (in-flight appends, clocks
#: of several hosts a little apart).
SLACK = dt.timedelta(minutes=5)

#: The longest replay window, in seconds (sparse years of ledger).
MAX_SPAN = 366 * 24 * 3600

#: Upserts per bulk write.
CHUNK = 1000

_VIEW = "consent_latest"
_DUPLICATE_KEY = 11000


class ConsentView:
    """The ``consent_latest`` collection and its watermark in ``views``."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._ledger = db["consents"]
        self._coll = db[_VIEW]
        self._views = db["views"]
        self._lock = asyncio.Lock()  # one replay at a time in this process

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([
            IndexModel([("openid", ASCENDING)], name="openid"),
            IndexModel([("version", ASCENDING), ("action", ASCENDING)], name="version_action"),
        ])

    async def catch_up(self, now: dt.datetime) -> int:
        """Replay the ledger records since the watermark; the number replayed.

        The first call replays the whole ledger (a database from before this
        view, or records inserted around the service).
        """
        async with self._lock:
            meta = await self._views.find_one({"_id": _VIEW})
            since = None
            if meta is not None and "through_ms" in meta:
                since = dt.datetime.fromtimestamp(meta["through_ms"] / 1000, dt.timezone.utc) - SLACK
            latest: dict[str, dict] = {}
            replayed = 0
            async for doc in self._records_since(since, now):
                replayed += 1
                held = latest.get(doc["openid"])
                if held is None or as_datetime(doc["at"]) >= as_datetime(held["at"]):
                    latest[doc["openid"]] = doc
            # Openids whose records were carried to another are left out (the
            # copies count there): a replay that reaches their originals again
            # (the slack before the watermark) must not count them back.
            away = await carried_away(self._ledger, list(latest))
            await self._apply([doc for openid, doc in latest.items() if openid not in away])
            await _set_if_greater(self._views, _VIEW, "through_ms", epoch_ms(now))
            return replayed

    async def refresh(self, openids: list[str]) -> None:
        """Rebuild these users' documents from the ledger as it is now (after
        records were carried from one openid to another, which a replay by
        time would not see: the copies keep their original times)."""
        away = await carried_away(self._ledger, openids)
        for openid in openids:
            docs = await self._ledger.find({"openid": openid}, {"openid": 1, "version": 1, "at": 1, "action": 1}) \
                .sort("at", -1).limit(1).to_list(1)
            if not docs or openid in away:
                await self._coll.delete_one({"_id": openid})
                continue
            doc = docs[0]
            await self._coll.replace_one(
                {"_id": openid},
                # The _id in the document too: nx-27017's upsert does not take it from the filter.
                {"_id": openid, "openid": openid, "version": doc["version"], "action": doc["action"],
                 "at_ms": epoch_ms(doc["at"]), "record": doc["_id"]},
                upsert=True,
            )

    async def accepted(self, version: str) -> set[str]:
        """Users whose latest choice is acceptance of ``version``."""
        docs = await read_all(self._coll, {"version": exactly(version), "action": "accept"}, {"openid": 1}, "openid")
        return {d["openid"] for d in docs}

    async def _records_since(self, since: dt.datetime | None, now: dt.datetime) -> AsyncIterator[dict]:
        """Ledger records from ``since`` on (all if None), in ascending time
        windows (not in order within one).

        Windows rather than pages of "the next N after the last one": nx-27017
        answers a sorted, limited range by reading the whole range, which made
        every page cost as much as the rest of the ledger (71 s for 100,000
        records). A window's span adapts to hold about :data:`PAGE` records.
        Bounds are whole seconds, since nx-27017 compares times to the second
        only (a range from 00:00:00.5 also returns 00:00:00.2).
        """
        projection = {"openid": 1, "version": 1, "at": 1, "action": 1}
        if since is None:
            first = await self._ledger.find({}, {"at": 1}).sort("at", ASCENDING).limit(1).to_list(1)
            if not first:
                return
            since = as_datetime(first[0]["at"])
        low, end, span = _second(since), now, 3600
        while low <= end:
            high = low + dt.timedelta(seconds=span)
            window = await self._ledger.find({"at": {"$gte": low, "$lt": high}}, projection).to_list(None)
            for doc in window:
                yield doc
            low = high
            if len(window) < PAGE // 4:
                span = min(span * 2, MAX_SPAN)
            elif len(window) > PAGE:
                span = max(1, span // 2)
        # Records dated after ``now`` (another host's clock ahead of ours).
        for doc in await self._ledger.find({"at": {"$gte": low}}, projection).to_list(None):
            yield doc

    async def _apply(self, records: list[dict]) -> None:
        for start in range(0, len(records), CHUNK):
            operations = []
            for doc in records[start:start + CHUNK]:
                at_ms = epoch_ms(doc["at"])
                operations.append(UpdateOne(
                    {"_id": doc["openid"], "at_ms": {"$lte": at_ms}},
                    {"$set": {"openid": doc["openid"], "version": doc["version"], "action": doc["action"],
                              "at_ms": at_ms, "record": doc["_id"]}},
                    upsert=True,
                ))
            try:
                await self._coll.bulk_write(operations, ordered=False)
            except BulkWriteError as exc:
                # A duplicate key is a user whose document already holds a
                # more recent record: nothing to do.
                if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise


def _second(at: dt.datetime) -> dt.datetime:
    return at.replace(microsecond=0)


async def _set_if_greater(coll, _id: str, field: str, value: int) -> None:
    """Set ``field`` to ``value`` unless the document holds a greater one."""
    try:
        await coll.update_one({"_id": _id, field: {"$lt": value}}, {"$set": {field: value}}, upsert=True)
    except DuplicateKeyError:
        pass
