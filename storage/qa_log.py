"""Every question asked, with the clause chosen and its score; unanswered
ones are what admins review to improve the lexicon and examples.

Questions are the hot path of the webhook, so the log is written in batches:
:meth:`QALog.record` buffers, and one ``insert_many`` a second (or every
:data:`BATCH` questions) writes them, in one transaction where the database
has them (:func:`storage.mongo.in_one_transaction`). A crash loses at most that second of
log; :meth:`flush` runs at shutdown and before every read.
"""

from __future__ import annotations

import datetime as dt
import logging

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import MongoUnavailable, as_datetime, in_one_transaction
from storage.write_behind import FlushSoon

log = logging.getLogger(__name__)

#: Seconds between writes of the buffered log, and the most questions per write.
FLUSH_EVERY = 1.0
BATCH = 500
#: With MongoDB down, at most this many questions wait in memory; older ones are dropped.
MAX_PENDING = 10_000


def _duplicate(error: dict) -> bool:
    """A write error for an ``_id`` already stored (MongoDB's 11000; nx-27017's SQLite words)."""
    return error.get("code") == 11000 or "duplicate key" in str(error.get("errmsg", "")) \
        or "UNIQUE constraint" in str(error.get("errmsg", ""))


class QALog:
    """The ``qa_log`` collection (insert-only)."""

    def __init__(self, db: AsyncDatabase, flush_every: float = FLUSH_EVERY) -> None:
        self._coll = db["qa_log"]
        self._pending: list[dict] = []
        self._flusher = FlushSoon(self.flush, flush_every)

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("kind", ASCENDING), ("at", DESCENDING)], name="kind_at"),
                IndexModel([("openid", ASCENDING)], name="openid"),
            ]
        )

    def record(
        self, *, question: str, kind: str, refs: tuple[str, ...], score: float, version: str,
        openid: str | None, channel: str, at: dt.datetime,
    ) -> None:
        """Buffer one question; it is written within about a second (call from
        the event loop)."""
        self._pending.append(
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
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        self._flusher.schedule()

    async def flush(self) -> None:
        """Write what is buffered; with MongoDB down it stays buffered (bounded)."""
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await in_one_transaction(
                    self._coll.database, lambda session: self._coll.insert_many(batch, ordered=False, session=session)
                )
            except MongoUnavailable as exc:
                log.warning("question log not written, kept for later: %s", exc)
                self._pending[:0] = batch
                return
            except BulkWriteError as exc:
                # Written already: a write that timed out on a frozen server was
                # applied when it woke, and its retry met its own ids.
                others = [e for e in exc.details.get("writeErrors", []) if not _duplicate(e)]
                if others:
                    log.warning("question log: %d questions not written: %s", len(others), others[0].get("errmsg"))

    async def close(self) -> None:
        """Write what is buffered, once, and schedule no more writes."""
        await self._flusher.close()
        await self.flush()

    async def recent(self, kind: str | None = None, limit: int = 100) -> list[dict]:
        await self.flush()
        query = {"kind": kind} if kind else {}
        return await self._coll.find(query, {"_id": 0}).sort("at", DESCENDING).limit(limit).to_list(None)

    async def export(self, openid: str) -> list[dict]:
        """The questions ``openid`` asked, oldest first, for their data export."""
        await self.flush()
        docs = await self._coll.find({"openid": openid}, {"_id": 0, "openid": 0}).to_list(None)
        docs.sort(key=lambda d: as_datetime(d["at"]))
        return [
            {"question": d["question"], "at": as_datetime(d["at"]).isoformat(), "kind": d.get("kind"),
             "refs": d.get("refs") or [], "channel": d.get("channel")}
            for d in docs
        ]
