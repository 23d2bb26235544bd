"""Notices and broadcasts: the rules (opt-outs, channels) and the job's life.

The rules live here once: :func:`receives` (opt-outs never stop an important
notice), :func:`choose_channel` (template when configured for the category,
else customer-service inside WeChat's 48-hour window, mass only on request).
:class:`Broadcasts` creates a notice, plans its deliveries (one record per
recipient, then batches on the work queue) and pauses, resumes or cancels it;
:mod:`bot.delivery_worker` does the sending; :mod:`bot.notice_checks` says
what makes a notice well formed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from typing import Awaitable, Callable

from bot.errors import BotError
from bot.notice_checks import check_audience, check_important, check_mass_text, check_text, NoticeRefused
from storage.consents import ConsentLedger
from storage.deliveries import UNFINISHED, Deliveries, Delivery
from storage.delivery_journal import DeliveryJournal
from storage.followers import Followers
from storage.merchants import Merchants
from storage.mongo import detached
from storage.notices import CATEGORIES, Notice, Notices
from storage.redis_store import RedisUnavailable
from storage.work_queue import WorkQueue

log = logging.getLogger(__name__)

CHANNELS = ("auto", "mass")
#: WeChat allows customer-service messages this long after the user's last message.
SERVICE_WINDOW = dt.timedelta(hours=48)
#: Recipients per work-queue entry (mass sends: per WeChat call).
BATCH = 100
#: Recipients recorded per step of planning (then queued at once).
PLAN_CHUNK = 2000
#: After recording a chunk (beyond the first), the planner waits this many
#: times as long as the chunk took: the workers sending meanwhile read and
#: write the same database, and a planner recording as fast as it can slowed
#: them. Waiting as long again (1.0) left them room: 100,000 recipients, 1,470
#: -> 1,634 msg/s (bench/RESULTS-broadcast.md); 2.0 made planning the bound.
#: Proportional, so an idle database still records 100,000 in seconds; at
#: most PLAN_PAUSE_MAX seconds, well inside PLANNER_SILENT.
PLAN_YIELD = 1.0
PLAN_PAUSE_MAX = 2.0
#: A planner that has reported no progress for this long is dead; upkeep plans again.
PLANNER_SILENT = dt.timedelta(seconds=30)
MASS_CHUNK = 10_000
CATEGORY_BY_NAME = {
    **{name: code for code, name in CATEGORIES.items()},
    # What people also type: 其它 for 其他, the names without their last word.
    "其它": "other", "服务": "service", "安全": "security", "管理": "admin", "条款修改": "amendment",
}


class NoticeNotFound(BotError):
    kind = "not_found"
    code = "notice_not_found"


def receives(category: str, important: bool, opted_out: set[str]) -> bool:
    """Whether a user with these opt-outs gets a notice: important ones always arrive."""
    return important or category not in opted_out


def choose_channel(
    category: str, templates: dict, last_interaction: dt.datetime | None, now: dt.datetime
) -> str | None:
    """``template``, ``custom`` or ``None`` (no channel reaches the user)."""
    if category in templates:
        return "template"
    if last_interaction is not None and now - last_interaction < SERVICE_WINDOW:
        return "custom"
    return None


async def unknown_recipients(audience: dict, followers: Followers, identities) -> list[str]:
    """The openids of an explicit list that nobody here has (never followed
    the account nor used the mini-program: mistyped, or of another account):
    none of them can be reached, which the admin is told before sending."""
    if audience.get("type") != "openids":
        return []
    listed = sorted(set(audience.get("openids") or []))
    known = set(await followers.many(listed)) | (await identities.known(listed) if identities is not None else set())
    return [openid for openid in listed if openid not in known]


def unknown_recipients_warning(unknown: list[str], shown: int = 10) -> str:
    """What the console and the CLI say of :func:`unknown_recipients`."""
    names = "、".join(unknown[:shown]) + (f" 等 {len(unknown)} 个" if len(unknown) > shown else "")
    return (f"注意：其中 {len(unknown)} 个 openid 在系统中没有记录（从未关注公众号，也未使用小程序），"
            f"将无法送达，会记为跳过：{names}。请检查是否填错。")


def audit_entry(notice: Notice, audience_size: int | None) -> dict:
    """What an admin's notice records in the audit log, from the console and
    the CLI alike: what went, to whom and how (a mass send is allowed only a
    few times a month; an important one reaches those who opted out)."""
    audience = notice.audience
    if "openids" in audience:  # a notice stored before its list was kept beside it
        audience = {"type": "openids", "count": len(audience["openids"]), "first": audience["openids"][:20]}
    return {
        "category": notice.category, "title": notice.title, "important": notice.important,
        "audience": audience, "audience_size": audience_size, "channel": notice.channel,
    }


@dataclasses.dataclass(frozen=True)
class Progress:
    """A broadcast's counts; ``total == sent + failed + skipped`` when done."""

    notice: Notice
    total: int
    pending: int
    sending: int
    sent: int
    failed: int
    skipped: int
    skipped_by_reason: dict
    failed_by_code: dict
    #: Recipients finished a second, whatever the outcome (a job that mostly
    #: skips moves as fast as one that sends): over the last ten seconds while
    #: sending, over the time it was sending once done.
    rate: float
    eta_seconds: float | None
    #: Recipients recorded so far (all of them once the job is planned).
    recorded: int
    #: False while Redis, which knows the sends in flight, is unreachable: they count as pending.
    in_flight_known: bool = True
    #: Worker processes running now (any notice's); ``None`` while Redis is unreachable.
    workers: int | None = None

    @property
    def waiting_for_worker(self) -> bool:
        """Recipients are left to send and no worker runs to send them."""
        return (self.notice.status in ("queued", "sending") and self.workers == 0
                and self.pending + self.sending > 0)

    @property
    def recording(self) -> bool:
        """Recipients are still being recorded (planning goes on, or upkeep is to take it over)."""
        return not self.notice.planned and self.notice.status not in ("done", "cancelled")

    def to_json(self) -> dict:
        return {
            "id": self.notice.id,
            "status": self.notice.status,
            "category": self.notice.category,
            "title": self.notice.title,
            "important": self.notice.important,
            "channel": self.notice.channel,
            "total": self.total,
            "pending": self.pending,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "skipped_by_reason": self.skipped_by_reason,
            "failed_by_code": self.failed_by_code,
            "rate_per_second": round(self.rate, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "in_flight_known": self.in_flight_known,
            "workers": self.workers,
            "waiting_for_worker": self.waiting_for_worker,
            "planned": self.notice.planned,
            "recorded": self.recorded,
            "recording": self.recording,
            "paused_by": self.notice.paused_by,
            "paused_for_quota": self.notice.status == "paused" and self.notice.paused_by == "quota",
        }


class Broadcasts:
    """Creating, planning and steering broadcasts."""

    def __init__(
        self,
        notices: Notices,
        deliveries: Deliveries,
        queue: WorkQueue,
        followers: Followers,
        merchants: Merchants,
        ledger: ConsentLedger,
        journal: DeliveryJournal,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.notices = notices
        self.deliveries = deliveries
        self.queue = queue
        self._journal = journal
        #: Whether :meth:`send` returns once the first chunk of recipients is
        #: queued, planning the rest in a task (for long-lived processes: the
        #: admin console then answers at once, whatever the audience).
        self.plan_in_background = False
        #: Recipients recorded (and queued) at a time while planning.
        self.plan_chunk = PLAN_CHUNK
        self.plan_yield = PLAN_YIELD
        self._planners: set[asyncio.Task] = set()
        self._followers = followers
        self._merchants = merchants
        self._ledger = ledger
        self._clock = clock

    async def send(
        self,
        *,
        category: str,
        title: str,
        body: str,
        important: bool | None = None,
        audience: dict,
        channel: str = "auto",
        by: str,
        extra: dict | None = None,
        refuse_empty: bool = False,
        on_created: Callable[[str], Awaitable[None]] | None = None,
    ) -> str:
        """Create a notice and queue its deliveries; returns the notice id.

        ``refuse_empty``: an admin's notice to nobody (say, merchants of a
        status that none has) is refused rather than done at once with 0.
        ``on_created`` is called with the notice as soon as it exists, before
        its recipients are recorded (a minute for 100,000), and with the
        audience's size when it was read (``refuse_empty``), else None: an admin
        who stops waiting then still knows its id, and its audit entry
        (:func:`audit_entry`) is written.
        """
        if category not in CATEGORIES:
            raise NoticeRefused(f"未知的通知类别 {category}，可选：{', '.join(CATEGORIES)}", code="bad_category")
        if channel not in CHANNELS:
            raise NoticeRefused(f"未知的发送渠道 {channel}，可选：{', '.join(CHANNELS)}", code="bad_channel")
        title, body = check_text(title, body)
        check_audience(audience)
        important = check_important(category, important)
        if channel == "mass":
            check_mass_text(message_text(category, title, body, important))
        openids = None
        if refuse_empty:
            openids = await self.audience(audience)  # read once: planning uses it too
            if not openids:
                raise NoticeRefused("没有符合条件的接收者，通知未发送。请检查受众。", code="empty_audience")
        notice_id = await self.notices.create(
            category=category, title=title, body=body, important=important, audience=audience,
            channel=channel, created_at=self._clock(), created_by=by, extra=extra,
        )
        if on_created is not None:
            await on_created(await self._get(notice_id), None if openids is None else len(openids))
        await self._plan(notice_id, openids)  # created as its planner: nobody else plans it meanwhile
        return notice_id

    async def audience(self, audience: dict) -> list[str]:
        """The openids an audience stands for, sorted, without duplicates."""
        kind = audience.get("type")
        if kind == "all":
            return await self._followers.subscribed_openids()
        if kind == "merchants":
            statuses = audience.get("statuses") or ["pending_review", "active", "suspended"]
            found = [openid for s in statuses for openid in await self._merchants.openids(s)]
            return sorted(set(found))
        if kind == "openids" and "openids" in audience:
            return sorted(set(audience["openids"]))
        if kind == "consented_any_version":
            return await self._ledger.openids_with_action("accept")
        raise NoticeRefused(f"未知的受众 {kind}")

    async def plan(self, notice_id: str) -> bool:
        """Plan a notice whose planner is gone (died, or the job was paused
        while planning); False if a live planner has it (one that reported
        progress within :data:`PLANNER_SILENT`). Safe to repeat."""
        now = self._clock()
        if not await self.notices.take_planning(notice_id, now - PLANNER_SILENT, now):
            return False
        await self._plan(notice_id)
        return True

    async def _plan(self, notice_id: str, openids: list[str] | None = None) -> None:
        """Record every recipient as pending and queue them.

        A chunk at a time: workers start sending the first recipients while
        the rest of a large audience is still being recorded. The job is
        ``queued`` until a worker takes its first batch (:meth:`start`) and
        cannot be ``done`` before it is ``planned``; a planner that dies midway is replaced by upkeep
        (:data:`PLANNER_SILENT` after its last chunk). With
        :attr:`plan_in_background`, only the first chunk is recorded before
        this returns. ``openids``: the audience, if the caller has just read it."""
        notice = await self._get(notice_id)
        if openids is None and notice.audience.get("type") == "openids":
            openids = await self.notices.listed(notice)
        elif openids is None:
            openids = await self.audience(notice.audience)
        await self.notices.planning(notice_id, len(openids), self._clock())
        chunk = max(self.plan_chunk, _batch_size(notice))
        await self._record(notice, openids[:chunk], len(openids))
        rest = self._plan_rest(notice, openids, chunk)
        if self.plan_in_background and len(openids) > chunk:
            task = detached(rest, name=f"plan {notice_id}")  # not bound by the request's budget
            self._planners.add(task)
            task.add_done_callback(self._planned_in_background)
        else:
            await rest

    async def _plan_rest(self, notice: Notice, openids: list[str], chunk: int) -> None:
        """Record and queue the recipients after the first chunk, then mark
        the job planned, leaving the database to the workers between chunks
        (:data:`PLAN_YIELD`)."""
        loop = asyncio.get_running_loop()
        for offset in range(chunk, len(openids), chunk):
            began = loop.time()
            await self._record(notice, openids[offset : offset + chunk], len(openids))
            if offset + chunk < len(openids):
                await asyncio.sleep(min((loop.time() - began) * self.plan_yield, PLAN_PAUSE_MAX))
        await self.notices.planned(notice.id, len(openids))
        if (await self._get(notice.id)).status == "cancelled":
            # Cancelled while planning: what was recorded after the cancel is skipped too.
            await self._skip_cancelled(notice.id)
        await self.finish_if_complete(notice.id)

    async def _record(self, notice: Notice, part: list[str], total: int) -> None:
        # Records first, queue second: a queued recipient always has a record.
        # A repeat queues some recipients twice; claims make that harmless.
        await self.deliveries.create_pending(notice.id, part, self._clock())
        await self._queue(notice, part, total)
        await self.notices.planning(notice.id, total, self._clock())

    def _planned_in_background(self, task: asyncio.Task) -> None:
        self._planners.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Upkeep plans the job again once this planner has been silent long enough.
            log.error("planning %s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Stop planning in the background (upkeep finishes it later)."""
        for task in list(self._planners):
            task.cancel()
        await asyncio.gather(*self._planners, return_exceptions=True)

    async def enqueue_pending(self, notice: Notice) -> int:
        """Put the notice's unfinished recipients on the work queue (again)."""
        pending = await self.deliveries.openids(notice.id, UNFINISHED)
        await self._queue(notice, pending, notice.total or len(pending))
        return len(pending)

    async def _queue(self, notice: Notice, openids: list[str], total: int) -> None:
        """Put ``openids`` on the work queue, a batch per entry; a notice to at
        most :data:`SMALL_AUDIENCE` people goes ahead of larger broadcasts."""
        size = _batch_size(notice)
        urgent = total <= SMALL_AUDIENCE
        for start in range(0, len(openids), size):
            await self.queue.add(notice.id, openids[start : start + size], urgent=urgent)

    async def pause(self, notice_id: str) -> Controlled:
        """Pause a job. One paused already (by an admin, or by WeChat's quota)
        is no error: :attr:`Controlled.already` says so. A finished or
        cancelled one, or an amendment notice, raises :class:`NoticeRefused`."""
        notice = await self._get(notice_id)
        if notice.status == "paused":
            return Controlled(notice, already=_already(notice, "pause"))
        if notice.version is not None and notice.status in ("queued", "sending"):
            # Paused, it could stay so past the version's effective date, nobody told.
            raise NoticeRefused(self._amendment_notice(notice, "暂停"), code="amendment_notice")
        if not await self.notices.transition(notice_id, ("queued", "sending"), "paused", self._clock()):
            return await self._unchanged(notice_id, "pause")
        return Controlled(await self._get(notice_id))

    async def pause_for_wechat(self, notice_id: str, by: str) -> bool:
        """Pause a job whose sends WeChat refuses for the whole account: its call
        quota (``by`` "quota", 45009 after every retry) or its credentials
        ("account": a wrong AppSecret, an IP not whitelisted …). Its recipients
        stay pending for a resume, rather than each being recorded failed.
        False if it was not sending."""
        return await self.notices.transition(notice_id, ("sending",), "paused", self._clock(), by=by)

    async def resume_after_quota(self) -> list[str]:
        """Resume the jobs paused for WeChat's daily call quota once a new day
        has begun in Beijing (when WeChat renews it); the ids resumed."""
        from bot.agreement import CHINA

        now = self._clock()
        midnight = now.astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
        resumed = []
        for notice in await self.notices.paused_by("quota"):
            if notice.paused_at is not None and notice.paused_at < midnight:
                try:
                    if not (await self.resume(notice.id)).changed:
                        continue  # resumed meanwhile (by an admin, another worker)
                except NoticeRefused:
                    continue  # cancelled meanwhile
                resumed.append(notice.id)
        return resumed

    async def resume(self, notice_id: str) -> Controlled:
        """Resume a paused job. One queued or sending already is no error
        (:attr:`Controlled.already`); a finished or cancelled one raises
        :class:`NoticeRefused`."""
        paused = await self._get(notice_id)
        if paused.status in ("queued", "sending"):
            return Controlled(paused, already=_already(paused, "resume"))
        back = "sending" if paused.started_at is not None else "queued"  # paused before any worker began
        now = self._clock()
        if not await self.notices.transition(notice_id, ("paused",), back, now):
            return await self._unchanged(notice_id, "resume")
        if back == "sending" and paused.paused_at is not None:
            await self.notices.add_pause(notice_id, max(0.0, (now - paused.paused_at).total_seconds()))
        notice = await self._get(notice_id)
        if not notice.planned:  # paused while planning, and the planner is gone
            await self.plan(notice_id)
        else:
            await self.enqueue_pending(notice)
            await self.finish_if_complete(notice_id)
        return Controlled(await self._get(notice_id))

    async def cancel(self, notice_id: str) -> Controlled:
        """Cancel a job. One cancelled already is no error
        (:attr:`Controlled.already`); a finished one, or an amendment notice,
        raises :class:`NoticeRefused`."""
        notice = await self._get(notice_id)
        if notice.status == "cancelled":
            return Controlled(notice, already=_already(notice, "cancel"))
        if notice.status == "done":
            raise NoticeRefused(_cannot(notice, "cancel"))  # nothing left to cancel
        if notice.version is not None:
            # The agreement promises notice of every change to whoever accepted a version.
            raise NoticeRefused(self._amendment_notice(notice, "取消"), code="amendment_notice")
        if not await self.notices.transition(notice_id, ("queued", "sending", "paused"), "cancelled", self._clock()):
            return await self._unchanged(notice_id, "cancel")
        await self._skip_cancelled(notice_id)
        return Controlled(await self._get(notice_id))

    async def _unchanged(self, notice_id: str, action: str) -> Controlled:
        """After a transition that found the job in another state than read just
        before (a worker finished it, another admin got there first): the job
        already as asked, or :class:`NoticeRefused` saying why it cannot be."""
        notice = await self._get(notice_id)
        if notice.status in _ALREADY[action]:
            return Controlled(notice, already=_already(notice, action))
        raise NoticeRefused(_cannot(notice, action))

    @staticmethod
    def _amendment_notice(notice: Notice, action: str) -> str:
        return (f"通知 {notice.id} 是版本 {notice.version} 发布或撤回时自动发出的条款修改通知，"
                f"协议要求在修改生效前告知每位已同意协议的用户，不能{action}。如版本有误：尚未生效的可以撤回"
                "（管理后台的版本页面，或 wetoop-bot terms withdraw），已生效的请发布更正的新版本。")

    async def _skip_cancelled(self, notice_id: str) -> None:
        """Record the pending recipients of a cancelled job as skipped, except
        those a worker claimed: it may have sent them (a dead worker's journal
        says so), and the worker that holds or takes over their batch records
        what happened to each (the rest of it skipped as cancelled)."""
        claimed = await self._journal.claimed_openids(notice_id)
        await self.deliveries.skip_pending(notice_id, "cancelled", self._clock(), sparing=claimed)

    async def start(self, notice: Notice) -> Notice:
        """A worker begins on a queued job: it is ``sending`` from now (until
        then it stays ``queued``, as with no worker running at all)."""
        if notice.status == "queued":
            await self.notices.transition(notice.id, ("queued",), "sending", self._clock())
            return await self._get(notice.id)
        return notice

    async def finish_if_complete(self, notice_id: str) -> bool:
        """Mark the job done when every recipient is recorded and none is pending or being sent."""
        notice = await self.notices.get(notice_id)
        if notice is None or not notice.planned or await self.deliveries.unfinished(notice_id):
            return False
        return await self.notices.transition(notice_id, ("queued", "sending"), "done", self._clock())

    async def progress(self, notice_id: str) -> Progress:
        notice = await self._get(notice_id)
        counts = await self.deliveries.counts(notice_id)
        by = counts["by_status"]
        # Records stay pending in MongoDB while a worker sends them; Redis knows
        # which. Without Redis those in flight are counted as pending: the rest
        # of the report is MongoDB's, and an admin checking on a broadcast
        # during a Redis outage still gets it.
        in_flight_known = True
        try:
            claimed = min(by["pending"], await self._journal.claimed(notice_id))
            workers = await self.queue.running()
        except RedisUnavailable:
            claimed, in_flight_known, workers = 0, False, None
        by["pending"] -= claimed
        by["sending"] += claimed
        # Recipients not recorded yet (planning goes on, or its planner died and
        # upkeep has yet to take over): still to send, so pending, and the
        # figures add up to the total while planning too.
        recorded = sum(by.values())
        by["pending"] += 0 if notice.planned else max(0, notice.total - recorded)
        now = self._clock()
        rate = 0.0
        if notice.started_at is not None and notice.status == "sending":  # a paused job has no speed, nor an ETA
            # The last ten seconds, or fewer in a job's first ten or since a
            # resume (else its speed shows as a fraction).
            since = notice.resumed_at or notice.started_at
            window = min(10.0, max(1.0, (now - since).total_seconds()))
            recent = await self.deliveries.finished_since(notice_id, now - dt.timedelta(seconds=window))
            rate = recent / window
        elif notice.status == "done" and notice.started_at and notice.finished_at:
            # A finished job: its average over the time it was sending (pauses
            # left out), rather than the 0 of the last ten seconds.
            # At least a second, as the live figure's window: 3 sends done in 10 ms
            # are no 300 a second, above the rate limit they kept to.
            seconds = max(1.0, (notice.finished_at - notice.started_at).total_seconds() - notice.paused_seconds)
            rate = (by["sent"] + by["failed"] + by["skipped"]) / seconds
        remaining = by["pending"] + by["sending"]
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        if workers == 0 and remaining:
            eta = None  # nothing sends it now: the last seconds' speed says nothing of when it ends
        return Progress(
            notice=notice,
            total=notice.total,
            pending=by["pending"],
            sending=by["sending"],
            sent=by["sent"],
            failed=by["failed"],
            skipped=by["skipped"],
            skipped_by_reason=counts["skipped_by_reason"],
            failed_by_code=counts["failed_by_code"],
            rate=rate,
            eta_seconds=eta,
            in_flight_known=in_flight_known,
            workers=workers,
            recorded=recorded,
        )

    async def template_result(self, msgid: int, status: str) -> None:
        """Apply a ``TEMPLATESENDJOBFINISH`` event to its delivery; one that
        came before the send's outcome was written waits for it
        (:meth:`record_outcomes`)."""
        delivery = await self.deliveries.by_template_msgid(msgid)
        if delivery is None:
            await self._journal.keep_report(msgid, status)
            return
        await self._apply_report(delivery.notice_id, delivery.openid, status, delivery.updated_at or self._clock())

    async def record_outcomes(self, notice_id: str, outcomes: dict[str, dict], at: dt.datetime,
                              sent_from: dt.datetime | None = None) -> None:
        """Write sends' outcomes (``openid -> fields``), then any template
        report WeChat sent before they were written. ``sent_from``: when the
        sends began (else ``at``), the time a refusal as not following is dated."""
        await self.deliveries.finish_many(notice_id, outcomes, at)
        gone = [openid for openid, fields in outcomes.items() if fields.get("errcode") == UNFOLLOWED]
        if gone:
            # WeChat says they no longer follow (their unfollow event was missed, or
            # came before this service): later broadcasts skip them rather than fail
            # again. Not one who followed since the send (the outcome may be written late).
            await self._followers.unfollowed_before(gone, sent_from or at)
        by_msgid = {fields["template_msgid"]: openid for openid, fields in outcomes.items() if fields.get("template_msgid")}
        for msgid, status in (await self._journal.take_reports(list(by_msgid))).items():
            await self._apply_report(notice_id, by_msgid[msgid], status, at)

    async def _apply_report(self, notice_id: str, openid: str, status: str, sent_at: dt.datetime) -> None:
        # The delivery keeps the time it was sent (the inbox's delivered_at,
        # the export's at): the report says what became of that send.
        if status == "success":
            await self.deliveries.finish(notice_id, openid, "sent", sent_at, reason="confirmed")
        else:
            await self.deliveries.finish(notice_id, openid, "failed", sent_at, reason=f"template:{status}"[:200])

    async def inbox(self, openid: str) -> list[tuple[Notice, Delivery]]:
        """Notices meant for a user, newest first: those sent in chat, and those
        the official account could not carry (outside the 48 hours, WeChat
        refused: a mini-program user who does not follow gets amendment notices
        here). Not those the user opted out of, or an admin cancelled."""
        deliveries = [d for d in await self.deliveries.for_user(openid) if _in_inbox(d)]
        notices = await self.notices.many([d.notice_id for d in deliveries]) if deliveries else {}
        pairs = [(notices[d.notice_id], d) for d in deliveries if d.notice_id in notices]
        return sorted(pairs, key=lambda pair: pair[1].updated_at or self._clock(), reverse=True)

    async def _get(self, notice_id: str) -> Notice:
        notice = await self.notices.get(notice_id)
        if notice is None:
            raise NoticeNotFound(f"没有编号为 {notice_id} 的通知")
        return notice


@dataclasses.dataclass(frozen=True)
class Controlled:
    """What :meth:`Broadcasts.pause`, ``resume`` or ``cancel`` did: the job as
    it now is and, when the call changed nothing because the job was in that
    state already (a repeat, or someone else first), the sentence saying so.
    A repeat is no error: the admin's wish holds (the console and CLI say it)."""

    notice: Notice
    already: str = ""

    @property
    def changed(self) -> bool:
        return not self.already


#: The states in which pause, resume or cancel has nothing left to do.
_ALREADY = {"pause": ("paused",), "resume": ("queued", "sending"), "cancel": ("cancelled",)}
#: The actions as the messages name them.
_ACTION_NAMES = {"pause": "暂停", "resume": "继续发送", "cancel": "取消"}


def _already(notice: Notice, action: str) -> str:
    if action == "pause":
        return f"通知 {notice.id} 已处于暂停状态，无需再次暂停。"
    if action == "cancel":
        return f"通知 {notice.id} 已取消，无需再次取消。"
    return f"通知 {notice.id} 没有暂停（当前状态为“{JOB_LABELS[notice.status]}”），无需继续发送。"


def _cannot(notice: Notice, action: str) -> str:
    """Why ``action`` is impossible for ``notice`` in its present state (finished or cancelled)."""
    name = _ACTION_NAMES[action]
    if notice.status == "done":
        return f"通知 {notice.id} 已发送完毕（状态“已完成”），不能{name}。"
    if notice.status == "cancelled":
        again = "；如仍需发送，请重新发送一条通知" if action == "resume" else ""
        return f"通知 {notice.id} 已取消，不能{name}{again}。"
    return f"通知 {notice.id} 当前状态为“{JOB_LABELS[notice.status]}”，不能{name}。"


def _in_inbox(delivery: Delivery) -> bool:
    if delivery.status in ("sent", "failed"):
        return True
    # Skipped in chat but readable in the mini-program: outside the 48 hours,
    # never following, or no longer following.
    return delivery.status == "skipped" and delivery.reason in ("outside_48h", "no_channel", "unsubscribed")


#: Why a recipient was skipped, for admins.
SKIP_REASONS = {"opted_out": "用户已退订该类通知", "unsubscribed": "已取消关注", "outside_48h": "超出 48 小时客服消息窗口",
                "cancelled": "发送已取消", "no_channel": "没有可用的发送渠道（未见其关注公众号）"}
#: WeChat error codes seen when sending, and what they mean for an admin.
WECHAT_ERRORS = {
    "-1": "微信系统繁忙", "40001": "access_token 无效", "40003": "openid 无效", "43004": "用户未关注公众号",
    "43101": "用户拒绝接收此类消息", "45009": "接口调用次数超过限额", "45015": "超出 48 小时客服消息时限",
    "45047": "客服消息下行条数超过上限", "48001": "接口未授权", "45002": "消息内容超过长度限制", "-4": "微信未在时限内答复（可能已送达，为免重复不再重发）",
    "interrupted": "发送中断（发送进程退出或与 Redis 失联，可能已送达，为免重复不再重发）", "wechat_not_configured": "未配置公众号 AppID/AppSecret",
    # WeChat's own report on a template message (TEMPLATESENDJOBFINISH), which carries no code.
    "template:failed:user block": "用户拒收此公众号的模板消息", "template:failed: system failed": "微信系统原因，模板消息未送达",
}


def error_meaning(code: str) -> str:
    """What WeChat's ``code`` (or another reason a send failed) means for an admin."""
    return WECHAT_ERRORS.get(code) or "未收录的微信错误码：请查阅微信公众平台的全局返回码说明"


def explain(labels: dict[str, str], key: str) -> str:
    """``key`` explained for an admin: ``说明（key）``, or ``key`` if unknown."""
    return f"{labels[key]}（{key}）" if key in labels else key


#: Said beside the progress of a job no worker is running for.
NO_WORKER = ("当前没有运行中的发送进程，这条通知不会发出：请启动服务（wetoop-bot serve，自带一个发送进程）"
             "或运行 wetoop-bot worker。")
#: Why a job is paused when no admin paused it (``Notice.paused_by``).
PAUSED_BY = {
    "quota": "微信拒绝了发送：接口调用次数已达上限（45009），已自动暂停，未发出的接收者仍为待发送。"
             "北京时间次日 0 点微信恢复每日额度后将自动继续，也可手动继续；如是发送速度超过了微信的限制，请先调低 NOTICE_RATE。",
    "account": "微信拒绝了本公众号的接口调用（如 AppSecret 错误 40125、AppID 错误 40013、服务器 IP 不在白名单 40164、"
               "接口未授权 48001，错误码见服务日志），已自动暂停，未发出的接收者仍为待发送。请修正配置并重启服务后手动继续。",
}
JOB_LABELS = {"queued": "排队中", "sending": "发送中", "paused": "已暂停", "cancelled": "已取消", "done": "已完成"}


#: A notice to at most this many people (one merchant's suspension, a security
#: notice to a few) is sent ahead of larger broadcasts already queued.
SMALL_AUDIENCE = 1000


def _batch_size(notice: Notice) -> int:
    """Recipients per work-queue entry: a mass send's chunk, else a worker's batch."""
    return MASS_CHUNK if notice.channel == "mass" else BATCH


#: WeChat's "the user does not follow the account" (43004).
UNFOLLOWED = 43004


def notice_text(notice: Notice) -> str:
    """The text of a notice as a customer-service or mass message."""
    return message_text(notice.category, notice.title, notice.body, notice.important)


def message_text(category: str, title: str, body: str, important: bool) -> str:
    mark = "【重要】" if important else ""
    return f"{mark}【{CATEGORIES[category]}】{title}\n\n{body}"


def template_data(notice: Notice, spec: dict, now: dt.datetime) -> dict:
    from bot.agreement import CHINA

    values = {
        "title": notice.title,
        "body": notice.body,
        "category": CATEGORIES[notice.category],
        "date": now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M"),
        "important": "【重要】" if notice.important else "",  # as customer-service messages begin
    }
    return {field: {"value": pattern.format(**values)} for field, pattern in (spec.get("fields") or {}).items()}
