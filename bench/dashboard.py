"""The admin dashboard's figures with a large consent ledger.

    .venv/bin/python bench/dashboard.py [--records 100000] [--users 10000] [--output FILE]

Inserts ``--records`` ledger records for ``--users`` followers (straight into
the database, as a migration from an older version would find them), then
times the console's dashboard: the first call replays the whole ledger into
the per-user view (``storage/consent_view.py``), later calls replay only what
was added since. For comparison it also times the read the dashboard did
before that view (every record, sorted by time). nx-27017 as the embedded
default does (``MONGODB_URI`` set: that server instead).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_mongo, emit, machine_lines  # noqa: E402
from bot.admin_accounts import CLI  # noqa: E402
from bot.consent import Origin  # noqa: E402
from service.config import Config  # noqa: E402
from service.runtime import Runtime  # noqa: E402

DATABASE = "wetoop_dashboard_bench"


def insert(uri: str, records: int, users: int, version: dict) -> float:
    db = pymongo.MongoClient(uri, tz_aware=True)[DATABASE]
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)
    started = time.perf_counter()
    db.followers.insert_many([{"openid": f"o-{u:06d}", "subscribed": True} for u in range(users)])
    for first in range(0, records, 10_000):
        db.consents.insert_many([
            {"openid": f"o-{i % users:06d}", "version": version["version"], "text_sha256": version["text_sha256"],
             # Mixed choices per user and round, the last round mostly acceptance.
             "action": ("accept", "decline", "withdraw")[(i // users + i % users) % 3], "channel": "official_account",
             "at": start + dt.timedelta(seconds=i * 30), "message_id": None, "meta": {}}
            for i in range(first, min(first + 10_000, records))
        ], ordered=False)
    return time.perf_counter() - started


async def measure(uri: str, args) -> list[tuple[str, float, str]]:
    runtime = Runtime(Config(data_dir=Path(tempfile.mkdtemp(prefix="wetoop-dash-"))), uri, "redis://127.0.0.1:9/0",
                      database=DATABASE)
    rows = []
    try:
        await runtime.prepare(qa=False)
        current = await runtime.terms.current()
        secs = await asyncio.to_thread(insert, uri, args.records, args.users,
                                       {"version": current.version, "text_sha256": current.text_sha256})
        rows.append((f"insert {args.records:,} ledger records, {args.users:,} followers", secs, ""))

        coll = runtime.db["consents"]
        started = time.perf_counter()
        seen = 0
        async for _doc in coll.find({}, {"openid": 1, "version": 1, "action": 1, "at": 1}).sort("at", 1):
            seen += 1
        rows.append(("the old read: every record sorted by time", time.perf_counter() - started, f"{seen:,} records"))

        for label in ("dashboard, first call (replays the whole ledger)", "dashboard, next call"):
            started = time.perf_counter()
            board = await runtime.console.dashboard(CLI)
            rows.append((label, time.perf_counter() - started, f"accepted {board.accepted:,} of {board.followers:,}"))
        for u in range(100):
            await runtime.consents.accept(f"o-{u:06d}", Origin("official_account", f"bench:{u}"))
        started = time.perf_counter()
        board = await runtime.console.dashboard(CLI)
        rows.append(("dashboard after 100 users accepted in chat", time.perf_counter() - started,
                     f"accepted {board.accepted:,}"))
    finally:
        await runtime.mongo_client.drop_database(DATABASE)
        await runtime.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    with bench_mongo("wetoop-dash-") as (uri, engine):
        rows = asyncio.run(measure(uri, args))
    lines = machine_lines() + [
        "",
        f"## Admin dashboard with {args.records:,} consent records, {engine}",
        "",
        "| step | seconds | |",
        "|---|---|---|",
        *(f"| {label} | {secs:.2f} | {note} |" for label, secs, note in rows),
    ]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
