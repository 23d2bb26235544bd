"""The broadcast worker: takes batches from the work queue and sends them.

Several workers (threads of asyncio tasks in several processes) share the
queue. For each recipient a worker first claims the delivery record
(pending -> sending), then applies the rules (:func:`bot.notices.receives`,
:func:`bot.notices.choose_channel`), waits for the shared rate limit, sends,
and records the outcome. Temporary WeChat errors (-1 busy, 45009 rate limit,
network) are retried with backoff; permanent ones (43004 unsubscribed, 40003
bad openid …) are recorded and not retried.

Crash safety: a batch is acknowledged only after each of its recipients is
finished, so a dead worker's batches are taken over by another (XAUTOCLAIM,
after 5 idle seconds) and their pending recipients are sent. The at-most
window: the recipients the dead worker had claimed but not finished (at most
one per sending task, ``concurrency`` per worker) were in flight; whether
WeChat got them is unknown, so they are recorded ``failed`` with the reason
``interrupted`` and not sent again. Nobody gets a second copy; those few may
get none (the progress report lists them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import os
import socket
from typing import Callable

from bot.notices import Broadcasts, choose_channel, notice_text, receives, template_data
from bot.textsplit import split_text
from bot import texts
from storage.deliveries import Deliveries
from storage.followers import Followers
from storage.mongo import MongoUnavailable
from storage.notices import Notice, Notices
from storage.preferences import Preferences
from storage.rate_limit import SharedRateLimit
from storage.redis_store import RedisUnavailable
from storage.work_queue import RECLAIM_IDLE_MS, WorkQueue
from wechat.api import WeChatAPI, WeChatAPIError

log = logging.getLogger(__name__)

RETRYABLE = (-1, -2, 45009)
MAX_ATTEMPTS = 5
BACKOFF = 0.5
#: A record claimed longer ago than this and never finished, met in a batch
#: taken over from a dead worker, was in flight when it died (a little under
#: the queue's reclaim time; live workers refresh their claims while retrying).
STALE_CLAIM = dt.timedelta(milliseconds=RECLAIM_IDLE_MS - 1500)
#: Safety net: records left "sending" this long are queued again by upkeep,
#: so that a batch lost with Redis still ends (as interrupted).
ABANDONED_CLAIM = dt.timedelta(seconds=60)


@dataclasses.dataclass
class WorkerDeps:
    broadcasts: Broadcasts
    notices: Notices
    deliveries: Deliveries
    followers: Followers
    preferences: Preferences
    queue: WorkQueue
    limiter: SharedRateLimit
    wechat: WeChatAPI | None
    templates: dict
    clock: Callable[[], dt.datetime]


class DeliveryWorker:
    """One worker: ``concurrency`` tasks reading the queue, plus upkeep."""

    def __init__(self, deps: WorkerDeps, concurrency: int = 8, name: str | None = None) -> None:
        self.deps = deps
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._notice_cache: dict[str, tuple[float, Notice]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; Redis or MongoDB outages are waited out."""
        tasks = [asyncio.create_task(self._reader(stop, i)) for i in range(self.concurrency)]
        tasks.append(asyncio.create_task(self._upkeep(stop)))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Process until the queue is empty (tests and the CLI's ``--wait``)."""
        stop = asyncio.Event()
        runner = asyncio.create_task(self.run(stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self.deps.queue.ensure_group()
            while loop.time() < deadline:
                await asyncio.sleep(0.1)
                if await self.deps.queue.backlog() == 0:
                    break
        finally:
            stop.set()
            await runner
        await self._replan()  # marks finished jobs done, as upkeep would within a second

    # -- loops --------------------------------------------------------------------

    async def _reader(self, stop: asyncio.Event, index: int) -> None:
        consumer = f"{self.name}-{index}"
        while not stop.is_set():
            try:
                await self.deps.queue.ensure_group()
                entries = await self.deps.queue.read(consumer, count=1, block_ms=500)
                for entry_id, notice_id, openids in entries:
                    await self._process(consumer, entry_id, notice_id, openids)
            except asyncio.CancelledError:
                raise
            except (*RedisUnavailable, *MongoUnavailable) as exc:
                log.warning("worker %s waiting for storage: %s", consumer, exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("worker %s failed on a batch", consumer)
                await asyncio.sleep(1.0)

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Take over dead workers' batches; plan notices a crash left unplanned."""
        consumer = f"{self.name}-upkeep"
        while not stop.is_set():
            try:
                await self.deps.queue.ensure_group()
                for entry_id, notice_id, openids in await self.deps.queue.reclaim(consumer, count=10):
                    log.warning("taking over batch %s of notice %s", entry_id, notice_id)
                    await self._process(consumer, entry_id, notice_id, openids)
                await self._replan()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - upkeep must keep going
                log.warning("worker upkeep: %s", exc)
            await asyncio.sleep(RECLAIM_IDLE_MS / 5000)

    async def _replan(self) -> None:
        for notice in await self.deps.notices.active():
            if notice.status == "queued" and not notice.planned:
                age = self.deps.clock() - (notice.created_at or self.deps.clock())
                if age > dt.timedelta(seconds=30):  # its creator died while planning
                    await self.deps.broadcasts.plan(notice.id)
            elif notice.status == "sending" and await self.deps.queue.backlog() == 0:
                # Nothing queued but recipients left (e.g. Redis lost entries): queue them again.
                stale = self.deps.clock() - ABANDONED_CLAIM
                if await self.deps.broadcasts.enqueue_pending(notice, stale_before=stale) == 0:
                    await self.deps.broadcasts.finish_if_complete(notice.id)

    # -- one batch ----------------------------------------------------------------------

    async def _process(self, consumer: str, entry_id: str, notice_id: str, openids: list[str]) -> None:
        deps = self.deps
        notice = await deps.notices.get(notice_id)
        if notice is None or notice.status in ("cancelled", "done"):
            await deps.queue.ack(entry_id)
            return
        followers = await deps.followers.many(openids)
        opted_out = await deps.preferences.opted_out_many(openids)
        stale_before = deps.clock() - STALE_CLAIM

        async def heartbeat(openid: str | None = None) -> None:
            await deps.queue.touch(consumer, entry_id)
            if openid is not None:
                await deps.deliveries.refresh_claim(notice_id, openid, deps.clock())

        unresolved = False
        if notice.channel == "mass":
            await self._mass(notice, openids, followers, opted_out, stale_before, heartbeat)
        else:
            for openid in openids:
                current = await self._current(notice_id)
                if current.status != "sending":
                    break  # paused or cancelled: the rest stays pending
                if not await deps.deliveries.claim(notice_id, openid, deps.clock()):
                    # Finished already, or claimed: a stale claim was in flight in a
                    # dead worker; a fresh one may belong to a live worker, so this
                    # batch comes round again until it is finished.
                    if await deps.deliveries.status_of(notice_id, openid) == "sending":
                        await deps.deliveries.interrupt_stale(notice_id, openid, stale_before, deps.clock())
                        unresolved |= await deps.deliveries.status_of(notice_id, openid) == "sending"
                    continue
                await self._deliver(current, openid, followers.get(openid), opted_out.get(openid, set()), heartbeat)
                await heartbeat()
        if await deps.queue.backlog() <= 1:
            # Perhaps the last batch: check completion (upkeep catches a race).
            await deps.broadcasts.finish_if_complete(notice_id)
        if not unresolved:
            await deps.queue.ack(entry_id)

    async def _current(self, notice_id: str) -> Notice:
        """The notice, re-read at most twice a second (to notice pause and cancel)."""
        loop = asyncio.get_running_loop()
        cached = self._notice_cache.get(notice_id)
        if cached is None or loop.time() - cached[0] > 0.5:
            notice = await self.deps.notices.get(notice_id)
            self._notice_cache[notice_id] = (loop.time(), notice)
            return notice
        return cached[1]

    async def _deliver(self, notice: Notice, openid: str, follower, opted_out: set[str], heartbeat) -> None:
        deps = self.deps
        now = deps.clock()
        finish = deps.deliveries.finish
        if not receives(notice.category, notice.important, opted_out):
            await finish(notice.id, openid, "skipped", now, reason="opted_out")
            return
        if follower is not None and not follower.subscribed:
            await finish(notice.id, openid, "skipped", now, reason="unsubscribed")
            return
        last = follower.last_interaction_at if follower else None
        channel = choose_channel(notice.category, deps.templates, last, now)
        if channel is None:
            await finish(notice.id, openid, "skipped", now, reason="outside_48h")
            return
        if deps.wechat is None:
            await finish(notice.id, openid, "failed", now, channel=channel, reason="wechat_not_configured")
            return
        try:
            msgid = await self._send(notice, openid, channel, heartbeat)
        except WeChatAPIError as exc:
            if exc.code == 45015:
                await finish(notice.id, openid, "skipped", deps.clock(), channel=channel, reason="outside_48h", errcode=45015)
            elif exc.code == 43004:
                await finish(notice.id, openid, "failed", deps.clock(), channel=channel, reason="unsubscribed", errcode=43004)
            else:
                await finish(notice.id, openid, "failed", deps.clock(), channel=channel, reason=exc.message[:200], errcode=exc.code)
            return
        await finish(notice.id, openid, "sent", deps.clock(), channel=channel, template_msgid=msgid)

    async def _send(self, notice: Notice, openid: str, channel: str, heartbeat) -> int | None:
        """Send with retries on temporary errors; the template msgid, if any."""
        deps = self.deps
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                if channel == "template":
                    spec = deps.templates[notice.category]
                    await deps.limiter.acquire()
                    result = await deps.wechat.message.send_template(
                        openid, spec["template_id"], template_data(notice, spec, deps.clock()), url=spec.get("url")
                    )
                    return int(result.get("msgid")) if isinstance(result, dict) and result.get("msgid") else None
                for piece in split_text(notice_text(notice), suffix=texts.CONTINUED):
                    await deps.limiter.acquire()
                    await deps.wechat.message.send_text(openid, piece)
                return None
            except WeChatAPIError as exc:
                if exc.code not in RETRYABLE or attempt == MAX_ATTEMPTS:
                    raise
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
                await heartbeat(openid)  # still alive: keep the batch and the claim ours
        return None

    async def _mass(self, notice: Notice, openids, followers, opted_out, stale_before, heartbeat) -> None:
        deps = self.deps
        now = deps.clock()
        targets = []
        for openid in openids:
            if not await deps.deliveries.claim(notice.id, openid, now):
                await deps.deliveries.interrupt_stale(notice.id, openid, stale_before, now)
                continue
            follower = followers.get(openid)
            if not receives(notice.category, notice.important, opted_out.get(openid, set())):
                await deps.deliveries.finish(notice.id, openid, "skipped", now, reason="opted_out")
            elif follower is not None and not follower.subscribed:
                await deps.deliveries.finish(notice.id, openid, "skipped", now, reason="unsubscribed")
            else:
                targets.append(openid)
        if not targets:
            return
        if len(targets) == 1:  # WeChat's mass send needs at least two recipients
            await self._deliver(notice, targets[0], followers.get(targets[0]), set(), heartbeat)
            return
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                try:
                    await deps.limiter.acquire()
                    await deps.wechat.message.send_mass_text(targets, notice_text(notice), is_to_all=False)
                    break
                except WeChatAPIError as exc:
                    if exc.code not in RETRYABLE or attempt == MAX_ATTEMPTS:
                        raise
                    await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
                    await heartbeat()
        except WeChatAPIError as exc:
            for openid in targets:
                await deps.deliveries.finish(notice.id, openid, "failed", deps.clock(), channel="mass", errcode=exc.code, reason=exc.message[:200])
            return
        for openid in targets:
            await deps.deliveries.finish(notice.id, openid, "sent", deps.clock(), channel="mass")
