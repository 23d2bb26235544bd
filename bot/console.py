"""What the admin console does, as domain functions: each checks the actor's
permission (:func:`bot.admin_accounts.allowed`), calls the same domain
services as chat and the CLI (``Broadcasts``, ``Terms``, ``MerchantAccounts``)
and records the action in the audit log. The console's handlers only parse
forms, call one of these and render the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from bot.admin_accounts import Actor
from bot.agreement import CHINA, AgreementVersion, beijing_iso, parse_toml
from bot.amendment_rules import AmendmentRefused, changes_warning, parse_effective_at
from bot.audit import Audit
from bot.consent import ConsentState, Consents
from bot.errors import BotError
from bot.merchants import (
    STATUSES, AccountRefused, MerchantAccounts, UnknownStatus, profile_stamp, refuse_no_change, unknown_status,
)
from bot.notice_checks import (
    IMPORTANT_BY_DEFAULT, NoticeRefused, check_audience, check_important, check_text, openids_from_lines,
)
from bot.notices import (
    CHANNELS, Broadcasts, Controlled, audit_entry, notice_text, unknown_recipients, unknown_recipients_warning,
)
from bot.qa.data import DEFAULT_DATA_DIR, QADataError, load_data
from bot.qa.units import examples_lost_warning, unplaced_examples, units_of
from bot.serial import one_at_a_time
from bot.terms import Terms, VersionNotFound
from bot.terms_diff import Row, side_by_side
from bot.texts import CONSENT_STATUS
from bot.validation import ENTITY_TYPES
from storage.admin_drafts import Draft, Drafts
from storage.admin_stats import AdminStats
from storage.consent_view import ConsentView
from storage.followers import Followers
from storage.identities import Identities
from storage.locks import UserLocks
from storage.mongo import detached
from storage.merchants import Merchant
from storage.submit_tokens import PENDING, SubmitTokens
from storage.notices import CATEGORIES, Notice

#: A notice to more recipients than this needs the audience size typed in as confirmation.
LARGE_AUDIENCE = 1000
#: Days shown in the dashboard's consent chart.
CHART_DAYS = 30
#: Q&A files admins may override from the console.
QA_FILES = {"lexicon.toml": "词典（同义词、停用词、自定义词）", "examples.toml": "示例问题"}
#: The merchants' CSV: fields and their Chinese headings (admins open it in Excel).
MERCHANT_HEADINGS = {
    "openid": "openid", "status": "状态", "entity_type": "主体类型", "entity_name": "主体名称",
    "credit_code": "统一社会信用代码", "contact_name": "联系人", "phone": "手机", "email": "邮箱",
    "created_at": "注册时间（北京）", "updated_at": "更新时间（北京）",
}


class DraftNotFound(BotError):
    kind = "not_found"
    code = "draft_not_found"


class DraftChanged(BotError):
    """Another admin saved the draft after this one opened it."""

    kind = "conflict"
    code = "draft_changed"


def draft_stamp(draft) -> str:
    """What an admin saw of a draft (the time of its last save), sent back with the form."""
    return draft.updated_at.isoformat() if draft is not None and draft.updated_at else ""


class ConfirmationNeeded(BotError):
    """A large audience not yet confirmed; the form asks for the count."""

    kind = "conflict"
    code = "confirmation_needed"


class WarningsUnconfirmed(BotError):
    """A version whose warnings (changes its summary does not name, Q&A examples
    it drops) the admin has not seen: shown with the preview, published once
    confirmed (``acknowledged``: :func:`warnings_key` of the same warnings)."""

    kind = "conflict"
    code = "warnings_unconfirmed"

    def __init__(self) -> None:
        super().__init__("发布前请核对下面预览中的提示（与 wetoop-bot terms publish 给出的相同）；"
                         "确认无误后，请再点一次“发布”。")


def warnings_key(draft: AgreementVersion, warnings: list[str]) -> str:
    """What identifies the warnings (those not "") an admin confirmed, for the text
    they were shown for ("" when there are none): the draft edited since is asked again."""
    warnings = [w for w in warnings if w]
    if not warnings:
        return ""
    seen = [draft.text_sha256, *draft.changes, *warnings]
    return hashlib.sha256("\n".join(seen).encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class NoticeForm:
    """A notice as the compose form holds it (also a draft's fields)."""

    category: str = "service"
    title: str = ""
    body: str = ""
    important: str = "default"  # default, yes, no
    audience_type: str = "all"
    statuses: tuple[str, ...] = ()
    openids: str = ""
    channel: str = "auto"

    @classmethod
    def from_fields(cls, fields: dict) -> "NoticeForm":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in fields.items() if k in known}
        values["statuses"] = tuple(values.get("statuses") or ())
        return cls(**values)

    def fields(self) -> dict:
        return {**dataclasses.asdict(self), "statuses": list(self.statuses)}

    def important_flag(self) -> bool:
        if self.important == "yes":
            return True
        if self.important == "no":
            return False
        return self.category in IMPORTANT_BY_DEFAULT

    def audience(self) -> dict:
        """The audience in ``Broadcasts``' form; raises NoticeRefused when malformed."""
        if self.audience_type == "merchants":
            audience: dict = {"type": "merchants"}
            if self.statuses:
                audience["statuses"] = list(self.statuses)
        elif self.audience_type == "openids":
            openids = sorted(set(openids_from_lines(self.openids.splitlines(), "openid 列表", commas=True)))
            audience = {"type": "openids", "openids": openids}
        else:
            audience = {"type": self.audience_type}
        check_audience(audience)
        return audience

    def check(self) -> None:
        if self.important not in ("default", "yes", "no"):
            raise NoticeRefused("“重要”只能选择 按类别默认、是 或 否", code="bad_important")
        if self.category not in CATEGORIES:
            raise NoticeRefused(f"未知的通知类别 {self.category}", code="bad_category")
        if self.channel not in CHANNELS:
            raise NoticeRefused(f"未知的发送渠道 {self.channel}", code="bad_channel")
        check_text(self.title, self.body)
        self.audience()


@dataclasses.dataclass(frozen=True)
class NoticePreview:
    text: str
    audience_size: int
    large: bool
    important: bool
    #: What to say of listed openids nobody here has (:func:`~bot.notices.unknown_recipients`), or "".
    unknown_warning: str = ""


@dataclasses.dataclass(frozen=True)
class VersionForm:
    toml: str = ""
    reason: str = "routine"
    effective_at: str = ""

    @classmethod
    def from_fields(cls, fields: dict) -> "VersionForm":
        return cls(**{k: v for k, v in fields.items() if k in ("toml", "reason", "effective_at")})

    def draft(self) -> AgreementVersion:
        return parse_toml(self.toml)


@dataclasses.dataclass(frozen=True)
class Dashboard:
    followers: int
    merchants: dict[str, int]
    current: AgreementVersion
    upcoming: list[AgreementVersion]  # every version to come, the next first
    accepted: int
    share: float | None
    days: list[tuple[dt.date, int, int, int]]  # day, accepts, declines, withdrawals
    #: When these figures were read (a slow dashboard is shown again for a while).
    computed_at: dt.datetime | None = None


#: A dashboard that took :data:`DASHBOARD_SLOW` seconds or more to read is shown
#: again for :data:`DASHBOARD_KEPT` seconds rather than read anew: it reads every
#: follower and a month of the ledger, 8 s on the embedded database at 100,000
#: followers, over the page's time budget (503 at every log-in). It is read in
#: the background; a page waits :data:`DASHBOARD_WAIT` seconds for it, else shows
#: the last figures read (or says they are being read).
DASHBOARD_SLOW = 1.0
DASHBOARD_KEPT = 60.0
DASHBOARD_WAIT = 5.0


#: Seconds a second submission of one compose form waits for the first one's notice.
DUPLICATE_WAIT = 10
#: How long after a version is published the same form sent again is taken as a repeat of it.
REPEAT_WINDOW = dt.timedelta(minutes=2)


class Console:
    """The admin console's actions (see module docstring)."""

    def __init__(self, *, broadcasts: Broadcasts, terms: Terms, merchants: MerchantAccounts, followers: Followers,
                 drafts: Drafts, stats: AdminStats, consent_view: ConsentView, audit: Audit, qa_override_dir: Path,
                 clock: Callable[[], dt.datetime], locks: UserLocks | None = None,
                 submit_tokens: SubmitTokens | None = None, identities: Identities | None = None,
                 consents: Consents | None = None) -> None:
        self.locks = locks
        self.consents = consents
        self.identities = identities
        self.submit_tokens = submit_tokens
        self.broadcasts = broadcasts
        self.terms = terms
        self.merchants = merchants
        self.followers = followers
        self.drafts = drafts
        self.stats = stats
        self.consent_view = consent_view
        self.audit = audit
        self.qa_override_dir = Path(qa_override_dir)
        self._clock = clock
        self._board: Dashboard | None = None
        self._board_read_at = 0.0  # the event loop's clock
        self._board_took = 0.0
        self._board_task: asyncio.Task | None = None

    # -- dashboard ------------------------------------------------------------------

    async def dashboard(self, actor: Actor) -> Dashboard | None:
        """Followers, merchants by status, the share of followers (who have not
        unfollowed) whose latest choice is acceptance of the version in force,
        and consents per day (Beijing days) over :data:`CHART_DAYS`; ``None``
        while a first slow read goes on (see :data:`DASHBOARD_SLOW`)."""
        actor.require("read")
        loop = asyncio.get_running_loop()
        if (self._board is not None and self._board_took >= DASHBOARD_SLOW
                and loop.time() - self._board_read_at < DASHBOARD_KEPT):
            return self._board
        if self._board_task is None or self._board_task.done():
            self._board_task = detached(self._read_dashboard(), name="dashboard")
            # Its failure reaches the page that waits for it; one left unwaited is only logged.
            self._board_task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            return await asyncio.wait_for(asyncio.shield(self._board_task), DASHBOARD_WAIT)
        except TimeoutError:
            return self._board

    async def _read_dashboard(self) -> Dashboard:
        loop = asyncio.get_running_loop()
        began = loop.time()
        board = await self._dashboard_figures()
        self._board, self._board_read_at, self._board_took = board, loop.time(), loop.time() - began
        return board

    async def _dashboard_figures(self) -> Dashboard:
        followers = await self.followers.subscribed_openids()
        current = await self.terms.current()
        await self.consent_view.catch_up(self._clock())
        accepting = await self.consent_view.accepted(current.version)
        accepted = sum(1 for openid in followers if openid in accepting)
        today = self._clock().astimezone(CHINA).date()
        first = today - dt.timedelta(days=CHART_DAYS - 1)
        since = dt.datetime.combine(first, dt.time(), CHINA).astimezone(dt.timezone.utc)
        counts = {first + dt.timedelta(days=i): [0, 0, 0] for i in range(CHART_DAYS)}
        for at, action in await self.stats.consents_since(since):
            day = at.astimezone(CHINA).date()
            if day in counts:
                counts[day][("accept", "decline", "withdraw").index(action)] += 1
        by_status = await self.stats.merchants_by_status()
        return Dashboard(
            followers=len(followers),
            merchants={status: by_status.get(status, 0) for status in STATUSES},
            current=current,
            upcoming=await self.terms.pending(),
            accepted=accepted,
            share=(accepted / len(followers)) if followers else None,
            days=[(day, *values) for day, values in counts.items()],
            computed_at=self._clock(),
        )

    # -- notices --------------------------------------------------------------------

    async def preview_notice(self, actor: Actor, form: NoticeForm) -> NoticePreview:
        """What users will see and how many will get it (before opt-outs)."""
        actor.require("draft")
        form.check()
        audience = form.audience()
        size = len(await self.broadcasts.audience(audience))
        important = check_important(form.category, form.important_flag())  # what sending would refuse, said now
        sample = Notice(id="preview", category=form.category, title=form.title.strip(), body=form.body.strip(),
                        important=important, audience={}, channel=form.channel, status="queued", total=size,
                        created_at=None, created_by=actor.name)
        unknown = await unknown_recipients(audience, self.followers, self.identities)
        return NoticePreview(notice_text(sample), size, size > LARGE_AUDIENCE, important,
                             unknown_recipients_warning(unknown) if unknown else "")

    async def save_notice_draft(self, actor: Actor, form: NoticeForm, draft_id: str | None = None,
                                seen: str | None = None) -> str:
        actor.require("draft")
        return await self._save_draft(actor, "notice", form.title.strip() or "（无标题）", form.fields(), draft_id,
                                      "notice_draft", seen)

    async def send_notice(self, actor: Actor, form: NoticeForm, confirmed_size: int | None,
                          draft_id: str | None = None, submit_token: str = "", seen: str | None = None) -> str:
        """Send a notice; an audience over :data:`LARGE_AUDIENCE` must be confirmed
        by its exact size (so a stale confirmation does not send to more).
        ``submit_token``: the form's own; a second submission of one form (a
        double click) sends nothing and returns the first one's notice.
        ``seen``: :func:`draft_stamp` of the draft as the form showed it; a
        draft saved by someone else since is not sent (``draft_changed``)."""
        actor.require("broadcast")
        tokens = self.submit_tokens if submit_token else None
        if tokens is None:
            return await self._send_notice(actor, form, confirmed_size, draft_id, seen)
        first = await tokens.begin(submit_token)
        for _ in range(DUPLICATE_WAIT * 5):  # the first is still at it: its notice is known within moments
            if first != PENDING:
                break
            await asyncio.sleep(0.2)
            first = await tokens.result(submit_token)
            if first is None:  # the first failed before sending anything: this one may go
                first = await tokens.begin(submit_token)
        if first == PENDING:
            raise NoticeRefused("这条通知已经提交，正在发送中，请勿重复提交；稍后可在通知列表中查看。", code="duplicate_submit")
        if first is not None:
            return first
        created: list[str] = []

        async def remember(notice: Notice, audience_size: int | None) -> None:
            # From the moment it exists: a failure later keeps it.
            created.append(notice.id)
            await tokens.done(submit_token, notice.id)

        try:
            return await self._send_notice(actor, form, confirmed_size, draft_id, seen, on_created=remember)
        except BaseException:
            if not created:  # nothing was sent: the form may be sent again
                await tokens.release(submit_token)
            raise

    async def _send_notice(self, actor: Actor, form: NoticeForm, confirmed_size: int | None,
                           draft_id: str | None, seen: str | None, on_created=None) -> str:
        preview = await self.preview_notice(actor, form)
        if preview.large and confirmed_size != preview.audience_size:
            # A number typed that is not the count is said to be wrong (the audience may have grown meanwhile).
            wrong = f"您填写的人数 {confirmed_size} 与当前受众人数不符。" if confirmed_size is not None else ""
            raise ConfirmationNeeded(
                f"{wrong}该通知将发送给 {preview.audience_size} 人，超过 {LARGE_AUDIENCE} 人，"
                f"请在确认框中填写人数 {preview.audience_size} 后再发送。"
            )
        if draft_id:
            await self._open_draft(draft_id, "notice", seen=seen, doing="发送")

        async def created(notice: Notice, audience_size: int | None) -> None:
            # Audited once it exists, as the CLI does: planning may fail later, and the notice is still sent.
            await self.audit.record(actor.name, "notice_send", notice.id, address=actor.address,
                                    after={**audit_entry(notice, audience_size), "draft": draft_id or ""})
            if on_created is not None:
                await on_created(notice, audience_size)

        notice_id = await self.broadcasts.send(
            category=form.category, title=form.title, body=form.body, important=form.important_flag(),
            audience=form.audience(), channel=form.channel, by=actor.name, refuse_empty=True, on_created=created,
        )
        if draft_id:
            await self.drafts.close(draft_id, "published", notice_id, actor.name, self._clock())
        return notice_id

    async def control_notice(self, actor: Actor, notice_id: str, action: str) -> Controlled:
        """Pause, resume or cancel a broadcast; a repeat changes nothing and is
        not audited (``Controlled.already`` says so)."""
        actor.require("broadcast")
        if action not in ("pause", "resume", "cancel"):
            raise NoticeRefused(f"未知的操作 {action}")
        before = await self.broadcasts.progress(notice_id)
        done = await getattr(self.broadcasts, action)(notice_id)
        if done.changed:
            await self.audit.record(actor.name, f"notice_{action}", notice_id,
                                    before={"status": before.notice.status, "sent": before.sent, "pending": before.pending},
                                    after={"status": done.notice.status}, address=actor.address)
        return done

    async def recent_notices(self, actor: Actor, limit: int = 50, skip: int = 0,
                             category: str | None = None) -> list[Notice]:
        """Notices newest first, a page at a time (a day of merchant reviews, each
        with its notice, pushed a paused broadcast off a single page)."""
        actor.require("read")
        if category and category not in CATEGORIES:
            raise BotError(f"未知的通知类别 {category}", code="bad_category")
        return await self.stats.recent_notices(limit, skip, category or None)

    async def unfinished_notices(self, actor: Actor) -> list[Notice]:
        """Broadcasts still to finish (queued, sending, paused), however many came after."""
        actor.require("read")
        return await self.stats.unfinished_notices()

    # -- drafts ---------------------------------------------------------------------

    async def open_drafts(self, actor: Actor, kind: str) -> list[Draft]:
        """Open drafts of ``kind``; a version draft whose version id was published
        since (from another form, or the CLI) is left out: it can no longer be."""
        actor.require("read")
        drafts = await self.drafts.open(kind)
        if kind != "version" or not drafts:
            return drafts
        taken = {v.version.casefold() for v in await self.terms.versions() + await self.terms.withdrawn()}
        return [d for d in drafts if (d.title.split() or [""])[0].casefold() not in taken]

    async def draft(self, actor: Actor, draft_id: str, kind: str) -> Draft:
        actor.require("read")
        return await self._open_draft(draft_id, kind, open_only=False)

    async def discard_draft(self, actor: Actor, draft_id: str, kind: str) -> None:
        actor.require("draft")
        draft = await self._open_draft(draft_id, kind)
        await self.drafts.close(draft_id, "discarded", "", actor.name, self._clock())
        await self.audit.record(actor.name, "draft_discard", draft_id, before={"kind": kind, "title": draft.title},
                                address=actor.address)

    async def _save_draft(self, actor: Actor, kind: str, title: str, fields: dict, draft_id: str | None,
                          action: str, seen: str | None = None) -> str:
        before = None
        if draft_id:
            before = (await self._open_draft(draft_id, kind, seen=seen, doing="保存")).fields
        try:
            saved = await self.drafts.save(kind, title, fields, actor.name, self._clock(), draft_id)
        except KeyError:
            raise DraftNotFound("该草稿已发布或已放弃，不能再修改") from None
        await self.audit.record(actor.name, action, saved, before=before, after=fields, address=actor.address)
        return saved

    async def _open_draft(self, draft_id: str, kind: str, open_only: bool = True, seen: str | None = None,
                          doing: str = "") -> Draft:
        """The draft, open (unless not ``open_only``) and, given ``seen``, as the
        admin's form showed it: saved by someone else since, saving, sending or
        publishing this form would silently undo that (refused, naming ``doing``)."""
        draft = await self.drafts.get(draft_id)
        if draft is None or draft.kind != kind:
            raise DraftNotFound(f"没有编号为 {draft_id} 的草稿")
        if open_only and draft.status != "draft":
            raise DraftNotFound("该草稿已发布或已放弃")
        if seen is not None and draft_stamp(draft) != seen:
            raise DraftChanged(
                f"该草稿在您打开后已被 {draft.updated_by} 修改并保存，为免覆盖，本次未{doing}。"
                f"请复制您的修改，重新打开草稿核对后再{doing}。")
        return draft

    # -- agreement ------------------------------------------------------------------

    async def save_version_draft(self, actor: Actor, form: VersionForm, draft_id: str | None = None,
                                 seen: str | None = None) -> str:
        """Save a version draft; its text must parse (the format of ``terms show``)."""
        actor.require("draft")
        draft = form.draft()
        if form.effective_at.strip():
            parse_effective_at(form.effective_at)
        return await self._save_draft(actor, "version", f"{draft.version} {draft.title}",
                                      dataclasses.asdict(form), draft_id, "version_draft", seen)

    async def withdraw_version(self, actor: Actor, version_id: str, reason: str) -> tuple[AgreementVersion, str]:
        """Withdraw a version not yet in force, as ``wetoop-bot terms withdraw``
        (:meth:`Terms.withdraw`: the reason is told to users); the owner's, as publishing."""
        actor.require("publish")
        return await self.terms.withdraw(version_id, reason=reason, by=actor.name, address=actor.address)

    async def preview_version(self, actor: Actor, form: VersionForm
                              ) -> tuple[AgreementVersion, AgreementVersion, list[Row], str, str]:
        """What the drafted version changes, before it is published: ``(the
        latest published version, the draft, side-by-side rows around each
        change, what it does to the Q&A's examples or "", the changes its
        summary does not name or "")``. Its text must parse, as for saving."""
        actor.require("draft")
        draft = form.draft()
        base = (await self.terms.versions())[-1]
        lost, unnamed = await self._version_warnings(base, draft)
        return base, draft, side_by_side(base, draft, context=2), lost, unnamed

    async def version_refusal(self, form: VersionForm) -> str:
        """Why publishing ``form`` now would be refused ("" when it would not, or
        when no 生效时间 is filled in yet): said with the preview, which showed
        the diff alone and let 发布 find the 7-day rule."""
        if not form.effective_at.strip():
            return ""
        try:
            draft = form.draft()
            await self.terms.check(draft, reason=form.reason, effective_at=parse_effective_at(form.effective_at))
        except BotError as exc:
            return f"按当前的生效时间和修改原因，发布将被拒绝：{exc.message}"
        return ""

    async def _version_warnings(self, base: AgreementVersion, draft: AgreementVersion) -> tuple[str, str]:
        """What publishing ``draft`` after ``base`` warns of, as ``terms publish``
        does: the Q&A examples it drops, the changes its summary does not name."""
        # Reads and parses the Q&A files: off the event loop.
        lost = await asyncio.to_thread(examples_lost_warning, base, draft, self.qa_override_dir)
        return lost, changes_warning(base, draft)



    async def publish_version(self, actor: Actor, form: VersionForm, draft_id: str | None = None,
                              seen: str | None = None, acknowledged: str = "") -> tuple[AgreementVersion, str]:
        """Publish through :meth:`Terms.publish` (and so the shared amendment
        rules); ``seen`` as for :meth:`send_notice`. A draft with warnings is
        published only once they were shown (:class:`WarningsUnconfirmed`):
        the CLI prints them after publishing; a console that published at
        once showed them to nobody who had not previewed."""
        actor.require("publish")
        draft = form.draft()
        repeated = await self._just_published(draft)
        if repeated is not None:
            return repeated
        if draft_id:
            await self._open_draft(draft_id, "version", seen=seen, doing="发布")
        if not form.effective_at.strip():
            raise BotError("请填写生效时间（或填 now 表示立即，仅限新功能或法律原因）", code="effective_at_required")
        effective_at = parse_effective_at(form.effective_at)
        # Refused first: warnings to confirm about a draft the rules refuse only delay the refusal.
        await self.terms.check(draft, reason=form.reason, effective_at=effective_at)
        key = warnings_key(draft, list(await self._version_warnings((await self.terms.versions())[-1], draft)))
        if key and key != acknowledged.strip():
            raise WarningsUnconfirmed()
        try:
            version, notice_id = await self.terms.publish(draft, reason=form.reason, effective_at=effective_at,
                                                          by=actor.name, address=actor.address)
        except AmendmentRefused as exc:
            # Both sends of a double click passed the check above: the second lost the race.
            repeated = await self._just_published(draft) if exc.rule == "immutable" else None
            if repeated is None:
                raise
            return repeated
        if draft_id:
            await self.drafts.close(draft_id, "published", version.version, actor.name, self._clock())
        return version, notice_id

    async def _just_published(self, draft: AgreementVersion) -> tuple[AgreementVersion, str] | None:
        """The version and notice of ``draft`` published moments ago (the same
        text and changes, within :data:`REPEAT_WINDOW`): a form sent twice (a
        double click) is answered as the first was, not with 已发布的版本不可修改."""
        try:
            existing = await self.terms.get(draft.version)
        except VersionNotFound:  # not published (or withdrawn): no repeat
            return None
        if (existing.text_sha256 != draft.text_sha256 or tuple(existing.changes) != tuple(draft.changes)
                or existing.published_at is None or self._clock() - existing.published_at > REPEAT_WINDOW):
            return None
        for _ in range(DUPLICATE_WAIT * 5):  # the first request stores the version, then creates its notice
            notice_id = await self.broadcasts.notices.first_about_version(existing.version)
            if notice_id is not None:
                return existing, notice_id
            await asyncio.sleep(0.2)
        return None

    # -- merchants ------------------------------------------------------------------

    async def search_merchants(self, actor: Actor, query: str = "", status: str | None = None,
                               limit: int | None = None) -> list[Merchant]:
        """Merchants whose openid, name, credit code, contact, phone or email contains
        ``query``; all of them, read a page at a time (``limit``: at most that many)."""
        actor.require("read")
        if status and status not in STATUSES:
            raise BotError(unknown_status(status), code="bad_status")
        found = await self.merchants.repo.list(status or None, limit=limit)
        needle = query.strip().casefold()
        if not needle:
            return found
        return [m for m in found if any(needle in (getattr(m, f) or "").casefold() for f in
                                        ("openid", "entity_name", "credit_code", "contact_name", "phone", "email"))]

    async def set_merchant_status(self, actor: Actor, openid: str, status: str, reason: str,
                                  seen: str | None = None) -> Merchant:
        """Review (editor), or suspend, reinstate, close (owner), through
        :meth:`MerchantAccounts.set_status` and its transitions.

        ``seen``: :func:`profile_stamp` of the record the admin looked at; a
        profile changed since is not approved unseen (refused, ``profile_changed``).
        """
        # Under the merchant's own lock, which chat and the API hold while they
        # change the profile: the record checked is the record changed.
        if status not in STATUSES:  # wrong input whoever sends it, before whether they may
            raise UnknownStatus(unknown_status(status))
        async with one_at_a_time(self.locks, openid):
            existing = await self.merchants.get(openid)
            if existing is not None:  # said before whether this admin may: it is no change at all
                refuse_no_change(existing, status)
            review = existing is not None and existing.status == "pending_review" and status in ("active", "pending_review")
            actor.require("merchant_review" if review else "merchant_suspend")
            if seen is not None and existing is not None and profile_stamp(existing) != seen:
                raise AccountRefused("商家资料在您打开页面后有更新，请核对页面上的最新资料后再操作。", code="profile_changed")
            if status == "active" and existing is not None and existing.status != "active":
                await self._require_consent(openid)
            # The change is made only from the status the permission was decided on:
            # else an editor's 审核通过 landing after an owner's 暂停 would reinstate.
            merchant = await self.merchants.set_status(openid, status, reason, by=actor.recorded_as,
                                                       expected=existing.status if existing else None)
        await self.audit.record(actor.name, "merchant_status", openid,
                                before={"status": existing.status if existing else None},
                                after={"status": merchant.status, "reason": reason.strip()}, address=actor.address)
        return merchant

    async def merchant_consent(self, openid: str) -> ConsentState | None:
        """The merchant's consent to the version in force, for the admins reviewing them."""
        return None if self.consents is None else await self.consents.fresh_state(openid)

    async def _require_consent(self, openid: str) -> None:
        """Refuse making active a merchant who does not accept the agreement
        (declined, withdrew, never chose): the agreement has them stop using the
        service, and the approval notice would tell them to start. One who
        accepted an older version is asked again by chat and the API anyway."""
        state = await self.merchant_consent(openid)
        if state is not None and state.status in ("none", "declined", "withdrawn"):
            raise AccountRefused(
                f"该用户目前{CONSENT_STATUS[state.status]}（现行版本 {state.current.version}），不能设为已生效："
                "协议要求不同意协议的用户停止使用服务。请待用户同意现行版本后再操作。", code="consent_missing",
            )

    # -- Q&A data ------------------------------------------------------------------

    async def qa_file(self, actor: Actor, name: str) -> tuple[str, str]:
        """(the admins' override text, the shipped text) of a Q&A file."""
        actor.require("read")
        _check_qa_name(name)
        override = self.qa_override_dir / name

        def read() -> tuple[str, str]:  # files: off the event loop
            return (override.read_text(encoding="utf-8") if override.is_file() else "",
                    (DEFAULT_DATA_DIR / name).read_text(encoding="utf-8"))

        return await asyncio.to_thread(read)

    async def save_qa_file(self, actor: Actor, name: str, text: str) -> bool:
        """Check the override against the shipped data (as the index would load
        it), then replace the file atomically; the index reloads within seconds.
        Empty text removes the override. False when ``text`` is what the file
        holds: nothing is written or audited (the audit listed saves that changed nothing)."""
        actor.require("qa_edit")
        _check_qa_name(name)
        before, _ = await self.qa_file(actor, name)
        text = text.replace("\r\n", "\n")
        if text == before or (not text.strip() and not before):
            return False
        # Parsing and file writes are blocking: off the event loop.
        await asyncio.to_thread(self._check_and_write, name, text, await self.terms.current())
        await self.audit.record(actor.name, "qa_edit", name, before={"text": before}, after={"text": text},
                                address=actor.address)
        return True

    def _check_and_write(self, name: str, text: str, version: AgreementVersion) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            if self.qa_override_dir.is_dir():
                for other in QA_FILES:
                    if other != name and (self.qa_override_dir / other).is_file():
                        shutil.copy(self.qa_override_dir / other, Path(scratch) / other)
            if text.strip():
                (Path(scratch) / name).write_text(text, encoding="utf-8")
            try:
                data = load_data(DEFAULT_DATA_DIR, Path(scratch))
            except QADataError as exc:
                raise QADataError(exc.message.replace(str(Path(scratch)) + os.sep, "")) from None
        unknown = {ref for ref, _example in
                   unplaced_examples(data.clauses, version) - unplaced_examples(load_data(DEFAULT_DATA_DIR).clauses, version)}
        if unknown:
            # The index would drop them with only a log line; say so now, and why.
            refs = {u.ref for u in units_of(version)}
            missing, unmatched = sorted(unknown - refs), sorted(unknown & refs)
            problems = []
            if missing:
                problems.append(f"现行版本 {version.version} 中没有条款 {'、'.join(missing)}（条款编号形如 4.1 或 前言.3）")
            if unmatched:
                problems.append(f"条款 {'、'.join(unmatched)} 的锚点 anchor 在现行版本 {version.version} 的任何条款中都找不到"
                                "（锚点应是该条款原文中的一段文字；不需要时可删去 anchor）")
            raise QADataError("；".join(problems) + "，这些例句不会被使用。")
        self.qa_override_dir.mkdir(parents=True, exist_ok=True)
        target = self.qa_override_dir / name
        if text.strip():
            temporary = target.with_name(f".{name}.{os.getpid()}.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)
        elif target.exists():
            target.unlink()


def _check_qa_name(name: str) -> None:
    if name not in QA_FILES:
        raise QADataError(f"不能编辑文件 {name}，可编辑：{'、'.join(QA_FILES)}")


def merchant_row(merchant: Merchant) -> dict:
    """A merchant as one CSV row: status and kind by their Chinese names, times in Beijing time."""
    row = {f: getattr(merchant, f) for f in MERCHANT_HEADINGS}
    row["status"] = STATUSES.get(merchant.status, merchant.status)
    row["entity_type"] = ENTITY_TYPES.get(merchant.entity_type, merchant.entity_type)
    for f in ("created_at", "updated_at"):
        row[f] = beijing_iso(row[f])
    return {k: ("" if v is None else v) for k, v in row.items()}
