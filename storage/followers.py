"""Followers of the official account: who follows, since when, last seen."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from storage.mongo import MongoUnavailable, as_bool, as_datetime, find_in, read_all
from storage.write_behind import FlushSoon

log = logging.getLogger(__name__)

#: Seconds between writes of buffered last interactions, users per write, and
#: the most kept in memory while MongoDB is down.
FLUSH_EVERY = 1.0
BATCH = 1000
MAX_PENDING = 100_000
#: Seconds before writes that found MongoDB down are tried again.
RETRY_EVERY = 5.0


@dataclasses.dataclass(frozen=True)
class Follower:
    openid: str
    subscribed: bool
    unionid: str | None = None
    subscribed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    last_interaction_at: dt.datetime | None = None


class Followers:
    """The ``followers`` collection, one document per openid."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["followers"]
        self._touched: dict[str, dt.datetime] = {}
        #: Follows and unfollows MongoDB could not take when they came: openid → (following, at).
        self._deferred: dict[str, tuple[bool, dt.datetime]] = {}
        self._flusher = FlushSoon(self.flush, FLUSH_EVERY)
        self._closed = False

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("openid", ASCENDING)], unique=True, name="openid_unique"),
                IndexModel([("subscribed", ASCENDING)], name="subscribed"),
                IndexModel([("unionid", ASCENDING)], name="unionid", sparse=True),
            ]
        )

    async def subscribed(self, openid: str, at: dt.datetime) -> None:
        """Record a follow (again, after an unfollow, is fine)."""
        self._deferred.pop(openid, None)  # older than this one
        await self._coll.update_one({"openid": openid}, _follow_change(True, at), upsert=True)

    async def unsubscribed(self, openid: str, at: dt.datetime) -> None:
        """Record an unfollow."""
        self._deferred.pop(openid, None)  # older than this one
        await self._coll.update_one({"openid": openid}, _follow_change(False, at), upsert=True)

    async def unfollowed_before(self, openids: list[str], at: dt.datetime) -> None:
        """Record as unfollowed those of ``openids`` who have not followed
        (again) since ``at``: WeChat refused a message to them as not following."""
        await self._coll.update_many(
            {"openid": {"$in": openids},
             "$or": [{"subscribed_at": {"$exists": False}}, {"subscribed_at": {"$lt": at}}]},
            _follow_change(False, at),
        )

    def defer(self, openid: str, following: bool, at: dt.datetime) -> None:
        """A follow (``following``) or unfollow that MongoDB could not take now:
        written by the next flush, the latest of each user winning, and retried
        until MongoDB is back (else a user who followed and unfollowed during an
        outage was later stored by a last interaction alone, and counted as following)."""
        self._deferred[openid] = (following, at)
        self._flusher.schedule()

    def touch(self, openid: str, at: dt.datetime) -> None:
        """Remember the user's last message (WeChat allows customer-service
        messages only within 48 hours of it), written within about a second
        with others' (call from the event loop). Until then, and for the
        window itself, :mod:`storage.activity` has it."""
        self._touched[openid] = at
        if len(self._touched) > MAX_PENDING:
            self._touched.pop(next(iter(self._touched)))
        self._flusher.schedule()

    async def flush(self) -> None:
        """Write the buffered last interactions: users new to the collection
        in one insert with their own times, the others in one update per batch (on nx-27017 an
        upsert per user costs several times more); kept for later with
        MongoDB down (retried a few seconds later)."""
        while self._deferred:
            openid, (following, at) = next(iter(self._deferred.items()))
            try:
                known = await self.get(openid)
                # Another process may have recorded a later follow or unfollow meanwhile.
                later = known is not None and any(
                    t is not None and t > at for t in (known.subscribed_at, known.unsubscribed_at)
                )
                if not later:
                    await self._coll.update_one({"openid": openid}, _follow_change(following, at), upsert=True)
            except MongoUnavailable as exc:
                log.warning("follows and unfollows not written, kept for later: %s", exc)
                self._retry_later()
                return
            if self._deferred.get(openid) == (following, at):  # else a later one came meanwhile
                del self._deferred[openid]
        while self._touched:
            batch = dict(list(self._touched.items())[:BATCH])
            for openid in batch:
                del self._touched[openid]
            # One time for the whole update: the earliest, so nobody is recorded
            # as active later than they were (the exact time is in storage.activity).
            at = min(batch.values())
            try:
                existing = list(batch)
                try:
                    await self._coll.insert_many(
                        [{"openid": o, "last_interaction_at": t} for o, t in batch.items()], ordered=False
                    )
                    existing = []
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    other = [e for e in errors if e.get("code") != 11000]
                    if other:  # not "known already": said, not dropped in silence
                        log.error("last interactions of %d followers refused by MongoDB: %s", len(other),
                                  other[0].get("errmsg", ""))
                    failed = {e["index"] for e in errors if e.get("code") == 11000}
                    openids = list(batch)
                    existing = [openids[i] for i in sorted(failed)]
                if existing:
                    ids = [d["_id"] for d in await find_in(self._coll, "openid", existing, {"_id": 1})]
                    await self._coll.update_many({"_id": {"$in": ids}}, {"$set": {"last_interaction_at": at}})
                    # Only a follower can write to an official account: one recorded as gone
                    # before writing (a notice refused with 43004) follows again. Times compared
                    # here: nx-27017 stores a datetime written by $set as text.
                    marked = await self._coll.find({"_id": {"$in": ids}, "unsubscribed_at": {"$exists": True}},
                                                   {"unsubscribed_at": 1}).to_list(None)
                    back = [d["_id"] for d in marked if (as_datetime(d["unsubscribed_at"]) or at) < at]
                    if back:
                        await self._coll.update_many({"_id": {"$in": back}},
                                                     {"$set": {"subscribed": True, "subscribed_at": at}})
            except MongoUnavailable as exc:
                log.warning("last interactions not written, kept for later: %s", exc)
                for openid, t in batch.items():
                    self._touched.setdefault(openid, t)
                self._retry_later()
                return

    def _retry_later(self) -> None:
        # Not only at the next user's message: a quiet account's writes would wait for ever.
        if not self._closed:
            asyncio.get_running_loop().call_later(RETRY_EVERY, self._retry)

    def _retry(self) -> None:
        if not self._closed:  # the client may be closed by now
            self._flusher.schedule()

    async def close(self) -> None:
        """Write what is buffered (once: MongoDB may be down) and retry no more."""
        self._closed = True
        await self._flusher.close()
        await self.flush()
        if self._deferred or self._touched:
            log.warning("%d follows/unfollows and %d last interactions not written at shutdown",
                        len(self._deferred), len(self._touched))

    async def get(self, openid: str) -> Follower | None:
        doc = await self._coll.find_one({"openid": openid})
        return None if doc is None else _follower(doc)

    async def with_unionid(self, unionid: str) -> Follower | None:
        """The follower WeChat knows by ``unionid`` (the same person in the mini-program)."""
        doc = await self._coll.find_one({"unionid": unionid})
        return None if doc is None else _follower(doc)

    async def set_unionid(self, openid: str, unionid: str) -> None:
        """Record a follower's unionid (from ``user/info`` or an import)."""
        await self._coll.update_one({"openid": openid}, {"$set": {"unionid": unionid}}, upsert=True)

    async def many(self, openids: list[str]) -> dict[str, Follower]:
        return {d["openid"]: _follower(d) for d in await find_in(self._coll, "openid", openids)}

    async def subscribed_openids(self) -> list[str]:
        """Every follower who has not unfollowed, sorted.

        Filtered here rather than in the query: nx-27017 mishandles missing
        fields and stored booleans, and a user known only from messages counts
        as following.
        """
        docs = await read_all(self._coll, {}, {"openid": 1, "subscribed": 1}, "openid")
        return sorted(d["openid"] for d in docs if as_bool(d.get("subscribed", True)))


    async def without_unionid(self) -> list[str]:
        """Followers (not unfollowed) with no unionid recorded, sorted.

        Filtered here, like :meth:`subscribed_openids`, rather than with
        ``$exists`` in the query: one paged read either way.
        """
        docs = await read_all(self._coll, {}, {"openid": 1, "subscribed": 1, "unionid": 1}, "openid")
        return [d["openid"] for d in docs if as_bool(d.get("subscribed", True)) and not d.get("unionid")]


def _follow_change(following: bool, at: dt.datetime) -> dict:
    """The update that records a follow or an unfollow at ``at``."""
    if following:
        return {"$set": {"subscribed": True, "subscribed_at": at, "last_interaction_at": at},
                "$unset": {"unsubscribed_at": ""}}
    return {"$set": {"subscribed": False, "unsubscribed_at": at}}


def _follower(doc: dict) -> Follower:
    return Follower(
        openid=doc["openid"],
        # A user seen only through messages (no subscribe event recorded,
        # e.g. followed before this service existed) does follow.
        subscribed=as_bool(doc.get("subscribed", True)),
        unionid=doc.get("unionid"),
        subscribed_at=as_datetime(doc.get("subscribed_at")),
        unsubscribed_at=as_datetime(doc.get("unsubscribed_at")),
        last_interaction_at=as_datetime(doc.get("last_interaction_at")),
    )
