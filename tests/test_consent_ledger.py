"""The ledger is append-only and retry-safe, at the repository level."""

from __future__ import annotations

import datetime as dt
import inspect
import re
from pathlib import Path

import storage.consents as consents_module
from storage.consents import ConsentLedger, ConsentRecord

UTC = dt.timezone.utc


def record(openid="o-l", action="accept", message_id=None, minute=0) -> ConsentRecord:
    return ConsentRecord(
        openid=openid,
        version="2022-05-22",
        text_sha256="a" * 64,
        action=action,
        channel="official_account",
        at=dt.datetime(2026, 12, 1, 8, minute, tzinfo=UTC),
        message_id=message_id,
    )


async def test_same_message_is_recorded_once(service):
    ledger = service.runtime.ledger
    assert await ledger.append(record(message_id="msg:1")) is True
    assert await ledger.append(record(message_id="msg:1", minute=5)) is False
    assert len(await ledger.history("o-l")) == 1


async def test_history_keeps_every_record_in_order(service):
    ledger = service.runtime.ledger
    for minute, action in enumerate(["accept", "withdraw", "accept", "decline"]):
        await ledger.append(record(action=action, minute=minute))
    history = await ledger.history("o-l")
    assert [r.action for r in history] == ["accept", "withdraw", "accept", "decline"]
    assert (await ledger.latest("o-l")).action == "decline"


def test_no_code_path_updates_or_deletes_the_ledger():
    source = inspect.getsource(consents_module)
    assert not re.search(r"\.(update|delete|replace|find_one_and|bulk_write|drop)", source)
    public = {name for name, _ in inspect.getmembers(ConsentLedger, inspect.isfunction) if not name.startswith("_")}
    assert public == {"append", "carried_away", "carry", "ensure_indexes", "histories", "history", "latest", "newest",
                      "of_message", "openids_with_action", "scan"}
    # Nor does any other module that reaches the collection itself.
    root = Path(consents_module.__file__).parents[1]
    reaching = {}
    for path in [*root.glob("bot/**/*.py"), *root.glob("storage/*.py"), *root.glob("service/*.py"), *root.glob("handlers/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if re.search(r'db\["consents"\]', text):
            reaching[path.relative_to(root).as_posix()] = text
    assert set(reaching) == {"storage/consents.py", "storage/consent_view.py", "storage/admin_stats.py"}
    assert not re.search(r"_ledger\.(update|delete|replace|find_one_and|bulk_write|drop)", reaching["storage/consent_view.py"])
    assert not re.search(r'\["consents"\]\.(update|delete|replace|find_one_and|bulk_write|drop)', reaching["storage/admin_stats.py"])


async def test_a_version_id_that_starts_like_a_date_is_found_by_its_id(service):
    # nx-27017 read "2026-11-27b" as a date in a plain equality and found
    # nothing: the dashboard said 0 % had accepted a version three had.
    import dataclasses

    ledger, view = service.runtime.ledger, service.runtime.consent_view
    for openid in ("o-b1", "o-b2"):
        await ledger.append(dataclasses.replace(record(openid=openid), version="2026-11-27b"))
    await ledger.append(record(openid="o-b3"))
    assert [r.openid async for r in ledger.scan(version="2026-11-27b")] == ["o-b1", "o-b2"]
    await view.catch_up(dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    assert await view.accepted("2026-11-27b") == {"o-b1", "o-b2"}


async def test_the_view_holds_one_document_per_user_whatever_order_records_come_in(service):
    # An upsert on condition that missed the user's document made nx-27017 insert
    # a second one under a new _id (a stale copy, counted as accepting for good).
    ledger, view, db = service.runtime.ledger, service.runtime.consent_view, service.runtime.db
    await ledger.append(record(openid="o-v", minute=5))
    await view.refresh(["o-v"])  # as a join does
    await ledger.append(record(openid="o-v", action="withdraw", minute=6))
    await view.catch_up(dt.datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await view._apply([{"_id": "older", "openid": "o-v", "version": "2022-05-22", "action": "decline",
                        "at": dt.datetime(2026, 12, 1, 8, 1, tzinfo=UTC)}])
    docs = await db["consent_latest"].find({"openid": "o-v"}).to_list(None)
    assert [(d["_id"], d["action"]) for d in docs] == [("o-v", "withdraw")]
    assert await view.accepted("2022-05-22") == set()


async def test_writes_are_acknowledged_by_a_majority_unless_the_uri_says_otherwise(service):
    # A consent acknowledged by the primary alone (w:1, MongoDB's default before 5.0 and
    # with an arbiter) is lost in a failover after the user was told it was recorded.
    from storage.mongo import connect

    assert service.runtime.mongo_client.write_concern.document == {"w": "majority"}
    client, _ = connect("mongodb://127.0.0.1:9/?w=1")
    try:
        assert client.write_concern.document == {"w": 1}
    finally:
        await client.close()
