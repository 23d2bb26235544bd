"""Admin accounts of the console: name, role, password hash.

One document per admin (``_id`` = name). Updates replace whole fields with
``$set`` on an existing document; flags are stored as ``"yes"``/``"no"`` text
because nx-27017 reads a boolean written by ``$set`` back as 1/0.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.mongo import as_datetime


class AdminExists(Exception):
    """An admin of this name exists already."""


@dataclasses.dataclass(frozen=True)
class AdminUser:
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: dt.datetime | None
    created_by: str
    updated_at: dt.datetime | None = None

    def public(self) -> dict:
        """What the audit log and pages may show (never the hash)."""
        return {"name": self.name, "role": self.role, "disabled": self.disabled}


class AdminUsers:
    """The ``admin_users`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["admin_users"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([IndexModel([("role", ASCENDING)], name="role")])

    async def create(self, name: str, role: str, password_hash: str, at: dt.datetime, by: str) -> None:
        """Insert a new admin. Raises :class:`AdminExists`."""
        try:
            await self._coll.insert_one(
                {"_id": name, "name": name, "role": role, "password_hash": password_hash, "disabled": "no",
                 "created_at": at, "created_by": by, "updated_at": at}
            )
        except DuplicateKeyError:
            raise AdminExists(name) from None

    async def get(self, name: str) -> AdminUser | None:
        doc = await self._coll.find_one({"_id": name})
        return _user(doc) if doc else None

    async def list(self) -> list[AdminUser]:
        docs = await self._coll.find({}).sort("_id", ASCENDING).to_list(None)
        return [_user(d) for d in docs]

    async def update(self, name: str, at: dt.datetime, **fields) -> bool:
        """Set ``role``, ``password_hash`` and/or ``disabled``; False if no such admin."""
        values = {k: v for k, v in fields.items() if k in ("role", "password_hash", "disabled")}
        if "disabled" in values:
            values["disabled"] = "yes" if values["disabled"] else "no"
        result = await self._coll.update_one({"_id": name}, {"$set": {**values, "updated_at": at}})
        return result.matched_count == 1


def _user(doc: dict) -> AdminUser:
    disabled = doc.get("disabled")
    return AdminUser(
        name=doc["_id"],
        role=doc["role"],
        password_hash=doc["password_hash"],
        disabled=disabled == "yes" if isinstance(disabled, str) else bool(disabled),
        created_at=as_datetime(doc.get("created_at")),
        created_by=doc.get("created_by", ""),
        updated_at=as_datetime(doc.get("updated_at")),
    )
