"""Published agreement versions. Insert-only: a published version never changes."""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from bot.agreement import AgreementVersion


class VersionExists(Exception):
    """A version with this identifier is already published."""


class AgreementVersions:
    """The ``agreement_versions`` collection, one document per version."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["agreement_versions"]

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
