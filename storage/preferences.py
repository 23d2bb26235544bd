"""Per-user notice preferences: the categories a user opted out of."""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from storage.mongo import find_in


class Preferences:
    """The ``preferences`` collection: ``{openid, opted_out: [category, …]}``.

    Only opt-outs are stored: every category is on until the user turns it off.
    """

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["preferences"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes([IndexModel([("openid", ASCENDING)], unique=True, name="openid_unique")])

    async def opted_out(self, openid: str) -> set[str]:
        doc = await self._coll.find_one({"openid": openid})
        return set(doc.get("opted_out") or []) if doc else set()

    async def opted_out_many(self, openids: list[str]) -> dict[str, set[str]]:
        docs = await find_in(self._coll, "openid", openids)
        return {d["openid"]: set(d.get("opted_out") or []) for d in docs}

    async def opt_out(self, openid: str, category: str) -> None:
        await self._coll.update_one({"openid": openid}, {"$addToSet": {"opted_out": category}}, upsert=True)

    async def opt_in(self, openid: str, category: str) -> None:
        await self._coll.update_one({"openid": openid}, {"$pull": {"opted_out": category}})
