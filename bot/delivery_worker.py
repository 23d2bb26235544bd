"""The broadcast worker: takes batches from the work queue and sends them.

Several workers (tasks of asyncio loops in several processes) share the
queue. A worker claims a batch's recipients at once in Redis (under its
token, :meth:`storage.delivery_journal.DeliveryJournal.claim`) and reads
which of them are still pending in MongoDB, then takes them a window at a
time: applies the rules to each (:func:`bot.notices.receives`,
:func:`bot.notices.choose_channel`), notes those it will send as attempted
in the Redis journal (:mod:`storage.delivery_journal`), waits once for the
window's share of the shared rate limit, sends them concurrently (on the
event loop: :mod:`wechat.async_transport`) and notes their outcomes in the
journal; the batch's outcomes reach MongoDB in one write per distinct
outcome. Temporary WeChat errors (-1 busy, 45009 rate limit, a network
failure) are retried with backoff; permanent ones (43004 unsubscribed, 40003
bad openid …) are recorded and not retried, and so is a send that got no
answer in time (-4): WeChat may have delivered it.

Crash safety: a batch is acknowledged only after each of its recipients is
finished, so a dead worker's batches are taken over by another (XAUTOCLAIM,
after 5 idle seconds). The journal tells the taker what became of each
recipient the dead worker had claimed: outcomes it noted are recorded as
they were, recipients it never tried are sent. The at-most window: a
recipient marked attempted with no outcome was in flight (at most one
window, :data:`WINDOW` recipients, per sending task: ``concurrency`` ×
``WINDOW`` per worker); whether WeChat got it is unknown, so it is recorded
``failed`` with the reason ``interrupted`` and not sent again. Nobody gets a
second copy; those few may get none (the progress report lists them).

A worker told to stop (SIGTERM, Ctrl-C) is no crash: each sending task
finishes the window it has in flight, within :data:`STOP_GRACE` seconds, and
leaves the rest of its batch, unacknowledged, to the next worker. Only sends
still unanswered after that are cut off and recorded as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import time
import uuid
from typing import AsyncIterator, Awaitable, Callable

from bot.notices import SMALL_AUDIENCE, Broadcasts, choose_channel, notice_text, receives, template_data
from bot.textsplit import split_text
from bot import texts
from storage.activity import Activity
from storage.deliveries import UNFINISHED, Deliveries
from storage.delivery_journal import ATTEMPT, BUSY, DeliveryJournal
from storage.followers import Followers
from storage.identities import Identities
from storage.mongo import MongoUnavailable, epoch_ms
from storage.notices import Notice, Notices
from storage.preferences import Preferences
from storage.rate_limit import SharedRateLimit
from storage.recent_opt_outs import RecentOptOuts
from storage.redis_store import RedisUnavailable
from storage.work_queue import RECLAIM_IDLE_MS, WorkQueue, queue_lost
from wechat.api import WeChatAPI, WeChatAPIError, retrying

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF = 0.5
#: A claim not refreshed for this long belongs to a dead worker and is taken
#: over (a little under the queue's reclaim time; live workers refresh their
#: claims every second).
STALE_CLAIM = dt.timedelta(milliseconds=RECLAIM_IDLE_MS - 1500)
#: Seconds a batch whose recipients another batch holds waits for them to be
#: finished before leaving its entry to come round again (after RECLAIM_IDLE_MS):
#: the same recipients are in two entries at once after a resume.
HOLDER_WAIT = 2.0
#: Seconds between a batch's heartbeats (well under STALE_CLAIM).
BEAT = 1.0
#: Outcomes reach MongoDB at the end of a batch, or sooner when a slow batch
#: has held them this many seconds (progress stays live at low rates).
FLUSH_EVERY = 0.5
#: Recipients of a batch sent at once (marked attempted together, their rate
#: paid in one wait): the most one sending task has in flight. Fewer at low
#: rates, so that paying for a window takes at most PAY_SECONDS and pause and
#: cancel take effect within about that.
WINDOW = 10
PAY_SECONDS = 0.25
#: Seconds a stopping worker gives the windows in flight to be answered
#: (inside ``serve``, while requests drain; see ``service.supervisor.STOP_WAIT``).
STOP_GRACE = 5.0
#: Seconds a sending task waits for Redis to take back in-flight marks of
#: recipients it could not send (:meth:`DeliveryWorker._attempt`).
UNMARK_WITHIN = 30.0


#: Seconds subtracted from a batch's read time when asking for the opt-outs made
#: since: hosts' clocks differ (an opt-out counted twice is harmless).
CLOCK_MARGIN = 5.0


@dataclasses.dataclass
class WorkerDeps:
    broadcasts: Broadcasts
    notices: Notices
    deliveries: Deliveries
    followers: Followers
    activity: Activity
    preferences: Preferences
    queue: WorkQueue
    journal: DeliveryJournal
    limiter: SharedRateLimit
    wechat: WeChatAPI | None
    templates: dict
    clock: Callable[[], dt.datetime]
    identities: Identities | None = None
    #: Opt-outs made since a batch was read (:mod:`storage.recent_opt_outs`).
    recent_opt_outs: RecentOptOuts | None = None


class DeliveryWorker:
    """One worker: ``concurrency`` tasks reading the queue, plus upkeep."""

    def __init__(self, deps: WorkerDeps, concurrency: int = 8, name: str | None = None) -> None:
        self.deps = deps
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._notice_cache: dict[str, tuple[float, Notice]] = {}
        self.window = max(1, min(WINDOW, int(deps.limiter.rate * PAY_SECONDS / concurrency)))
        self._stop = asyncio.Event()
        self._working: set[asyncio.Task] = set()  # readers working on a batch
        self._ending: set[asyncio.Task] = set()  # batches sent, their outcomes being written
        #: When the sending tasks found storage unreachable (logged once an outage, not per task and try).
        self._waiting_since: float | None = None
        self._queue_lost_said = -60.0  # when the lost queue was last said (once a minute, not once a reader)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; Redis or MongoDB outages are waited out.
        Then the sends in flight are given :data:`STOP_GRACE` seconds to finish."""
        self._stop = stop
        readers = [asyncio.create_task(self._reader(stop, i)) for i in range(self.concurrency)]
        tasks = [*readers, asyncio.create_task(self._upkeep(stop)), asyncio.create_task(self._present(stop))]
        try:
            await stop.wait()
            await self._finish_in_flight(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            while self._ending:  # a reader cut off may still have begun one
                ending = set(self._ending)
                for task in ending:
                    task.cancel()
                await asyncio.gather(*ending, return_exceptions=True)
                self._ending -= ending
            # This worker's consumers, if they hold nothing (else the next worker takes their entries over).
            own = [f"{self.name}-{i}" for i in range(self.concurrency)] + [f"{self.name}-upkeep"]
            with contextlib.suppress(*RedisUnavailable):
                await self.deps.queue.retire(own)
                await self.deps.queue.stopped(self.name)

    async def _finish_in_flight(self, tasks: list[asyncio.Task]) -> None:
        """Give the batches being sent, and their ends (begun as late as the
        sends a stop cut short finish), :data:`STOP_GRACE` seconds in all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        told = False
        while True:
            busy = {task for task in tasks if task in self._working} | self._ending  # the others only wait for work
            if not busy:
                return
            if not told:
                log.info("worker %s stopping: the sends in flight finish first", self.name)
                told = True
            if loop.time() >= deadline:
                log.warning("worker %s: %d sending tasks cut off after %.0f s", self.name, len(busy), STOP_GRACE)
                return
            await asyncio.wait(busy, timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)

    @contextlib.contextmanager
    def _at_work(self):
        """This task works on a batch: a stop lets it finish its sends in flight."""
        task = asyncio.current_task()
        self._working.add(task)
        try:
            yield
        finally:
            self._working.discard(task)

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
        ending: asyncio.Task | None = None
        while not stop.is_set():
            try:
                await self.deps.queue.ensure_group()
                entries = await self.deps.queue.read(consumer, count=1, block_ms=500)
                if stop.is_set():
                    return  # read while stopping: left unacknowledged, taken over by the next worker
                if len(entries) > 1 and ending is not None:
                    # Not while the second entry waits its turn: only the first one's end touches it.
                    await ending
                    ending = None
                with self._at_work():
                    for i, (entry_id, notice_id, openids) in enumerate(entries):
                        # Entries read together (one of each stream, rarely) are all kept
                        # ours while the first is worked on: else upkeep takes the waiting one over.
                        later = [ref for ref, _, _ in entries[i + 1:]]
                        end = self._end_soon(await self._process(consumer, entry_id, notice_id, openids, keep=later))
                        self._storage_back()  # a batch went through: both stores answer
                        # The previous batch's end ran while this one was sent: waited
                        # for now, so no more than two batches' outcomes wait in memory.
                        if ending is not None:
                            await ending
                        ending = end
            except asyncio.CancelledError:
                raise
            except (*RedisUnavailable, *MongoUnavailable) as exc:
                self._storage_down(exc)
                await asyncio.sleep(1.0)
            except Exception as exc:  # noqa: BLE001 - the worker keeps going
                if queue_lost(exc):  # made again next turn; upkeep plans what MongoDB says is unsent
                    if time.monotonic() - self._queue_lost_said >= 60:
                        self._queue_lost_said = time.monotonic()
                        log.warning("worker %s: Redis lost the notice queue (FLUSHALL, or a restart without its files); "
                                    "it is made again and unfinished notices are planned again", self.name)
                else:
                    log.exception("worker %s failed on a batch", consumer)
                await asyncio.sleep(1.0)

    def _storage_down(self, exc: BaseException) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
            log.warning("worker %s waiting for storage: %s", self.name, exc)
        else:
            log.debug("worker %s still waiting for storage: %s", self.name, exc)

    def _storage_back(self) -> None:
        if self._waiting_since is not None:
            log.warning("worker %s: storage answers again after %.0f s", self.name, time.monotonic() - self._waiting_since)
            self._waiting_since = None

    def _end_soon(self, end: Awaitable[None] | None) -> asyncio.Task | None:
        """Run a batch's end (:meth:`_end`) beside the next batch."""
        if end is None:
            return None
        task = asyncio.create_task(end)
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)
        return task

    async def _upkeep(self, stop: asyncio.Event) -> None:
        """Take over dead workers' batches; plan notices a crash left unplanned."""
        consumer = f"{self.name}-upkeep"
        while not stop.is_set():
            try:
                await self.deps.queue.ensure_group()
                await self.deps.queue.retire()  # consumers of workers killed long ago
                for entry_id, notice_id, openids in await self.deps.queue.reclaim(consumer, count=10):
                    if stop.is_set():
                        break  # left to the next worker, as a reader leaves its batch
                    log.warning("taking over batch %s of notice %s", entry_id, notice_id)
                    with self._at_work():
                        end = await self._process(consumer, entry_id, notice_id, openids)
                        if end is not None:
                            await end
                await self._replan()
            except asyncio.CancelledError:
                raise
            except (*RedisUnavailable, *MongoUnavailable) as exc:
                self._storage_down(exc)
            except Exception as exc:  # noqa: BLE001 - upkeep must keep going
                log.warning("worker upkeep: %s", exc)
            await asyncio.sleep(RECLAIM_IDLE_MS / 5000)

    async def _present(self, stop: asyncio.Event) -> None:
        """Say every second that this worker runs (progress reports tell an
        admin when a queued job has no worker to send it)."""
        while not stop.is_set():
            try:
                await self.deps.queue.running(self.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an outage is waited out, as the readers do
                log.debug("worker %s presence: %s", self.name, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def _replan(self) -> None:
        for notice_id in await self.deps.broadcasts.resume_after_quota():
            log.info("notice %s resumed: a new day of WeChat's call quota", notice_id)
        for notice in await self.deps.notices.active():
            if not notice.planned:
                await self.deps.broadcasts.plan(notice.id)  # if its planner died
            elif await self.deps.queue.backlog(of="u" if notice.total <= SMALL_AUDIENCE else None) == 0:
                # Nothing queued but recipients left (e.g. Redis lost entries): queue them again.
                # A small notice's own stream is enough: broadcasts queued beside it do not hold it.
                # So also for a cancelled job whose claimed recipients lost their batch
                # (a crash, or Redis failing as it released them): a worker records them.
                if await self.deps.broadcasts.enqueue_pending(notice) == 0:
                    if notice.status == "cancelled":
                        await self.deps.notices.settle(notice.id, self.deps.clock())
                    await self.deps.broadcasts.finish_if_complete(notice.id)

    # -- one batch ----------------------------------------------------------------------

    async def _process(self, consumer: str, entry_id: str, notice_id: str, openids: list[str],
                       keep: list[str] | None = None) -> Awaitable[None] | None:
        """Claim and send a batch; returns its end (:meth:`_end`), to be awaited:
        a reader lets it run while it sends the next batch."""
        deps = self.deps
        notice = await deps.notices.get(notice_id)
        if notice is None or notice.status == "done":
            await deps.queue.ack(entry_id)
            return None
        # A cancelled job's batch still goes through the claims: a dead worker
        # may have sent some of it (its journal says which); the rest is
        # recorded as skipped (cancelled) by _send_batch.
        notice = await deps.broadcasts.start(notice)
        # What _send_batch checks before each window: this fresher read, not a
        # cached "sending" from before a cancel.
        self._notice_cache[notice_id] = (asyncio.get_running_loop().time(), notice)
        batch = _Batch(self, consumer, entry_id, notice_id, token=uuid.uuid4().hex, keep=keep)
        async with batch.kept_alive():
            todo, about = await self._claim(batch, openids)
            if todo:
                await self._send_batch(batch, notice, todo, about)
        return self._end(batch)

    async def _end(self, batch: "_Batch") -> None:
        """Write a sent batch's outcomes to MongoDB, then acknowledge its entry
        (unless some recipients are still another batch's, or left).

        Run beside the reader's next batch, so it handles its own failures as
        the reader would: a storage outage leaves the entry unacknowledged and
        the outcomes in the journal, for the next worker to record."""
        try:
            async with batch.kept_alive():
                await batch.flush()
            await self._acknowledge(batch)
        except asyncio.CancelledError:
            raise
        except (*RedisUnavailable, *MongoUnavailable) as exc:
            log.warning("worker %s could not finish batch %s: %s", batch.consumer, batch.entry_id, exc)
        except Exception:
            log.exception("worker %s failed finishing batch %s of notice %s", batch.consumer, batch.entry_id, batch.notice_id)

    async def _acknowledge(self, batch: "_Batch") -> None:
        deps, notice_id, entry_id = self.deps, batch.notice_id, batch.entry_id
        # Recipients a live worker holds: the batch comes round again until they are finished.
        unresolved = bool(batch.busy) and not await self._finished_soon(notice_id, batch.busy)
        if await deps.queue.backlog(of=entry_id) <= 1:
            # Perhaps the last batch (of its stream: a small notice is done long
            # before the broadcasts queued beside it): check completion (upkeep catches a race).
            await deps.broadcasts.finish_if_complete(notice_id)
        if not unresolved and not batch.left and not batch.lost:
            await deps.queue.ack(entry_id)

    async def _finished_soon(self, notice_id: str, openids: list[str]) -> bool:
        """Whether ``openids``, held by another batch, are all finished within
        :data:`HOLDER_WAIT` seconds (this worker not stopping meanwhile)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLDER_WAIT
        while True:
            statuses = await self.deps.deliveries.statuses(notice_id, openids)
            if all(statuses.get(openid) not in UNFINISHED for openid in openids):
                return True
            if loop.time() >= deadline or self._stop.is_set():
                return False
            await asyncio.sleep(0.25)

    async def _about(self, openids: list[str]) -> "_About":
        """What the rules need to know of these recipients, read at once."""
        deps = self.deps
        read_at = time.time()
        followers, seen, opted_out = await asyncio.gather(
            deps.followers.many(openids), deps.activity.last_seen_many(openids), deps.preferences.opted_out_many(openids)
        )
        if deps.identities is not None:
            # Mini-program users who follow nobody's account: no template either
            # (WeChat refuses another app's openid); their inbox shows the notice.
            unknown = [o for o in openids if o not in followers]
            for openid in await deps.identities.unlinked(unknown):
                followers[openid] = _MINI_PROGRAM_ONLY
        return _About(followers, seen, opted_out, read_at)

    async def _send_batch(self, batch: "_Batch", notice: Notice, todo: list[str], about: "_About") -> None:
        deps = self.deps
        followers, seen, opted_out = about.followers, about.seen, about.opted_out
        # A mass send is one call for the whole batch: paused or cancelled is checked once, before it.
        step = max(len(todo), 1) if notice.channel == "mass" else self.window
        for start in range(0, len(todo), step):
            current = await self._current(notice.id)
            if current.status == "cancelled":
                # Only those this batch still holds: a worker that stalled may
                # have lost some to another, which sent them.
                held = await deps.journal.held(notice.id, todo[start:], batch.token)
                batch.lost = batch.lost or len(held) < len(todo) - start
                batch.outcomes.update({o: {"status": "skipped", "reason": "cancelled"} for o in held})
                break
            if current.status != "sending" or self._stop.is_set():
                # Paused: the rest waits as pending. Stopping: the next worker
                # takes the entry over (it stays unacknowledged) and sends the rest.
                await deps.journal.release(notice.id, todo[start:], batch.token)
                batch.left = self._stop.is_set()
                break
            window = todo[start : start + step]
            if not current.important and deps.recent_opt_outs is not None:
                # Opted out since the batch was read (seconds ago, or more while paused).
                for openid, categories in (await deps.recent_opt_outs.since(about.read_at - CLOCK_MARGIN)).items():
                    opted_out[openid] = opted_out.get(openid, set()) | categories
            if notice.channel == "mass":
                await self._mass(batch, current, window, followers, opted_out)
            else:
                batch.outcomes.update(await self._deliver(batch, current, window, followers, seen, opted_out))
            await batch.flush(every=FLUSH_EVERY)

    async def _claim(self, batch: "_Batch", openids: list[str]) -> tuple[list[str], "_About"]:
        """Claim the batch's recipients; returns those to send, and what the
        rules need to know of them. Those a live worker holds are left in
        ``batch.busy``.

        Claim first, read second: nobody else finishes a recipient claimed
        here, so its record tells whether it is still to do. For one still
        pending the journal decides: no mark, send it; an outcome (a dead
        worker's, whose claim was taken over), record it; ``attempt``, it was
        in flight when that worker died: recorded as interrupted. A record
        still ``sending`` was claimed in MongoDB by an earlier version: in
        flight too, unless the journal has its outcome.
        """
        deps = self.deps
        notice_id = batch.notice_id
        now = deps.clock()
        codes = await deps.journal.claim(notice_id, openids, batch.token, epoch_ms(now), epoch_ms(now - STALE_CLAIM))
        ours = [o for o in openids if codes[o] != BUSY]
        batch.busy = [o for o in openids if codes[o] == BUSY]
        # Read together: each read would otherwise wait its turn at the database
        # (the embedded one answers one request at a time), and the batch's
        # sending with it. Followers and preferences are read for every
        # claimed recipient: nearly all are still to do.
        statuses, marks, about = await asyncio.gather(
            deps.deliveries.statuses(notice_id, ours), deps.journal.read(notice_id, ours), self._about(ours)
        )
        todo: list[str] = []
        finished: list[str] = []
        outcomes: dict[str, dict] = {}
        for openid in ours:
            status, mark = statuses.get(openid), marks.get(openid)
            if status not in UNFINISHED:
                finished.append(openid)
            elif status == "pending" and mark is None:
                todo.append(openid)
            elif mark is None or mark == ATTEMPT:
                outcomes[openid] = {"status": "failed", "reason": "interrupted"}
            else:
                outcomes[openid] = mark
        if outcomes:
            interrupted = sum(1 for o in outcomes.values() if o.get("reason") == "interrupted")
            # "Stopped": perhaps this very process, before a restart or during a storage outage.
            log.warning("notice %s: %d recipients taken over from a worker that stopped (%d were in flight, "
                        "recorded interrupted; the others' outcomes recorded as it noted them)",
                        notice_id, len(outcomes), interrupted)
            await deps.broadcasts.record_outcomes(notice_id, outcomes, now)
        await deps.journal.forget(notice_id, finished + list(outcomes), batch.token)
        batch.claimed = todo
        return todo, about

    async def _current(self, notice_id: str) -> Notice:
        """The notice, re-read at most twice a second (to notice pause and cancel)."""
        loop = asyncio.get_running_loop()
        cached = self._notice_cache.get(notice_id)
        if cached is None or loop.time() - cached[0] > 0.5:
            notice = await self.deps.notices.get(notice_id)
            self._notice_cache[notice_id] = (loop.time(), notice)
            return notice
        return cached[1]

    async def _deliver(
        self, batch: "_Batch", notice: Notice, openids: list[str], followers: dict, seen: dict, opted_out: dict
    ) -> dict[str, dict]:
        """Apply the rules to each recipient and send to those a channel reaches,
        all at once; ``openid -> outcome`` (fields of the delivery record)."""
        deps = self.deps
        outcomes: dict[str, dict] = {}
        channels: dict[str, str] = {}
        lasts: dict[str, dt.datetime | None] = {}
        now = deps.clock()
        for openid in openids:
            follower = followers.get(openid)
            excluded = _excluded(notice, follower, opted_out.get(openid, set()))
            if excluded is not None:
                outcomes[openid] = excluded
                continue
            # The latest of the durable record and the fresher mark in Redis.
            last = max(filter(None, (follower.last_interaction_at if follower else None, seen.get(openid))), default=None)
            lasts[openid] = last
            channel = choose_channel(notice.category, deps.templates, last, now)
            if channel is None:
                # Never seen following (a mini-program user only): no window to be outside of.
                outcomes[openid] = {"status": "skipped", "reason": "outside_48h" if follower or last else "no_channel"}
            elif deps.wechat is None:
                outcomes[openid] = {"status": "failed", "channel": channel, "reason": "wechat_not_configured"}
            else:
                channels[openid] = channel
        if not channels:
            return outcomes
        pieces = [] if notice.category in deps.templates else _pieces(notice)
        with contextlib.suppress(WeChatAPIError):  # else each send fails (and is recorded) as it would
            await deps.wechat.ready()  # before the turn, not between it and the sends
        # One wait for the window's first message to each recipient; a long
        # notice's further pieces and retries wait their own turn (_send).
        await deps.limiter.acquire(len(channels))
        # Marked in flight only now, its rate paid: a worker that dies while
        # waiting for the limiter has sent nothing, and its successor sends
        # these (marked before the wait, they were recorded as interrupted).
        ours = await self._attempt(batch, notice.id, list(channels))
        if len(ours) < len(channels):
            batch.lost = True
            # This worker stalled (frozen, starved) past the stale time and another
            # took those recipients over: it sends them, not this one.
            log.warning("notice %s: %d recipients were taken over while this worker stalled (or Redis lost its "
                        "journal of sends); left to their taker", notice.id, len(channels) - len(ours))
            channels = {openid: channels[openid] for openid in ours}
            if not channels:
                return outcomes
        sent = await asyncio.gather(*(self._send(batch, notice, o, c, pieces) for o, c in channels.items()))
        fresh = dict(zip(channels, sent))
        # A template WeChat refused (the user declined it, the template is gone):
        # inside the 48 hours a customer-service message still reaches them.
        fallback = [o for o, out in fresh.items() if _template_refused(out)
                    and choose_channel(notice.category, {}, lasts.get(o), now) == "custom"]
        if fallback:
            text = _pieces(notice)
            await deps.limiter.acquire(len(fallback))
            again = await asyncio.gather(*(self._send(batch, notice, o, "custom", text) for o in fallback))
            for openid, out in zip(fallback, again):
                if _held(out):  # pending, as below: after a resume the template, then this
                    fresh[openid] = out
                    continue
                refused = fresh[openid]
                fresh[openid] = {**out, "attempts": out["attempts"] + refused["attempts"],
                                 "fallback_errcode": refused["errcode"]}
        for by in ("quota", "account"):
            held = [o for o, out in fresh.items() if _held(out) == by]
            if held:
                errcode = fresh[held[0]].get("errcode")
                for openid in held:
                    del fresh[openid]
                await self._hold(batch, notice.id, held, now, by, errcode)
        await deps.journal.record(notice.id, fresh)
        outcomes.update(fresh)
        return outcomes

    async def _attempt(self, batch: "_Batch", notice_id: str, openids: list[str]) -> list[str]:
        """Mark ``openids`` in flight (:meth:`DeliveryJournal.attempt`); those still this batch's.

        When Redis does not answer, nothing is sent, but a frozen server runs
        the command when it wakes: the marks would tell whoever takes the
        batch over that these were in flight (recorded interrupted, never
        sent). They are taken back, with their claims, as soon as Redis
        answers, while this batch's heartbeat still holds the claims (so
        nobody takes them over meanwhile); should the late command reach
        Redis after that, it marks nothing (the claims are no longer the
        batch's). Then the error goes on."""
        try:
            return await self.deps.journal.attempt(notice_id, openids, batch.token)
        except RedisUnavailable:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + UNMARK_WITHIN
            while True:
                try:
                    await self.deps.journal.forget(notice_id, openids, batch.token)
                    break
                except RedisUnavailable:
                    if loop.time() >= deadline or self._stop.is_set():
                        log.warning("notice %s: %d recipients may stay marked in flight (Redis did not answer); "
                                    "if so they are recorded interrupted", notice_id, len(openids))
                        break
                    await asyncio.sleep(0.2)
            raise

    async def _hold(self, batch: "_Batch", notice_id: str, openids: list[str], since: dt.datetime, by: str,
                    errcode: int | None) -> None:
        """WeChat refuses the whole account (its call quota is spent, ``by``
        "quota"; its credentials are wrong, "account"): the job waits for a
        resume, these recipients pending (nothing reached them), rather than
        each being recorded failed."""
        deps = self.deps
        # Marks and claims dropped first: a cancel from now on skips them itself.
        await deps.journal.forget(notice_id, openids, batch.token)
        current = await deps.notices.get(notice_id)
        self._notice_cache.pop(notice_id, None)  # the next window sees the pause
        if current is None:
            return
        if current.status == "cancelled":
            # The cancel spared them while this task held them: nobody else records them.
            await deps.broadcasts.record_outcomes(
                notice_id, {openid: {"status": "skipped", "reason": "cancelled"} for openid in openids}, deps.clock())
        elif current.resumed_at is None or current.resumed_at <= since:
            # Not a job an admin resumed while these retries ran (the quota may be back).
            if await deps.broadcasts.pause_for_wechat(notice_id, by):
                if by == "quota":
                    log.warning("notice %s paused: WeChat refuses sends for its call quota (45009)", notice_id)
                else:
                    log.error("notice %s paused: WeChat refuses this account's calls (%s: %s); fix WECHAT_APPID, "
                              "WECHAT_SECRET or the IP whitelist, then resume it", notice_id, errcode,
                              ACCOUNT_ERRORS.get(errcode, ""))

    async def _send(self, batch: "_Batch", notice: Notice, openid: str, channel: str, pieces: list[str]) -> dict:
        """Send (the first message's rate already paid), retrying temporary
        errors; the outcome (with ``attempts``: how many times it was tried)."""
        deps = self.deps
        done = 0  # pieces WeChat accepted (each is a call of its own, acknowledged or not)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                if attempt > 1 and channel == "template":
                    await deps.limiter.acquire(1)
                if channel == "template":
                    spec = deps.templates[notice.category]
                    result = await deps.wechat.message.send_template(
                        openid, spec["template_id"], template_data(notice, spec, deps.clock()), url=spec.get("url")
                    )
                    msgid = int(result["msgid"]) if isinstance(result, dict) and result.get("msgid") else None
                    return {"status": "sent", "channel": channel, "template_msgid": msgid, "attempts": attempt}
                # A retry resumes at the piece that failed: those before it were
                # acknowledged, and sending them again would repeat them.
                while done < len(pieces):
                    if done or attempt > 1:  # each piece its own turn: at 1 a second, not 3 at once
                        await deps.limiter.acquire(1)
                    await deps.wechat.message.send_text(openid, pieces[done])
                    done += 1
                return {"status": "sent", "channel": channel, "template_msgid": None, "attempts": attempt}
            except WeChatAPIError as exc:
                if exc.code == QUOTA_ERROR and attempt == MAX_ATTEMPTS and not done:
                    return _OVER_QUOTA  # nothing of it reached the user: sent again after a resume
                if exc.code in ACCOUNT_ERRORS and not done:
                    return {**_ACCOUNT_REFUSED, "errcode": exc.code}  # every send would fail alike: held
                if not exc.retryable or attempt == MAX_ATTEMPTS:
                    return {**_failure(exc, channel), "attempts": attempt}
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _mass(self, batch: "_Batch", notice: Notice, openids, followers, opted_out) -> None:
        deps = self.deps
        targets = []
        for openid in openids:
            follower = followers.get(openid)
            excluded = _excluded(notice, follower, opted_out.get(openid, set()))
            if excluded is None and follower is None:
                # Not known to follow: a mass send reaches followers only, and
                # WeChat says nothing per openid, so "sent" would be a guess.
                excluded = {"status": "skipped", "reason": "no_channel"}
            if excluded is not None:
                batch.outcomes[openid] = excluded
            else:
                targets.append(openid)
        if len(targets) > 1:
            ours = await self._attempt(batch, notice.id, targets)  # as in _deliver
            batch.lost = batch.lost or len(ours) < len(targets)
            targets = ours
        if len(targets) == 1:
            # WeChat's mass send needs at least two recipients: one goes as any
            # other notice would (customer-service inside the 48 hours).
            seen = await deps.activity.last_seen_many(targets)
            batch.outcomes.update(await self._deliver(batch, notice, targets, followers, seen, opted_out))
        if len(targets) <= 1:
            return
        async def send() -> None:  # each try pays its turn in the shared rate
            await deps.limiter.acquire()
            await deps.wechat.message.send_mass_text(targets, notice_text(notice), is_to_all=False)

        began = deps.clock()
        try:
            await retrying(send, MAX_ATTEMPTS, BACKOFF)
            outcome = {"status": "sent", "channel": "mass"}
        except WeChatAPIError as exc:
            if exc.code in ACCOUNT_ERRORS:
                await self._hold(batch, notice.id, targets, began, "account", exc.code)
                return
            outcome = _failure(exc, "mass")
        outcomes = {openid: outcome for openid in targets}
        await deps.journal.record(notice.id, outcomes)
        batch.outcomes.update(outcomes)


@dataclasses.dataclass
class _About:
    """A batch's recipients as the rules see them (:func:`_excluded`, the 48 hours)."""

    followers: dict
    seen: dict[str, dt.datetime]
    opted_out: dict[str, set[str]]
    read_at: float = 0.0  # when (time.time()), for the opt-outs made since


class _Batch:
    """One stream entry being worked on: its claim token, the outcomes not yet
    in MongoDB, and the heartbeat that keeps entry and claims ours."""

    def __init__(self, worker: DeliveryWorker, consumer: str, entry_id: str, notice_id: str, token: str,
                 keep: list[str] | None = None) -> None:
        self.deps = worker.deps
        self.consumer = consumer
        self.entry_id = entry_id
        self.keep = keep or []  # entries read with this one, waiting their turn
        self.notice_id = notice_id
        self.token = token
        self.outcomes: dict[str, dict] = {}
        self.claimed: list[str] = []
        self.busy: list[str] = []  # recipients another batch holds
        self.left = False  # recipients left to the next worker (this one is stopping)
        #: Some recipients were taken over while this worker stalled: the entry
        #: is the taker's to acknowledge (acknowledged here, it would be gone
        #: were the taker to die before finishing).
        self.lost = False
        self._flushed = time.monotonic()
        #: No send of this batch came before this: a follow since is not undone by a refusal (43004).
        self.began = worker.deps.clock()

    @contextlib.asynccontextmanager
    async def kept_alive(self) -> AsyncIterator[None]:
        """Keep the entry and the claims ours once a second while the batch is
        worked on, whatever the work waits for (the shared rate limit, which
        other tasks may hold for seconds; a retry's backoff; a slow answer):
        only a process that died stops beating, and only then is its batch
        taken over."""
        done = asyncio.Event()
        beating = asyncio.create_task(self._beat(done))
        try:
            yield
        finally:
            # Told to stop, not cancelled: a Redis command cancelled half-way
            # could swallow the cancellation and leave the beat (and the batch)
            # running for ever.
            done.set()
            await beating

    async def _beat(self, done: asyncio.Event) -> None:
        while True:
            # Not wait_for: on Python 3.11 it can swallow a cancel that comes as
            # ``done`` is set, and a batch cancelled at a stop would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BEAT):
                    await done.wait()
            if done.is_set():
                return
            try:
                for ref in (self.entry_id, *self.keep):
                    await self.deps.queue.touch(self.consumer, ref)
                await self.deps.journal.refresh(self.notice_id, self.claimed, self.token, epoch_ms(self.deps.clock()))
            except (*RedisUnavailable, *MongoUnavailable) as exc:
                log.warning("worker %s could not keep batch %s: %s", self.consumer, self.entry_id, exc)

    async def flush(self, every: float = 0.0) -> None:
        """Write the outcomes to MongoDB, then drop them from the journal
        (with ``every``: only if the last write is that many seconds old)."""
        if not self.outcomes or time.monotonic() - self._flushed < every:
            return
        self._flushed = time.monotonic()
        await self.deps.broadcasts.record_outcomes(self.notice_id, self.outcomes, self.deps.clock(), sent_from=self.began)
        await self.deps.journal.forget(self.notice_id, list(self.outcomes), self.token)
        self.outcomes = {}


#: Stands in a batch's followers for a mini-program openid of no follower.
_MINI_PROGRAM_ONLY = object()

#: WeChat's "call quota reached" (also its answer to too many calls a second):
#: retried, and when it outlasts the retries the job is paused (_OVER_QUOTA).
QUOTA_ERROR = 45009
_OVER_QUOTA: dict = {"status": "over_quota"}
#: WeChat's errors that refuse the account itself, whoever the recipient: every
#: send would fail alike, so the job is paused (with an error in the log), not
#: each recipient recorded failed (a wrong AppSecret burnt a whole broadcast).
ACCOUNT_ERRORS = {
    40001: "access_token 无效（AppSecret 错误或已重置）", 40013: "AppID 无效", 40125: "AppSecret 无效",
    40164: "调用接口的 IP 不在公众号的 IP 白名单中", 41001: "缺少 access_token", 48001: "接口未授权",
    50001: "接口未授权", 50002: "公众号受限（接口被封禁）",
}
_ACCOUNT_REFUSED: dict = {"status": "account_refused"}


def _held(outcome: dict) -> str | None:
    """Why a send's recipient is held pending for a resume ("quota", "account"), if it is."""
    if outcome is _OVER_QUOTA:
        return "quota"
    return "account" if outcome.get("status") == "account_refused" else None


def _excluded(notice: Notice, follower, opted_out: set[str]) -> dict | None:
    """The outcome of a recipient no channel may serve (opted out, unfollowed,
    a mini-program user only), else ``None``."""
    if not receives(notice.category, notice.important, opted_out):
        return {"status": "skipped", "reason": "opted_out"}
    if follower is _MINI_PROGRAM_ONLY:
        return {"status": "skipped", "reason": "no_channel"}
    if follower is not None and not follower.subscribed:
        return {"status": "skipped", "reason": "unsubscribed"}
    return None


def _pieces(notice: Notice) -> list[str]:
    """A notice as customer-service messages (each at most 2048 bytes)."""
    return split_text(notice_text(notice), suffix=texts.CONTINUED)


#: Template failures that say nothing about the user being unreachable (not
#: unfollowed 43004, no bad openid 40003, no unknown fate -4): worth a
#: customer-service message inside the 48 hours.
_NOT_FOR_FALLBACK = {43004, 40003, -4}


def _template_refused(outcome: dict) -> bool:
    return (outcome.get("channel") == "template" and outcome.get("status") == "failed"
            and outcome.get("errcode") not in _NOT_FOR_FALLBACK)


def _failure(exc: WeChatAPIError, channel: str) -> dict:
    if exc.code == 45015:
        return {"status": "skipped", "channel": channel, "reason": "outside_48h", "errcode": 45015}
    if exc.code == 43004:
        return {"status": "failed", "channel": channel, "reason": "unsubscribed", "errcode": 43004}
    return {"status": "failed", "channel": channel, "reason": exc.message[:200], "errcode": exc.code}
