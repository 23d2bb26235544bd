"""Moving a person's records from one openid to another.

A mini-program user who accepted the agreement or registered before following
the official account has records under their mini-program openid. Once their
follower is known by the same unionid the two are one person, and the records
move to the follower's openid, the key chat and notices use
(:meth:`bot.mini_sessions.MiniSessions.link_follower` decides when).

Every collection keyed by openid is listed here, in one place. Nothing is
moved when both openids hold a merchant record (two accounts: an admin's
call, :meth:`OpenidMoves.both_registered`). Each step moves
whatever is still under the old openid, so a move cut short (a crash, MongoDB
gone) is finished by running it again. The consent ledger is never updated:
its records stay where they were written, and copies marked ``copied_from``
are appended under the new openid (:meth:`storage.consents.ConsentLedger.carry`);
audiences and the dashboard's view leave out openids carried away. Logs of
what happened to the old openid (admin audit entries) stay as they were written.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Awaitable, Callable

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from storage.consent_view import ConsentView
from storage.consents import ConsentLedger

log = logging.getLogger(__name__)

#: Collections whose documents carry the person in ``openid`` under an ``_id``
#: of their own: their documents are updated in place.
_UPDATED_IN_PLACE = ("qa_log", "merchant_status_history")

#: Collections whose ``_id`` is ``<notice id>:<openid>`` (one per notice and
#: person): their documents are inserted anew and the old ones deleted. A
#: delivery still to be sent stays where it is: the worker finishes it by that
#: ``_id``, and the person's inbox reads it there (``MiniSessions.aliases``).
_KEYED_BY_NOTICE = {"deliveries": {"status": {"$in": ["sent", "failed", "skipped"]}}, "notice_reads": {}}


class OpenidMoves:
    """Finds and moves everything kept under one openid."""

    def __init__(self, db: AsyncDatabase, ledger: ConsentLedger, view: ConsentView,
                 flush_logs: Callable[[], Awaitable[None]] | None = None) -> None:
        self._db = db
        self._ledger = ledger
        self._view = view
        self._flush = flush_logs

    async def _flush_logs(self) -> None:
        if self._flush is not None:
            await self._flush()

    async def both_registered(self, old: str, new: str) -> bool:
        """Whether ``old`` and ``new`` each hold a merchant record (two accounts
        of one person: which to keep is an admin's decision, not a move's)."""
        merchants = self._db["merchants"]
        return all([await merchants.find_one({"openid": o}, {"_id": 1}) is not None for o in (old, new)])

    async def move(self, old: str, new: str, at: dt.datetime) -> dict[str, int]:
        """Move every record of ``old`` to ``new``; how many moved, by collection.

        What ``new`` holds already wins: its merchant record (``old``'s then
        stays, logged), its preferences; consent copies join its ledger, where
        the latest choice by time counts; notices that reached both are kept
        once, under ``new``.
        """
        await self._flush_logs()  # questions asked a moment ago, still in this process's buffer
        moved: dict[str, int] = {"consents": await self._ledger.carry(old, new, at)}
        await self._view.refresh([old, new])
        # Merchants: one per openid (a unique index); the latest change names it too.
        merchants = self._db["merchants"]
        moved["merchants"] = 0
        record = await merchants.find_one({"openid": old}, {"last_change": 1})
        if record is not None and await merchants.find_one({"openid": new}, {"_id": 1}) is None:
            fields = {"openid": new}
            if isinstance(record.get("last_change"), dict):  # records from before it have none
                fields["last_change.openid"] = new
            try:
                moved["merchants"] = (await merchants.update_one({"_id": record["_id"]}, {"$set": fields})).modified_count
            except DuplicateKeyError:  # registered under ``new`` this very moment
                pass
        record_left = await merchants.find_one({"openid": old}, {"_id": 1}) is not None
        if record_left:
            log.warning("merchant record of %s kept: %s registered meanwhile", old, new)
        preferences = self._db["preferences"]
        if await preferences.find_one({"openid": new}, {"_id": 1}) is None:
            moved["preferences"] = (await preferences.update_one({"openid": old}, {"$set": {"openid": new}})).modified_count
        else:  # chosen again under the new openid since: that choice is the newer one
            moved["preferences"] = 0
            await preferences.delete_one({"openid": old})
        for name in _UPDATED_IN_PLACE:
            if name == "merchant_status_history" and record_left:
                continue  # stays with the record it belongs to (moved by an earlier, cut-short run otherwise)
            moved[name] = (await self._db[name].update_many({"openid": old}, {"$set": {"openid": new}})).modified_count
        for name, only in _KEYED_BY_NOTICE.items():
            moved[name] = await _rekey(self._db[name], old, new, only)
        return moved


async def _rekey(coll: AsyncCollection, old: str, new: str, only: dict) -> int:
    """Re-insert ``old``'s documents under ``new``'s ``<notice>:<openid>`` ids."""
    moved = 0
    for doc in await coll.find({"openid": old, **only}).to_list(None):
        copy = {**doc, "_id": f"{doc['notice_id']}:{new}", "openid": new}
        try:
            await coll.insert_one(copy)
            moved += 1
        except DuplicateKeyError:
            pass  # moved before this run was cut short, or the notice reached both
        await coll.delete_one({"_id": doc["_id"]})
    return moved
