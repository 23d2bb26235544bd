"""Pages that change what users get: agreement versions, notices, Q&A data."""

from __future__ import annotations

import secrets

import tornado.escape
import tornado.web

from bot import amendment_rules
from bot.agreement import REASONS
from bot.amendment_rules import IMMEDIATE_REASONS, MIN_NOTICE, PUBLISHABLE_REASONS, earliest_shown
from bot.console import LARGE_AUDIENCE, QA_FILES, NoticeForm, VersionForm, WarningsUnconfirmed, draft_stamp, warnings_key
from bot.errors import BotError
from bot.merchants import STATUSES
from bot.consent import CHANNEL_LABELS
from bot.notice_checks import BODY_LIMIT, TITLE_LIMIT
from bot.notices import JOB_LABELS, NO_WORKER, PAUSED_BY, SKIP_REASONS, error_meaning, notice_text
from bot.terms_diff import side_by_side
from handlers.admin.base import AdminHandler
from handlers.base import http_status
from storage.notices import CATEGORIES

AUDIENCES = {"all": "所有关注者", "merchants": "商家（可按状态）", "consented_any_version": "曾同意协议的用户",
             "openids": "指定 openid"}

#: A broadcast's pages and controls count, skip or queue its whole audience
#: (seconds at 100,000 recipients on the embedded database).
BROADCAST_BUDGET = 30.0


# -- agreement ------------------------------------------------------------------------


class TermsHandler(AdminHandler):
    nav = "terms"

    async def get(self) -> None:
        terms = self.runtime.terms
        withdrawn = await terms.withdrawn()  # listed too, as `terms list` does, marked 已撤回
        versions = sorted([*await terms.versions(), *withdrawn], key=lambda v: (v.effective_at, v.version), reverse=True)
        drafts = await self.console.open_drafts(self.actor, "version")
        self.page("terms.html", versions=versions, current=await terms.current(), reasons=REASONS,
                  now=self.runtime.clock(), drafts=drafts, withdrawn={v.version for v in withdrawn})


class TermsVersionHandler(AdminHandler):
    """A version's text; POST withdraws it while it is not yet in force (owner)."""

    nav = "terms"
    permissions = {"GET": "read", "POST": "publish"}
    #: Withdrawing tells everyone who accepted any version: it reads that audience.
    mongo_budget = BROADCAST_BUDGET

    async def get(self, version: str) -> None:
        await self._show(version)

    async def post(self, version: str) -> None:
        reason = self.text("reason", "", 500)
        try:
            withdrawn, notice_id = await self.console.withdraw_version(self.actor, version, reason)
        except BotError as exc:
            if exc.kind == "forbidden":
                raise
            await self._show(version, error=exc.message, status=http_status(exc), reason=reason)
            return
        self.done(f"/admin/notices/{notice_id}", f"已撤回版本 {withdrawn.version}，撤回通知正在发送")

    async def _show(self, version: str, error: str = "", status: int = 200, reason: str = "") -> None:
        terms = self.runtime.terms
        found = await terms.get(version, withdrawn_too=True)
        withdrawal = await terms.withdrawal(found.version)
        upcoming = withdrawal is None and found.effective_at > self.runtime.clock()
        self.page("terms_version.html", http_status=status, version=found, reasons=REASONS, withdrawal=withdrawal,
                  upcoming=upcoming, error=error, reason=reason)


class TermsDiffHandler(AdminHandler):
    nav = "terms"

    async def get(self) -> None:
        versions = await self.runtime.terms.versions()
        names = [v.version for v in versions]
        old_name = self.get_argument("old", names[-2] if len(names) > 1 else names[0])
        new_name = self.get_argument("new", names[-1])
        terms = self.runtime.terms
        old, new = await terms.get(old_name, withdrawn_too=True), await terms.get(new_name, withdrawn_too=True)
        full = self.get_argument("full", "") == "1"
        rows = side_by_side(old, new, context=None if full else 2)
        changed = sum(1 for row in rows if row.tag != "equal")
        # Withdrawn versions too (their pages link here): the lists showed another version selected.
        withdrawn = [v.version for v in await terms.withdrawn()]
        self.page("terms_diff.html", old=old, new=new, rows=rows, names=names + withdrawn, withdrawn=set(withdrawn),
                  full=full, changed=changed)


class TermsPublishHandler(AdminHandler):
    """Compose a version (editors save drafts; owners publish)."""

    nav = "terms"
    permissions = {"GET": "draft", "POST": "draft"}
    #: Publishing an amendment or sending a notice reads its whole audience first.
    mongo_budget = BROADCAST_BUDGET

    async def get(self) -> None:
        draft_id = self.get_argument("draft", "")
        if draft_id:
            draft = await self.console.draft(self.actor, draft_id, "version")
            form, self.seen = VersionForm.from_fields(draft.fields), draft_stamp(draft)
        else:
            # From the latest published version: a draft from an earlier one
            # would silently undo the changes of those published after it.
            terms = self.runtime.terms
            base = await terms.get(self.get_argument("from", ""), withdrawn_too=True) if self.get_argument("from", "") \
                else (await terms.versions())[-1]
            form = VersionForm(toml=base.to_toml(), reason="routine", effective_at="")
            published = await terms.versions()  # withdrawn ones left out: drafting from one undoes nothing
            undone = amendment_rules.undoes(base, published)
            if undone is not None:
                # Said now, by the rule publishing applies, not only when publishing is refused.
                latest = published[-1]
                await self._form(form, draft_id, error=(
                    f"注意：您正以较早的版本 {base.version} 为基础起草，最新版本是 {latest.version}。这份草稿会撤销此后的修改"
                    f"（{amendment_rules.places(undone[1])}）；发布时，changes 中须逐条写明，否则将被拒绝。"
                    f"如只想在最新版本上修改，请改以版本 {latest.version} 为基础起草。"))
                return
        await self._form(form, draft_id)

    async def post(self) -> None:
        form = VersionForm(toml=self.text("toml", limit=200_000), reason=self.text("reason", "routine", 32),
                           effective_at=self.text("effective_at", "", 64).strip())
        draft_id = self.get_argument("draft", "") or None
        action = self.get_argument("action", "save")
        if action not in ("publish", "preview", "save"):
            await self._form(form, draft_id or "", error=f"未知的操作：{action[:20]}", status=400)
            return
        seen = self.seen_stamp()
        try:
            if action == "publish":
                version, notice_id = await self.console.publish_version(
                    self.actor, form, draft_id, seen, acknowledged=self.text("acknowledged", "", 64))
                self.done(f"/admin/notices/{notice_id}", f"已发布版本 {version.version}，条款修改通知正在发送")
                return
            if action == "preview":
                preview = await self.console.preview_version(self.actor, form)
                await self._form(form, draft_id or "", preview=preview, error=await self.console.version_refusal(form))
                return
            saved = await self.console.save_version_draft(self.actor, form, draft_id, seen)
            self.done(f"/admin/terms/new?draft={saved}", "草稿已保存")
        except WarningsUnconfirmed as exc:  # shown with the preview, whose warnings they are
            await self._form(form, draft_id or "", error=exc.message, status=http_status(exc),
                             preview=await self.console.preview_version(self.actor, form))
        except BotError as exc:
            await self._form(form, draft_id or "", error=exc.message, status=http_status(exc))

    async def _form(self, form: VersionForm, draft_id: str, error: str = "", status: int = 200, preview=None) -> None:
        now = self.runtime.clock()
        latest = (await self.runtime.terms.versions())[-1]
        # Publishing after this page confirms the warnings it shows, and only those.
        acknowledged = warnings_key(preview[1], list(preview[3:])) if preview else ""
        self.page("terms_publish.html", http_status=status, form=form, draft_id=draft_id, error=error, reasons=REASONS,
                  publishable=PUBLISHABLE_REASONS, immediate=IMMEDIATE_REASONS, min_days=MIN_NOTICE.days,
                  max_days=amendment_rules.MAX_AHEAD.days,
                  earliest=earliest_shown("routine", now), now=now, latest=latest, preview=preview,
                  acknowledged=acknowledged)


# -- notices ------------------------------------------------------------------------


class NoticesHandler(AdminHandler):
    nav = "notices"

    async def get(self) -> None:
        category = self.get_argument("category", "").strip()[:32]
        try:
            page = min(max(1, int(self.get_argument("page", "1"))), NOTICE_PAGES)
        except ValueError:
            page = 1
        found = await self.console.recent_notices(self.actor, NOTICE_PAGE + 1, (page - 1) * NOTICE_PAGE, category)
        unfinished = await self.console.unfinished_notices(self.actor) if page == 1 and not category else []
        drafts = await self.console.open_drafts(self.actor, "notice")
        self.page("notices.html", notices=found[:NOTICE_PAGE], more=len(found) > NOTICE_PAGE, page=page,
                  category=category, unfinished=unfinished, drafts=drafts, categories=CATEGORIES, labels=JOB_LABELS)


#: Notices a page of the list, and the furthest page (skips are 8-byte integers in MongoDB).
NOTICE_PAGE = 50
NOTICE_PAGES = 100_000


class NoticeComposeHandler(AdminHandler):
    """Compose: preview and save (editor), send (owner)."""

    nav = "notices"
    permissions = {"GET": "draft", "POST": "draft"}
    #: Publishing an amendment or sending a notice reads its whole audience first.
    mongo_budget = BROADCAST_BUDGET

    async def get(self) -> None:
        draft_id = self.get_argument("draft", "")
        form = NoticeForm()
        if draft_id:
            draft = await self.console.draft(self.actor, draft_id, "notice")
            form, self.seen = NoticeForm.from_fields(draft.fields), draft_stamp(draft)
        await self._form(form, draft_id)

    async def post(self) -> None:
        form = NoticeForm(
            # Title and body as typed, however long: the notice's own rule (check_text) says
            # what is too long on the form, keeping the text (a bare 400 page lost it).
            category=self.text("category", "service", 32), title=self.get_argument("title", "", strip=False).strip(),
            body=self.get_argument("body", "", strip=False).strip(), important=self.text("important", "default", 16),
            audience_type=self.text("audience_type", "all", 32),
            statuses=tuple(s[:32] for s in self.get_arguments("statuses")[:10]),  # unknown ones are refused
            openids=self.get_argument("openids", "", strip=False), channel=self.text("channel", "auto", 16),
        )
        draft_id = self.get_argument("draft", "") or None
        action = self.get_argument("action", "preview")
        if len(form.openids) > OPENIDS_CHARS:
            # Said on the form, what was typed kept (a bare error page lost the title and body).
            lines = form.openids.count("\n") + 1
            await self._form(form, draft_id or "", status=400, error=(
                f"openid 名单过长：{lines:,} 行、{len(form.openids):,} 个字符，网页一次最多 {OPENIDS_CHARS:,} 个字符"
                f"（约 {OPENIDS_CHARS // 30:,} 个 openid）。请分批发送，或用命令行发送整份名单："
                "wetoop-bot notice send … --audience openids:名单文件"))
            return
        if action not in ("preview", "send", "save"):
            await self._form(form, draft_id or "", status=400, error=f"未知的操作：{action[:20]}")
            return
        seen = self.seen_stamp()
        try:
            if action == "send":
                confirm = self.get_argument("confirm_size", "").strip()
                notice_id = await self.console.send_notice(
                    self.actor, form, int(confirm) if confirm.isdecimal() else None, draft_id,
                    submit_token=self.text("submit_token", "", 64), seen=seen)
                self.done(f"/admin/notices/{notice_id}", "通知已开始发送")
                return
            if action == "save":
                saved = await self.console.save_notice_draft(self.actor, form, draft_id, seen)
                self.done(f"/admin/notices/new?draft={saved}", "草稿已保存")
                return
            preview = await self.console.preview_notice(self.actor, form)
            await self._form(form, draft_id or "", preview=preview)
        except BotError as exc:
            preview = None
            try:
                preview = await self.console.preview_notice(self.actor, form)
            except BotError:
                pass
            await self._form(form, draft_id or "", preview=preview, error=exc.message, status=http_status(exc))

    async def _form(self, form: NoticeForm, draft_id: str, preview=None, error: str = "", status: int = 200) -> None:
        self.page("notice_compose.html", http_status=status, form=form, draft_id=draft_id, preview=preview, error=error,
                  categories=CATEGORIES, audiences=AUDIENCES, statuses=STATUSES, large=LARGE_AUDIENCE,
                  title_limit=TITLE_LIMIT, body_limit=BODY_LIMIT,
                  submit_token=secrets.token_urlsafe(16))  # one per form shown: a double submit sends once


#: The most characters of openids the compose form takes (some 16,000 openids of 28
#: characters and a line break); the CLI reads a file of any length.
OPENIDS_CHARS = 500_000


class NoticeHandler(AdminHandler):
    nav = "notices"
    mongo_budget = BROADCAST_BUDGET

    async def get(self, notice_id: str) -> None:
        progress = await self.runtime.broadcasts.progress(notice_id)
        self.page("notice.html", p=progress, data=progress.to_json(), categories=CATEGORIES, labels=JOB_LABELS,
                  skip_reasons=SKIP_REASONS, audiences=AUDIENCES, error_meaning=error_meaning,
                  text=notice_text(progress.notice), no_worker=NO_WORKER, paused_by=PAUSED_BY)


class NoticeProgressHandler(AdminHandler):
    """The progress as JSON, polled by the page's script."""

    json_errors = True
    activity = False
    mongo_budget = BROADCAST_BUDGET

    async def get(self, notice_id: str) -> None:
        data = (await self.runtime.broadcasts.progress(notice_id)).to_json()
        data["status_label"] = JOB_LABELS[data["status"]]
        data["failed_labels"] = {code: error_meaning(code) for code in data["failed_by_code"]}
        data["skipped_labels"] = {reason: SKIP_REASONS.get(reason, reason) for reason in data["skipped_by_reason"]}
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(tornado.escape.json_encode(data))


class NoticeControlHandler(AdminHandler):
    permissions = {"POST": "broadcast"}
    mongo_budget = BROADCAST_BUDGET

    async def post(self, notice_id: str, action: str) -> None:
        done = await self.console.control_notice(self.actor, notice_id, action)
        label = done.already or {"pause": "已暂停", "resume": "已继续发送", "cancel": "已取消"}[action]
        self.done(f"/admin/notices/{notice_id}", label)


class DraftDiscardHandler(AdminHandler):
    permissions = {"POST": "draft"}

    async def post(self, draft_id: str) -> None:
        kind = self.get_argument("kind", "notice")
        if kind not in ("notice", "version"):
            raise BotError("未知的草稿类型", code="bad_kind")
        await self.console.discard_draft(self.actor, draft_id, kind)
        back = "/admin/notices" if kind == "notice" else "/admin/terms"
        self.done(back, "草稿已放弃")


# -- Q&A ----------------------------------------------------------------------------


class QAHandler(AdminHandler):
    nav = "qa"

    async def get(self) -> None:
        unanswered = await self.runtime.qa_log.recent("abstain", limit=200)
        self.page("qa.html", unanswered=unanswered, files=QA_FILES, channels=CHANNEL_LABELS)


class QAFileHandler(AdminHandler):
    nav = "qa"
    permissions = {"GET": "read", "POST": "qa_edit"}

    async def get(self, name: str) -> None:
        override, shipped = await self.console.qa_file(self.actor, name)
        self.page("qa_file.html", name=name, label=QA_FILES[name], text=override, shipped=shipped, error="")

    async def post(self, name: str) -> None:
        text = self.text("text", "", 500_000)
        try:
            changed = await self.console.save_qa_file(self.actor, name, text)
        except BotError as exc:
            _, shipped = await self.console.qa_file(self.actor, name)
            self.page("qa_file.html", http_status=http_status(exc), name=name, label=QA_FILES[name], text=text, shipped=shipped,
                      error=exc.message)
            return
        self.done(f"/admin/qa/{name}", "已保存，问答索引将在几秒内重新加载" if changed else "内容没有变化，无需保存")
