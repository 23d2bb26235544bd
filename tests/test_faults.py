"""Faults under load: Redis and MongoDB stop in the middle of traffic and come back.

Each test runs its own Valkey or nx-27017 on a fixed free port (the shared
test servers are left alone), points a service at it, stops it while messages
flow and starts it again on the same port. The bot must keep answering every
message in time, say so when it cannot do or save something, never confirm
what was not stored, and recover without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pymongo
import pytest

from bot import texts
from storage.embedded import free_port
from tests.test_health import health, start_valkey
from tests.wx import event_xml, text_xml

QUESTION = "我上传的图片版权归谁"
ENTERPRISE = ["注册", "企业", "南宁市测试贸易有限公司", "91450103MA5L2K3R0W", "王五", "13812345678", "wangwu@example.com"]
#: WeChat waits 5 s; the service answers later (customer-service) after 4.5 s.
REPLY_WITHIN = 4.4
#: With the storage server down, replies must not wait for that fallback.
STORAGE_DOWN_WITHIN = 3.0


# -- helpers -----------------------------------------------------------------------------------


async def ask_timed(svc, openid: str, content: str, timeout: float = 10.0) -> tuple[int, str | None, float]:
    """(HTTP status, reply text or None for ``success``, seconds)."""
    started = time.monotonic()
    response = await svc.wechat.post(text_xml(openid, content), request_timeout=timeout)
    elapsed = time.monotonic() - started
    if response.code != 200:
        return response.code, response.body.decode("utf-8", "replace"), elapsed
    doc = svc.wechat.reply(response)
    return 200, None if doc is None else doc.get("Content"), elapsed


async def eventually(probe, timeout: float, interval: float = 0.2):
    """Await ``probe()`` until it returns a truthy value, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not recovered within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def valkey(tmp_path):
    """A Valkey of this test's own on a fixed port: ``.port``, ``.stop()``, ``.start()``."""

    class Valkey:
        port = free_port()
        proc: subprocess.Popen | None = None

        def start(self) -> None:
            self.proc = start_valkey(self.port, tmp_path)

        def stop(self) -> None:
            if self.proc is not None:
                stop(self.proc)

    server = Valkey()
    server.start()
    yield server
    server.stop()


async def test_redis_stops_during_a_stream_and_recovers(make_service, backing, monkeypatch, valkey, caplog):
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service()
    assert (await health(svc))[0] == 200

    registrants = [f"o-rs-reg-{i}" for i in range(12)]
    for openid in registrants:
        assert "已记录" in await svc.wechat.ask(openid, "同意")

    # A bounded stream: 4 senders, 90 messages, mixed help / question / 注册.
    stopped_at: list[float] = []
    results: list[tuple[float, str, int, str | None, float]] = []
    plan = []
    for i in range(90):
        kind = ("帮助", QUESTION, "注册")[i % 3]
        openid = registrants[(i // 3) % len(registrants)] if kind == "注册" else f"o-rs-{i}"
        plan.append((openid, kind))
    queue: asyncio.Queue = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def sender() -> None:
        while not queue.empty():
            openid, content = queue.get_nowait()
            sent = time.monotonic()
            status, reply, elapsed = await ask_timed(svc, openid, content)
            results.append((sent, content, status, reply, elapsed))
            await asyncio.sleep(0.02)

    async def saboteur() -> None:
        while len(results) < 30:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(valkey.stop)
        stopped_at.append(time.monotonic())

    await asyncio.wait_for(asyncio.gather(*(sender() for _ in range(4)), saboteur()), 120)
    assert stopped_at, "Valkey was never stopped"
    assert len(results) == len(plan)

    after = [r for r in results if r[0] > stopped_at[0]]
    assert len(after) >= 30, "too few messages were sent while Redis was down"
    for sent, content, status, reply, elapsed in results:
        assert status == 200, (content, status, reply)
        assert reply, f"{content!r} got no reply ({'after' if sent > stopped_at[0] else 'before'} the stop)"
        assert elapsed < REPLY_WITHIN, (content, elapsed)
        assert reply not in (texts.INTERNAL_ERROR, texts.STORAGE_DOWN), (content, reply)
    for sent, content, status, reply, elapsed in after:
        if content == "帮助":
            assert reply == texts.HELP
        elif content == QUESTION:
            assert reply != texts.DIALOG_UNAVAILABLE
        else:
            assert reply == texts.DIALOG_UNAVAILABLE, reply

    # Said once (a minute), not once per message: the log grew with the traffic.
    said = [r for r in caplog.records if r.levelname == "WARNING" and "without retry protection" in r.getMessage()]
    assert 1 <= len(said) <= 2, len(said)
    assert await health(svc) == (503, {"status": "degraded", "mongo": "ok", "redis": "down", "qa": "ok"})
    # The Q&A answers in full without Redis: "not covered" names the nearest
    # sections, a greeting is greeted; the note says dialogs are unavailable.
    off_topic = await svc.wechat.ask("o-rs-weather", "今天天气怎么样")
    assert "没有找到" in off_topic and texts.DIALOG_UNAVAILABLE in off_topic, off_topic
    hello = await svc.wechat.ask("o-rs-hello", "你好")
    assert hello != texts.DIALOG_UNAVAILABLE and hello.endswith(f"\n\n{texts.DIALOG_UNAVAILABLE}")
    assert len(hello) > len(texts.DIALOG_UNAVAILABLE) + 4

    # Back on the same port: everything recovers without a restart.
    await asyncio.to_thread(valkey.start)
    await eventually(lambda: _healthy(svc), 15)
    # The restarted Valkey is empty (no persistence): the dialog starts afresh.
    openid = registrants[0]
    first = await svc.wechat.ask(openid, "注册")
    assert first.startswith(texts.PROMPT_ENTITY_TYPE), first
    assert "第 2 步" in await svc.wechat.ask(openid, "企业")
    # Retries are deduplicated again: the same MsgId gets the same reply, handled once.
    xml = text_xml(openid, "上一步", msg_id=987654321)
    replies = [svc.wechat.reply(await svc.wechat.post(xml))["Content"] for _ in range(2)]
    assert replies[0] == replies[1] and replies[0].startswith(texts.PROMPT_ENTITY_TYPE)


async def test_after_a_redis_restart_no_idle_connection_fails_a_message(make_service, backing, monkeypatch, valkey):
    # redis-py's pool did not check an idle connection before handing it out
    # (its maintenance notifications left at "auto"): after a restart each one
    # failed its next command, and users' first messages got "dialogs are
    # unavailable" although /healthz said ready.
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service()
    users = [f"o-restart-{i}" for i in range(10)]
    for openid in users:
        assert "已记录" in await svc.wechat.ask(openid, "同意")
    redis_client = svc.runtime.redis
    await asyncio.gather(*(redis_client.incr("wb:test:idle") for _ in range(20)))  # 20 pooled connections
    await asyncio.to_thread(valkey.stop)
    await asyncio.to_thread(valkey.start)
    # Registration dialogs live in Redis: each user's 注册 starts one, none is "unavailable".
    replies = await asyncio.gather(*(svc.wechat.ask(openid, "注册") for openid in users))
    assert all(reply.startswith(texts.PROMPT_ENTITY_TYPE) for reply in replies), replies
    results = await asyncio.gather(*(redis_client.incr("wb:test:idle") for _ in range(20)), return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] == []


async def _healthy(svc) -> bool:
    return (await health(svc))[0] == 200


async def test_mid_dialog_answer_while_redis_is_down_says_dialogs_are_unavailable(make_service, backing, monkeypatch, valkey):
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service()
    await svc.wechat.ask("o-mid", "同意")
    assert (await svc.wechat.ask("o-mid", "注册")).startswith(texts.PROMPT_ENTITY_TYPE)
    await asyncio.to_thread(valkey.stop)

    status, reply, elapsed = await ask_timed(svc, "o-mid", "企业")
    assert status == 200 and elapsed < REPLY_WITHIN
    # The user is answering the dialog's question: the bot cannot read the
    # dialog's state, so it must say dialogs are briefly unavailable rather
    # than treat the answer as a question it does not understand.
    assert "暂时不可用" in (reply or ""), reply
    # Nor quote a clause for a dialog's word: 个人 got clause 3.1 and 取消
    # "没有找到能回答这个问题的条款".
    for answer in ("个人", "取消", "跳过", "确认。", "算了", "2", "是", "否", "13800138000", "wang@example.com"):
        status, reply, _ = await ask_timed(svc, "o-mid", answer)
        assert status == 200 and reply == texts.DIALOG_UNAVAILABLE, (answer, reply)
    # A question still gets its clause, then the same words (without brackets inside brackets).
    status, reply, _ = await ask_timed(svc, "o-mid", "我上传的图片版权归谁")
    assert "第4.1款" in reply and reply.endswith(texts.DIALOG_UNAVAILABLE) and "（（" not in reply, reply


async def test_a_redis_that_refuses_writes_is_down_not_a_crash(make_service, backing, monkeypatch, valkey, caplog):
    # A full disk makes Valkey refuse writes (MISCONF); out of memory does the same (OOM).
    # Both came back as error replies, not connection errors: every push got a 500.
    import redis

    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service()
    await svc.wechat.ask("o-full", "同意")
    assert (await svc.wechat.ask("o-full", "注册")).startswith(texts.PROMPT_ENTITY_TYPE)
    admin = redis.Redis(port=valkey.port)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        status, reply, elapsed = await ask_timed(svc, "o-full", "我上传的图片版权归谁")
        assert status == 200 and "第4.1款" in (reply or "") and elapsed < REPLY_WITHIN, (status, reply)
        status, reply, _ = await ask_timed(svc, "o-full", "企业")
        assert status == 200 and reply == texts.DIALOG_UNAVAILABLE, (status, reply)
        assert "Uncaught exception" not in caplog.text
        # It answers PING, but is of no use: /healthz says so.
        assert await health(svc) == (503, {"status": "degraded", "mongo": "ok", "redis": "down", "qa": "ok"})
    finally:
        admin.config_set("maxmemory", "0")
    assert (await health(svc))[0] == 200
    # MISCONF (the full disk's reply) is taken the same way, wherever a command is sent.
    from storage.redis_store import RedisUnavailable, as_unavailable
    assert isinstance(as_unavailable(redis.ResponseError("MISCONF Redis is configured to save RDB snapshots")),
                      RedisUnavailable)
    for answer in ("WRONGTYPE Operation", "BUSYGROUP Consumer Group name already exists"):  # answers, not refusals
        assert not isinstance(as_unavailable(redis.ResponseError(answer)), RedisUnavailable)
    # Room again: the dialog goes on where it was, without a restart.
    async def goes_on():
        _, reply, _ = await ask_timed(svc, "o-full", "企业")
        return reply is not None and "第 2 步" in reply
    await eventually(goes_on, timeout=10)


# -- MongoDB ------------------------------------------------------------------------------------


async def test_a_database_whose_disk_is_full_is_unavailable_not_a_crash():
    # nx-27017 over a full disk answered each write "database or disk is full" (a WriteError):
    # chat said "系统开了个小差" rather than "not saved, send it again", and a follow was lost.
    from pymongo.errors import BulkWriteError, WriteError

    from storage.mongo import MongoUnavailable, _writes

    def failing(exc):
        async def write(self, *args, **kwargs):
            raise exc
        return _writes(write)

    for full in (WriteError("database or disk is full", 1, {}), WriteError("Out of disk space", 14031, {}),
                 BulkWriteError({"writeErrors": [{"errmsg": "database or disk is full", "code": 1}]})):
        with pytest.raises(MongoUnavailable):
            await failing(full)(None)
    with pytest.raises(WriteError) as kept:  # a duplicate key is no outage
        await failing(WriteError("E11000 duplicate key error", 11000, {}))(None)
    assert not isinstance(kept.value, MongoUnavailable)


class NxServer:
    """nx-27017 of a test's own, on a fixed port, restartable on the same file."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.dir = data_dir
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        pid_file = self.dir / "nx.pid"
        pid_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "storage.nx_server", "--db", str(self.dir / "wetoop.db"),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--pid-file", str(pid_file), "--log-file", str(self.dir / "nx.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[1],
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nx-27017 exited with {self.proc.returncode}")
            with contextlib.suppress(pymongo.errors.PyMongoError):
                with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                    return
            time.sleep(0.05)
        raise AssertionError("nx-27017 did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, sig)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)


@pytest.fixture
def nx(tmp_path):
    server = NxServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            server.thaw()
    server.stop()


async def _walk_to_summary(svc, openid: str) -> None:
    assert "已记录" in await svc.wechat.ask(openid, "同意")
    replies = [await svc.wechat.ask(openid, m) for m in ENTERPRISE]
    assert "请核对" in replies[-1], replies[-1]


async def test_mongo_stops_nothing_is_confirmed_and_everything_recovers(make_service, backing, monkeypatch, nx):
    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service()
    await _walk_to_summary(svc, "o-ms-reg")
    assert await svc.wechat.ask("o-ms-ok", "帮助") == texts.HELP

    await asyncio.to_thread(nx.stop)

    # All at once, so the test pays the storage timeout once.
    asks = [("o-ms-new", "同意"), ("o-ms-reg", "确认"), ("o-ms-q", QUESTION), ("o-ms-help", "帮助"), ("o-ms-yes", "好的")]

    async def follow_and_leave() -> None:  # both lost before: later counted as following
        await svc.wechat.post(event_xml("o-ms-gone", "subscribe"))
        await svc.wechat.post(event_xml("o-ms-gone", "unsubscribe"))

    *answers, _ = await asyncio.gather(
        *(ask_timed(svc, o, c) for o, c in asks), follow_and_leave(), svc.wechat.post(event_xml("o-ms-came", "subscribe"))
    )
    for (openid, content), (status, reply, elapsed) in zip(asks, answers):
        assert status == 200, (content, status, reply)
        assert reply, f"{content!r} got no passive reply"
        assert elapsed < STORAGE_DOWN_WITHIN, (content, elapsed)
    consent_reply, confirm_reply = answers[0][1], answers[1][1]
    assert consent_reply == texts.STORAGE_DOWN
    assert confirm_reply == texts.STORAGE_DOWN
    assert answers[3][1] == texts.HELP
    assert answers[2][1] not in (texts.INTERNAL_ERROR, texts.DIALOG_UNAVAILABLE)
    # 好的 (a yes perhaps meant as 同意) raised a TypeError: nested tuples in an except.
    assert answers[4][1] != texts.INTERNAL_ERROR, answers[4]
    assert (await health(svc))[0] == 503

    await asyncio.to_thread(nx.start)
    await eventually(lambda: _healthy(svc), 15)
    # The follows and the unfollow of the outage are written once it is back, unasked.
    followers = svc.runtime.followers

    async def written() -> bool:
        gone, came = await followers.get("o-ms-gone"), await followers.get("o-ms-came")
        return gone is not None and not gone.subscribed and came is not None and came.subscribed

    await eventually(written, 15)
    # Nothing was stored that the replies said was not.
    assert await svc.runtime.ledger.history("o-ms-new") == []
    assert await svc.runtime.merchants.get("o-ms-reg") is None

    # Recovered without a restart: the same actions now succeed.
    assert "已记录" in await svc.wechat.ask("o-ms-new", "同意")
    assert [r.action for r in await svc.runtime.ledger.history("o-ms-new")] == ["accept"]
    confirmed = await svc.wechat.ask("o-ms-reg", "确认")
    assert "已提交" in confirmed, confirmed
    merchant = await svc.runtime.merchants.get("o-ms-reg")
    assert merchant is not None and merchant.status == "pending_review"


async def test_a_service_started_with_mongo_down_makes_its_indexes_once_it_returns(make_service, backing, monkeypatch, nx):
    # Started with the database down, the service logged once and never made
    # its indexes (one account per openid …) nor stored the seed agreement,
    # while /healthz said ok once the database answered.
    nx.stop()
    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service()
    status, body = await health(svc)
    assert status == 503 and body["mongo"] == "down"
    await asyncio.to_thread(nx.start)
    await eventually(lambda: _healthy(svc), 15)
    with pymongo.MongoClient(nx.uri) as client:
        db = client[svc.runtime.db.name]
        unique = [ix for ix in db.followers.list_indexes() if ix.get("unique")]
        assert [list(ix["key"]) for ix in unique] == [["openid"]]
        assert db.agreement_versions.count_documents({}) >= 1
    assert "已记录" in await svc.wechat.ask("o-late", "同意")


async def test_a_database_that_refuses_the_indexes_is_said_once_not_every_second(backing, nx, caplog):
    # Data breaking a unique index (two accounts of one openid): the retry
    # logged a traceback every second for ever.
    import uuid

    from service.config import Config
    from service.runtime import Runtime

    database = f"wetoop_test_{uuid.uuid4().hex[:10]}"
    with pymongo.MongoClient(nx.uri) as client:
        client[database].merchants.insert_many([{"openid": "o-twice"}, {"openid": "o-twice"}])
    nx.stop()
    runtime = Runtime(Config(), nx.uri, backing.redis_url, database=database)
    try:
        await runtime.prepare(qa=False)  # down: tried again every second
        await asyncio.to_thread(nx.start)
        deadline = time.monotonic() + 15
        while not any(r.levelname == "ERROR" for r in caplog.records) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # two more seconds of retries, were they still every second
        refusals = [r for r in caplog.records if r.name == "service.runtime" and r.levelname == "ERROR"]
        assert len(refusals) == 1 and refusals[0].exc_info is None, [r.getMessage() for r in refusals]
        assert "tried again every 60 s" in refusals[0].getMessage()
        assert (await runtime.health())["mongo"] == "starting"
    finally:
        await runtime.close()


async def test_mongo_killed_during_a_consent_stream(make_service, backing, monkeypatch, nx):
    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service()
    assert (await health(svc))[0] == 200

    users = [f"o-mk-{i}" for i in range(40)]
    results: dict[str, tuple[int, str | None, float]] = {}
    killed: list[float] = []

    async def sender(chunk: list[str]) -> None:
        for openid in chunk:
            results[openid] = await ask_timed(svc, openid, "同意")

    async def saboteur() -> None:
        while len(results) < 12:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(nx.stop, signal.SIGKILL)  # a crash, mid-write
        killed.append(time.monotonic())

    chunks = [users[i::8] for i in range(8)]
    await asyncio.wait_for(asyncio.gather(*(sender(c) for c in chunks), saboteur()), 120)
    assert killed

    accepted = [o for o, (_s, reply, _e) in results.items() if reply and "已记录" in reply]
    refused = [o for o, (_s, reply, _e) in results.items() if reply == texts.STORAGE_DOWN]
    assert accepted and refused, "the kill did not land in the middle of the stream"
    for openid, (status, reply, elapsed) in results.items():
        assert status == 200 and reply, (openid, status, reply)
        assert openid in accepted or openid in refused, (openid, reply)
        assert elapsed < STORAGE_DOWN_WITHIN + 0.5, (openid, elapsed)

    await asyncio.to_thread(nx.start)
    await eventually(lambda: _healthy(svc), 15)
    # Every confirmation is backed by a ledger record.
    for openid in accepted:
        assert [r.action for r in await svc.runtime.ledger.history(openid)] == ["accept"], openid
    # And a refused one can be given again, once.
    retry = refused[0]
    assert "已" in await svc.wechat.ask(retry, "同意")
    assert [r.action for r in await svc.runtime.ledger.history(retry)].count("accept") == 1


async def test_frozen_mongo_still_answers_within_3_seconds(make_service, backing, monkeypatch, nx, caplog):
    """A server that accepts connections but never answers (SIGSTOP): the
    per-message budget, not the socket, bounds the wait."""
    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service()
    await _walk_to_summary(svc, "o-fz-reg")

    nx.freeze()
    try:
        # One user's quick messages: each waits for the one before (its lock),
        # then must not spend a whole budget of its own (the third fell to 4.5 s).
        async def later(delay, content):
            await asyncio.sleep(delay)
            return await ask_timed(svc, "o-fz-burst", content)

        burst = await asyncio.gather(later(0, "同意"), later(0.3, "注册"), later(0.6, "我的账户"))
        for status, reply, elapsed in burst:
            assert status == 200 and reply == texts.STORAGE_DOWN, (status, reply)
            assert elapsed < STORAGE_DOWN_WITHIN, elapsed

        asks = [("o-fz-new", "同意"), ("o-fz-reg", "确认"), ("o-fz-help", "帮助")]
        answers = await asyncio.gather(*(ask_timed(svc, o, c) for o, c in asks))
        for (openid, content), (status, reply, elapsed) in zip(asks, answers):
            assert status == 200 and reply, (content, status, reply)
            assert elapsed < STORAGE_DOWN_WITHIN, (content, elapsed)
        assert answers[0][1] == texts.STORAGE_DOWN
        assert answers[1][1] == texts.STORAGE_DOWN
        assert answers[2][1] == texts.HELP
        code, body = await health(svc)
        assert code == 503 and body["mongo"] == "down"
        # Logged a line a message, not a traceback (a 15 s outage made 35,000 lines of log).
        outage = [r for r in caplog.records if "unavailable while handling" in r.getMessage()]
        assert outage and all(r.exc_info is None and r.levelname == "WARNING" for r in outage)
    finally:
        nx.thaw()

    await eventually(lambda: _healthy(svc), 15)
    assert "已记录" in await svc.wechat.ask("o-fz-new", "同意")
    assert "已提交" in await svc.wechat.ask("o-fz-reg", "确认")


async def test_frozen_redis_still_answers_within_3_seconds(make_service, backing, monkeypatch, valkey):
    """Valkey accepting connections but never answering (SIGSTOP): each Redis
    call waits out its socket timeout, so a message must not make many."""
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service()
    assert "已记录" in await svc.wechat.ask("o-fr-old", "同意")
    os.kill(valkey.proc.pid, signal.SIGSTOP)
    try:
        # 不同意 made three Redis calls, each waiting out its timeout (3.02 s).
        asks = [("o-fr-new", "同意"), ("o-fr-old", "注册"), ("o-fr-q", QUESTION), ("o-fr-help", "帮助"),
                ("o-fr-no", "不同意")]
        answers = await asyncio.gather(*(ask_timed(svc, o, c) for o, c in asks))
        for (openid, content), (status, reply, elapsed) in zip(asks, answers):
            assert status == 200 and reply, (content, status, reply)
            assert elapsed < STORAGE_DOWN_WITHIN - 0.5, (content, elapsed, reply)
        assert "已记录" in answers[0][1]
        frozen_push = text_xml("o-fr-ghost", "帮助", msg_id=424242)
        assert (await svc.wechat.post(frozen_push)).code == 200
    finally:
        os.kill(valkey.proc.pid, signal.SIGCONT)
    # Valkey runs the scripts it held when it wakes: the lock and the claim they
    # took must not hold the user's next message, nor WeChat's retry, for seconds.
    await asyncio.sleep(1.5)
    status, reply, elapsed = await ask_timed(svc, "o-fr-ghost", "帮助")
    assert (status, reply) == (200, texts.HELP) and elapsed < 1.0, elapsed
    started = time.monotonic()
    retried = await svc.wechat.post(frozen_push)
    assert svc.wechat.reply(retried)["Content"] == texts.HELP and time.monotonic() - started < 1.0


async def test_redis_and_mongo_frozen_together_still_answer_within_3_seconds(make_service, backing, monkeypatch,
                                                                              valkey, nx):
    # Redis's 1 s and then MongoDB's whole 2.2 s budget: 3.2-3.5 s.
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service()
    assert "已记录" in await svc.wechat.ask("o-both-old", "同意")
    nx.freeze()
    os.kill(valkey.proc.pid, signal.SIGSTOP)
    try:
        asks = [("o-both-new", "同意"), ("o-both-old", "注册"), ("o-both-help", "帮助")]
        answers = await asyncio.gather(*(ask_timed(svc, o, c) for o, c in asks))
        for (openid, content), (status, reply, elapsed) in zip(asks, answers):
            assert status == 200 and reply, (content, status, reply)
            assert elapsed < STORAGE_DOWN_WITHIN, (content, elapsed, reply)
        assert "已记录" not in answers[0][1]
        # A follow too: its unionid lookup waited on the frozen Redis (the token), 4.2-4.7 s in all.
        started = time.monotonic()
        response = await svc.wechat.post(event_xml("o-both-follow", "subscribe"), request_timeout=10)
        elapsed = time.monotonic() - started
        assert response.code == 200 and "欢迎关注" in svc.wechat.reply(response)["Content"]
        assert elapsed < STORAGE_DOWN_WITHIN, elapsed
    finally:
        os.kill(valkey.proc.pid, signal.SIGCONT)
        nx.thaw()


async def test_a_message_that_waited_for_the_users_lock_keeps_its_whole_budget(make_service, backing, monkeypatch,
                                                                                nx):
    # The 2.7 s end of MongoDB time counted the wait for the user's previous
    # message: a query then 0.5 s slow (a healthy, busy database) failed, and
    # opened the "database down" window for every user's next 5 s.
    from bot.replies import Reply
    from bot.router import Router

    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    router = Router()
    holder = {}

    @router.command("慢")
    async def slow(chat):
        await asyncio.sleep(2.6)
        return Reply("慢完了")

    @router.command("查")
    async def query(chat):
        nx.freeze()
        asyncio.get_running_loop().call_later(0.5, nx.thaw)
        await holder["svc"].runtime.db["probe"].find_one({})
        return Reply("查到了")

    svc = holder["svc"] = await make_service(router=router)
    first = asyncio.create_task(svc.wechat.ask("o-lk-a", "慢"))
    await asyncio.sleep(0.1)
    assert await svc.wechat.ask("o-lk-a", "查") == "查到了"  # waited 2.5 s for the lock, then a slow query
    assert await first == "慢完了"
    await asyncio.sleep(0.6)
    assert await svc.wechat.ask("o-lk-b", "查") == "查到了"  # no "database down" window opened


async def test_a_deferred_follow_never_overwrites_a_later_one(make_service):
    # An unfollow kept through an outage, then a follow recorded by another
    # process: writing the kept unfollow afterwards made the user a non-follower.
    import datetime as dt

    svc = await make_service()
    followers, now = svc.runtime.followers, svc.runtime.clock()
    followers.defer("o-back", False, now)
    other = type(followers)(svc.runtime.db)  # another process's view of the same collection
    await other.subscribed("o-back", now + dt.timedelta(seconds=3))
    await followers.flush()
    assert (await followers.get("o-back")).subscribed
    # In one process the direct write replaces what was kept.
    followers.defer("o-here", False, now)
    await followers.subscribed("o-here", now + dt.timedelta(seconds=1))
    await followers.flush()
    assert (await followers.get("o-here")).subscribed


async def test_frozen_mongo_gets_api_errors_within_the_budget(make_service, backing, monkeypatch, nx, emulator, caplog):
    # A log-in with the database frozen took 16-20 s before its 503.
    from tests.test_api import MP_APPID, MP_SECRET, Api

    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    api = Api(await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET), emulator)
    token = await api.token("faye")
    nx.freeze()
    try:
        consent = {"version": "2022-05-22", "action": "accept"}
        # A read's prepare (the session) and its GET share one budget (each had its own).
        for method, path, body, auth in (("POST", "/session", {"code": "gale-1"}, None), ("GET", "/me", None, token),
                                         ("GET", "/me/notices", None, token), ("POST", "/consents", consent, token)):
            started = time.monotonic()
            reply = await api.call(method, path, body, token=auth)
            elapsed = time.monotonic() - started
            assert reply.status == 503 and reply.body["error"]["code"] == "service_unavailable", (path, reply.body)
            assert elapsed < 6.0, (path, elapsed)
            if method == "GET":  # a read waits for no lock: within chat's 3 s (it took 5.0-5.5 s)
                assert elapsed < 3.0, (path, elapsed)
            # As chat says it: a submission may or may not have been stored, and sending it again is safe.
            message = reply.body["error"]["message"]
            assert ("可能没有保存成功" in message) == (path == "/consents"), (path, message)
        # A question needs no write: answered from the versions last read, as chat does (it was a 503).
        terms = api.svc.runtime.terms
        clock = terms.monotonic
        terms.monotonic = lambda: clock() + 60  # read a minute ago: a fresh read is due
        started = time.monotonic()
        reply = await api.call("GET", "/qa?q=" + urllib.parse.quote("我上传的图片版权归谁"), token=token)
        assert reply.status == 200 and "4.1" in reply.body["refs"], reply.body
        assert time.monotonic() - started < 2.0
    finally:
        nx.thaw()
    # Access-logged as what it is (a store down), not as an error of the service.
    unavailable = [r for r in caplog.records if r.name == "tornado.access" and r.getMessage().startswith("503")]
    assert unavailable and all(r.levelname == "WARNING" for r in unavailable)
    await eventually(lambda: _healthy(api.svc), 15)
    assert (await api.call("GET", "/me", token=token)).status == 200


async def test_frozen_mongo_gets_console_errors_within_the_budget(make_service, backing, monkeypatch, nx, tmp_path):
    # The console had no budget: its first page with the database frozen took 15-16 s
    # (past a proxy's usual 10 s read timeout).
    from tests.test_admin import logged_in, make_admins

    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service(data_dir=tmp_path / "data")
    await make_admins(svc)
    console = await logged_in(svc, "olga")
    nx.freeze()
    try:
        started = time.monotonic()
        page = await console.get("/admin")
        elapsed = time.monotonic() - started
        assert page.code == 503 and "服务暂时不可用" in page.body.decode(), page.code
        assert elapsed < 9.5, elapsed  # the console's budget is 8 s
    finally:
        nx.thaw()
    await eventually(lambda: _healthy(svc), 15)
    assert (await console.get("/admin")).code == 200


async def test_mongo_stops_mid_broadcast_and_the_job_completes_without_duplicates(make_service, backing, monkeypatch,
                                                                                   nx, emulator):
    # Outcomes are written a batch at a time, beside the next batch's sends: a batch
    # whose outcomes could not be written (the database went away after its sends)
    # stays unacknowledged, and once the database is back its outcomes are recorded
    # from the journal: nobody gets a second copy, nobody is counted interrupted.
    from tests.test_notices import done_progress, sending

    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    svc = await make_service(notice_rate=200)
    notice, _openids, stop, worker = await sending(svc, "o-mb", 400)
    try:
        await eventually(lambda: _accepted_at_least(emulator, 100), 20)
        await asyncio.to_thread(nx.stop)
        await asyncio.sleep(2.0)
        assert len(await emulator.messages()) < 400  # stopped mid-broadcast
        await asyncio.to_thread(nx.start)
        final = await eventually(lambda: done_progress(svc, notice), 60)
    finally:
        stop.set()
        await worker
    assert (final.sent, final.failed, final.skipped) == (400, 0, 0), final.to_json()
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert len(counts) == 400 and max(counts.values()) == 1


async def _accepted_at_least(emulator, n: int) -> bool:
    return len(await emulator.messages()) >= n


async def test_a_follow_while_mongo_is_down_is_linked_to_the_mini_program_self_once_it_returns(
        make_service, backing, monkeypatch, nx, emulator):
    # user/info gave the unionid, storing it failed, and nothing tried again:
    # the person's chat consent never reached their mini-program self.
    from emulator.app import EmulatorState
    from tests.test_api import MP_APPID, MP_SECRET, Api, _follows

    monkeypatch.setattr(backing, "mongodb_uri", nx.uri)
    api = Api(await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET), emulator)
    await asyncio.to_thread(nx.stop)
    assert "欢迎" in await _follows(api, "oa-outage", "olly")
    await asyncio.to_thread(nx.start)
    await eventually(lambda: _healthy(api.svc), 15)
    runtime = api.svc.runtime

    async def followed() -> bool:
        return await runtime.followers.get("oa-outage") is not None

    await eventually(followed, 15)  # the follow itself, written once MongoDB is back
    assert await runtime.mini.finish_joins() == 1  # the service's upkeep, every minute
    assert (await runtime.followers.get("oa-outage")).unionid == EmulatorState.unionid_for_user("olly")
    _token, user = await api.login("olly")
    assert user["linked_official_account"] is True


async def test_redis_frozen_mid_broadcast_loses_nobody_to_interrupted(make_service, backing, monkeypatch, valkey,
                                                                      emulator):
    # A frozen Redis runs the in-flight marks it held when it wakes: the worker
    # had sent none of those recipients (its mark timed out first), yet whoever
    # took the batch over read "in flight" and recorded them interrupted.
    from tests.test_notices import done_progress, sending

    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{valkey.port}/0")
    svc = await make_service(notice_rate=200)
    notice, openids, stop, worker = await sending(svc, "o-rf", 400)
    try:
        await eventually(lambda: _accepted_at_least(emulator, 60), 20)
        os.kill(valkey.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(4.0)
        os.kill(valkey.proc.pid, signal.SIGCONT)
        final = await eventually(lambda: done_progress(svc, notice), 90)
    finally:
        os.kill(valkey.proc.pid, signal.SIGCONT)
        stop.set()
        await worker
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert max(counts.values()) == 1  # nobody twice
    never_sent = [o for o in openids if o not in counts]
    assert final.failed == 0 and never_sent == [], (final.to_json(), never_sent[:10])
    assert final.sent == 400


async def test_a_request_budget_is_shared_by_prepare_and_its_method(nx):
    # prepare and the method each had a budget of their own: a read whose
    # prepare spent its budget on a frozen database then spent another.
    from pymongo import AsyncMongoClient

    from handlers.base import within_budget

    client = AsyncMongoClient(nx.uri, serverSelectionTimeoutMS=10_000)
    coll = client["budget_test"]["c"]
    await coll.find_one({})  # connected while it answers

    class Handler:
        @within_budget(1.5)
        async def prepare(self):
            await asyncio.sleep(1.2)  # as if the session check had taken that long

        @within_budget(1.5)
        async def get(self):
            await coll.find_one({})

    handler = Handler()
    nx.freeze()
    try:
        await handler.prepare()
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - pymongo's timeout, whichever class
            await handler.get()
        assert time.monotonic() - started < 0.9  # what was left of 1.5 s, not another 1.5
    finally:
        nx.thaw()
        await client.close()
