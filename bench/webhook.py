"""Webhook throughput and latency: the service against WeRoBot-echo and bare Tornado.

Every request is a signed plaintext-mode push (fresh nonce and signature) with
a unique MsgId, so the service's retry dedupe claims every one. Three paths
through ``/wechat``:

* ``qa``: a free-text question (``我上传的图片版权归谁``) from a pool of
  10,000 users;
* ``consent``: ``同意`` from a new user every time (one ledger insert each);
* ``register``: users who accepted and are in the registration dialog at the
  entity-type step answer ``企业`` (state prepared beforehand: a consent record
  in MongoDB and a dialog state in Redis for each).

The same ``qa`` requests go to two references, each one process: a WeRoBot echo
bot (bench/werobot_echo.py, under waitress, in its own virtualenv
bench/.refenv, created with pip on first use) and a bare Tornado handler that
answers ``success`` (bench/bare_tornado.py, the ceiling). Then the service
again with ``--processes 2``. Since the machine's speed drifts within minutes,
the question path and WeRoBot's echo are also run in alternation
(``--rounds`` pairs, both servers up); the target is judged on the median of
those pairs' ratios.

Load: bench/loadgen.py, N keep-alive connections (closed loop), a fixed
duration per path. With ``wrk`` installed, wrk also drives bare Tornado, as a
check that the Python generator is not the bottleneck.

    .venv/bin/python bench/webhook.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH, PYTHON, ROOT, TOKEN, Service, cpu_seconds, emit, free_port, machine_cpu, machine_lines, median, post_once, post_request,
    signed_query, stop_process, table, text_xml, wait_http,
)
from loadgen import Result, run_load  # noqa: E402

QUESTION = "我上传的图片版权归谁"
REFENV = BENCH / ".refenv"
#: Seconds between interleaved runs (the service writes its question log a second after a run).
PAUSE = 2.0
_msg_ids = itertools.count(int(time.time() * 1000) * 1000)


# -- request makers --------------------------------------------------------------------


def qa_requests(users: int = 10_000, prefix: str = "o-qa"):
    counter = itertools.count()

    def make() -> bytes:
        n = next(counter)
        return post_request("/wechat?" + signed_query(), text_xml(f"{prefix}-{n % users}", QUESTION, next(_msg_ids)))

    return make


def unique_question_requests(users: int = 10_000, prefix: str = "o-qu"):
    """Questions from the Q&A's dev and holdout sets, each made unique by a
    number, so none is answered from the Q&A's memo: the uncached cost."""
    questions = []
    for name in ("dev.jsonl", "holdout.jsonl"):
        for line in (ROOT / "data" / "qa" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                questions.append(json.loads(line)["q"])
    counter = itertools.count()

    def make() -> bytes:
        n = next(counter)
        question = f"{questions[n % len(questions)]} {n}"
        return post_request("/wechat?" + signed_query(), text_xml(f"{prefix}-{n % users}", question, next(_msg_ids)))

    return make


def consent_requests(prefix: str):
    counter = itertools.count()

    def make() -> bytes:
        return post_request("/wechat?" + signed_query(), text_xml(f"{prefix}-{next(counter)}", "同意", next(_msg_ids)))

    return make


def register_requests(openids: list[str]):
    it = iter(openids)

    def make() -> bytes | None:
        openid = next(it, None)
        if openid is None:
            return None
        return post_request("/wechat?" + signed_query(), text_xml(openid, "企业", next(_msg_ids)))

    return make


# -- preparing the registration path -------------------------------------------------------


def prepare_registration(service: Service, count: int, prefix: str) -> tuple[list[str], float]:
    """``count`` users who accepted the current version and stand at the entity-type
    step of the registration dialog. Returns their openids and the seconds taken."""
    import pymongo
    import redis

    started = time.monotonic()
    state = service.embedded
    client = pymongo.MongoClient(port=state["mongo"]["port"], tz_aware=True)
    db = client["wetoop"]
    current = db.agreement_versions.find_one(sort=[("effective_at", -1)])
    now = dt.datetime.now(dt.timezone.utc)
    openids = [f"{prefix}-{i}" for i in range(count)]
    batch = []
    for i, openid in enumerate(openids):
        batch.append(
            {
                "_id": f"official_account:msg:prep-{prefix}-{i}",
                "openid": openid,
                "version": current["version"],
                "text_sha256": current["text_sha256"],
                "action": "accept",
                "channel": "official_account",
                "message_id": f"msg:prep-{prefix}-{i}",
                "at": now,
                "meta": {"msg_type": "text", "create_time": int(now.timestamp()), "to_user": "gh_bench"},
            }
        )
        if len(batch) == 5000:
            db.consents.insert_many(batch, ordered=False)
            batch = []
    if batch:
        db.consents.insert_many(batch, ordered=False)
    client.close()

    r = redis.Redis(port=state["redis"]["port"])
    value = json.dumps({"name": "registration:entity_type", "data": {"answers": {}, "history": [], "editing": False}})
    pipe = r.pipeline(transaction=False)
    for i, openid in enumerate(openids):
        pipe.set(f"wb:dialog:{openid}", value, ex=1800)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    r.close()
    return openids, time.monotonic() - started


# -- the reference servers ------------------------------------------------------------------


def ensure_refenv() -> Path:
    """bench/.refenv with werobot and waitress (pip, on first use)."""
    python = REFENV / "bin" / "python"
    probe = [str(python), "-c", "import werobot, waitress"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print("installing werobot and waitress into bench/.refenv (pip) …", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(REFENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "werobot", "waitress"], check=True)
    return python


def versions_of_refenv(python: Path) -> str:
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('werobot'), m.version('waitress'))"],
        capture_output=True, text=True,
    ).stdout.split()
    return f"WeRoBot {out[0]}, waitress {out[1]}" if len(out) == 2 else "WeRoBot (version unknown)"


class Reference:
    def __init__(self, name: str, command: list[str], ready_status: int, logdir: Path) -> None:
        self.name = name
        self.port = free_port()
        log = open(logdir / f"{name}.log", "ab")
        try:
            self.proc = subprocess.Popen(command + ["--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        finally:
            log.close()
        wait_http(f"http://127.0.0.1:{self.port}/wechat", 60, self.proc, status=ready_status)

    def stop(self) -> None:
        stop_process(self.proc)


# -- measuring ------------------------------------------------------------------------------


class CpuMeter:
    """CPU share (1.0 = one core) of some pids over a run, and of everything
    else on the machine ("other": busy time not spent in those pids nor in this
    generator) and the machine's I/O wait."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
        self.machine = machine_cpu()
        self.me = cpu_seconds(os.getpid())
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        shares = {
            name: (sum(cpu_seconds(p) for p in pids) - self.start[name]) / wall for name, pids in self.groups.items()
        }
        busy, iowait = machine_cpu()
        mine = (cpu_seconds(os.getpid()) - self.me) / wall
        shares["other"] = max(0.0, (busy - self.machine[0]) / wall - sum(shares.values()) - mine)
        shares["iowait"] = (iowait - self.machine[1]) / wall
        return shares


def measure(name, port, make, args, expect, groups) -> tuple[Result, dict[str, float]]:
    meter = CpuMeter(groups)
    result = asyncio.run(
        run_load(name, "127.0.0.1", port, make, connections=args.connections, duration=args.duration, expect=expect)
    )
    cpu = meter.stop()
    print("  " + result.summary(), file=sys.stderr, flush=True)
    if result.sample:
        print(f"    first unexpected body: {result.sample[:200]!r}", file=sys.stderr)
    return result, cpu


def warm(port, make, args) -> None:
    asyncio.run(run_load("warm-up", "127.0.0.1", port, make, connections=args.connections, duration=args.warmup))


def service_groups(service: Service) -> dict[str, list[int]]:
    state = service.embedded
    return {"service": service.workers(), "nx-27017": [state["mongo"]["pid"]], "valkey": [state["redis"]["pid"]]}


def check_reply(service: Service, content: str, openid: str, needle: str) -> str:
    """One request outside the timed run, to show what the path answers."""
    status, body = post_once(service.url + "/wechat", text_xml(openid, content, next(_msg_ids)))
    text = body.decode("utf-8", "replace")
    match = re.search(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", text, re.S)
    reply = match.group(1) if match else text
    if status != 200 or needle not in reply:
        raise RuntimeError(f"unexpected answer to {content!r}: {status} {reply[:200]!r}")
    return reply


def ledger_size(service: Service) -> int:
    import pymongo

    with pymongo.MongoClient(port=service.embedded["mongo"]["port"]) as client:
        return client["wetoop"].consents.estimated_document_count()


def run_service_paths(processes: int, args, logdir: Path, rows: dict, key=None, openid_index: bool = False) -> None:
    """The three paths on a fresh service; results under ``rows[(key, path)]``.

    ``openid_index`` adds a single-field index on ``consents.openid`` to the
    service's database first (a what-if for the fix suggested in RESULTS.md;
    the product does not create it)."""
    key = key or processes
    label = f"wetoop-bot ({processes} process{'es' if processes > 1 else ''}{', + consents.openid index' if openid_index else ''})"
    print(f"{label}: starting", file=sys.stderr, flush=True)
    service = Service(processes=processes)
    try:
        service.start()
        port = service.port
        groups = service_groups(service)
        if openid_index:
            import pymongo

            with pymongo.MongoClient(port=service.embedded["mongo"]["port"]) as client:
                client["wetoop"].consents.create_index([("openid", 1)], name="openid_whatif")
        sample = check_reply(service, QUESTION, "o-check", "")
        rows.setdefault("qa_reply", sample.split("\n")[0][:60])
        prefix = f"p{key}".replace("+", "")
        warm(port, qa_requests(prefix=f"o-warm-{prefix}"), args)
        if "qa" in args.paths:
            rows[("ledger", key, "qa")] = ledger_size(service)
            rows[(key, "qa")] = measure(f"{label} qa", port, qa_requests(prefix=f"o-qa-{prefix}"), args, b"<xml>", groups)
        if "qa-unique" in args.paths:
            rows[("ledger", key, "qa-unique")] = ledger_size(service)
            rows[(key, "qa-unique")] = measure(
                f"{label} qa-unique", port, unique_question_requests(prefix=f"o-qu-{prefix}"), args, b"<xml>", groups
            )
        if "consent" in args.paths:
            rows[("ledger", key, "consent")] = ledger_size(service)
            rows[(key, "consent")] = measure(
                f"{label} consent", port, consent_requests(f"o-consent-{prefix}"), args, "已记录".encode(), groups
            )
        if "register" in args.paths:
            qa = rows.get((key, "qa"))
            rate = qa[0].rps if qa else 1000
            count = min(200_000, int(rate * args.duration * 1.5) + 2000)
            openids, took = prepare_registration(service, count, f"o-reg-{prefix}")
            print(f"  prepared {count} users mid-registration in {took:.1f} s", file=sys.stderr, flush=True)
            check_reply(service, "企业", openids.pop(), "第 2 步")
            rows[("ledger", key, "register")] = ledger_size(service)
            rows[(key, "register")] = measure(
                f"{label} register", port, register_requests(openids), args, "第 2 步".encode(), groups
            )
    finally:
        service.stop()


def run_interleaved(python: Path, args, logdir: Path, rows: dict) -> None:
    """The question path and WeRoBot's echo in alternation, both servers up:
    ``args.rounds`` pairs of runs, each ``args.duration`` seconds, a pause
    between runs for the service's buffered writes to settle. This machine's
    speed drifts by up to a third within minutes (the same bare Tornado
    measured 4,200 and 6,000 req/s a few minutes apart), so a ratio of two
    runs taken minutes apart says as much about the drift as about the
    servers; the median of paired runs does not."""
    print("interleaved: WeRoBot echo and the question path, 1 process", file=sys.stderr, flush=True)
    ref = Reference("werobot-pairs", [str(python), str(BENCH / "werobot_echo.py"), "--token", TOKEN], 403, logdir)
    service = Service(processes=1)
    try:
        service.start()
        groups = service_groups(service)
        warm(ref.port, qa_requests(prefix="o-warm-ref"), args)
        warm(service.port, qa_requests(prefix="o-warm-pairs"), args)
        pairs = []
        for n in range(args.rounds):
            time.sleep(PAUSE)
            werobot = measure(f"round {n + 1}: WeRoBot echo", ref.port, qa_requests(), args, QUESTION.encode(),
                              {"server": [ref.proc.pid]})
            time.sleep(PAUSE)
            ours = measure(f"round {n + 1}: question path", service.port, qa_requests(prefix=f"o-pair{n}"), args,
                           b"<xml>", groups)
            pairs.append((werobot, ours))
        rows["pairs"] = pairs
    finally:
        service.stop()
        ref.stop()


def run_wrk(port: int, args) -> tuple[float, float, float] | None:
    """wrk (one thread, same connections) against bare Tornado: req/s, p50, p99 (ms)."""
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    body = text_xml("o-wrk", QUESTION, 0).decode()
    head, tail = body.split("<MsgId>0</MsgId>")
    script = f"""
local counter = 0
local tid = 0
setup = function(thread) tid = tid + 1; thread:set("tid", tid) end
request = function()
  counter = counter + 1
  local msgid = string.format("%d%09d", tid or 0, counter)
  local body = [==[{head}]==] .. "<MsgId>" .. msgid .. "</MsgId>" .. [==[{tail}]==]
  return wrk.format("POST", "/wechat?{signed_query()}", {{["Content-Type"] = "text/xml"}}, body)
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run(
            [wrk, "-t1", f"-c{args.connections}", f"-d{int(args.duration)}s", "--latency", "-s", fh.name,
             f"http://127.0.0.1:{port}/wechat"],
            capture_output=True, text=True, timeout=args.duration + 30,
        ).stdout
    finally:
        os.unlink(fh.name)

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return (float(rps.group(1)) if rps else float("nan"), ms("50"), ms("99"))


# -- the report -------------------------------------------------------------------------------


def pair_ratio(pairs: list) -> float:
    """The median of the question path's throughput over WeRoBot's, pair by pair."""
    return median([ours[0].rps / ref_run[0].rps for ref_run, ours in pairs])


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def report(rows: dict, args, wrk_bare, refinfo: str) -> str:
    lines = ["## Webhook throughput and latency (bench/webhook.py)", "", *machine_lines()]
    lines += [
        f"- load: bench/loadgen.py (Python asyncio, keep-alive), {args.connections} connections, "
        f"{args.duration:.0f} s per row after a {args.warmup:.0f} s warm-up; every request signed, unique MsgId",
        f"- references: {refinfo} (echo bot, 1 process, 8 threads); bare Tornado handler answering `success` (1 process)",
        "- everything (service, nx-27017, Valkey, the generator) shares the same 2 cores",
        "",
    ]
    werobot = rows.get("werobot")
    bare = rows.get("bare")
    headers = ["server / path", "ledger records", "req/s", "p50 ms", "p99 ms", "errors", "vs WeRoBot-echo", "vs bare Tornado", "CPU (1.0 = one core)"]
    body = []

    def add(label, entry, ledger=""):
        result, cpu = entry
        vs_w = fmt(result.rps / werobot[0].rps, 2) if werobot else "n/a"
        vs_b = fmt(result.rps / bare[0].rps, 2) if bare else "n/a"
        cpu_text = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()) + f", generator {result.gen_cpu:.2f}"
        body.append([label, ledger, f"{result.rps:.0f}", fmt(result.percentile(50)), fmt(result.percentile(99)),
                     result.errors, vs_w, vs_b, cpu_text])

    if bare:
        add("bare Tornado (`success`)", bare)
    if werobot:
        add("WeRoBot echo (waitress)", werobot)
    names = {"qa": f"wetoop-bot: question «{QUESTION}»",
             "qa-unique": "wetoop-bot: 293 dev/holdout questions, each made unique (no memo)", "consent": "wetoop-bot: 同意 (new user each)",
             "register": "wetoop-bot: registration step 企业"}
    variants = {1: "1 proc", 2: "2 procs", "idx": "1 proc, what-if: + `consents.openid` index"}
    for key, suffix in variants.items():
        for path in ("qa", "qa-unique", "consent", "register"):
            if (key, path) in rows:
                add(f"{names[path]}, {suffix}", rows[(key, path)], f"{rows.get(('ledger', key, path), '')}")
    lines.append(table(headers, body))
    if wrk_bare:
        lines += ["", f"Generator check: wrk (C, 1 thread, {args.connections} connections, Lua-made unique MsgIds) against "
                  f"the same bare Tornado: {wrk_bare[0]:.0f} req/s, p50 {fmt(wrk_bare[1])} ms, p99 {fmt(wrk_bare[2])} ms."]
    if "qa_reply" in rows:
        lines += ["", f"The question path answered: «{rows['qa_reply']}…»"]

    multi = [p for p in ("qa", "qa-unique", "consent", "register") if (1, p) in rows and (2, p) in rows]
    if multi:
        lines += ["", "### Several processes: `--processes 2` vs 1", ""]
        mrows = []
        for path in multi:
            one, two = rows[(1, path)][0], rows[(2, path)][0]
            mrows.append([names[path], f"{one.rps:.0f}", f"{two.rps:.0f}", fmt(two.rps / one.rps, 2)])
        lines.append(table(["path", "1 process req/s", "2 processes req/s", "ratio"], mrows))
        lines += ["", "The load generator, nx-27017 and Valkey run on the same 2 cores as the workers, "
                  "so 2 workers cannot get 2 cores to themselves."]

    whatif = [p for p in ("qa", "consent", "register") if (1, p) in rows and ("idx", p) in rows]
    if whatif:
        lines += ["", "### What-if: a single-field index on `consents.openid`", "",
                  "nx-27017 does not use the compound `(openid, at)` index for `find({openid}).sort(at)`: "
                  "`ConsentLedger.latest` scans the whole ledger, on every message (the re-consent check). "
                  "The same runs with an extra `openid` index created in the benchmark's database:", ""]
        wrows = []
        for path in whatif:
            one, idx = rows[(1, path)][0], rows[("idx", path)][0]
            wrows.append([names[path], f"{one.rps:.0f}", fmt(one.percentile(99)), f"{idx.rps:.0f}", fmt(idx.percentile(99)),
                          fmt(idx.rps / one.rps, 2)])
        lines.append(table(["path", "req/s as shipped", "p99 ms", "req/s with index", "p99 ms", "ratio"], wrows))

    pairs = rows.get("pairs")
    if pairs:
        lines += ["", "### The question path against WeRoBot's echo, interleaved", "",
                  f"Both servers up, {len(pairs)} pairs of {args.duration:.0f} s runs, WeRoBot first in each, "
                  f"{PAUSE:.0f} s apart (the table above runs each server once, minutes apart, while the machine's "
                  "speed drifts):", ""]
        prow = []
        for n, (ref_run, ours) in enumerate(pairs, 1):
            prow.append([n, f"{ref_run[0].rps:.0f}", f"{ours[0].rps:.0f}", fmt(ours[0].percentile(99)),
                         fmt(ours[0].rps / ref_run[0].rps, 2)])
        lines.append(table(["round", "WeRoBot echo req/s", "question path req/s", "question path p99 ms", "ratio"], prow))
        lines += ["", f"Median ratio: {pair_ratio(pairs):.2f} ×."]

    lines += ["", "### Targets", ""]
    qa = rows.get((1, "qa"))
    if pairs:
        ratio = pair_ratio(pairs)
        lines.append(f"- question path ≥ 0.8 × WeRoBot-echo throughput (median of {len(pairs)} interleaved pairs): "
                     f"{ratio:.2f} × → {'met' if ratio >= 0.8 else 'NOT met'}")
    elif qa and werobot:
        ratio = qa[0].rps / werobot[0].rps
        lines.append(f"- question path ≥ 0.8 × WeRoBot-echo throughput: {ratio:.2f} × → {'met' if ratio >= 0.8 else 'NOT met'}")
    if qa:
        p99 = qa[0].percentile(99)
        lines.append(f"- question path p99 < 50 ms: {p99:.1f} ms → {'met' if p99 < 50 else 'NOT met'}")
    if (1, "qa") in rows and (2, "qa") in rows:
        ratio = rows[(2, "qa")][0].rps / rows[(1, "qa")][0].rps
        lines.append(f"- 2 processes ≥ 1.7 × 1 process (question path): {ratio:.2f} × → {'met' if ratio >= 1.7 else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Webhook throughput and latency (see module docstring).")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured row (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server (default 2)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--paths", default="qa,qa-unique,consent,register", help="comma-separated: qa,qa-unique,consent,register")
    parser.add_argument("--no-werobot", action="store_true", help="skip the WeRoBot reference (no pip)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="pairs of interleaved runs, WeRoBot echo then the question path (default 5; 0: none)")
    parser.add_argument("--no-multi", action="store_true", help="skip --processes 2")
    parser.add_argument("--what-if", action="store_true", help="also run with an extra consents.openid index (obsolete since the product creates one)")
    parser.add_argument("--no-wrk", action="store_true", help="skip the wrk cross-check even if wrk is installed")
    parser.add_argument("--output", help="also write the Markdown report to this file")
    args = parser.parse_args()
    args.duration = min(max(args.duration, 1.0), 120.0)
    args.warmup = min(max(args.warmup, 0.0), 30.0)
    args.paths = [p for p in args.paths.split(",") if p]

    rows: dict = {}
    wrk_bare = None
    refinfo = "WeRoBot (skipped)"
    logdir = Path(tempfile.mkdtemp(prefix="wetoop-bench-refs-"))

    print("bare Tornado", file=sys.stderr, flush=True)
    bare = Reference("bare", [str(PYTHON), str(BENCH / "bare_tornado.py")], 200, logdir)
    try:
        warm(bare.port, qa_requests(prefix="o-warm"), args)
        rows["bare"] = measure("bare Tornado", bare.port, qa_requests(), args, b"success", {"server": [bare.proc.pid]})
        if not args.no_wrk:
            wrk_bare = run_wrk(bare.port, args)
            if wrk_bare:
                print(f"  wrk: {wrk_bare[0]:.0f} req/s, p50 {wrk_bare[1]} ms, p99 {wrk_bare[2]} ms", file=sys.stderr)
    finally:
        bare.stop()

    if not args.no_werobot:
        python = ensure_refenv()
        refinfo = versions_of_refenv(python)
        print(refinfo, file=sys.stderr, flush=True)
        ref = Reference("werobot", [str(python), str(BENCH / "werobot_echo.py"), "--token", TOKEN], 403, logdir)
        try:
            warm(ref.port, qa_requests(prefix="o-warm"), args)
            rows["werobot"] = measure("WeRoBot echo", ref.port, qa_requests(), args, QUESTION.encode(), {"server": [ref.proc.pid]})
        finally:
            ref.stop()
        if args.rounds > 0 and "qa" in args.paths:
            run_interleaved(python, args, logdir, rows)

    run_service_paths(1, args, logdir, rows)
    if not args.no_multi:
        run_service_paths(2, args, logdir, rows)
    if args.what_if:
        run_service_paths(1, args, logdir, rows, key="idx", openid_index=True)
    shutil.rmtree(logdir, ignore_errors=True)

    text = report(rows, args, wrk_bare, refinfo)
    emit(text, args.output)


if __name__ == "__main__":
    main()
