"""Notices and their broadcast jobs.

A notice is also its broadcast job: ``status`` is ``queued`` (created, being
planned), ``sending``, ``paused``, ``cancelled`` or ``done``. Status changes
are conditional updates (``{"status": expected}``), so concurrent workers and
admins cannot undo each other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import as_bool, as_datetime, epoch_ms

CATEGORIES = {
    "service": "服务公告",
    "security": "安全通告",
    "admin": "管理消息",
    "amendment": "条款修改通知",
    "other": "其他",
}
JOB_STATUSES = ("queued", "sending", "paused", "cancelled", "done")

#: An explicit openid list is kept beside its notice, this many openids to a
#: document: inside the notice, MongoDB's 16 MB limit on a document held only
#: some 400,000 openids, and a longer list could not be sent.
LIST_CHUNK = 10_000
#: The openids of a stored list that its notice itself shows.
LIST_SHOWN = 20


@dataclasses.dataclass(frozen=True)
class Notice:
    id: str
    category: str
    title: str
    body: str
    important: bool
    audience: dict
    channel: str
    status: str
    total: int
    created_at: dt.datetime | None
    created_by: str
    #: When a worker took its first batch; the latest move to ``sending``
    #: (a resume); when it was last paused; and its time spent paused since it
    #: started: a rate is over time spent sending.
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    resumed_at: dt.datetime | None = None
    paused_at: dt.datetime | None = None
    paused_seconds: float = 0.0
    #: Who paused it, if not an admin: ``"quota"``, a worker that met WeChat's call quota (45009).
    paused_by: str | None = None
    planned: bool = False
    #: Fields some notices add: ``version`` for the amendment notice of a publication or withdrawal.
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def version(self) -> str | None:
        """The agreement version this notice announces (published or withdrawn), if any."""
        return (self.extra or {}).get("version") if self.category == "amendment" else None


class Notices:
    """The ``notices`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["notices"]
        self._lists = db["notice_lists"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("created_at", DESCENDING)], name="created_at"),
                IndexModel([("status", ASCENDING)], name="status"),
            ]
        )

    async def create(
        self,
        *,
        category: str,
        title: str,
        body: str,
        important: bool,
        audience: dict,
        channel: str,
        created_at: dt.datetime,
        created_by: str,
        extra: dict | None = None,
    ) -> str:
        if category not in CATEGORIES:
            raise ValueError(f"unknown notice category {category!r}")
        notice_id = str(ObjectId())
        if audience.get("type") == "openids":
            # The list first: a notice never exists without all of its recipients.
            audience = await self._store_list(notice_id, audience["openids"])
        await self._coll.insert_one(
            {
                "_id": notice_id,
                "category": category,
                "title": title,
                "body": body,
                # Stored as text: nx-27017 reads a boolean written by $set as 1/0.
                "important": "yes" if important else "no",
                "audience": audience,
                "channel": channel,
                "status": "queued",
                "total": 0,
                "planned": "no",
                # Its creator plans it: upkeep leaves it alone until that goes silent.
                "planning_ms": epoch_ms(created_at),
                "created_at": created_at,
                "created_by": created_by,
                **(extra or {}),
            }
        )
        return notice_id

    async def _store_list(self, notice_id: str, openids: list[str]) -> dict:
        """Keep an explicit list in :data:`LIST_CHUNK` parts; returns the
        audience the notice stores: its size and first openids."""
        listed = sorted(set(openids))
        parts = [{"_id": _part_id(notice_id, n), "openids": listed[start : start + LIST_CHUNK]}
                 for n, start in enumerate(range(0, len(listed), LIST_CHUNK))]
        if parts:
            await self._lists.insert_many(parts)
        return {"type": "openids", "count": len(listed), "first": listed[:LIST_SHOWN]}

    async def listed(self, notice: Notice) -> list[str]:
        """The openids of a notice to an explicit list, sorted."""
        if "openids" in notice.audience:  # stored inside the notice before notice_lists
            return sorted(set(notice.audience["openids"]))
        # The parts' ids sort in order: a range on _id, which nx-27017 also reads from its index.
        parts = await self._lists.find(
            {"_id": {"$gte": _part_id(notice.id, 0), "$lte": _part_id(notice.id, 999_999)}}
        ).sort("_id", ASCENDING).to_list(None)
        return [openid for part in parts for openid in part["openids"]]

    async def get(self, notice_id: str) -> Notice | None:
        doc = await self._coll.find_one({"_id": notice_id})
        return _notice(doc) if doc else None

    async def first_about_version(self, version: str) -> str | None:
        """The id of the first amendment notice about ``version`` (its publication's), if any."""
        doc = await self._coll.find_one({"category": "amendment", "version": version}, {"_id": 1},
                                        sort=[("created_at", 1)])
        return doc["_id"] if doc else None

    async def planning(self, notice_id: str, total: int, at: dt.datetime) -> None:
        """The planner is alive and recording ``total`` recipients."""
        await self._coll.update_one(
            {"_id": notice_id}, {"$set": {"total": total, "planning_ms": epoch_ms(at)}}
        )

    async def take_planning(self, notice_id: str, silent_before: dt.datetime, at: dt.datetime) -> bool:
        """Become the notice's planner if it is not planned and its planner has
        reported nothing since ``silent_before`` (one conditional update: of
        several workers' upkeep, one wins)."""
        result = await self._coll.update_one(
            # (Notices stored before planning_ms existed have none.)
            {"_id": notice_id, "planned": "no",
             "$or": [{"planning_ms": {"$lt": epoch_ms(silent_before)}}, {"planning_ms": {"$exists": False}}]},
            {"$set": {"planning_ms": epoch_ms(at)}},
        )
        return result.matched_count == 1

    async def planned(self, notice_id: str, total: int) -> None:
        await self._coll.update_one({"_id": notice_id}, {"$set": {"planned": "yes", "total": total}})

    async def transition(self, notice_id: str, expected: tuple[str, ...], status: str, at: dt.datetime,
                         by: str | None = None) -> bool:
        """Set ``status`` if the current one is in ``expected``; True if it
        changed. ``by``: who pauses, if not an admin (``Notice.paused_by``)."""
        fields: dict = {"status": status}
        if status == "sending":
            fields["resumed_at"] = at
            if "queued" in expected:  # a worker's first batch (a resume keeps the start)
                fields["started_at"] = at
        if status == "paused":
            fields["paused_at"] = at
        if status in ("done", "cancelled"):
            fields["finished_at"] = at
        update: dict = {"$set": fields}
        if by is not None:
            fields["paused_by"] = by
        else:
            update["$unset"] = {"paused_by": ""}
        result = await self._coll.update_one({"_id": notice_id, "status": {"$in": list(expected)}}, update)
        return result.matched_count == 1

    async def add_pause(self, notice_id: str, seconds: float) -> None:
        """Count ``seconds`` more spent paused since the job started."""
        await self._coll.update_one({"_id": notice_id}, {"$inc": {"paused_seconds": seconds}})

    async def active(self) -> list[Notice]:
        """Notices a worker may have to plan or finish: queued or sending, and
        cancelled ones not yet settled (:meth:`settle`): cancelled before
        their planner (since gone) recorded every recipient, or with
        recipients a worker had claimed at the cancel, whose rest is still to
        be recorded as skipped."""
        recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=7)  # not old ones, against today's audience
        docs = await self._coll.find({"$or": [
            {"status": {"$in": ["queued", "sending"]}},
            {"status": "cancelled", "planned": "no", "created_at": {"$gte": recent}},
            {"status": "cancelled", "settled_at": {"$exists": False}, "created_at": {"$gte": recent}},
        ]}).to_list(None)
        return [_notice(d) for d in docs]

    async def settle(self, notice_id: str, at: dt.datetime) -> None:
        """A cancelled job has every recipient recorded: upkeep leaves it be."""
        await self._coll.update_one({"_id": notice_id, "status": "cancelled"}, {"$set": {"settled_at": at}})

    async def paused_by(self, by: str) -> list[Notice]:
        """Jobs paused by ``by`` (``"quota"``), not by an admin."""
        docs = await self._coll.find({"status": "paused", "paused_by": by}).to_list(None)
        return [_notice(d) for d in docs]

    async def many(self, notice_ids: list[str]) -> dict[str, Notice]:
        docs = await self._coll.find({"_id": {"$in": notice_ids}}).to_list(None)
        return {d["_id"]: _notice(d) for d in docs}


_KNOWN = {"_id", "category", "title", "body", "important", "audience", "channel", "status", "total", "planned",
          # planning_at: what notices stored before planning_ms had.
          "created_at", "created_by", "started_at", "finished_at", "planning_at", "planning_ms",
          "resumed_at", "paused_at", "paused_seconds", "paused_by", "settled_at"}



def _part_id(notice_id: str, n: int) -> str:
    return f"{notice_id}/{n:06d}"


def _flag(value: object) -> bool:
    return value == "yes" if isinstance(value, str) else as_bool(value)


def _notice(doc: dict) -> Notice:
    return Notice(
        id=doc["_id"],
        category=doc["category"],
        title=doc["title"],
        body=doc["body"],
        important=_flag(doc.get("important")),
        audience=doc.get("audience") or {},
        channel=doc.get("channel", "auto"),
        status=doc.get("status", "queued"),
        total=int(doc.get("total") or 0),
        created_at=as_datetime(doc.get("created_at")),
        created_by=doc.get("created_by", ""),
        started_at=as_datetime(doc.get("started_at")),
        finished_at=as_datetime(doc.get("finished_at")),
        resumed_at=as_datetime(doc.get("resumed_at")),
        paused_at=as_datetime(doc.get("paused_at")),
        paused_seconds=float(doc.get("paused_seconds") or 0),
        paused_by=doc.get("paused_by") or None,
        planned=_flag(doc.get("planned")),
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )
