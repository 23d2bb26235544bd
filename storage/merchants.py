"""Merchant records (one per openid) and their status history.

The history is its own insert-only collection (``merchant_status_history``):
each change of status is one document with who and why, never edited. Only
the current status sits on the merchant record, where a conditional update
(``{"status": expected}``) makes concurrent changes safe.

A status and its history entry cannot be written in one step without a
transaction (which standalone MongoDB lacks), so the record also carries its
latest entry (``last_change``, with the entry's ``_id``) in the same update
as the status. The history insert that follows is idempotent, and
:meth:`Merchants.history` writes a ``last_change`` that a failure in between
left out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.mongo import as_datetime, exactly, read_all

#: The fields a merchant types in; erased when the account is closed.
PROFILE_FIELDS = ("entity_type", "entity_name", "credit_code", "contact_name", "phone", "email")
PERSONAL_FIELDS = ("entity_name", "credit_code", "contact_name", "phone", "email")


class MerchantExists(Exception):
    """A merchant record for this openid exists already."""


class StatusChanged(Exception):
    """The record's status was not the expected one (changed meanwhile)."""


@dataclasses.dataclass(frozen=True)
class StatusEntry:
    status: str
    at: dt.datetime
    by: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Merchant:
    openid: str
    entity_type: str | None
    entity_name: str | None
    credit_code: str | None
    contact_name: str | None
    phone: str | None
    email: str | None
    status: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    unionid: str | None = None

    def profile(self) -> dict:
        return {field: getattr(self, field) for field in PROFILE_FIELDS}


class Merchants:
    """The ``merchants`` and ``merchant_status_history`` collections."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["merchants"]
        self._history = db["merchant_status_history"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("openid", ASCENDING)], unique=True, name="openid_unique"),
                IndexModel([("status", ASCENDING)], name="status"),
                IndexModel([("credit_code", ASCENDING)], name="credit_code", sparse=True),
            ]
        )
        await self._history.create_indexes(
            [
                IndexModel([("openid", ASCENDING), ("at", ASCENDING)], name="openid_at"),
                IndexModel([("openid", ASCENDING)], name="openid"),
            ]
        )

    async def get(self, openid: str) -> Merchant | None:
        doc = await self._coll.find_one({"openid": openid})
        return _merchant(doc) if doc else None

    async def create(self, openid: str, profile: dict, status: str, entry: StatusEntry) -> None:
        """Insert a new record. Raises :class:`MerchantExists`."""
        change = _change(openid, entry)
        doc = {"openid": openid, **stored_profile(profile), "status": status, "created_at": entry.at, "updated_at": entry.at,
               "last_change": change}
        try:
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            raise MerchantExists(openid) from None
        await self._add_history(change)

    async def update(
        self, openid: str, expected_status: str, *, profile: dict | None = None, entry: StatusEntry | None = None,
        erase: bool = False,
    ) -> None:
        """Change the profile and/or status of a record whose status is still
        ``expected_status``; raises :class:`StatusChanged` otherwise."""
        update: dict = {"$set": {"updated_at": entry.at if entry else dt.datetime.now(dt.timezone.utc)}}
        if profile is not None:
            clean = stored_profile(profile)
            update["$set"].update(clean)
            missing = [f for f in PROFILE_FIELDS if f not in clean]
            if missing:
                update["$unset"] = {f: "" for f in missing}
        change = None
        if entry is not None:
            change = _change(openid, entry)
            update["$set"].update(status=entry.status, last_change=change)
        if erase:
            update["$unset"] = {f: "" for f in PERSONAL_FIELDS}
        result = await self._coll.update_one({"openid": openid, "status": expected_status}, update)
        if result.matched_count != 1:
            raise StatusChanged(openid)
        if change is not None:
            await self._add_history(change)

    async def history(self, openid: str) -> list[StatusEntry]:
        docs = await self._history.find({"openid": openid}).sort("at", ASCENDING).to_list(None)
        record = await self._coll.find_one({"openid": openid}, {"last_change": 1})
        latest = (record or {}).get("last_change")
        if latest and latest["_id"] not in {d["_id"] for d in docs}:
            # The status was stored but its history insert failed: write it now.
            await self._add_history(latest)
            docs.append(latest)
        return [StatusEntry(d["status"], as_datetime(d["at"]), d["by"], d["reason"]) for d in docs]

    async def openids(self, status: str) -> list[str]:
        """Every merchant with ``status``, by openid (a broadcast's audience)."""
        return [d["openid"] for d in await read_all(self._coll, {"status": status}, {"openid": 1}, "openid")]

    async def with_credit_code(self, credit_code: str, limit: int = 20, besides: str | None = None
                               ) -> tuple[list[Merchant], int]:
        """Records registered with ``credit_code`` (closed ones hold none), other
        than ``besides``'s: the first ``limit`` by openid, and how many there are."""
        query: dict = {"credit_code": exactly(credit_code)}
        if besides is not None:
            query["openid"] = {"$ne": besides}
        docs = await self._coll.find(query).sort("openid", ASCENDING).limit(limit).to_list(None)
        total = len(docs) if len(docs) < limit else await self._coll.count_documents(query)
        return [_merchant(d) for d in docs], total

    async def list(self, status: str | None = None, limit: int | None = 1000) -> list[Merchant]:
        """Merchants by openid, at most ``limit`` (``None``: all of them)."""
        query = {"status": status} if status else {}
        if limit is None:
            return [_merchant(d) for d in await read_all(self._coll, query, None, "openid")]
        docs = await self._coll.find(query).sort("openid", ASCENDING).limit(limit).to_list(None)
        return [_merchant(d) for d in docs]

    async def _add_history(self, change: dict) -> None:
        try:
            await self._history.insert_one(dict(change))
        except DuplicateKeyError:  # written already (a repair racing the original insert)
            pass


def _change(openid: str, entry: StatusEntry) -> dict:
    """A history document; its ``_id`` is chosen here so that writing it twice is harmless."""
    return {"_id": str(ObjectId()), "openid": openid, **dataclasses.asdict(entry)}


def stored_profile(profile: dict) -> dict:
    """What a record keeps of ``profile``: its profile fields that hold a value
    (a skipped email is not stored; answers such as an age confirmation neither)."""
    return {k: v for k, v in profile.items() if k in PROFILE_FIELDS and v not in (None, "")}


def _merchant(doc: dict) -> Merchant:
    return Merchant(
        openid=doc["openid"],
        entity_type=doc.get("entity_type"),
        entity_name=doc.get("entity_name"),
        credit_code=doc.get("credit_code"),
        contact_name=doc.get("contact_name"),
        phone=doc.get("phone"),
        email=doc.get("email"),
        status=doc["status"],
        created_at=as_datetime(doc.get("created_at")),
        updated_at=as_datetime(doc.get("updated_at")),
        unionid=doc.get("unionid"),
    )
