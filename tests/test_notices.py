"""Notices and broadcasts: opt-outs, audiences, channels, retries, pause/cancel, crash safety."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import delivery_worker
from bot.delivery_worker import PAY_SECONDS, WINDOW
from storage.redis_store import key
from storage.work_queue import RECLAIM_IDLE_MS
from bot.notice_checks import NoticeRefused
from bot.notices import NO_WORKER, PLANNER_SILENT
from storage.delivery_journal import OURS
from tests.conftest import APPID, SECRET
from tests.wx import event_xml

BIN = Path(sys.executable).parent / "wetoop-bot"


async def active_users(svc, *openids: str) -> None:
    """Users who wrote to the account just now (inside WeChat's 48-hour window)."""
    at = svc.runtime.clock()
    for start in range(0, len(openids), 50):  # a few at a time: thousands one by one took seconds
        await asyncio.gather(*(svc.runtime.followers.subscribed(o, at) for o in openids[start:start + 50]))


async def send(svc, **kwargs) -> str:
    values = dict(category="service", title="系统维护", body="今晚 23:00 至 24:00 系统维护。", by="test")
    values.update(kwargs)
    return await svc.runtime.broadcasts.send(**values)


async def sending(svc, prefix: str, count: int,
                  concurrency: int = 2) -> tuple[str, list[str], asyncio.Event, asyncio.Task]:
    """``count`` active users, a notice to them and a worker sending it:
    ``(notice, openids, stop, worker)``; set ``stop`` and await ``worker`` to end it."""
    openids = [f"{prefix}{i:03d}" for i in range(count)]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    stop = asyncio.Event()
    return notice, openids, stop, asyncio.create_task(svc.runtime.worker(concurrency=concurrency).run(stop))


async def done_progress(svc, notice: str):
    """The job's progress once it is done, else None (for ``eventually``)."""
    progress = await svc.runtime.broadcasts.progress(notice)
    return progress if progress.notice.status == "done" else None


async def unplanned_notice(rt, title: str, openids: list[str]) -> str:
    """A notice stored as ``send`` stores it, but not planned and its creator
    gone silent (tests play the planner)."""
    return await rt.notices.create(
        category="service", title=title, body="正文", important=False, audience={"type": "openids", "openids": openids},
        channel="auto", created_at=rt.clock() - PLANNER_SILENT - dt.timedelta(seconds=1), created_by="test",
    )


#: A planner's chunk in these tests (2,000 in the product): a few batches, so
#: that several chunks take seconds, not tens of seconds.
PLAN_CHUNK = 300


def small_chunks(rt) -> None:
    rt.broadcasts.plan_chunk = PLAN_CHUNK


async def planner_died(svc, prefix: str, title: str, extra: int) -> tuple[list[str], str, dt.datetime]:
    """A notice to ``PLAN_CHUNK + extra`` followers whose planner recorded its
    first chunk and died long enough ago; its openids, id and that moment."""
    rt = svc.runtime
    small_chunks(rt)
    openids = [f"{prefix}{i:04d}" for i in range(PLAN_CHUNK + extra)]
    await active_users(svc, *openids)
    notice_id = await unplanned_notice(rt, title, openids)
    long_ago = rt.clock() - PLANNER_SILENT - dt.timedelta(seconds=5)
    await rt.notices.planning(notice_id, len(openids), long_ago)
    await rt.deliveries.create_pending(notice_id, openids[:PLAN_CHUNK], long_ago)
    return openids, notice_id, long_ago


async def run_worker(svc, timeout: float = 30) -> None:
    await svc.runtime.worker(concurrency=4).run_until_idle(timeout)


async def deliveries(svc, notice_id: str) -> dict[str, tuple]:
    found = {}
    for status in ("pending", "sending", "sent", "failed", "skipped"):
        for openid in await svc.runtime.deliveries.openids(notice_id, (status,)):
            found[openid] = status
    return found


async def texts_to(emulator, openid: str) -> list[str]:
    return [m["body"]["text"]["content"] for m in await emulator.messages(openid) if m["msgtype"] == "text"]


@pytest.fixture
async def svc(make_service):
    return await make_service()


# -- opt-outs -----------------------------------------------------------------------------


async def test_opt_out_respected_for_ordinary_and_ignored_for_important(svc, emulator):
    await active_users(svc, "o-out", "o-in")
    await svc.runtime.preferences.set("o-out", "service", False)
    ordinary = await send(svc, audience={"type": "openids", "openids": ["o-out", "o-in"]})
    important = await send(svc, title="紧急维护", important=True, audience={"type": "openids", "openids": ["o-out", "o-in"]})
    await run_worker(svc)

    assert await deliveries(svc, ordinary) == {"o-out": "skipped", "o-in": "sent"}
    assert await deliveries(svc, important) == {"o-out": "sent", "o-in": "sent"}
    progress = await svc.runtime.broadcasts.progress(ordinary)
    assert progress.skipped_by_reason == {"opted_out": 1}
    assert progress.notice.status == "done"
    # A finished job's average, not 0; over at least a second (2 sends in a few
    # milliseconds showed as hundreds a second, above the rate limit).
    assert 0 < (await svc.runtime.broadcasts.progress(important)).rate <= 2.0
    assert [t.splitlines()[0] for t in await texts_to(emulator, "o-out")] == ["【重要】【服务公告】紧急维护"]
    assert len(await texts_to(emulator, "o-in")) == 2


async def test_an_opt_out_made_while_a_broadcast_holds_the_user_is_respected(make_service, emulator):
    # Opt-outs were read once with the batch: 退订 seconds before one's turn still let the notice through.
    svc = await make_service(notice_rate=4)
    users = [f"o-mid{i:02d}" for i in range(12)]
    await active_users(svc, *users)
    ordinary = await send(svc, audience={"type": "openids", "openids": users})
    important = await send(svc, title="紧急", important=True, audience={"type": "openids", "openids": users[-1:]})
    worker = asyncio.ensure_future(svc.runtime.worker(concurrency=1).run_until_idle(60))
    try:
        for _ in range(100):  # the batch is read and sending has begun
            if await texts_to(emulator, users[0]):
                break
            await asyncio.sleep(0.1)
        assert not await texts_to(emulator, users[-1])
        assert "已退订“服务公告”" in await svc.wechat.ask(users[-1], "退订 服务公告")
        await worker
    finally:
        worker.cancel()
    assert (await deliveries(svc, ordinary))[users[-1]] == "skipped"
    assert (await deliveries(svc, important))[users[-1]] == "sent"  # important ones still arrive
    assert [t.splitlines()[0] for t in await texts_to(emulator, users[-1])] == ["【重要】【服务公告】紧急"]


async def test_security_and_amendment_are_important_by_default(svc):
    security = await send(svc, category="security", audience={"type": "openids", "openids": ["o-x"]})
    service = await send(svc, category="service", audience={"type": "openids", "openids": ["o-x"]})
    assert (await svc.runtime.notices.get(security)).important is True
    assert (await svc.runtime.notices.get(service)).important is False


# -- audiences ---------------------------------------------------------------------------------


async def test_audiences(svc):
    await active_users(svc, "o-a", "o-b", "o-c")
    await svc.runtime.followers.unsubscribed("o-c", svc.runtime.clock())
    merchants = svc.runtime.merchants
    await merchants.save_profile("o-a", {"entity_type": "individual", "entity_name": "张三", "contact_name": "张三", "phone": "13812345678"})
    await merchants.save_profile("o-b", {"entity_type": "individual", "entity_name": "李四", "contact_name": "李四", "phone": "13812345679"})
    await merchants.set_status("o-b", "active", "ok", by="test")
    broadcasts = svc.runtime.broadcasts
    assert await broadcasts.audience({"type": "all"}) == ["o-a", "o-b"]
    assert await broadcasts.audience({"type": "merchants"}) == ["o-a", "o-b"]
    assert await broadcasts.audience({"type": "merchants", "statuses": ["active"]}) == ["o-b"]
    assert await broadcasts.audience({"type": "openids", "openids": ["o-z", "o-z", "o-y"]}) == ["o-y", "o-z"]


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"category": "gossip"}, "类别"),
        ({"title": "  "}, "不能为空"),
        ({"audience": {"type": "openids", "openids": []}}, "openid"),
        ({"audience": {"type": "merchants", "statuses": ["vip"]}}, "商家状态"),
        ({"audience": {"type": "everyone"}}, "受众"),
        ({"channel": "sms"}, "渠道"),
    ],
)
async def test_bad_notices_are_refused(svc, kwargs, needle):
    from bot.notice_checks import NoticeRefused

    kwargs.setdefault("audience", {"type": "all"})
    with pytest.raises(NoticeRefused) as info:
        await send(svc, **kwargs)
    assert needle in info.value.message


# -- channels -------------------------------------------------------------------------------------


async def test_template_when_configured_else_customer_service_in_window(make_service, emulator, tmp_path, clock):
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({
        "security": {"template_id": "TPL-SEC", "url": "https://wetoop.example/security",
                     "fields": {"first": "{title}", "keyword1": "{category}", "remark": "{body}"}}
    }), encoding="utf-8")
    svc = await make_service(notice_templates=str(templates), clock=clock)
    await active_users(svc, "o-recent")
    await svc.runtime.followers.subscribed("o-old", clock.now)
    clock.advance(hours=47)
    svc.runtime.followers.touch("o-recent", clock.now)
    await svc.runtime.followers.flush()
    clock.advance(hours=2)  # o-old is now outside the 48-hour window, o-recent inside

    security = await send(svc, category="security", title="密码安全提醒", audience={"type": "openids", "openids": ["o-old", "o-recent"]})
    service = await send(svc, category="service", audience={"type": "openids", "openids": ["o-old", "o-recent"]})
    await run_worker(svc)

    [template] = [m for m in await emulator.messages("o-old") if m["msgtype"] == "template"]
    assert template["body"]["template_id"] == "TPL-SEC"
    assert template["body"]["data"]["first"]["value"] == "密码安全提醒"
    assert template["body"]["data"]["keyword1"]["value"] == "安全通告"
    assert await deliveries(svc, security) == {"o-old": "sent", "o-recent": "sent"}
    assert await deliveries(svc, service) == {"o-old": "skipped", "o-recent": "sent"}
    assert (await svc.runtime.broadcasts.progress(service)).skipped_by_reason == {"outside_48h": 1}


async def test_a_refused_template_falls_back_to_customer_service_inside_48_hours(make_service, emulator, tmp_path):
    # An important security notice whose template WeChat refused (43101: the user
    # declined it) never arrived, although a customer-service message would.
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"security": {"template_id": "TPL-SEC", "fields": {"first": "{important}{title}"}}}))
    svc = await make_service(notice_templates=str(templates))
    await active_users(svc, "o-tpl-in", "o-tpl-ok")
    await svc.runtime.followers.subscribed("o-tpl-out", svc.runtime.clock() - dt.timedelta(days=3))
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/template/send", "errcode": 43101, "times": 2})
    notice = await send(svc, category="security", title="异地登录提醒",
                        audience={"type": "openids", "openids": ["o-tpl-in", "o-tpl-out"]})
    await run_worker(svc)
    [record] = await svc.runtime.db["deliveries"].find({"_id": f"{notice}:o-tpl-in"}).to_list(None)
    assert (record["status"], record["channel"], record["fallback_errcode"]) == ("sent", "custom", 43101)
    [text] = [m for m in await emulator.messages("o-tpl-in") if m["msgtype"] == "text"]
    assert "异地登录提醒" in text["body"]["text"]["content"]
    # Outside the 48 hours nothing else can reach them: the refusal is recorded.
    [out] = await svc.runtime.db["deliveries"].find({"_id": f"{notice}:o-tpl-out"}).to_list(None)
    assert (out["status"], out["channel"], out["errcode"]) == ("failed", "template", 43101)
    # A template can say 【重要】 as the customer-service messages do.
    await send(svc, category="security", title="改密提醒", audience={"type": "openids", "openids": ["o-tpl-ok"]})
    await run_worker(svc)
    [template] = [m for m in await emulator.messages("o-tpl-ok") if m["msgtype"] == "template"]
    assert template["body"]["data"]["first"]["value"] == "【重要】改密提醒"


async def test_a_message_opens_the_window_at_once_and_is_recorded_durably(make_service, emulator, clock):
    svc = await make_service(clock=clock)
    await svc.wechat.ask("o-writer", "帮助")  # known only from this message: no follow event
    # The broadcast goes out before the buffered MongoDB write: the Redis mark
    # written with the message puts the user inside the 48-hour window.
    notice = await send(svc, audience={"type": "openids", "openids": ["o-writer"]})
    await run_worker(svc)
    assert await deliveries(svc, notice) == {"o-writer": "sent"}
    await svc.runtime.followers.flush()
    follower = await svc.runtime.followers.get("o-writer")
    assert follower is not None and follower.last_interaction_at == clock.now

    clock.advance(hours=49)
    late = await send(svc, audience={"type": "openids", "openids": ["o-writer"]})
    await run_worker(svc)
    assert await deliveries(svc, late) == {"o-writer": "skipped"}


async def test_buffered_last_interactions_never_move_a_user_later(make_service, clock):
    svc = await make_service(clock=clock)
    followers = svc.runtime.followers
    await followers.subscribed("o-early", clock.now)
    await followers.subscribed("o-late", clock.now)
    followers.touch("o-early", clock.now)
    first = clock.now
    clock.advance(hours=2)  # e.g. MongoDB was down meanwhile and both waited in the buffer
    followers.touch("o-late", clock.now)
    await followers.flush()
    assert (await followers.get("o-early")).last_interaction_at == first


async def test_45015_is_recorded_as_outside_the_window(svc, emulator):
    await active_users(svc, "o-w")
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 45015})
    notice = await send(svc, audience={"type": "openids", "openids": ["o-w"]})
    await run_worker(svc)
    progress = await svc.runtime.broadcasts.progress(notice)
    assert (progress.skipped, progress.skipped_by_reason) == (1, {"outside_48h": 1})


async def test_mass_send_on_request(svc, emulator):
    openids = [f"o-m{i}" for i in range(5)]
    await active_users(svc, *openids)
    await svc.runtime.preferences.set("o-m0", "other", False)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/mass/send", "errcode": -1})  # retried
    # o-stranger was never seen following: a mass send reaches followers only,
    # and WeChat would not say it did not reach them.
    notice = await send(svc, category="other", channel="mass", audience={"type": "openids", "openids": [*openids, "o-stranger"]})
    await run_worker(svc)
    sent = await emulator.messages()
    assert sorted(m["touser"] for m in sent if m["kind"] == "mass") == openids[1:]
    progress = await svc.runtime.broadcasts.progress(notice)
    assert (progress.sent, progress.skipped, progress.total) == (4, 2, 6)
    assert progress.skipped_by_reason == {"opted_out": 1, "no_channel": 1}


async def test_a_mass_send_left_with_one_recipient_counts_their_latest_message(make_service, emulator, clock):
    # WeChat's mass send needs two recipients: one left goes by customer-service
    # message, under the same 48-hour rule as any other. The rule read only
    # MongoDB's buffered last interaction, not the fresher mark the message
    # wrote in Redis, and skipped a user who had just written as outside_48h.
    svc = await make_service(clock=clock)
    await svc.runtime.followers.subscribed("o-solo", clock.now - dt.timedelta(hours=50))
    await svc.wechat.ask("o-solo", "帮助")  # inside the window now; MongoDB learns it only at the next flush
    notice = await send(svc, category="other", channel="mass", audience={"type": "openids", "openids": ["o-solo"]})
    await run_worker(svc)
    assert await deliveries(svc, notice) == {"o-solo": "sent"}
    [message] = await emulator.messages("o-solo")
    assert message["msgtype"] == "text"


async def test_a_mass_send_too_long_for_one_message_is_refused_up_front(svc, emulator):
    # A mass send is one message (not split like customer-service ones): WeChat
    # answered 45002 for every recipient of a 1,120-character body.
    await active_users(svc, "o-l1", "o-l2")
    body = "这是一条很长的群发通知正文，" * 80
    with pytest.raises(NoticeRefused) as refused:
        await send(svc, category="security", title="长群发", body=body, channel="mass",
                   audience={"type": "openids", "openids": ["o-l1", "o-l2"]})
    assert refused.value.code == "body_too_long" and "2048 字节" in refused.value.message
    # Customer-service messages take it, in pieces.
    notice = await send(svc, category="security", title="长通知", body=body, audience={"type": "openids", "openids": ["o-l1"]})
    await run_worker(svc)
    assert (await svc.runtime.broadcasts.progress(notice)).sent == 1 and len(await texts_to(emulator, "o-l1")) > 1


async def test_a_paused_mass_send_waits_and_a_cancelled_one_is_not_sent(svc, emulator):
    # Each mass send is one entry of the work stream: paused before a worker
    # takes it, it used to go out all the same.
    openids = [f"o-p{i}" for i in range(3)]
    await active_users(svc, *openids)
    broadcasts = svc.runtime.broadcasts
    paused = await send(svc, category="other", channel="mass", audience={"type": "openids", "openids": openids})
    await broadcasts.pause(paused)
    cancelled = await send(svc, category="other", title="取消的通知", channel="mass", audience={"type": "openids", "openids": openids})
    await broadcasts.cancel(cancelled)
    await run_worker(svc, timeout=5)
    assert [m for m in await emulator.messages() if m["kind"] == "mass"] == []
    assert set((await deliveries(svc, paused)).values()) == {"pending"}
    assert (await broadcasts.progress(cancelled)).skipped_by_reason == {"cancelled": 3}

    await broadcasts.resume(paused)
    await run_worker(svc)
    assert sorted(m["touser"] for m in await emulator.messages() if m["kind"] == "mass") == openids
    assert (await broadcasts.progress(paused)).sent == 3


# -- retries and permanent errors ----------------------------------------------------------------------


async def test_a_long_notice_at_a_low_rate_sends_each_piece_in_its_turn(make_service, emulator):
    # At NOTICE_RATE 1 a notice of two pieces went as two messages at once:
    # WeChat refused the second (45009), and it went again later. And the
    # first send of a process fetched the token and opened its HTTP session
    # after its turn in the rate, so it reached WeChat late, in the next
    # second's count.
    svc = await make_service(notice_rate=1)
    await active_users(svc, "o-slow1", "o-slow2")
    emulator.state.rate_limit = 1
    try:
        notice_id = await send(svc, body="长" * 800, audience={"type": "openids", "openids": ["o-slow1", "o-slow2"]})
        await run_worker(svc)
    finally:
        emulator.state.rate_limit = None
    assert (await svc.runtime.broadcasts.progress(notice_id)).sent == 2
    assert [len(await emulator.messages(o)) for o in ("o-slow1", "o-slow2")] == [2, 2]
    # Sent at once, the second piece of each message met 45009: two at least.
    # One may still meet it when a send reserved a second after the last one
    # reaches the emulator's sliding window a little closer (a busy machine).
    assert emulator.state.errors.get("45009", 0) <= 1


async def test_temporary_errors_are_retried(svc, emulator):
    await active_users(svc, "o-busy", "o-limit")
    path = "/cgi-bin/message/custom/send"
    await emulator.post("/_emulator/faults", {"path": path, "errcode": -1, "times": 2})
    await emulator.post("/_emulator/faults", {"path": path, "errcode": 45009, "times": 1})
    notice = await send(svc, audience={"type": "openids", "openids": ["o-busy", "o-limit"]})
    await run_worker(svc)
    assert await deliveries(svc, notice) == {"o-busy": "sent", "o-limit": "sent"}
    assert emulator.state.stats()["calls"][path] == 5


async def test_a_job_that_meets_wechats_quota_is_paused_not_failed(svc, emulator, monkeypatch):
    # 45009 that outlasts the retries is WeChat's call quota spent for the day:
    # every recipient left was recorded failed, one after another. The job is
    # paused instead, nobody is recorded, and a resume sends to everyone once.
    monkeypatch.setattr(delivery_worker, "BACKOFF", 0.01)
    openids = [f"o-q{i}" for i in range(3)]
    await active_users(svc, *openids)
    path = "/cgi-bin/message/custom/send"
    await emulator.post("/_emulator/faults", {"path": path, "errcode": 45009, "times": 10_000})
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    await run_worker(svc, timeout=10)
    paused = await svc.runtime.broadcasts.progress(notice)
    assert paused.notice.status == "paused" and paused.to_json()["paused_by"] == "quota", paused.to_json()
    assert (paused.sent, paused.failed, paused.pending) == (0, 0, 3)
    assert await emulator.messages() == []

    await emulator.clear_faults()  # the quota is back
    await svc.runtime.broadcasts.resume(notice)
    await run_worker(svc)
    done = await svc.runtime.broadcasts.progress(notice)
    assert done.notice.status == "done" and done.to_json()["paused_by"] is None
    assert (done.sent, done.failed) == (3, 0)
    assert sorted(m["touser"] for m in await emulator.messages()) == openids


@pytest.mark.parametrize("errcode, path", [(40164, "/cgi-bin/message/custom/send"), (40125, "/cgi-bin/stable_token")])
async def test_a_job_that_wechat_refuses_for_the_account_is_paused_not_failed(svc, emulator, caplog, errcode, path):
    # A wrong AppSecret (or a server IP not whitelisted) failed every recipient of a
    # broadcast, with nothing in the log, and a finished job cannot be resumed.
    openids = [f"o-acct{i}" for i in range(3)]
    await active_users(svc, *openids)
    await emulator.post("/_emulator/faults", {"path": path, "errcode": errcode, "times": 10_000})
    await svc.runtime.redis.delete(key("wechat", "access_token", svc.runtime.config.wechat_appid))  # fetched anew
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    await run_worker(svc, timeout=10)
    paused = await svc.runtime.broadcasts.progress(notice)
    assert paused.notice.status == "paused" and paused.to_json()["paused_by"] == "account", paused.to_json()
    assert (paused.sent, paused.failed, paused.pending) == (0, 0, 3)
    assert any(r.levelname == "ERROR" and str(errcode) in r.getMessage() for r in caplog.records)

    await emulator.clear_faults()  # the configuration mended
    await svc.runtime.broadcasts.resume(notice)
    await run_worker(svc)
    done = await svc.runtime.broadcasts.progress(notice)
    assert done.notice.status == "done" and (done.sent, done.failed) == (3, 0)


async def test_a_job_paused_for_the_quota_goes_on_by_itself_once_a_new_day_begins_in_beijing(
        make_service, emulator, monkeypatch, clock):
    # WeChat renews the daily quota at midnight Beijing time; an automatic notice
    # (an amendment, a suspension) paused for it waited for an admin.
    monkeypatch.setattr(delivery_worker, "BACKOFF", 0.01)
    svc = await make_service(clock=clock)  # 10:00 in Beijing
    openids = [f"o-qd{i}" for i in range(3)]
    await active_users(svc, *openids)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 45009, "times": 10_000})
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    await run_worker(svc, timeout=10)
    assert (await svc.runtime.broadcasts.progress(notice)).notice.status == "paused"

    await emulator.clear_faults()
    clock.advance(hours=13)  # 23:00: the same day, the same quota
    await run_worker(svc, timeout=5)
    assert (await svc.runtime.broadcasts.progress(notice)).notice.status == "paused"
    clock.advance(hours=1, minutes=5)  # 00:05 the next day
    await run_worker(svc)
    await run_worker(svc)  # resumed by the first one's upkeep, sent by this one
    done = await svc.runtime.broadcasts.progress(notice)
    assert (done.notice.status, done.sent, done.failed) == ("done", 3, 0), done.to_json()
    assert sorted(m["touser"] for m in await emulator.messages()) == openids


async def test_a_cancel_while_sends_meet_the_quota_leaves_nobody_pending(svc, emulator, monkeypatch):
    # The cancel spared the recipients a task held while it retried; the task then
    # let them go (quota: pending for a resume) and nobody recorded them: a cancelled
    # job with 3 pending for ever.
    monkeypatch.setattr(delivery_worker, "BACKOFF", 0.2)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 45009, "times": 10_000})
    notice, _openids, stop, worker = await sending(svc, "o-qc", 3, concurrency=1)
    await asyncio.sleep(1.0)  # the sends are in their retries
    await svc.runtime.broadcasts.cancel(notice)
    await asyncio.sleep(3.5)  # the retries end
    stop.set()
    await worker
    final = await svc.runtime.broadcasts.progress(notice)
    assert final.notice.status == "cancelled"
    assert (final.pending, final.skipped, final.skipped_by_reason) == (0, 3, {"cancelled": 3}), final.to_json()


async def test_a_fallback_that_meets_the_quota_leaves_its_recipient_pending(make_service, emulator, tmp_path,
                                                                             monkeypatch):
    # A template refused (43101), then its customer-service fallback met the quota:
    # recorded failed 43101, and a resume never sent it.
    monkeypatch.setattr(delivery_worker, "BACKOFF", 0.01)
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"security": {"template_id": "TPL-SEC", "fields": {"first": "{title}"}}}))
    svc = await make_service(notice_templates=str(templates))
    await active_users(svc, "o-qf")
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/template/send", "errcode": 43101, "times": 1})
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 45009, "times": 10_000})
    notice = await send(svc, category="security", title="异地登录提醒", audience={"type": "openids", "openids": ["o-qf"]})
    await run_worker(svc, timeout=10)
    paused = await svc.runtime.broadcasts.progress(notice)
    assert paused.notice.status == "paused" and (paused.pending, paused.failed) == (1, 0), paused.to_json()

    await emulator.clear_faults()
    await svc.runtime.broadcasts.resume(notice)
    await run_worker(svc)
    done = await svc.runtime.broadcasts.progress(notice)
    assert (done.notice.status, done.sent, done.failed) == ("done", 1, 0), done.to_json()


async def test_a_retry_resumes_a_long_notice_at_the_piece_that_failed(svc, emulator):
    # A body sent in three customer-service pieces, the second refused once with -1:
    # the retry sent the first piece again (the user got it twice).
    await active_users(svc, "o-pieces")
    path = "/cgi-bin/message/custom/send"
    await emulator.post("/_emulator/faults", {"path": path, "delay": 0.01, "times": 1})  # the first piece goes through
    await emulator.post("/_emulator/faults", {"path": path, "errcode": -1, "times": 1})
    body = "".join(f"第{i}段：今晚系统维护，期间暂停下单与支付功能，请提前安排。" for i in range(60))[:1500]
    notice = await send(svc, body=body, audience={"type": "openids", "openids": ["o-pieces"]})
    await run_worker(svc)
    assert await deliveries(svc, notice) == {"o-pieces": "sent"}
    pieces = await texts_to(emulator, "o-pieces")
    assert len(pieces) == 3 and len(set(pieces)) == 3, [p[:20] for p in pieces]


async def test_permanent_errors_are_recorded_not_retried(svc, emulator):
    await active_users(svc, "o-gone", "o-foreign")
    await emulator.post("/_emulator/users", {"openid": "o-gone", "subscribed": False})
    gone = await send(svc, audience={"type": "openids", "openids": ["o-gone"]})
    await run_worker(svc)
    # An openid of the right shape that WeChat does not know for this account.
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 40003})
    foreign = await send(svc, audience={"type": "openids", "openids": ["o-foreign"]})
    await run_worker(svc)
    for notice, code in ((gone, "43004"), (foreign, "40003")):
        progress = await svc.runtime.broadcasts.progress(notice)
        assert progress.failed_by_code == {code: 1} and progress.notice.status == "done"
    assert emulator.state.stats()["calls"]["/cgi-bin/message/custom/send"] == 2
    # WeChat said o-gone does not follow: recorded, so the next broadcast skips them
    # (every broadcast failed on them again); o-foreign (40003) still follows.
    assert not (await svc.runtime.followers.get("o-gone")).subscribed
    assert (await svc.runtime.followers.get("o-foreign")).subscribed
    again = await send(svc, audience={"type": "openids", "openids": ["o-gone"]})
    await run_worker(svc)
    progress = await svc.runtime.broadcasts.progress(again)
    assert progress.skipped_by_reason == {"unsubscribed": 1} and progress.failed == 0
    assert emulator.state.stats()["calls"]["/cgi-bin/message/custom/send"] == 2
    # A follow after the refusal is not undone by its late record (written after a MongoDB outage, say):
    # the refusal is dated when the sends began, not when their outcomes were written.
    sent = svc.runtime.clock()
    await svc.runtime.followers.subscribed("o-gone", sent + dt.timedelta(seconds=5))
    late = await send(svc, audience={"type": "openids", "openids": ["o-gone"]})
    await svc.runtime.broadcasts.record_outcomes(late, {"o-gone": {"status": "failed", "errcode": 43004}},
                                                 sent + dt.timedelta(seconds=30), sent_from=sent)
    assert (await svc.runtime.followers.get("o-gone")).subscribed


async def test_a_follower_refused_as_gone_who_writes_again_follows_again(svc, emulator):
    # One 43004 silenced a user for good though they kept chatting (only a follower can write to an account).
    now = svc.runtime.clock()
    for openid in ("o-back", "o-left"):
        await svc.runtime.followers.subscribed(openid, now - dt.timedelta(minutes=10))
    refused = now - dt.timedelta(minutes=5)
    await svc.runtime.followers.unfollowed_before(["o-back"], refused)
    await svc.runtime.followers.unsubscribed("o-left", svc.runtime.clock() + dt.timedelta(minutes=5))  # a real unfollow, later
    assert not (await svc.runtime.followers.get("o-back")).subscribed
    await svc.wechat.ask("o-back", "通知设置")
    await svc.wechat.ask("o-left", "通知设置")  # a message older than the unfollow changes nothing
    await svc.runtime.followers.flush()
    assert (await svc.runtime.followers.get("o-back")).subscribed
    assert not (await svc.runtime.followers.get("o-left")).subscribed
    again = await send(svc, audience={"type": "openids", "openids": ["o-back"]})
    await run_worker(svc)
    assert (await svc.runtime.broadcasts.progress(again)).sent == 1


async def test_template_job_finish_event_updates_the_delivery(make_service, emulator, tmp_path, clock):
    templates = tmp_path / "t.json"
    templates.write_text(json.dumps({"service": {"template_id": "TPL", "fields": {"first": "{title}"}}}))
    svc = await make_service(notice_templates=str(templates), clock=clock)
    notice = await send(svc, audience={"type": "openids", "openids": ["o-tpl"]})
    await run_worker(svc)
    [message] = await emulator.messages("o-tpl")
    [sent] = await svc.runtime.deliveries.for_user("o-tpl")
    msgid = message["body"].get("msgid") or sent.template_msgid
    clock.advance(seconds=90)  # the report comes later: the delivery keeps the time it was sent
    xml = event_xml("o-tpl", "TEMPLATESENDJOBFINISH").replace(
        "</xml>", f"<MsgID>{msgid}</MsgID><Status><![CDATA[failed:user block]]></Status></xml>"
    )
    response = await svc.wechat.post(xml)
    assert response.body == b"success"
    [record] = await svc.runtime.deliveries.for_user("o-tpl")
    assert (record.status, record.reason) == ("failed", "template:failed:user block")
    assert record.updated_at == sent.updated_at  # the inbox showed the report's time as delivered_at
    progress = await svc.runtime.broadcasts.progress(notice)
    assert progress.failed == 1 and progress.failed_by_code == {"template:failed:user block": 1}
    from bot.notices import WECHAT_ERRORS, explain

    assert explain(WECHAT_ERRORS, "template:failed:user block").startswith("用户拒收")  # said plainly to admins


async def test_a_template_report_that_comes_before_the_outcome_is_written_still_applies(svc):
    # The worker writes outcomes a batch at a time; WeChat may report on a
    # template message (user block) before its msgid is in MongoDB.
    notice = await send(svc, audience={"type": "openids", "openids": ["o-early"]})
    xml = event_xml("o-early", "TEMPLATESENDJOBFINISH").replace(
        "</xml>", "<MsgID>777001</MsgID><Status><![CDATA[failed:user block]]></Status></xml>"
    )
    assert (await svc.wechat.post(xml)).body == b"success"
    [record] = await svc.runtime.deliveries.for_user("o-early")
    assert record.status == "pending"  # nothing to apply it to yet
    outcome = {"o-early": {"status": "sent", "channel": "template", "template_msgid": 777001}}
    await svc.runtime.broadcasts.record_outcomes(notice, outcome, svc.runtime.clock())
    [record] = await svc.runtime.deliveries.for_user("o-early")
    assert (record.status, record.reason) == ("failed", "template:failed:user block")


async def test_wechats_own_reports_do_not_open_the_48_hour_window(svc):
    # A template report (or a link menu tap) is no interaction of the user's: a
    # customer-service message to them would get 45015 from WeChat.
    report = event_xml("o-quiet", "TEMPLATESENDJOBFINISH").replace(
        "</xml>", "<MsgID>99999999999999999999999999999</MsgID><Status><![CDATA[success]]></Status></xml>"
    )
    assert (await svc.wechat.post(report)).body == b"success"  # a hostile id: no traceback, no reply
    assert (await svc.wechat.post(event_xml("o-quiet", "VIEW", "https://example.com/"))).code == 200
    notice = await send(svc, audience={"type": "openids", "openids": ["o-quiet", "o-talked"]})
    await svc.wechat.post(event_xml("o-talked", "CLICK", "HELP"))  # a click menu tap does open it
    await run_worker(svc)
    assert await deliveries(svc, notice) == {"o-quiet": "skipped", "o-talked": "sent"}
    # Never seen following at all: no window to be outside of.
    assert (await svc.runtime.broadcasts.progress(notice)).skipped_by_reason == {"no_channel": 1}


# -- pause, resume, cancel, progress -------------------------------------------------------------------


async def progress_after_4_seconds(make_service, clock, outcomes_of):
    """A 60-recipient job started 4 s ago whose first 40 finished 2 s in, with
    ``outcomes_of(openids)``: its progress now."""
    svc = await make_service(clock=clock)
    openids = [f"o-e{i:02d}" for i in range(60)]
    await active_users(svc, *openids)
    notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    await svc.runtime.broadcasts.start(await svc.runtime.notices.get(notice_id))
    clock.advance(seconds=2)
    await svc.runtime.broadcasts.record_outcomes(notice_id, outcomes_of(openids[:40]), clock.now)
    clock.advance(seconds=2)
    await svc.runtime.broadcasts.queue.running("w-test")  # a worker sends it (none: no ETA)
    return await svc.runtime.broadcasts.progress(notice_id)


async def test_the_rate_early_in_a_job_is_over_the_seconds_it_has_run(make_service, clock):
    # 4 s into a 10/s job the status said 4 条/秒 (sent in 4 s over a 10-second window).
    progress = await progress_after_4_seconds(
        make_service, clock, lambda finished: {o: {"status": "sent", "channel": "custom"} for o in finished})
    assert progress.rate == 10.0 and progress.eta_seconds == 2.0


async def test_a_job_that_mostly_skips_still_shows_its_speed_and_eta(make_service, clock):
    # Only "sent" counted: a job skipping thousands of opted-out users showed
    # 速度 0.0 and no ETA until it was done.
    def skipped_and_failed(finished):
        outcomes = {o: {"status": "skipped", "reason": "opted_out"} for o in finished[:30]}
        outcomes.update({o: {"status": "failed", "channel": "custom", "errcode": 43004} for o in finished[30:]})
        return outcomes

    progress = await progress_after_4_seconds(make_service, clock, skipped_and_failed)
    assert (progress.sent, progress.skipped, progress.failed) == (0, 30, 10)
    assert progress.rate == 10.0 and progress.eta_seconds == 2.0  # 40 finished in 4 s, 20 left


async def test_counts_add_up_while_records_are_being_finished(make_service):
    # The totals and the breakdowns came from two reads: a job finishing
    # records in between showed 跳过 17900 beside reasons adding up to 18000.
    svc = await make_service()
    rt = svc.runtime
    openids = [f"o-c{i:03d}" for i in range(200)]
    notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    stop = asyncio.Event()

    async def skip_steadily():
        for start in range(0, len(openids), 5):
            await rt.deliveries.finish_many(notice_id, {o: {"status": "skipped", "reason": "opted_out"}
                                                        for o in openids[start:start + 5]}, rt.clock())
            await asyncio.sleep(0)
        stop.set()

    writer = asyncio.create_task(skip_steadily())
    readings = 0
    while not stop.is_set():
        progress = await rt.broadcasts.progress(notice_id)
        assert progress.skipped == sum(progress.skipped_by_reason.values())
        assert progress.pending + progress.sending + progress.sent + progress.failed + progress.skipped == 200
        readings += 1
    await writer
    assert readings > 3


async def test_the_rate_leaves_out_the_time_a_job_was_paused(make_service, clock):
    # A resume restarted the job's clock: a job done 2 s after a resume showed
    # everything it had sent, before the pause too, over those 2 s (73 条/秒 at a 20/s limit).
    svc = await make_service(clock=clock)
    broadcasts = svc.runtime.broadcasts
    openids = [f"o-r{i:02d}" for i in range(40)]
    await active_users(svc, *openids)
    notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    await broadcasts.start(await svc.runtime.notices.get(notice_id))
    clock.advance(seconds=2)
    await broadcasts.record_outcomes(notice_id, {o: {"status": "sent", "channel": "custom"} for o in openids[:20]}, clock.now)
    await broadcasts.pause(notice_id)
    clock.advance(seconds=60)
    await broadcasts.resume(notice_id)
    clock.advance(seconds=1)
    await broadcasts.record_outcomes(notice_id, {o: {"status": "sent", "channel": "custom"} for o in openids[20:30]}, clock.now)
    clock.advance(seconds=1)
    assert (await broadcasts.progress(notice_id)).rate == 5.0  # 10 sent in the 2 s since the resume
    await broadcasts.record_outcomes(notice_id, {o: {"status": "sent", "channel": "custom"} for o in openids[30:]}, clock.now)
    assert await broadcasts.finish_if_complete(notice_id)
    done = await broadcasts.progress(notice_id)
    assert done.notice.status == "done" and done.rate == 10.0  # 40 in the 4 s it was sending


async def test_a_pause_and_resume_before_any_worker_costs_no_takeover_wait(svc, emulator):
    # Resume queued the recipients again beside their entries still waiting: the
    # second entry found them held by the first and waited 5 s for a takeover.
    rt = svc.runtime
    openids = [f"o-pr{i}" for i in range(5)]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    await rt.broadcasts.pause(notice)
    await rt.broadcasts.resume(notice)
    started = time.monotonic()
    await rt.worker(concurrency=4).run_until_idle(timeout=15)
    assert (await rt.broadcasts.progress(notice)).notice.status == "done"
    assert time.monotonic() - started < 3.0
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert sorted(counts) == openids and max(counts.values()) == 1


async def test_pause_resume_and_cancel(make_service, emulator):
    svc = await make_service(notice_rate=20)
    openids = [f"o-p{i:03d}" for i in range(120)]
    await active_users(svc, *openids)
    broadcasts = svc.runtime.broadcasts
    notice = await send(svc, audience={"type": "openids", "openids": openids})

    stop = asyncio.Event()
    worker = asyncio.create_task(svc.runtime.worker(concurrency=4).run(stop))
    await asyncio.sleep(0.8)
    assert (await svc.runtime.notices.get(notice)).status == "sending"  # a worker took its first batch
    await broadcasts.pause(notice)
    await asyncio.sleep(1.5)  # sends already waiting for the rate limit finish
    paused = await broadcasts.progress(notice)
    await asyncio.sleep(0.8)
    assert (await broadcasts.progress(notice)).sent == paused.sent
    assert 0 < paused.sent < 120 and paused.notice.status == "paused"
    assert (paused.rate, paused.eta_seconds) == (0.0, None)  # no speed or ETA shown while paused

    await broadcasts.resume(notice)
    await asyncio.sleep(0.6)
    progress = await broadcasts.progress(notice)
    assert progress.sent > paused.sent and progress.rate > 0 and progress.eta_seconds is not None
    await broadcasts.cancel(notice)
    await asyncio.sleep(0.8)
    stop.set()
    await worker

    final = await broadcasts.progress(notice)
    assert final.notice.status == "cancelled"
    assert final.sent + final.failed + final.skipped == final.total == 120
    assert final.skipped_by_reason.get("cancelled", 0) > 0
    sent_to = collections.Counter(m["touser"] for m in await emulator.messages())
    assert sum(sent_to.values()) == final.sent and max(sent_to.values()) == 1

    from bot.notice_checks import NoticeRefused

    with pytest.raises(NoticeRefused):
        await broadcasts.resume(notice)


# -- crash safety ------------------------------------------------------------------------------------


async def test_a_dead_workers_batch_is_finished_from_its_journal(svc, emulator):
    """What a worker that died mid-batch left: its journal decides each recipient."""
    openids = ["o-noted", "o-flight", "o-untried", "o-legacy", "o-fresh"]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    # The dead worker's claims, last refreshed long ago.
    claims = f"wb:claims:{notice}"
    await svc.runtime.redis.hset(claims, mapping={o: "dead-worker:1000" for o in ("o-noted", "o-flight", "o-untried")})
    # Claimed in MongoDB by a version before claims moved to Redis: nothing shows it was never sent.
    await svc.runtime.db["deliveries"].update_one(
        {"_id": f"{notice}:o-legacy"}, {"$set": {"status": "sending", "claim": "old", "claimed_at_ms": 0}}
    )
    journal = f"wb:journal:{notice}"
    await svc.runtime.redis.hset(journal, mapping={
        "o-noted": json.dumps({"status": "sent", "channel": "custom"}), "o-flight": "attempt",
    })

    await run_worker(svc)

    assert await deliveries(svc, notice) == {
        "o-noted": "sent", "o-flight": "failed", "o-untried": "sent", "o-legacy": "failed", "o-fresh": "sent",
    }
    # Only those never tried were sent now; the journal is emptied once MongoDB has the outcomes.
    assert sorted(m["touser"] for m in await emulator.messages()) == ["o-fresh", "o-untried"]
    assert await svc.runtime.redis.hlen(journal) == 0 and await svc.runtime.redis.hlen(claims) == 0
    progress = await svc.runtime.broadcasts.progress(notice)
    assert progress.notice.status == "done" and progress.failed_by_code == {"interrupted": 2}



async def test_a_recipient_a_live_worker_holds_is_left_to_it(svc, emulator):
    """A fresh claim is another worker's: not sent here, shown as being sent,
    and the batch comes round again until the holder has finished it."""
    rt = svc.runtime
    await active_users(svc, "o-free", "o-held")
    notice = await send(svc, audience={"type": "openids", "openids": ["o-free", "o-held"]})
    now_ms = int(rt.clock().timestamp() * 1000)
    assert await rt.journal.claim(notice, ["o-held"], "live-worker", now_ms, now_ms - 3500) == {"o-held": OURS}

    await rt.worker(concurrency=1).run_until_idle(timeout=2)
    assert [m["touser"] for m in await emulator.messages()] == ["o-free"]
    progress = await rt.broadcasts.progress(notice)
    assert (progress.notice.status, progress.sent, progress.sending, progress.pending) == ("sending", 1, 1, 0)

    # The holder finishes its recipient; the batch, reclaimed, finds nothing left to send.
    await rt.deliveries.finish_many(notice, {"o-held": {"status": "sent", "channel": "custom"}}, rt.clock())
    await rt.journal.forget(notice, ["o-held"], "live-worker")
    await run_worker(svc)
    assert [m["touser"] for m in await emulator.messages()] == ["o-free"]
    progress = await rt.broadcasts.progress(notice)
    assert (progress.notice.status, progress.sent, progress.sending) == ("done", 2, 0)


async def test_claims_taken_over_are_not_marked_or_sent_by_their_former_holder(svc):
    rt = svc.runtime
    now_ms = int(rt.clock().timestamp() * 1000)
    openids = ["o-tk1", "o-tk2", "o-tk3"]
    assert set((await rt.journal.claim("n-tk", openids, "stalled", now_ms - 10_000, 0)).values()) == {OURS}
    # The stalled holder's claims on two of them went stale and another worker took them.
    await rt.journal.claim("n-tk", openids[:2], "taker", now_ms, now_ms - 3500)
    assert await rt.journal.attempt("n-tk", openids, "stalled") == ["o-tk3"]
    assert await rt.journal.read("n-tk", openids) == {"o-tk3": "attempt"}
    assert await rt.journal.attempt("n-tk", openids, "taker") == ["o-tk1", "o-tk2"]


async def test_a_worker_that_stalled_past_the_takeover_sends_none_of_what_was_taken(svc, emulator, caplog):
    # A worker frozen for 5 s or more (docker pause, a VM migrating, a laptop
    # asleep) lost its batch to another, then woke and sent it too: duplicates.
    rt = svc.runtime
    openids = ["o-stall1", "o-stall2"]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    worker = rt.worker(concurrency=1)
    limiter = worker.deps.limiter
    acquire = limiter.acquire

    async def stall_then_acquire(count=1):
        # While this worker "stalls" before sending, another takes its claims over.
        now_ms = int(rt.clock().timestamp() * 1000)
        await rt.journal.claim(notice, openids, "another-worker", now_ms, now_ms + 1)
        return await acquire(count)

    limiter.acquire = stall_then_acquire
    entries = [e for e, _ in await rt.redis.xrange(rt.broadcasts.queue._streams["u"])]
    assert len(entries) == 1
    with caplog.at_level(logging.ERROR):
        await worker.run_until_idle(timeout=3)
    assert await emulator.messages() == []  # the other worker sends them, not this one
    assert await rt.journal.read(notice, openids) == {}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a window left empty is no failure
    # Its batch is the taker's now: left for it to acknowledge (gone, were the taker to die).
    assert [e for e, _ in await rt.redis.xrange(rt.broadcasts.queue._streams["u"])] == entries


async def test_a_worker_that_stalled_before_a_cancel_leaves_what_another_sent_as_sent(make_service, emulator):
    # It recorded the rest of its batch as cancelled, over a send the worker that
    # had taken some of it over made and recorded meanwhile.
    svc = await make_service(notice_rate=1)  # a window of one recipient
    rt = svc.runtime
    openids = ["o-sc1", "o-sc2"]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    worker = rt.worker(concurrency=1)
    acquire = worker.deps.limiter.acquire
    calls = []

    async def stall_then_acquire(count=1):
        calls.append(count)
        if len(calls) == 1:  # while this worker stalls: another takes o-sc2 over, sends it; then a cancel
            now_ms = int(rt.clock().timestamp() * 1000)
            await rt.journal.claim(notice, ["o-sc2"], "taker", now_ms, now_ms + 1)
            await rt.broadcasts.record_outcomes(notice, {"o-sc2": {"status": "sent", "channel": "custom"}}, rt.clock())
            await rt.broadcasts.cancel(notice)
            await asyncio.sleep(0.6)  # past the worker's cached status
        return await acquire(count)

    worker.deps.limiter.acquire = stall_then_acquire
    await worker.run_until_idle(timeout=5)
    found = await deliveries(svc, notice)
    assert found == {"o-sc1": "sent", "o-sc2": "sent"}, found
    assert [m["touser"] for m in await emulator.messages()] == ["o-sc1"]


async def abandoned_batch(svc, openids: list[str], *, claimed: list[str], attempted: list[str],
                          sent: list[str]) -> tuple[str, str]:
    """A notice to ``openids`` whose one batch a worker read and then left: long
    ago it claimed ``claimed``, marked ``attempted`` in flight and noted ``sent``
    as sent in its journal. Returns the notice and the batch's entry."""
    rt = svc.runtime
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    await rt.broadcasts.queue.ensure_group()
    [(entry_id, _, _)] = await rt.broadcasts.queue.read("gone-0", count=1, block_ms=500)
    long_ago = int(rt.clock().timestamp() * 1000) - 60_000
    await rt.journal.claim(notice, claimed, "gone", long_ago, 0)
    assert await rt.journal.attempt(notice, attempted, "gone") == attempted
    await rt.journal.record(notice, {openid: {"status": "sent", "channel": "custom"} for openid in sent})
    return notice, entry_id


async def test_a_cancel_while_a_worker_is_dead_keeps_what_it_had_sent(svc, emulator):
    # Cancel marked every pending recipient skipped (cancelled), also those the
    # dead worker had sent and noted only in its journal: delivered messages
    # were reported, and exported, as never sent.
    rt = svc.runtime
    openids = ["o-cx1", "o-cx2", "o-cx3"]
    # A worker took the batch, then died; o-cx2 was in flight.
    notice, _entry = await abandoned_batch(svc, openids, claimed=openids, attempted=openids[:2], sent=["o-cx1"])

    sending = await rt.notices.get(notice)
    await rt.broadcasts.cancel(notice)
    await asyncio.sleep(RECLAIM_IDLE_MS / 1000 + 0.2)
    worker = rt.worker(concurrency=4)
    # This worker read the job's status just before the cancel (it caches it for
    # half a second): the batch it takes over must still not be sent.
    worker._notice_cache[notice] = (asyncio.get_running_loop().time(), sending)
    await worker.run_until_idle()  # upkeep takes the dead worker's batch over
    found = await deliveries(svc, notice)
    assert found == {"o-cx1": "sent", "o-cx2": "failed", "o-cx3": "skipped"}, found
    final = await rt.broadcasts.progress(notice)
    assert final.notice.status == "cancelled" and final.skipped_by_reason == {"cancelled": 1}
    assert await emulator.messages() == []  # nothing sent after the cancel
    assert await rt.journal.claimed(notice) == 0 and await rt.journal.read(notice, openids) == {}


async def test_a_cancelled_job_whose_claimed_recipients_lost_their_batch_still_ends_counted(svc, emulator):
    # A cancel spares the recipients a worker claimed (it records them); if
    # their batch is gone (the worker crashed after acknowledging it, or Redis
    # failed as it released its claims), nobody did: pending for ever in a
    # cancelled job. Upkeep queues them again, and a worker records each.
    rt = svc.runtime
    openids = ["o-lb1", "o-lb2", "o-lb3"]
    notice, entry_id = await abandoned_batch(svc, openids, claimed=openids[:2], attempted=openids[:1], sent=["o-lb1"])
    await rt.broadcasts.queue.ack(entry_id)  # the batch is gone, its claims are not

    await rt.broadcasts.cancel(notice)
    assert (await deliveries(svc, notice))["o-lb3"] == "skipped"
    worker = rt.worker(concurrency=2)
    await worker.run_until_idle()  # upkeep finds the job unsettled, queues its pending recipients again
    await worker.run_until_idle()
    found = await deliveries(svc, notice)
    assert found == {"o-lb1": "sent", "o-lb2": "skipped", "o-lb3": "skipped"}, found
    final = await rt.broadcasts.progress(notice)
    assert final.notice.status == "cancelled" and final.pending == 0
    assert final.sent + final.failed + final.skipped == final.total == 3
    assert await emulator.messages() == []  # nothing sent after the cancel
    assert [n.id for n in await rt.notices.active()] == []  # settled: upkeep leaves it be


async def test_consumers_that_hold_nothing_are_removed(svc, emulator):
    # Each worker start added nine consumers to the group for good (48 after a
    # few restarts): a stopping worker removes its own, upkeep those of workers
    # killed long ago; a consumer still holding an entry stays (its entry is taken over).
    rt = svc.runtime
    queue = rt.broadcasts.queue
    await active_users(svc, "o-con1")

    async def consumers() -> set[str]:
        names = set()
        for stream in (queue.stream, queue._streams["u"]):
            names |= {c["name"] for c in await rt.redis.xinfo_consumers(stream, "senders")}
        return names

    await send(svc, audience={"type": "openids", "openids": ["o-con1"]})
    worker = rt.worker(concurrency=2)
    await worker.run_until_idle()
    assert not {n for n in await consumers() if n.startswith(worker.name)}
    await send(svc, audience={"type": "openids", "openids": ["o-con1"]})
    assert await queue.read("killed-0", count=1, block_ms=500)  # holds an entry
    await rt.redis.xreadgroup("senders", "killed-1", {queue.stream: ">"}, count=1)  # holds nothing
    assert await queue.retire(idle_ms=0) == 1
    assert await consumers() == {"killed-0"}


async def test_a_slow_worker_keeps_its_batch(svc, emulator, caplog):
    """A worker still waiting for WeChat after the reclaim time is alive: its
    batch is not taken over. The send that got no answer within the client's
    5 s is recorded as failed, not repeated (WeChat delivered it after all)."""
    await active_users(svc, "o-slow1", "o-slow2")
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 6.5})
    notice = await send(svc, audience={"type": "openids", "openids": ["o-slow1", "o-slow2"]})
    await run_worker(svc)
    progress = await svc.runtime.broadcasts.progress(notice)
    assert progress.notice.status == "done" and progress.sent == 1 and progress.failed_by_code == {"-4": 1}
    assert "taken over" not in caplog.text and "taking over" not in caplog.text
    await asyncio.sleep(2)  # the slow answer lands
    assert sorted(m["touser"] for m in await emulator.messages()) == ["o-slow1", "o-slow2"]


async def test_progress_counts_the_recipients_not_recorded_yet_as_pending(make_service, backing):
    # With the planner gone after its first chunk, status said 0 pending and
    # an ETA of 0 while 300 recipients were still to be recorded and sent.
    svc = await make_service()
    rt = svc.runtime
    openids, notice_id, _ = await planner_died(svc, "o-unrec", "记录中", 300)
    progress = await rt.broadcasts.progress(notice_id)
    assert progress.total == len(openids) and progress.pending == len(openids) and progress.eta_seconds is None
    data = progress.to_json()
    assert (data["planned"], data["recorded"], data["recording"]) == (False, PLAN_CHUNK, True)
    from tests.test_cli import clean_env

    env = clean_env(MONGODB_URI=backing.database_uri(rt.db.name), REDIS_URL=backing.redis_url)
    shown = subprocess.run([str(BIN), "notice", "status", notice_id], env=env, capture_output=True, text=True, timeout=60)
    assert f"正在记录接收者：已记录 {PLAN_CHUNK} / {len(openids)}" in shown.stdout, shown


async def test_a_planner_that_died_midway_is_replaced_and_the_job_ends_complete(make_service, emulator):
    svc = await make_service(notice_rate=2000)
    rt = svc.runtime
    openids, notice_id, long_ago = await planner_died(svc, "o-pl", "分批规划", 300)
    # ... and the job sending, its first chunk queued.
    await rt.notices.transition(notice_id, ("queued",), "sending", long_ago)
    await rt.broadcasts.enqueue_pending(await rt.notices.get(notice_id))
    # Every recorded recipient could be finished, but the job is not complete: never done early.
    assert not await rt.broadcasts.finish_if_complete(notice_id)

    await run_worker(svc, timeout=60)  # upkeep notices the silent planner and plans again
    final = await rt.broadcasts.progress(notice_id)
    assert final.notice.status == "done" and final.notice.planned
    assert final.sent == final.total == len(openids)
    counts = collections.Counter(m["touser"] for m in await emulator.messages() if m["touser"].startswith("o-pl"))
    assert len(counts) == len(openids) and max(counts.values()) == 1


async def test_a_live_planner_is_left_alone_and_a_silent_one_replaced_once(svc):
    rt = svc.runtime
    openids = ["o-lp1", "o-lp2"]
    notice_id = await unplanned_notice(rt, "规划", openids)
    await rt.notices.planning(notice_id, len(openids), rt.clock())  # its planner reports progress
    assert not await rt.broadcasts.plan(notice_id)
    assert await rt.deliveries.openids(notice_id, ("pending",)) == []

    await rt.notices.planning(notice_id, len(openids), rt.clock() - PLANNER_SILENT - dt.timedelta(seconds=1))
    # Several workers' upkeep find it silent at once: one of them plans it.
    taken = await asyncio.gather(*(rt.broadcasts.plan(notice_id) for _ in range(3)))
    assert sorted(taken) == [False, False, True]
    notice = await rt.notices.get(notice_id)
    assert notice.planned and notice.total == 2
    assert await rt.deliveries.openids(notice_id, ("pending",)) == openids
    assert await rt.queue.backlog() == 1


async def test_in_a_long_lived_process_send_returns_once_the_first_chunk_is_queued(make_service, emulator):
    svc = await make_service(notice_rate=2000)
    rt = svc.runtime
    rt.broadcasts.plan_in_background = True
    small_chunks(rt)
    openids = [f"o-bg{i:04d}" for i in range(PLAN_CHUNK + 300)]
    await active_users(svc, *openids)
    notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    assert len(rt.broadcasts._planners) == 1  # the rest is being planned
    notice = await rt.notices.get(notice_id)
    assert notice.status == "queued" and notice.total == len(openids)  # until a worker takes a batch
    assert not await rt.broadcasts.plan(notice_id)  # nobody else plans it meanwhile

    await run_worker(svc, timeout=60)
    final = await rt.broadcasts.progress(notice_id)
    assert final.notice.status == "done" and final.sent == final.total == len(openids)
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert len(counts) == len(openids) and max(counts.values()) == 1


async def test_planning_in_the_background_outlives_the_request_that_began_it(make_service):
    # The console sends under its request's budget (pymongo.timeout, 30 s); the
    # planner's task inherited it, and a large audience stopped being recorded
    # with ExecutionTimeout once the request's time was up.
    import pymongo

    svc = await make_service()
    rt = svc.runtime
    rt.broadcasts.plan_in_background = True
    small_chunks(rt)
    rt.broadcasts.plan_yield = 50  # a pause after each chunk well past the budget below
    openids = [f"o-budget{i:04d}" for i in range(PLAN_CHUNK * 3)]
    with pymongo.timeout(1.0):  # the request's budget
        notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    await asyncio.wait_for(asyncio.gather(*rt.broadcasts._planners), 60)
    notice = await rt.notices.get(notice_id)
    assert notice.planned and notice.total == len(openids)
    assert await rt.deliveries.openids(notice_id, ("pending",)) == openids


async def test_the_planner_leaves_the_database_to_the_workers_between_chunks(svc):
    # Recording 100,000 recipients as fast as the database took them slowed the
    # sending beside it: the workers read and write the same database.
    rt = svc.runtime
    small_chunks(rt)
    recording: list[float] = []
    record = rt.deliveries.create_pending

    async def timed(notice_id, openids, at):  # the real writes, timed
        began = time.monotonic()
        try:
            return await record(notice_id, openids, at)
        finally:
            recording.append(time.monotonic() - began)

    rt.deliveries.create_pending = timed
    openids = [f"o-yield{i:04d}" for i in range(PLAN_CHUNK * 5)]
    began = time.monotonic()
    notice_id = await send(svc, audience={"type": "openids", "openids": openids})
    planning = time.monotonic() - began
    assert len(recording) == 5 and (await rt.notices.get(notice_id)).planned
    # A wait as long as each chunk took after it, but the first (sending starts
    # at once) and the last.
    assert planning >= sum(recording) + 0.9 * sum(recording[1:-1]), (planning, recording)
    assert (await rt.broadcasts.progress(notice_id)).pending == len(openids)


async def test_a_cancel_after_the_planner_died_still_ends_with_every_recipient_counted(make_service, emulator):
    # `notice send` stopped (Ctrl-C, kill) while planning, then `notice cancel`
    # as its message says: the rest of the audience was never recorded, and
    # upkeep left cancelled jobs alone, so the counts stayed short for good.
    svc = await make_service()
    rt = svc.runtime
    openids, notice_id, _long_ago = await planner_died(svc, "o-cd", "取消", 10)
    await rt.broadcasts.cancel(notice_id)
    await rt.worker()._replan()  # what every worker's upkeep does each second
    final = await rt.broadcasts.progress(notice_id)
    assert final.notice.status == "cancelled" and final.notice.planned
    assert final.skipped == final.total == len(openids) and final.skipped_by_reason == {"cancelled": len(openids)}
    assert [m for m in await emulator.messages() if m["touser"].startswith("o-cd")] == []


async def test_a_cancel_while_planning_skips_what_is_recorded_after_it(make_service, emulator):
    svc = await make_service()
    rt = svc.runtime
    small_chunks(rt)
    openids = [f"o-pc{i:04d}" for i in range(PLAN_CHUNK + 10)]
    notice_id = await unplanned_notice(rt, "取消", openids)
    recorded = rt.deliveries.create_pending

    async def cancel_after_first_chunk(nid, part, at):
        count = await recorded(nid, part, at)
        if part[0] == openids[0]:
            await rt.broadcasts.cancel(nid)  # an admin cancels while the planner is between chunks
        return count

    rt.deliveries.create_pending = cancel_after_first_chunk
    try:
        assert await rt.broadcasts.plan(notice_id)
    finally:
        del rt.deliveries.create_pending
    final = await rt.broadcasts.progress(notice_id)
    assert final.notice.status == "cancelled"
    assert final.pending == 0 and final.skipped == final.total == len(openids)
    assert final.skipped_by_reason == {"cancelled": len(openids)}


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    # A file, not a pipe: a full pipe nobody reads would stall the worker.
    with log_path.open("a") as log_file:
        return subprocess.Popen([str(BIN), "-v", "worker", "--concurrency", "4"], env=env, stdout=subprocess.DEVNULL, stderr=log_file)


def worker_env(svc, emulator, backing) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHAT_", "MONGODB_", "REDIS_"))}
    env.update(
        MONGODB_URI=backing.database_uri(svc.runtime.db.name),
        REDIS_URL=backing.redis_url,
        WECHAT_APPID=APPID,
        WECHAT_SECRET=SECRET,
        WECHAT_API_BASE=emulator.base,
        NOTICE_RATE="100",
    )
    return env


async def stop_worker_midway(svc, notice, env, log_path: Path, signum: int, after: int = 80) -> None:
    """Start a worker, and stop it with ``signum`` once ``after`` were sent."""
    worker = start_worker(env, log_path)
    try:
        deadline = time.monotonic() + 30
        while (await svc.runtime.broadcasts.progress(notice)).sent < after and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        worker.send_signal(signum)
        deadline = time.monotonic() + 15
        while worker.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # not wait(): the emulator answering its sends runs on this loop
    finally:
        if worker.poll() is None:
            worker.kill()


async def finish_with_another_worker(svc, notice, env, log_path: Path):
    second = start_worker(env, log_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await svc.runtime.broadcasts.progress(notice)).notice.status == "done":
                break
            await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(10)
        except subprocess.TimeoutExpired:
            second.kill()
    return await svc.runtime.broadcasts.progress(notice)


async def test_a_worker_frozen_past_the_takeover_sends_nothing_twice_when_it_wakes(make_service, emulator, backing,
                                                                                     tmp_path):
    # SIGSTOP (docker pause, a VM migrating): another worker took the batch over
    # and sent it; the frozen one woke and sent the rest of its batch again.
    svc = await make_service(notice_rate=100)
    openids = [f"o-fz{i:03d}" for i in range(200)]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    env = worker_env(svc, emulator, backing)
    frozen = start_worker(env, tmp_path / "frozen.log")
    try:
        deadline = time.monotonic() + 30
        while (await svc.runtime.broadcasts.progress(notice)).sent < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        frozen.send_signal(signal.SIGSTOP)
        final = await finish_with_another_worker(svc, notice, env, tmp_path / "taker.log")
        assert final.notice.status == "done" and final.sent + final.failed + final.skipped == 200
        frozen.send_signal(signal.SIGCONT)
        await asyncio.sleep(3)  # it wakes, finds its claims taken, and stops sending
    finally:
        frozen.send_signal(signal.SIGCONT)
        frozen.kill()
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert max(counts.values()) == 1, [o for o, n in counts.items() if n > 1]


async def test_a_worker_stopped_mid_broadcast_finishes_its_sends_in_flight(make_service, emulator, backing, tmp_path):
    # SIGTERM or Ctrl-C is no crash: the windows in flight are answered and recorded
    # (they were recorded as interrupted although WeChat had delivered them).
    svc = await make_service(notice_rate=100)
    openids = [f"o-t{i:03d}" for i in range(120)]
    await active_users(svc, *openids)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 0.3, "times": 10_000})
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    env = worker_env(svc, emulator, backing)
    await stop_worker_midway(svc, notice, env, tmp_path / "first.log", signal.SIGTERM, after=40)
    at_stop = await svc.runtime.broadcasts.progress(notice)
    assert 0 < at_stop.sent < 120 and at_stop.failed == 0
    final = await finish_with_another_worker(svc, notice, env, tmp_path / "second.log")
    assert final.notice.status == "done", final.to_json()
    assert (final.sent, final.failed, final.failed_by_code) == (120, 0, {})
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert len(counts) == 120 and max(counts.values()) == 1


async def test_a_stop_waits_for_the_outcomes_of_the_batch_it_interrupted(make_service, emulator, monkeypatch):
    # A batch's end (its outcomes written, its entry acknowledged) runs beside the
    # next batch; the end of the batch a stop cut short started after the stop and
    # was cancelled at once: WeChat had the messages, MongoDB still said pending.
    monkeypatch.setattr(delivery_worker, "FLUSH_EVERY", 60.0)  # outcomes only at a batch's end
    svc = await make_service(notice_rate=100)
    record = svc.runtime.broadcasts.record_outcomes

    async def record_on_a_busy_database(*args, **kwargs):
        await asyncio.sleep(0.05)  # the write waits its turn, as on a database with other work
        await record(*args, **kwargs)

    monkeypatch.setattr(svc.runtime.broadcasts, "record_outcomes", record_on_a_busy_database)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 0.3, "times": 10_000})
    notice, _openids, stop, worker = await sending(svc, "o-se", 100, concurrency=1)
    deadline = time.monotonic() + 20
    while len(await emulator.messages()) < 30 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    delivered = {m["touser"] for m in await emulator.messages()}
    assert 0 < len(delivered) < 100
    recorded = await deliveries(svc, notice)
    assert {o for o, status in recorded.items() if status == "sent"} == delivered


async def test_a_batch_taken_over_is_finished_too_when_the_worker_stops(make_service, emulator):
    # A dead worker's batch, taken over by upkeep: a stop cut its sends off and
    # recorded them as interrupted although WeChat had them.
    svc = await make_service(notice_rate=100)
    openids = [f"o-u{i:02d}" for i in range(40)]
    await active_users(svc, *openids)
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 0.3, "times": 10_000})
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    queue = svc.runtime.broadcasts.queue
    await queue.ensure_group()
    taken = await queue.read("dead-0", count=1, block_ms=500)  # read by a worker that then died
    assert taken and taken[0][1] == notice
    await asyncio.sleep(RECLAIM_IDLE_MS / 1000 + 0.2)
    stop = asyncio.Event()
    worker = asyncio.create_task(svc.runtime.worker(concurrency=1).run(stop))
    deadline = time.monotonic() + 20
    while (await svc.runtime.broadcasts.progress(notice)).sent == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    await run_worker(svc)
    final = await svc.runtime.broadcasts.progress(notice)
    assert (final.sent, final.failed, final.failed_by_code) == (40, 0, {}), final.to_json()
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert len(counts) == 40 and max(counts.values()) == 1


async def test_kill_9_mid_broadcast_then_resume_without_duplicates(make_service, emulator, backing, tmp_path):
    svc = await make_service(notice_rate=100)
    openids = [f"o-k{i:03d}" for i in range(300)]
    await active_users(svc, *openids)
    notice = await send(svc, audience={"type": "openids", "openids": openids})
    env = worker_env(svc, emulator, backing)
    await stop_worker_midway(svc, notice, env, tmp_path / "first.log", signal.SIGKILL)
    at_crash = await svc.runtime.broadcasts.progress(notice)
    assert 0 < at_crash.sent < 300

    final = await finish_with_another_worker(svc, notice, env, tmp_path / "second.log")
    if final.notice.status != "done":  # keep the evidence for whoever investigates
        stuck = await svc.runtime.db["deliveries"].find({"notice_id": notice, "status": {"$ne": "sent"}}).to_list(None)
        Path("/tmp/kill9-debug.log").write_text(f"{final.to_json()}\n{stuck}\n{(tmp_path / 'second.log').read_text()}")
    assert final.notice.status == "done", final.to_json()
    assert final.sent + final.failed + final.skipped == final.total == 300
    # The at-most window: what the dead worker had in flight is recorded as
    # interrupted (at most one window per sending task), never sent twice.
    interrupted = final.failed_by_code.get("interrupted", 0)
    in_flight = 4 * max(1, min(WINDOW, int(100 * PAY_SECONDS / 4)))
    assert final.failed == interrupted <= in_flight and final.sent == 300 - interrupted
    counts = collections.Counter(m["touser"] for m in await emulator.messages())
    assert max(counts.values()) == 1, [o for o, n in counts.items() if n > 1]
    sent = set(await svc.runtime.deliveries.openids(notice, ("sent",)))
    assert sent <= set(counts) and len(sent) == final.sent


# -- chat and export -------------------------------------------------------------------------------------


async def test_chat_preferences(svc):
    settings = await svc.wechat.ask("o-pref", "通知设置")
    assert "服务公告：接收" in settings and "重要" in settings
    reply = await svc.wechat.ask("o-pref", "退订 服务公告")
    assert "已退订“服务公告”" in reply and "仍会送达" in reply
    assert "服务公告：已退订" in await svc.wechat.ask("o-pref", "通知设置")
    subscribed = await svc.wechat.ask("o-pref", "订阅 服务公告")
    assert "已恢复" in subscribed and "仍会送达" in subscribed  # both replies say it
    unknown = await svc.wechat.ask("o-pref", "退订 天气预报")
    assert "没有这个通知类别" in unknown and unknown.endswith("例如：退订 服务公告")
    # Security notices are important unless an admin says otherwise: the reply says they still come.
    security = await svc.wechat.ask("o-pref", "退订 安全通告")
    assert "已退订“安全通告”，但这类通知通常标为“重要”，仍会送达" in security
    # Amendment notices are always important: no "only those not marked important" (there are none).
    amendment = await svc.wechat.ask("o-pref", "退订 条款修改通知")
    assert "总是标为“重要”" in amendment and "只有未标为重要" not in amendment, amendment
    assert "已退订“管理消息”" in await svc.wechat.ask("o-pref", "退订 管理消息？")  # a question mark, as phones add
    assert (await svc.runtime.preferences.settings("o-pref"))["service"] is True
    # As phones type them: a full stop after, the name in quotes.
    assert "已退订“其他”" in await svc.wechat.ask("o-pref", "退订其他。")
    assert "已退订“管理消息”" in await svc.wechat.ask("o-pref", "退订 “管理消息”")
    assert "已退订“其他”" in await svc.wechat.ask("o-pref", "退订 其它")  # the other way to write it
    # Already on (订阅 服务公告 above): said so, rather than "resumed" again.
    assert "您已在接收“服务公告”，无需重复订阅" in await svc.wechat.ask("o-pref", "订阅：服务公告")  # a colon, as 条款：4
    assert "您此前已退订“其他”" in await svc.wechat.ask("o-pref", "退订 其他")
    assert "已退订“服务公告”" in await svc.wechat.ask("o-pref", "退订: 服务公告")


async def test_other_ways_of_saying_opt_out_and_in_change_the_setting(svc):
    # 不要再发服务公告了, 关闭 服务公告, 取消订阅 服务公告 got a clause quoted and changed nothing.
    for typed, on in (("不要再发服务公告了", False), ("打开 服务公告", True), ("关闭 服务公告", False),
                      ("开启服务公告", True), ("取消订阅 服务公告", False), ("恢复订阅 服务公告", True),
                      ("别再发其他了！", False)):
        reply = await svc.wechat.ask("o-say", typed)
        assert ("已恢复" in reply or "您已在接收" in reply) if on else "退订" in reply, (typed, reply)
        category = "other" if "其他" in typed else "service"
        assert (await svc.runtime.preferences.settings("o-say"))[category] is on, typed
    # Not a category's full name: no notice setting (关闭账户 is about the account).
    assert "已退订" not in await svc.wechat.ask("o-say", "关闭账户")
    assert (await svc.runtime.preferences.settings("o-say"))["service"] is True
    # Inside registration too, as 退订 服务公告 is.
    await svc.wechat.ask("o-say", "同意")
    await svc.wechat.ask("o-say", "注册")
    inside = await svc.wechat.ask("o-say", "关闭 安全通告")
    assert "已退订“安全通告”" in inside and "还没有完成" in inside, inside


async def test_every_category_at_once_and_the_bare_words_show_the_settings(svc):
    # 取消订阅 alone got "not covered" (退订 alone shows the settings); 退订 全部 was no category.
    for bare in ("取消订阅", "恢复订阅"):
        assert (await svc.wechat.ask("o-all", bare)).startswith("您的通知设置："), bare
    assert "订阅 全部" in await svc.wechat.ask("o-all", "通知设置")
    off = await svc.wechat.ask("o-all", "退订 全部")
    assert off.startswith("已退订全部类别的通知") and "仍会送达" in off
    assert set((await svc.runtime.preferences.settings("o-all")).values()) == {False}
    assert (await svc.wechat.ask("o-all", "取消订阅所有通知")).startswith("您此前已退订全部类别的通知")
    assert (await svc.wechat.ask("o-all", "订阅 所有")).startswith("已恢复接收全部类别的通知")
    assert set((await svc.runtime.preferences.settings("o-all")).values()) == {True}
    assert (await svc.wechat.ask("o-all", "退订 服务公告")).startswith("已退订“服务公告”")  # one still works


async def test_export_has_preferences_and_deliveries(svc, emulator):
    await active_users(svc, "o-exp")
    await svc.runtime.preferences.set("o-exp", "other", False)
    await emulator.post("/_emulator/users", {"openid": "o-exp2", "subscribed": False})
    notice = await send(svc, audience={"type": "openids", "openids": ["o-exp"]})
    await run_worker(svc)
    document = await svc.runtime.exports.document("o-exp")
    assert document["preferences"] == {"service": "on", "security": "on", "admin": "on", "amendment": "on", "other": "off"}
    [delivery] = document["deliveries"]
    assert {k: delivery[k] for k in ("notice", "category", "status", "channel")} == {
        "notice": notice, "category": "service", "status": "sent", "channel": "custom"
    }
    assert delivery["at"] and delivery["errcode"] is None


# -- the CLI -------------------------------------------------------------------------------------------------


async def test_notice_send_failing_after_the_notice_exists_says_not_to_send_again(make_service, backing, tmp_path):
    # Redis down: it printed the id, then an error, and the admin sent again (the
    # worker plans the first one once Redis is back: two notices).
    from storage.embedded import free_port
    from tests.test_cli import clean_env

    svc = await make_service()
    await active_users(svc, "o-r1")
    env = dict(MONGODB_URI=backing.database_uri(svc.runtime.db.name),
               REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = subprocess.run([str(BIN), "notice", "send", "--category", "admin", "--title", "t", "--body", "b",
                             "--audience", "all"], env=clean_env(**env), capture_output=True, text=True, timeout=60)
    notice_id = result.stdout.strip()
    assert result.returncode == 1 and await svc.runtime.notices.get(notice_id) is not None
    assert f"通知 {notice_id} 已创建，会继续记录接收者并发送，请勿重新发送" in result.stderr
    assert "Traceback" not in result.stderr


async def test_notice_cli(make_service, emulator, backing, tmp_path):
    svc = await make_service()
    await active_users(svc, "o-c1", "o-c2")
    env = dict(MONGODB_URI=backing.database_uri(svc.runtime.db.name), REDIS_URL=backing.redis_url)
    from tests.test_cli import clean_env

    def cli(*args):
        return subprocess.run([str(BIN), *args], env=clean_env(**env), capture_output=True, text=True, timeout=60)

    ids = tmp_path / "ids.txt"
    ids.write_text("o-c1\no-c2\n")
    sent = cli("notice", "send", "--category", "admin", "--title", "账户提醒", "--body", "请完善资料", "--audience", f"openids:{ids}")
    assert sent.returncode == 0, sent.stderr
    notice_id = sent.stdout.strip()
    assert NO_WORKER in sent.stderr  # nothing runs to send it: said at once, not left to guess
    assert "没有记录" not in sent.stderr
    ids.write_text("o-c1\no-nobody\n")
    warned = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{ids}")
    assert warned.returncode == 0 and "其中 1 个 openid 在系统中没有记录" in warned.stderr and "o-nobody" in warned.stderr
    await svc.runtime.broadcasts.cancel(warned.stdout.strip())
    status = json.loads(cli("notice", "status", notice_id, "--json").stdout)
    assert status["status"] == "queued" and status["total"] == 2  # no worker has begun
    assert (status["workers"], status["waiting_for_worker"]) == (0, True)
    assert NO_WORKER in cli("notice", "status", notice_id).stdout
    assert all(isinstance(status[k], int) for k in ("total", "sent", "failed", "skipped"))
    assert "已暂停" in cli("notice", "pause", notice_id, "--by", "olga").stdout
    assert "排队中" in cli("notice", "resume", notice_id).stdout
    [paused] = await svc.runtime.audit.recent(action="notice_pause")
    assert (paused.actor, paused.before, paused.after) == ("cli:olga", {"status": "queued"}, {"status": "paused"})
    await run_worker(svc)
    done = json.loads(cli("notice", "status", notice_id, "--json").stdout)
    assert (done["status"], done["sent"]) == ("done", 2)
    shown = cli("notice", "status", notice_id).stdout
    assert "已完成" in shown and NO_WORKER not in shown
    refused = cli("notice", "cancel", notice_id)
    assert refused.returncode == 2 and "不能取消" in refused.stderr
    missing = cli("notice", "status", "nope")
    assert missing.returncode == 2 and "没有编号" in missing.stderr
    bad = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", "everyone")
    assert bad.returncode == 2 and "受众" in bad.stderr
    for half in ("all:", "merchants:"):  # were taken as all, and as every merchant
        cut = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", half)
        assert cut.returncode == 2 and "冒号后缺少内容" in cut.stderr, half
    nobody = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", "merchants:suspended")
    assert nobody.returncode == 2 and "没有符合条件的接收者" in nobody.stderr
    # A script's empty variables (merchants:$A,$B) were every merchant; a status as merchants list shows it was refused.
    empty = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", "merchants:,")
    assert empty.returncode == 2 and "商家状态不能为空" in empty.stderr and "active（已生效）" in empty.stderr
    unknown = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", "merchants:nope")
    assert unknown.returncode == 2 and "未知的商家状态：nope，可选：" in unknown.stderr
    by_label = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", "merchants:已暂停")
    assert by_label.returncode == 2 and "没有符合条件的接收者" in by_label.stderr  # read as suspended, as above
    # The same limits as the console's, wherever a notice is written.
    long_title = cli("notice", "send", "--category", "admin", "--title", "长" * 65, "--body", "b", "--audience", f"openids:{ids}")
    assert long_title.returncode == 2 and "标题最多 64 个字" in long_title.stderr
    ids.write_text("o-c1\nbad id with space\n")
    malformed = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{ids}")
    assert malformed.returncode == 2 and "'bad id with space'" in malformed.stderr
    ids.write_bytes(b"\xff\xfe\n")
    not_utf8 = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{ids}")
    assert not_utf8.returncode == 2 and "不是 UTF-8" in not_utf8.stderr and "Traceback" not in not_utf8.stderr
    ids.write_text("\ufeffo-c1\no-c2\n", encoding="utf-8")  # as Windows Notepad saves it
    bom = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{ids}")
    assert bom.returncode == 0, bom.stderr
    # Why a file could not be read, in Chinese (the system's English ended the sentence).
    for where, why in ((ids.parent / "missing.txt", "文件或目录不存在"), (ids.parent, "这是一个目录")):
        unreadable = cli("notice", "send", "--category", "admin", "--title", "t", "--body", "b", "--audience", f"openids:{where}")
        assert unreadable.returncode == 2 and why in unreadable.stderr, unreadable.stderr
        assert "No such file" not in unreadable.stderr and "Is a directory" not in unreadable.stderr
    # A reader that goes away (`| head`) ends the command quietly.
    piped = subprocess.run(f"'{BIN}' notice status {notice_id} --json | true", shell=True, env=clean_env(**env),
                           capture_output=True, text=True, timeout=60)
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr

    # Reasons are explained in Chinese beside their codes.
    ids.write_text("o-c1\no-never-wrote\n")
    await svc.runtime.preferences.set("o-c1", "service", False)
    skipped = cli("notice", "send", "--category", "service", "--title", "维护", "--body", "今晚维护", "--audience", f"openids:{ids}")
    await run_worker(svc)
    shown = cli("notice", "status", skipped.stdout.strip())
    assert shown.returncode == 0, shown.stderr
    shown = shown.stdout
    assert "用户已退订该类通知（opted_out） 1" in shown and "（no_channel） 1" in shown and "未见其关注公众号" in shown
    # Not every failure has a WeChat code: the line says so (it listed "interrupted" as one).
    ids.write_text("o-c2\n")
    # The category by its Chinese name too, as chat takes it (退订 服务公告).
    cut = cli("notice", "send", "--category", "服务公告", "--title", "维护", "--body", "今晚维护", "--audience", f"openids:{ids}")
    assert (await svc.runtime.notices.get(cut.stdout.strip())).category == "service"
    # Those who accepted a version, as the console offers them (曾同意协议的用户).
    await svc.wechat.ask("o-agreed", "同意")
    agreed = cli("notice", "send", "--category", "other", "--title", "告知", "--body", "正文", "--audience", "consented")
    assert agreed.returncode == 0, agreed.stderr
    assert (await svc.runtime.notices.get(agreed.stdout.strip())).audience == {"type": "consented_any_version"}
    assert "o-agreed" in await svc.runtime.deliveries.openids(agreed.stdout.strip(), ("pending", "sent", "skipped", "failed"))
    await svc.runtime.broadcasts.record_outcomes(cut.stdout.strip(), {"o-c2": {"status": "failed", "reason": "interrupted"}},
                                                 svc.runtime.clock())
    shown = cli("notice", "status", cut.stdout.strip()).stdout
    assert "失败原因（微信错误码或其他原因）：发送中断" in shown and "（interrupted） 1" in shown, shown


async def test_an_openids_file_with_bad_lines_names_them_by_number(make_service, backing, tmp_path):
    # The refusal quoted bad entries without saying where they were: in a file of
    # thousands, the admin had to search for each. Nothing is sent nor stored.
    from tests.test_cli import clean_env

    svc = await make_service()
    env = clean_env(MONGODB_URI=backing.database_uri(svc.runtime.db.name), REDIS_URL=backing.redis_url)
    ids = tmp_path / "ids.txt"

    def send_to_file():
        return subprocess.run([str(BIN), "notice", "send", "--category", "admin", "--title", "t", "--body", "b",
                               "--audience", f"openids:{ids}"], env=env, capture_output=True, text=True, timeout=60)

    # Line 3 is blank (counted, as an editor counts it); lines 2, 4 and 6 are bad.
    ids.write_text("o-ok1\no bad\n\no-ok2,o-ok3\no-ok4\n用户甲\n", encoding="utf-8")
    refused = send_to_file()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"openid 文件 {ids} 中有 3 行不是有效的 openid" in refused.stderr, refused.stderr
    assert "第 2 行 'o bad'、第 4 行 'o-ok2,o-ok3'、第 6 行 '用户甲'" in refused.stderr, refused.stderr
    # Many bad lines: the first few, and how many there are.
    ids.write_text("".join(f"bad {i}\n" for i in range(1, 41)), encoding="utf-8")
    many = send_to_file()
    assert many.returncode == 2 and "第 1 行 'bad 1'" in many.stderr and "第 5 行 'bad 5'" in many.stderr
    assert "第 6 行" not in many.stderr and "中有 40 行" in many.stderr and "只列出前 5 处" in many.stderr, many.stderr
    assert await svc.runtime.db["notices"].count_documents({}) == 0
    assert await svc.runtime.audit.recent(action="notice_send") == []


async def test_notice_controls_repeated_are_no_error_impossible_ones_are(make_service, emulator, backing):
    # Pausing a paused notice, resuming one that runs, cancelling a cancelled one
    # exited 2 as errors: the admin's wish already holds. Resuming a cancelled or
    # finished notice, or pausing a finished one, stays an error.
    from tests.test_cli import clean_env

    svc = await make_service()
    await active_users(svc, "o-k1", "o-k2")
    env = clean_env(MONGODB_URI=backing.database_uri(svc.runtime.db.name), REDIS_URL=backing.redis_url)

    def cli(*args):
        return subprocess.run([str(BIN), "notice", *args], env=env, capture_output=True, text=True, timeout=60)

    queued = await send(svc, audience={"type": "openids", "openids": ["o-k1", "o-k2"]})
    running = cli("resume", queued)
    assert running.returncode == 0, running.stderr
    assert f"通知 {queued} 没有暂停（当前状态为“排队中”），无需继续发送。" in running.stdout
    assert cli("pause", queued).returncode == 0
    again = cli("pause", queued, "--by", "olga")
    assert again.returncode == 0, again.stderr
    assert f"通知 {queued} 已处于暂停状态，无需再次暂停。" in again.stdout
    assert len(await svc.runtime.audit.recent(action="notice_pause")) == 1  # a repeat changes nothing to audit
    assert cli("cancel", queued).returncode == 0
    cancelled_again = cli("cancel", queued)
    assert cancelled_again.returncode == 0 and f"通知 {queued} 已取消，无需再次取消。" in cancelled_again.stdout
    for action in ("resume", "pause"):
        refused = cli(action, queued)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert f"通知 {queued} 已取消，不能" in refused.stderr, refused.stderr
    assert "请重新发送一条通知" in cli("resume", queued).stderr

    finished = await send(svc, audience={"type": "openids", "openids": ["o-k1"]})
    await run_worker(svc)
    assert (await svc.runtime.notices.get(finished)).status == "done"
    for action, name in (("pause", "暂停"), ("resume", "继续发送"), ("cancel", "取消")):
        refused = cli(action, finished)
        assert refused.returncode == 2, (action, refused.stdout)
        assert f"通知 {finished} 已发送完毕（状态“已完成”），不能{name}。" in refused.stderr, refused.stderr


async def test_a_send_in_flight_when_cancelled_ends_sent_without_the_cancel_reason(svc):
    # Cancelling skips what is pending; a send already in flight then records
    # "sent". It was sent: no reason "cancelled" may stay on it.
    deliveries = svc.runtime.deliveries
    at = svc.runtime.clock()
    await deliveries.create_pending("n-flight", ["o-1", "o-2"], at)
    assert await deliveries.skip_pending("n-flight", "cancelled", at) == 2
    await deliveries.finish_many("n-flight", {"o-1": {"status": "sent", "channel": "custom"}}, at)
    await deliveries.finish("n-flight", "o-2", "failed", at, errcode=43004)
    [one] = await deliveries.for_user("o-1")
    [two] = await deliveries.for_user("o-2")
    assert (one.status, one.reason) == ("sent", None)
    assert (two.status, two.reason, two.errcode) == ("failed", None, 43004)


async def test_the_notice_id_is_known_before_its_recipients_are_recorded(svc):
    # `notice send` prints the id (and audits) from on_created: an admin who
    # stops waiting during a long planning still knows what is being sent.
    seen = []

    async def on_created(notice, audience_size):
        seen.append((notice.id, len(await svc.runtime.deliveries.openids(notice.id, ("pending",)))))

    openids = [f"o-early{i:03d}" for i in range(300)]
    notice = await send(svc, audience={"type": "openids", "openids": openids}, on_created=on_created)
    assert seen == [(notice, 0)]
    assert len(await svc.runtime.deliveries.openids(notice, ("pending", "sent", "skipped", "failed"))) == 300


async def test_a_small_notice_goes_ahead_of_a_large_broadcast(svc):
    # A security notice to one user waited behind every batch of a broadcast to
    # 23,000 (minutes at the default rate).
    rt = svc.runtime
    crowd = [f"o-crowd{i:04d}" for i in range(1001)]
    large = await send(svc, audience={"type": "openids", "openids": crowd})
    small = await send(svc, category="security", title="账号异常登录", audience={"type": "openids", "openids": ["o-urgent"]})
    await rt.queue.ensure_group()
    [(ref, notice_id, openids)] = await rt.queue.read("test-reader", count=1, block_ms=10)
    assert (notice_id, openids) == (small, ["o-urgent"])
    await rt.queue.ack(ref)
    [(ref, notice_id, _)] = await rt.queue.read("test-reader", count=1, block_ms=10)
    assert notice_id == large
    await rt.queue.ack(ref)


async def test_a_small_notice_is_done_while_a_large_broadcast_is_still_queued(make_service, emulator):
    # Its completion waited for the whole backlog (both streams) to drain.
    svc = await make_service(notice_rate=5)
    rt = svc.runtime
    await active_users(svc, "o-soon")
    crowd = [f"o-many{i:04d}" for i in range(1001)]
    large = await send(svc, audience={"type": "openids", "openids": crowd})
    small = await send(svc, category="security", title="账号异常登录", audience={"type": "openids", "openids": ["o-soon"]})
    stop = asyncio.Event()
    worker = asyncio.create_task(rt.worker(concurrency=2).run(stop))
    try:
        deadline = time.monotonic() + 15
        while (await rt.notices.get(small)).status != "done" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert (await rt.notices.get(small)).status == "done"
        assert (await rt.notices.get(large)).status in ("queued", "sending")
    finally:
        stop.set()
        await worker


async def test_progress_tells_when_no_worker_runs_to_send_the_job(make_service):
    """A job queued while no worker runs (the service stopped, `serve --no-worker`
    alone) would show 排队中 for ever: the report says why; a running worker
    is counted, one that stopped is not."""
    svc = await make_service()
    rt = svc.runtime
    await active_users(svc, "o-nw-1", "o-nw-2")
    notice_id = await send(svc, audience={"type": "openids", "openids": ["o-nw-1", "o-nw-2"]})
    idle = await rt.broadcasts.progress(notice_id)
    assert idle.workers == 0 and idle.waiting_for_worker
    assert idle.to_json()["waiting_for_worker"] is True

    stop = asyncio.Event()
    await rt.notices.transition(notice_id, ("queued",), "paused", rt.clock())  # kept for the count below
    worker = asyncio.create_task(rt.worker(concurrency=1).run(stop))
    try:
        for _ in range(50):
            running = await rt.broadcasts.progress(notice_id)
            if running.workers:
                break
            await asyncio.sleep(0.1)
        assert running.workers == 1 and not running.waiting_for_worker
    finally:
        stop.set()
        await worker
    after = await rt.broadcasts.progress(notice_id)
    assert after.workers == 0
    assert not after.waiting_for_worker  # paused: waiting for an admin, not for a worker
    await rt.broadcasts.resume(notice_id)
    assert (await rt.broadcasts.progress(notice_id)).waiting_for_worker
    await run_worker(svc)
    done = await rt.broadcasts.progress(notice_id)
    assert done.notice.status == "done" and done.sent == 2 and not done.waiting_for_worker


async def test_no_eta_while_no_worker_sends_the_job(make_service, emulator):
    # With the worker gone, the last seconds' speed gave an ETA ("预计剩余 25 秒")
    # beside "当前没有运行中的发送进程".
    svc = await make_service(notice_rate=50)
    notice, _openids, stop, worker = await sending(svc, "o-eta", 200)
    while len(await emulator.messages()) < 40:
        await asyncio.sleep(0.1)
    stop.set()
    await worker
    progress = await svc.runtime.broadcasts.progress(notice)
    assert progress.workers == 0 and progress.pending > 0, progress.to_json()
    assert progress.eta_seconds is None and progress.to_json()["eta_seconds"] is None


async def test_a_worker_whose_queue_redis_lost_says_so_once_and_goes_on(svc, emulator, caplog):
    # After a FLUSHALL each of a worker's readers logged "failed on a batch"
    # with NOGROUP's traceback (then the same line once per reader).
    import logging

    from tests.test_faults import eventually

    caplog.set_level(logging.WARNING, logger="bot.delivery_worker")
    stop = asyncio.Event()
    worker = asyncio.create_task(svc.runtime.worker(concurrency=4).run(stop))
    try:
        await asyncio.sleep(0.3)  # the readers wait on the streams
        queue = svc.runtime.queue
        await svc.runtime.redis.delete(*queue._streams.values())
        await asyncio.sleep(1.5)
        await active_users(svc, "o-after-wipe")
        notice = await send(svc, audience={"type": "openids", "openids": ["o-after-wipe"]})
        assert (await eventually(lambda: done_progress(svc, notice), 20)).sent == 1
    finally:
        stop.set()
        await worker
    said = [r for r in caplog.records if "lost the notice queue" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
