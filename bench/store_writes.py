"""What one broadcast recipient costs the embedded database, and the ceiling that sets.

    .venv/bin/python bench/store_writes.py [--recipients 20000] [--output FILE]

A broadcast writes each recipient's delivery record twice: recorded as
pending when planned, and finished with its outcome; in between, the worker
that claimed it (in Redis) reads whether it is still pending. This script
starts nx-27017 as the embedded default does (``MONGODB_URI`` set: that
server instead) and times each of those with the same shapes the service uses
(batches of ``storage.deliveries.PENDING_PER_WRITE`` inserts, reads and updates of 100 records by ``_id``; each
write in a transaction of its own on a replica set or sharded cluster, as
``storage.mongo.in_one_transaction`` does), one client, nothing else running. The ceiling printed is how many recipients a
second the database can take if it had a whole core for nothing else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import pymongo
from pymongo.topology_description import TOPOLOGY_TYPE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import bench_mongo, emit, machine_lines  # noqa: E402
from storage.deliveries import PENDING_PER_WRITE  # noqa: E402


def write(client: pymongo.MongoClient, supported: list[bool], work) -> None:
    """``work(session)`` in a transaction, or ``work(None)`` on a single server (as the service does)."""
    if supported[0]:
        try:
            with client.start_session() as session, session.start_transaction():
                work(session)
            return
        except pymongo.errors.OperationFailure as exc:
            if exc.code != 20:  # IllegalOperation: a standalone server
                raise
            supported[0] = False
    work(None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    n = args.recipients - args.recipients % 100

    with bench_mongo("wetoop-store-") as (uri, engine):
        client = pymongo.MongoClient(uri)
        coll = client["wetoop_store_bench"]["deliveries"]
        coll.drop()
        coll.create_index([("notice_id", 1), ("status", 1)])
        coll.create_index("openid")
        coll.create_index("template_msgid", sparse=True)
        now = dt.datetime.now(dt.timezone.utc)
        ids = [f"n1:o{i:06d}" for i in range(n)]
        timings = {}

        started = time.perf_counter()
        docs = [{"_id": i, "notice_id": "n1", "openid": i[3:], "status": "pending", "attempts": 0, "updated_at": now} for i in ids]
        kind = client.topology_description.topology_type  # known after the drop above
        supported = [kind in (TOPOLOGY_TYPE.ReplicaSetWithPrimary, TOPOLOGY_TYPE.Sharded, TOPOLOGY_TYPE.LoadBalanced)]
        for start in range(0, n, PENDING_PER_WRITE):
            batch = docs[start : start + PENDING_PER_WRITE]
            write(client, supported, lambda session: coll.insert_many(batch, ordered=False, session=session))
        timings[f"record as pending (insert_many of {PENDING_PER_WRITE:,})"] = time.perf_counter() - started

        started = time.perf_counter()
        for start in range(0, n, 100):
            list(coll.find({"_id": {"$in": ids[start : start + 100]}}, {"openid": 1, "status": 1}))
        timings["read statuses after the claim (find of 100)"] = time.perf_counter() - started

        started = time.perf_counter()
        for start in range(0, n, 100):
            chosen = {"_id": {"$in": ids[start : start + 100]}}
            outcome = {"$set": {"status": "sent", "channel": "custom", "updated_at": now, "finished_at_ms": 2}}
            write(client, supported, lambda session: coll.update_many(chosen, outcome, session=session))
        timings["finish (update_many of 100)"] = time.perf_counter() - started
        coll.drop()
        client.close()

    per = {name: seconds / n * 1000 for name, seconds in timings.items()}
    total = sum(per.values())
    lines = machine_lines() + [
        "",
        f"## Delivery-record writes: {n:,} recipients, {engine}",
        "",
        "| write | ms per recipient |",
        "|---|---|",
        *(f"| {name} | {ms:.3f} |" for name, ms in per.items()),
        f"| all | {total:.3f} |",
        "",
        f"Ceiling with one whole core for the database: {1000 / total:,.0f} recipients/s.",
    ]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
