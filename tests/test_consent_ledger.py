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
    assert public == {"append", "carried_away", "carry", "ensure_indexes", "history", "latest", "newest",
                      "openids_with_action", "scan"}
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
