"""Published agreement versions. Insert-only: a published version never changes.

A version withdrawn before it took effect keeps its document; the withdrawal
is its own insert-only record (``agreement_withdrawals``), and its identifier
stays taken.
"""

from __future__ import annotations

import datetime as dt

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.agreement import AgreementVersion
from storage.mongo import as_datetime


class VersionExists(Exception):
    """A version with this identifier is already published."""


class AgreementVersions:
    """The ``agreement_versions`` collection, one document per version."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["agreement_versions"]
        self._withdrawals = db["agreement_withdrawals"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("version", ASCENDING)], unique=True, name="version_unique"),
                IndexModel([("effective_at", ASCENDING)], name="effective_at"),
            ]
        )

    async def insert(self, version: AgreementVersion) -> None:
        """Store a published version. Raises :class:`VersionExists`."""
        try:
            await self._coll.insert_one({"_id": version.version, **version.to_document()})
        except DuplicateKeyError:
            raise VersionExists(version.version) from None

    async def all(self) -> list[AgreementVersion]:
        """Every version, oldest effective date first."""
        docs = await self._coll.find({}).sort("effective_at", ASCENDING).to_list(None)
        return [AgreementVersion.from_document(doc) for doc in docs]

    async def withdraw(self, version: str, at: dt.datetime, by: str, reason: str) -> bool:
        """Record that ``version`` will not take effect; ``False`` if already recorded."""
        try:
            await self._withdrawals.insert_one({"_id": version, "at": at, "by": by, "reason": reason})
        except DuplicateKeyError:
            return False
        return True

    async def withdrawal(self, version: str) -> dict | None:
        """``{"at", "by", "reason"}`` if ``version`` was withdrawn (any case), else None."""
        async for doc in self._withdrawals.find({}):
            if doc["_id"].casefold() == version.casefold():
                return {"version": doc["_id"], "at": as_datetime(doc["at"]), "by": doc["by"], "reason": doc["reason"]}
        return None

    async def withdrawn(self) -> set[str]:
        """The versions withdrawn before they took effect."""
        return {doc["_id"] async for doc in self._withdrawals.find({}, {"_id": 1})}
