"""One delivery record per notice and recipient: the broadcast's ledger of work.

``_id`` is ``<notice id>:<openid>``, so a recipient is recorded once per
notice however often planning runs. A record is ``pending`` until its
outcome is written (``sent``, ``failed`` or ``skipped``), a batch at a time;
only a record whose send was confirmed becomes ``sent``. Which worker is
sending it meanwhile is kept in Redis (:mod:`storage.delivery_journal`).
``sending`` is only found in records claimed by versions before 2026-11-26,
which claimed in MongoDB.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import partial

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from storage.mongo import as_datetime, epoch_ms, in_one_transaction, read_all

STATUSES = ("pending", "sending", "sent", "failed", "skipped")
#: Records whose outcome is not written yet.
UNFINISHED = ("pending", "sending")


@dataclasses.dataclass(frozen=True)
class Delivery:
    notice_id: str
    openid: str
    status: str
    channel: str | None = None
    reason: str | None = None
    errcode: int | None = None
    attempts: int = 0
    updated_at: dt.datetime | None = None
    template_msgid: int | None = None


#: Pending records written per request while a broadcast is planned. Small:
#: nx-27017 answers one request at a time, and the sending workers' reads and
#: writes waited behind each planning write (100,000 recipients, interleaved
#: runs: 1,301 and 1,383 msg/s with 1,000, 1,429 and 1,467 with 200; 50 was no
#: better; bench/RESULTS-broadcast.md).
PENDING_PER_WRITE = 200


class Deliveries:
    """The ``deliveries`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["deliveries"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("notice_id", ASCENDING), ("status", ASCENDING)], name="notice_status"),
                IndexModel([("openid", ASCENDING)], name="openid"),
                IndexModel([("template_msgid", ASCENDING)], name="template_msgid", sparse=True),
            ]
        )

    async def create_pending(self, notice_id: str, openids: list[str], at: dt.datetime) -> int:
        """Record ``openids`` as pending recipients; existing records are kept."""
        docs = [
            {"_id": f"{notice_id}:{o}", "notice_id": notice_id, "openid": o, "status": "pending", "attempts": 0, "updated_at": at}
            for o in openids
        ]
        inserted = 0
        for start in range(0, len(docs), PENDING_PER_WRITE):
            part = docs[start : start + PENDING_PER_WRITE]
            inserted += await in_one_transaction(self._coll.database, partial(self._insert_new, part))
        return inserted

    async def _insert_new(self, docs: list[dict], session: AsyncClientSession | None) -> int:
        try:
            result = await self._coll.insert_many(docs, ordered=False, session=session)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            if session is not None:
                raise  # the transaction inserted nothing: again outside one, which keeps the new ones
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                # Not "recorded already": these recipients have no record, and a worker reads a
                # missing record as finished, so they would silently get nothing.
                raise
            return int(exc.details.get("nInserted", 0))

    async def statuses(self, notice_id: str, openids: list[str]) -> dict[str, str]:
        """``openid -> status`` of these recipients' records (one read)."""
        if not openids:
            return {}
        docs = await self._coll.find({"_id": {"$in": [f"{notice_id}:{o}" for o in openids]}}, {"openid": 1, "status": 1}).to_list(None)
        return {d["openid"]: d["status"] for d in docs}

    async def finish_many(self, notice_id: str, outcomes: dict[str, dict], at: dt.datetime) -> None:
        """Record outcomes (``openid -> {"status", "channel"?, "reason"?,
        "errcode"?, "template_msgid"?}``): one update per distinct outcome, so
        a batch of plain sends is one write."""
        groups: dict[str, tuple[dict, list[str]]] = {}
        for openid, fields in outcomes.items():
            signature = repr(sorted(fields.items()))
            groups.setdefault(signature, (fields, []))[1].append(openid)

        async def write(session: AsyncClientSession | None) -> None:
            for fields, openids in groups.values():
                values = {"updated_at": at, "finished_at_ms": epoch_ms(at)}
                values.update({k: v for k, v in fields.items() if v is not None})
                await self._coll.update_many(
                    {"_id": {"$in": [f"{notice_id}:{o}" for o in openids]}}, _outcome(values), session=session
                )

        await in_one_transaction(self._coll.database, write)

    async def finish(
        self,
        notice_id: str,
        openid: str,
        status: str,
        at: dt.datetime,
        *,
        channel: str | None = None,
        reason: str | None = None,
        errcode: int | None = None,
        template_msgid: int | None = None,
    ) -> None:
        fields: dict = {"status": status, "updated_at": at, "finished_at_ms": epoch_ms(at)}
        for name, value in (("channel", channel), ("reason", reason), ("errcode", errcode), ("template_msgid", template_msgid)):
            if value is not None:
                fields[name] = value
        await self._coll.update_one({"_id": f"{notice_id}:{openid}"}, _outcome(fields))

    async def skip_pending(self, notice_id: str, reason: str, at: dt.datetime, sparing: list[str] = ()) -> int:
        """Mark the notice's pending recipients skipped for ``reason``, except
        those in ``sparing``; how many were marked."""
        query: dict = {"notice_id": notice_id, "status": "pending"}
        if sparing:
            query["openid"] = {"$nin": list(sparing)}
        result = await self._coll.update_many(
            query,
            {"$set": {"status": "skipped", "reason": reason, "updated_at": at, "finished_at_ms": epoch_ms(at)}},
        )
        return result.modified_count

    async def openids(self, notice_id: str, statuses: tuple[str, ...]) -> list[str]:
        # Paged by openid (unique within a notice): nx-27017 pages by _id in Python, 20 times slower.
        docs = await read_all(self._coll, {"notice_id": notice_id, "status": {"$in": list(statuses)}}, {"openid": 1}, "openid")
        return [d["openid"] for d in docs]

    async def counts(self, notice_id: str) -> dict:
        """``{"by_status": {...}, "skipped_by_reason": {...}, "failed_by_code": {...}}``.

        One grouping by status, then the (usually few) skipped and failed
        records read for their reasons: simple queries every MongoDB stand-in
        answers correctly (nx-27017 groups every record as one on a compound
        key). A running job finishes records between the two, so the skipped
        and failed counts are those of the second read, where their breakdowns
        come from, and pending is what the first read recorded less the rest:
        the figures always add up.
        """
        by_status = {s: 0 for s in STATUSES}
        pipeline = [{"$match": {"notice_id": notice_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        async for row in await self._coll.aggregate(pipeline):
            by_status[row["_id"]] = int(row["n"])
        skipped: dict[str, int] = {}
        failed: dict[str, int] = {}
        if by_status["skipped"] or by_status["failed"]:
            # Grouped by the database: read record by record, a broadcast that skipped
            # 97,000 cost the event loop half a second on each poll of its progress page.
            # One field a group: nx-27017 does not evaluate a compound _id.
            base = {"notice_id": notice_id}
            for reason, n in await self._grouped({**base, "status": "skipped"}, "reason"):
                skipped[reason or "unknown"] = skipped.get(reason or "unknown", 0) + n
            for code, n in await self._grouped({**base, "status": "failed"}, "errcode"):
                if code is not None:
                    failed[str(code)] = failed.get(str(code), 0) + n
                    continue
                for reason, m in await self._grouped({**base, "status": "failed", "errcode": {"$exists": False}}, "reason"):
                    failed[reason or "unknown"] = failed.get(reason or "unknown", 0) + m
            recorded = sum(by_status.values())
            by_status["skipped"], by_status["failed"] = sum(skipped.values()), sum(failed.values())
            rest = sum(n for status, n in by_status.items() if status != "pending")
            by_status["pending"] = max(0, recorded - rest)
        return {"by_status": by_status, "skipped_by_reason": skipped, "failed_by_code": failed}

    async def _grouped(self, match: dict, field: str) -> list[tuple[object, int]]:
        """``(value of field, how many)`` of the records matching ``match``."""
        pipeline = [{"$match": match}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
        return [(row["_id"], int(row["n"])) async for row in await self._coll.aggregate(pipeline)]

    async def unfinished(self, notice_id: str) -> bool:
        """Whether any recipient is still pending or being sent."""
        doc = await self._coll.find_one({"notice_id": notice_id, "status": {"$in": list(UNFINISHED)}}, {"_id": 1})
        return doc is not None

    async def finished_since(self, notice_id: str, since: dt.datetime) -> int:
        """How many recipients got their outcome (sent, failed or skipped) since ``since``."""
        # Not count_documents: nx-27017 answers its pipeline ($group on a
        # constant) in Python, 40 times slower than this one (seconds at
        # 100,000 records); real MongoDB treats both the same.
        pipeline = [
            {"$match": {"notice_id": notice_id, "status": {"$in": ["sent", "failed", "skipped"]},
                        "finished_at_ms": {"$gte": epoch_ms(since)}}},
            {"$group": {"_id": None, "n": {"$sum": 1}}},
        ]
        rows = await (await self._coll.aggregate(pipeline)).to_list(None)
        return int(rows[0]["n"]) if rows else 0

    async def by_template_msgid(self, msgid: int) -> Delivery | None:
        doc = await self._coll.find_one({"template_msgid": msgid})
        return _delivery(doc) if doc else None

    async def for_user(self, openid: str) -> list[Delivery]:
        docs = await self._coll.find({"openid": openid}).sort("updated_at", ASCENDING).to_list(None)
        return [_delivery(d) for d in docs]


def _delivery(doc: dict) -> Delivery:
    return Delivery(
        notice_id=doc["notice_id"],
        openid=doc["openid"],
        status=doc["status"],
        channel=doc.get("channel"),
        reason=doc.get("reason"),
        errcode=doc.get("errcode"),
        attempts=int(doc.get("attempts") or 0),
        updated_at=as_datetime(doc.get("updated_at")),
        template_msgid=doc.get("template_msgid"),
    )


def _outcome(values: dict) -> dict:
    """The update recording an outcome: a reason or code it lacks is removed,
    not left from before (a send in flight when its broadcast was cancelled
    ends ``sent``, not ``sent`` for the reason ``cancelled``)."""
    update: dict = {"$set": values}
    stale = {k: "" for k in ("reason", "errcode") if k not in values}
    if stale:
        update["$unset"] = stale
    return update
