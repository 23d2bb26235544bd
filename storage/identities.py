"""Mini-program users: the mini-program openid, its unionid, and who it is.

One document per mini-program openid (``_id``). ``subject`` is the openid the
domain keys the person's data by: the official-account follower's openid when
the two share a unionid, otherwise the mini-program openid itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.mongo import as_datetime, find_in


@dataclasses.dataclass(frozen=True)
class MiniProgramUser:
    openid: str
    subject: str
    unionid: str | None
    first_login_at: dt.datetime | None
    last_login_at: dt.datetime | None
    #: The follower this user's records are being moved to (a move cut short is resumed).
    joining: str | None = None
    #: A follower to join, found while the user was busy (the upkeep joins them).
    link_to: str | None = None

    def to_export(self) -> dict:
        return {
            "miniprogram_openid": self.openid,
            "unionid": self.unionid,
            "first_login_at": _iso(self.first_login_at),
            "last_login_at": _iso(self.last_login_at),
        }


class Identities:
    """The ``miniprogram_users`` collection."""

    def __init__(self, db: AsyncDatabase) -> None:
        self._coll = db["miniprogram_users"]

    async def ensure_indexes(self) -> None:
        await self._coll.create_indexes(
            [
                IndexModel([("unionid", ASCENDING)], name="unionid", sparse=True),
                IndexModel([("subject", ASCENDING)], name="subject"),
            ]
        )

    async def get(self, openid: str) -> MiniProgramUser | None:
        doc = await self._coll.find_one({"_id": openid})
        return None if doc is None else _user(doc)

    async def known(self, openids: list[str]) -> set[str]:
        """Those of ``openids`` that are mini-program users' openids."""
        if not openids:
            return set()
        return {d["_id"] for d in await find_in(self._coll, "_id", openids, {"_id": 1})}

    async def unlinked(self, openids: list[str]) -> set[str]:
        """Those of ``openids`` that are mini-program openids of no follower
        (their own subject): the official account cannot message them."""
        if not openids:
            return set()
        docs = await self._coll.find({"_id": {"$in": openids}}, {"subject": 1}).to_list(None)
        return {d["_id"] for d in docs if d.get("subject") == d["_id"]}

    async def of_subject(self, subject: str) -> list[MiniProgramUser]:
        docs = await self._coll.find({"subject": subject}).to_list(None)
        return [_user(d) for d in docs]

    async def with_unionid(self, unionid: str) -> list[MiniProgramUser]:
        docs = await self._coll.find({"unionid": unionid}).to_list(None)
        return [_user(d) for d in docs]

    async def repoint(self, openid: str, subject: str, expected: str) -> bool:
        """Make ``subject`` the person behind ``openid`` if it is still ``expected``
        (and end a move of its records: :meth:`start_joining`)."""
        result = await self._coll.update_one(
            {"_id": openid, "subject": expected}, {"$set": {"subject": subject}, "$unset": {"joining": "", "link_to": ""}}
        )
        return result.matched_count == 1

    async def joining(self) -> list[MiniProgramUser]:
        """Users whose records were being moved when something cut it short, or
        whose follower was found while they were busy."""
        query = {"$or": [{"joining": {"$exists": True}}, {"link_to": {"$exists": True}}]}
        return [_user(d) for d in await self._coll.find(query).to_list(None)]

    async def want_link(self, openid: str, follower: str) -> None:
        """Note a follower to join ``openid`` to later (:meth:`joining`)."""
        await self._coll.update_one({"_id": openid, "subject": openid}, {"$set": {"link_to": follower}})

    async def start_joining(self, openid: str, follower: str) -> None:
        """Note that ``openid``'s records are about to move to ``follower``, so
        that a move cut short is finished (:meth:`joining`) rather than judged
        afresh (the follower then holds part of it)."""
        await self._coll.update_one({"_id": openid, "subject": openid}, {"$set": {"joining": follower}})

    async def create(self, openid: str, subject: str, unionid: str | None, at: dt.datetime) -> bool:
        """Insert a first login; ``False`` if another request inserted it first."""
        doc = {"_id": openid, "subject": subject, "first_login_at": at, "last_login_at": at}
        if unionid:
            doc["unionid"] = unionid
        try:
            await self._coll.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def logged_in(self, openid: str, unionid: str | None, at: dt.datetime) -> None:
        fields: dict = {"last_login_at": at}
        if unionid:
            fields["unionid"] = unionid
        await self._coll.update_one({"_id": openid}, {"$set": fields})


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat() if value else None


def _user(doc: dict) -> MiniProgramUser:
    return MiniProgramUser(
        openid=doc["_id"],
        subject=doc["subject"],
        unionid=doc.get("unionid"),
        first_login_at=as_datetime(doc.get("first_login_at")),
        last_login_at=as_datetime(doc.get("last_login_at")),
        joining=doc.get("joining"),
        link_to=doc.get("link_to"),
    )
