"""Memory of one service process with a large database behind it.

Starts ``wetoop-bot serve`` (one process, embedded nx-27017 and Valkey in a
temporary DATA_DIR), inserts followers and consent-ledger records directly
with pymongo into its database ``wetoop`` (the documents the service itself
writes: see storage/followers.py and storage/consents.py), then exercises the
service with a few hundred signed messages of several kinds and reads VmRSS
from /proc/PID/status at each stage. It also times those messages: with a
large ledger, what each kind of message costs is as telling as the memory.

Inserting is bounded (``--max-insert-seconds``, default 300): if the target
counts are not reached in time, the script measures at the count reached and
says how it extrapolates.

    .venv/bin/python bench/memory.py [--followers 100000] [--consents 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Service, emit, machine_lines, median, post_once, rss_kib, table, text_xml  # noqa: E402

_ids = itertools.count(int(time.time() * 1000) * 1000)
BATCH = 10_000


def insert_followers(db, count: int, deadline: float) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    done = 0
    while done < count and time.monotonic() < deadline:
        n = min(BATCH, count - done)
        docs = [
            {
                "openid": f"o-mem-{i}",
                "subscribed": True,
                "subscribed_at": now - dt.timedelta(days=i % 700),
                "last_interaction_at": now - dt.timedelta(minutes=i % 100_000),
            }
            for i in range(done, done + n)
        ]
        db.followers.insert_many(docs, ordered=False)
        done += n
    return done


def insert_consents(db, count: int, deadline: float, version: dict, progress) -> int:
    """About 10 ledger records per follower: accept, sometimes decline/withdraw, re-accept."""
    now = dt.datetime.now(dt.timezone.utc)
    actions = ("accept", "accept", "accept", "withdraw", "accept", "decline", "accept", "accept", "withdraw", "accept")
    done = 0
    while done < count and time.monotonic() < deadline:
        n = min(BATCH, count - done)
        docs = []
        for i in range(done, done + n):
            docs.append(
                {
                    "_id": f"official_account:msg:mem-{i}",
                    "openid": f"o-mem-{i % 100_000}",
                    "version": version["version"],
                    "text_sha256": version["text_sha256"],
                    "action": actions[(i // 100_000) % len(actions)],
                    "channel": "official_account",
                    "message_id": f"msg:mem-{i}",
                    "at": now - dt.timedelta(seconds=count - i),
                    "meta": {"msg_type": "text", "create_time": int(now.timestamp()) - (count - i), "to_user": "gh_bench"},
                }
            )
        db.consents.insert_many(docs, ordered=False)
        done += n
        progress(done)
    return done


#: (text, label, expected in the reply, who sends it: "existing" followers with ~10 ledger records, or "new" users)
KINDS = [
    ("帮助", "help, new user", "您可以发送以下指令", "new"),
    ("我上传的图片版权归谁", "question, existing follower", "", "existing"),
    ("我上传的图片版权归谁", "question, new user", "", "new"),
    ("同意", "同意, existing follower (already accepted)", "同意", "existing"),
    ("同意", "同意, new user (ledger insert)", "已记录", "new"),
    ("导出我的数据", "导出我的数据, existing follower (ledger history)", "24 小时", "existing"),
]


def exercise(service: Service, rounds: int, prefix: str = "o-mem", salt: int = 0) -> list[list[object]]:
    rows = []
    for index, (content, label, needle, who) in enumerate(KINDS):
        times, ok, answers = [], 0, {}
        for r in range(rounds):
            if who == "existing":
                openid = f"{prefix}-{(r * 7919 + index + 31 * salt) % 100_000}"
            else:
                openid = f"o-new-{prefix}-{salt}-{index}-{r}"
            started = time.monotonic()
            status, body = post_once(service.url + "/wechat", text_xml(openid, content, next(_ids)), timeout=15)
            times.append(time.monotonic() - started)
            text = body.decode("utf-8", "replace")
            match = re.search(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", text, re.S)
            reply = match.group(1) if match else text
            key = reply.split("\n")[0][:40]
            answers[key] = answers.get(key, 0) + 1
            if status == 200 and needle in reply:
                ok += 1
        top = max(answers.items(), key=lambda kv: kv[1])
        others = sorted(((n, k) for k, n in answers.items() if k != top[0]), reverse=True)
        other = f"; «{others[0][1]}» ×{others[0][0]}" if others else ""
        rows.append([label, rounds, f"{median(times) * 1000:.0f}", f"{max(times) * 1000:.0f}", f"{ok}/{rounds}", f"«{top[0]}» ×{top[1]}{other}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="RSS of one service process with a large database (see docstring).")
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--consents", type=int, default=1_000_000)
    parser.add_argument("--max-insert-seconds", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=20, help="messages of each kind when exercising (default 20)")
    parser.add_argument("--no-what-if", action="store_true", help="skip the run with an extra consents.openid index")
    parser.add_argument("--output", help="also write the Markdown report to this file")
    args = parser.parse_args()
    args.rounds = max(1, min(args.rounds, 500))

    import pymongo

    service = Service()
    stages = []
    try:
        service.start()
        pid = service.proc.pid
        state = service.embedded
        mongo_pid, redis_pid = state["mongo"]["pid"], state["redis"]["pid"]
        db_file = service.data_dir / "mongo" / "wetoop.db"

        def stage(name: str) -> None:
            size = sum(p.stat().st_size for p in db_file.parent.glob("wetoop.db*")) / 2**20
            stages.append([name, f"{rss_kib(pid) / 1024:.1f}", f"{rss_kib(mongo_pid) / 1024:.1f}", f"{rss_kib(redis_pid) / 1024:.1f}", f"{size:.0f}"])
            print("  " + " | ".join(map(str, stages[-1])), file=sys.stderr, flush=True)

        stage("started, empty database")
        exercise(service, 5, prefix="o-warm")
        stage("after 20 messages")

        client = pymongo.MongoClient(port=state["mongo"]["port"], tz_aware=True)
        db = client["wetoop"]
        version = db.agreement_versions.find_one(sort=[("effective_at", -1)])
        started = time.monotonic()
        deadline = started + args.max_insert_seconds
        followers = insert_followers(db, args.followers, deadline)
        f_secs = time.monotonic() - started
        print(f"inserted {followers} followers in {f_secs:.0f} s", file=sys.stderr, flush=True)

        last = [0]

        def progress(done: int) -> None:
            if done - last[0] >= 100_000:
                last[0] = done
                print(f"  {done} consent records, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

        c_started = time.monotonic()
        consents = insert_consents(db, args.consents, deadline, version, progress)
        c_secs = time.monotonic() - c_started
        client.close()
        print(f"inserted {consents} consent records in {c_secs:.0f} s", file=sys.stderr, flush=True)
        stage(f"after inserting {followers:,} followers and {consents:,} consents")
        timings = exercise(service, args.rounds)
        stage(f"after {len(KINDS) * args.rounds} more messages")
        whatif = None
        if not args.no_what_if:
            # What-if: the single-field index suggested in RESULTS.md (the product does not create it).
            with pymongo.MongoClient(port=state["mongo"]["port"]) as client:
                t0 = time.monotonic()
                client["wetoop"].consents.create_index([("openid", 1)], name="openid_whatif")
                index_secs = time.monotonic() - t0
            whatif = exercise(service, args.rounds, prefix="o-mem", salt=1)
            stage(f"what-if: + consents.openid index ({index_secs:.0f} s to build), {len(KINDS) * args.rounds} more messages")
    finally:
        service.stop()

    lines = ["## Memory (bench/memory.py)", "", *machine_lines()]
    lines += [
        f"- one `wetoop-bot serve` process, embedded nx-27017 and Valkey; data inserted with pymongo "
        f"({followers:,} followers in {f_secs:.0f} s, {consents:,} consent records in {c_secs:.0f} s, "
        f"≈{consents / max(c_secs, 1e-9):.0f} records/s)",
        "",
        table(["stage", "service VmRSS MiB", "nx-27017 VmRSS MiB", "Valkey VmRSS MiB", "wetoop.db MiB"], stages),
        "",
    ]
    if consents < args.consents or followers < args.followers:
        lines += [
            f"Inserting stopped at the {args.max_insert_seconds:.0f} s bound before reaching {args.followers:,} followers "
            f"and {args.consents:,} consents. The service process holds no per-follower or per-record state (every "
            "read goes to MongoDB), so its RSS is not expected to grow with the counts; nx-27017's RSS and the database "
            f"file grow about linearly: × {args.consents / max(consents, 1):.1f} for the full count.",
            "",
        ]
    lines += [
        "### Message latency with that database (one at a time, blocking client)",
        "",
        table(["message", "n", "median ms", "max ms", "expected answer", "most frequent answer"], timings),
    ]
    if whatif:
        lines += [
            "",
            "### The same messages after adding a single-field index on `consents.openid` (what-if)",
            "",
            table(["message", "n", "median ms", "max ms", "expected answer", "most frequent answer"], whatif),
        ]
    text = "\n".join(lines)
    emit(text, args.output)


if __name__ == "__main__":
    main()
