"""Broadcast throughput, /wechat latency meanwhile, and a crash-and-resume run.

    .venv/bin/python bench/broadcast.py [--recipients 100000] [--rate 2000] [--separate-worker] [--output FILE]

Starts, on 127.0.0.1: the WeChat API emulator rate-limited to ``--rate``
messages per second (``wetoop-bot emulator --rate-limit``), and ``wetoop-bot
serve`` on the embedded default (its in-process worker sends; ``NOTICE_RATE``
is set to the same rate). With ``--separate-worker``: ``serve --no-worker``
and one ``wetoop-bot worker`` process, which then sends (and is the process
the crash run kills). It writes ``--recipients`` followers who wrote
recently, sends one service notice to all of them with ``wetoop-bot notice
send``, and measures the time until the job is done, while a probe sends a
signed question to ``/wechat`` every 20 ms and records the latency.

The crash run does the same with a smaller audience, kills the service with
SIGKILL mid-broadcast, starts it again, waits for the job to finish, then
counts copies per recipient in the emulator's own log.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pymongo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BIN, TOKEN, clean_env, emit, free_port, machine_lines  # noqa: E402
from tests.wx import WeChatServer  # noqa: E402

APPID, SECRET = "wxbenchbroadcast", "bench-secret"


class Setup:
    def __init__(self, rate: int, separate_worker: bool = False) -> None:
        self.separate_worker = separate_worker
        self.worker: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="wetoop-broadcast-"))
        self.rate = rate
        self.emulator_port = free_port()
        self.port = free_port()
        self.emulator = subprocess.Popen(
            [str(BIN), "emulator", "--port", str(self.emulator_port), "--rate-limit", str(rate)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.env = clean_env(
            WECHAT_TOKEN=TOKEN, WECHAT_APPID=APPID, WECHAT_SECRET=SECRET,
            WECHAT_API_BASE=f"http://127.0.0.1:{self.emulator_port}",
            DATA_DIR=str(self.dir), PORT=str(self.port), NOTICE_RATE=str(rate),
        )
        self.service: subprocess.Popen | None = None

    def start_worker(self) -> None:
        self.worker = subprocess.Popen([str(BIN), "worker"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sender(self) -> subprocess.Popen:
        """The process whose worker sends."""
        return self.worker if self.separate_worker else self.service

    def restart_sender(self) -> None:
        if self.separate_worker:
            self.start_worker()
        else:
            self.start_service()

    def start_service(self) -> None:
        command = [str(BIN), "serve"] + (["--no-worker"] if self.separate_worker else [])
        self.service = subprocess.Popen(command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.separate_worker and self.worker is None:
            self.start_worker()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("service did not start")

    def mongo(self) -> pymongo.MongoClient:
        state = json.loads((self.dir / "run" / "embedded.json").read_text())
        return pymongo.MongoClient(port=state["mongo"]["port"])

    def cli(self, *args: str) -> str:
        return subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True, check=True).stdout.strip()

    def emulator_json(self, path: str):
        """The JSON of one of the emulator's control paths (``stats``, ``messages``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.emulator_port}/_emulator/{path}", timeout=120) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        for proc in (self.worker, self.service, self.emulator):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def add_followers(setup: Setup, count: int, prefix: str) -> None:
    db = setup.mongo().wetoop
    now = dt.datetime.now(dt.timezone.utc)
    batch = []
    for i in range(count):
        batch.append({"openid": f"{prefix}{i:06d}", "subscribed": True, "subscribed_at": now, "last_interaction_at": now})
        if len(batch) == 5000:
            db.followers.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.followers.insert_many(batch, ordered=False)


def status(setup: Setup, notice_id: str) -> dict:
    return json.loads(setup.cli("notice", "status", notice_id, "--json"))


def quick_status(setup: Setup, notice_id: str) -> dict:
    """Status and counts read straight from MongoDB: polling through the CLI
    would start a Python process a second and take CPU from what is measured."""
    with setup.mongo() as client:
        db = client.wetoop
        counts = {row["_id"]: row["n"] for row in db.deliveries.aggregate(
            [{"$match": {"notice_id": notice_id}}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        )}
        notice = db.notices.find_one({"_id": notice_id}, {"status": 1}) or {}
    return {"status": notice.get("status"), **{k: int(counts.get(k, 0)) for k in ("sent", "failed", "skipped", "pending", "sending")}}


def finished_at(setup: Setup, notice_id: str) -> float | None:
    """When the job was marked done (epoch seconds), from its record."""
    with setup.mongo() as client:
        notice = client.wetoop.notices.find_one({"_id": notice_id}, {"finished_at": 1}) or {}
    at = notice.get("finished_at")
    if not isinstance(at, dt.datetime):
        return None
    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()


async def probe(setup: Setup, stop: asyncio.Event, latencies: list[float]) -> None:
    sender = WeChatServer(f"http://127.0.0.1:{setup.port}", TOKEN)
    i = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await sender.ask(f"o-probe{i % 50}", "我上传的图片版权归谁")
            latencies.append((time.perf_counter() - started) * 1000)
        except Exception:  # noqa: BLE001 - a failed probe counts as a very slow one
            latencies.append(10_000.0)
        i += 1
        await asyncio.sleep(0.02)


async def throughput_run(setup: Setup, recipients: int, timeout: float) -> dict:
    add_followers(setup, recipients, "o-b")
    # From the admin's command to done: planning (reading the audience, recording
    # every recipient) is part of it, and sending starts while it runs.
    latencies: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(setup, stop, latencies))
    started, started_wall = time.monotonic(), time.time()
    notice_id = await asyncio.to_thread(
        setup.cli, "notice", "send", "--category", "service", "--title", "系统维护", "--body", "今晚系统维护。"
    )
    planned_after = time.monotonic() - started
    first_sent_at = None
    state = {}
    while time.monotonic() - started < timeout:
        await asyncio.sleep(1.0)
        state = await asyncio.to_thread(quick_status, setup, notice_id)
        if first_sent_at is None and state["sent"] > 0:
            first_sent_at = time.monotonic()
        if state["status"] == "done":
            break
    elapsed = time.monotonic() - started
    # To the moment the job was done (its record says when), not to the poll
    # that saw it: the poll's second is no part of the broadcast.
    finished = await asyncio.to_thread(finished_at, setup, notice_id)
    if state.get("status") == "done" and finished is not None:
        elapsed = min(elapsed, finished - started_wall)
    state = await asyncio.to_thread(status, setup, notice_id)
    refused = (await asyncio.to_thread(setup.emulator_json, "stats"))["errors"].get("45009", 0)
    stop.set()
    await prober
    latencies.sort()
    return {
        "notice": notice_id,
        "planned_after": planned_after,
        "state": state,
        "elapsed": elapsed,
        "rate": state.get("sent", 0) / elapsed if elapsed else 0.0,
        "refused": refused,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99) - 1] if len(latencies) >= 100 else (latencies[-1] if latencies else float("nan")),
        "probes": len(latencies),
    }


def crash_run(setup: Setup, recipients: int, timeout: float) -> dict:
    add_followers(setup, recipients, "o-c")
    ids = setup.dir / "crash-ids.txt"
    ids.write_text("\n".join(f"o-c{i:06d}" for i in range(recipients)))
    before = len(setup.emulator_json("messages"))
    notice_id = setup.cli("notice", "send", "--category", "service", "--title", "崩溃测试", "--body", "正文", "--audience", f"openids:{ids}")
    deadline = time.monotonic() + timeout
    while quick_status(setup, notice_id)["sent"] < recipients // 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    sender = setup.sender()
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    sent_at_kill = status(setup, notice_id)["sent"]
    setup.restart_sender()
    state = {}
    while time.monotonic() < deadline:
        if quick_status(setup, notice_id)["status"] == "done":
            break
        time.sleep(0.5)
    state = status(setup, notice_id)
    messages = setup.emulator_json("messages")[before:]
    copies = collections.Counter(m["touser"] for m in messages if m["touser"].startswith("o-c"))
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    return {"state": state, "sent_at_kill": sent_at_kill, "duplicates": duplicates, "received": len(copies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--crash-recipients", type=int, default=5_000, help="0: no crash-and-resume run")
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--separate-worker", action="store_true", help="serve --no-worker plus one wetoop-bot worker process")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    setup = Setup(args.rate, args.separate_worker)
    try:
        setup.start_service()
        run = asyncio.run(throughput_run(setup, args.recipients, args.timeout))
        crash = crash_run(setup, args.crash_recipients, args.timeout) if args.crash_recipients > 0 else None
    finally:
        setup.stop()
    s = run["state"]
    lines = machine_lines() + [
        "",
        f"## Broadcast: {args.recipients:,} recipients, emulator limited to {args.rate:,}/s, "
        + ("sent by a separate `wetoop-bot worker`" if args.separate_worker else "sent by the worker inside `serve`"),
        "",
        "| status | sent | failed | skipped | total | time | sent/s | share of the limit | /wechat p50 | /wechat p99 | probes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {s.get('status')} | {s.get('sent')} | {s.get('failed')} | {s.get('skipped')} | {s.get('total')} | "
        f"{run['elapsed']:.1f} s | {run['rate']:.0f} | {run['rate'] / args.rate:.0%} | {run['p50']:.1f} ms | {run['p99']:.1f} ms | {run['probes']} |",
        "",
        f"Time from `notice send` to `done`; `notice send` itself (reading the audience and recording "
        f"every recipient, while sending already runs) returned after {run['planned_after']:.1f} s. "
        f"The emulator refused {run['refused']:,} sends over its limit (45009; each retried).",
    ]
    if crash is not None:
        lines += [
            "",
            f"## Crash and resume: {args.crash_recipients:,} recipients, SIGKILL of the sending process after a third",
            "",
            "| status | sent at kill | sent | failed | skipped | total | recipients reached | duplicates (emulator log) |",
            "|---|---|---|---|---|---|---|---|",
            f"| {crash['state'].get('status')} | {crash['sent_at_kill']} | {crash['state'].get('sent')} | {crash['state'].get('failed')} | "
            f"{crash['state'].get('skipped')} | {crash['state'].get('total')} | {crash['received']} | {crash['duplicates']} |",
        ]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
