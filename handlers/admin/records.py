"""Read-only pages: dashboard, audit log, consent ledger (with CSV exports)."""

from __future__ import annotations

import datetime as dt
import json

import pymongo

from bot.audit import ACTIONS
from bot.consent import ACTION_LABELS, CHANNEL_LABELS, RECORD_HEADINGS, record_row
from bot.errors import BotError
from bot.spreadsheet import ExcelCsv
from bot.merchants import STATUSES
from bot.periods import check_period
from handlers.admin.base import AdminHandler
from handlers.base import each_within_budget
from storage.consents import ACTIONS as CONSENT_ACTIONS

PAGE = 100
MAX_PAGE = 1_000_000


def chart(days: list[tuple], width: int = 720, height: int = 220) -> dict:
    """Geometry of the consents-per-day line chart (inline SVG)."""
    left, right, top, bottom = 36, 20, 12, 28
    peak = max([max(a, d, w) for _, a, d, w in days] + [1])
    step = 10 ** max(0, len(str(peak)) - 1)
    peak = ((peak + step - 1) // step) * step
    span_x = (width - left - right) / max(1, len(days) - 1)
    span_y = height - top - bottom

    def y(value: int) -> float:
        return round(top + span_y * (1 - value / peak), 1)

    def x(index: int) -> float:
        return round(left + span_x * index, 1)

    series = []
    for key, index in (("accept", 1), ("decline", 2), ("withdraw", 3)):
        label = ACTION_LABELS[key]
        points = [(x(i), y(row[index])) for i, row in enumerate(days)]
        series.append({"key": key, "label": label, "points": " ".join(f"{px},{py}" for px, py in points),
                       "dots": [(px, py, row[0], row[index]) for (px, py), row in zip(points, days)],
                       "total": sum(row[index] for row in days)})
    ticks = [(y(v), v) for v in (0, peak // 2, peak)]
    last = len(days) - 1
    labels = [(x(i), row[0].strftime("%m-%d"), "end" if i == last else "middle")
              for i, row in enumerate(days) if (i % 5 == 0 and last - i >= 3) or i == last]
    return {"width": width, "height": height, "series": series, "ticks": ticks, "labels": labels,
            "left": left, "right": width - right, "base": height - bottom}


class DashboardHandler(AdminHandler):
    nav = "dashboard"

    async def get(self) -> None:
        board = await self.console.dashboard(self.actor)
        self.page("dashboard.html", board=board, chart=chart(board.days) if board else None, statuses=STATUSES)


def _audit_filters(handler: AdminHandler) -> dict:
    action = handler.get_argument("action", "").strip()
    if action and action not in ACTIONS:
        raise BotError(f"未知的操作类型 {action}", code="bad_action")
    return {"actor": handler.get_argument("actor", "").strip()[:64] or None, "action": action or None,
            **_period(handler)}


def _period(handler: AdminHandler) -> dict:
    since, until = handler.day("since"), handler.day("until", end=True)
    check_period(since, until, f"开始日期（{handler.get_argument('since', '').strip()}）",
                 f"结束日期（{handler.get_argument('until', '').strip()}）")
    return {"since": since, "until": until}


class AuditHandler(AdminHandler):
    nav = "audit"

    async def get(self) -> None:
        filters = _audit_filters(self)
        try:
            page = min(max(1, int(self.get_argument("page", "1"))), MAX_PAGE)  # MongoDB skips take 8-byte ints
        except ValueError:
            page = 1
        entries = await self.runtime.audit.recent(**filters, limit=PAGE + 1, skip=(page - 1) * PAGE)
        self.page("audit.html", entries=entries[:PAGE], more=len(entries) > PAGE, page=page, actions=ACTIONS,
                  query={k: self.get_argument(k, "") for k in ("actor", "action", "since", "until")},
                  dumps=_bounded_json)


#: Characters of an entry's before or after the audit page shows: a Q&A file
#: saved whole, each save on the page, made it megabytes. The CSV keeps all.
SHOWN_CHARS = 2_000


def _bounded_json(value) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, indent=1, default=str)
    if len(text) <= SHOWN_CHARS:
        return text
    return text[:SHOWN_CHARS] + f"\n…（共 {len(text):,} 个字符，此处只显示开头；完整内容见“导出 CSV”）"


class AuditCsvHandler(AdminHandler):
    budgets_itself = ("get",)  # a download may stream for longer: each piece has the budget

    async def get(self) -> None:
        filters = _audit_filters(self)
        with pymongo.timeout(self.mongo_budget):
            await self.runtime.audit.record(self.actor.name, "export", "audit.csv", after=_shown(filters),
                                            address=self.actor.address)
        self.stream_csv("admin-audit.csv")
        async for chunk in each_within_budget(self.runtime.audit.csv_chunks(**filters), self.mongo_budget):
            self.write(chunk)
            await self.flush()


def _consent_filters(handler: AdminHandler) -> dict:
    action = handler.get_argument("action", "").strip()
    if action and action not in CONSENT_ACTIONS:
        raise BotError(f"未知的动作 {action}，可选：{'、'.join(CONSENT_ACTIONS)}", code="bad_action")
    return {"version": handler.get_argument("version", "").strip()[:64] or None, "action": action or None,
            **_period(handler), "openid": handler.get_argument("openid", "").strip()[:64] or None}


async def _check_version(handler: AdminHandler, filters: dict) -> None:
    """A version filter names a version that exists (a typo answered "0 records")."""
    if filters["version"]:
        await handler.runtime.terms.get(filters["version"], withdrawn_too=True)


def _shown(filters: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in filters.items() if v}


class ConsentsHandler(AdminHandler):
    nav = "consents"

    async def get(self) -> None:
        filters = _consent_filters(self)
        await _check_version(self, filters)
        records, total = await self.runtime.ledger.newest(PAGE * 2, **filters)
        versions = [v.version for v in await self.runtime.terms.versions()]
        self.page("consents.html", records=records, total=total, versions=versions, labels=ACTION_LABELS, channels=CHANNEL_LABELS,
                  query={k: self.get_argument(k, "") for k in ("version", "action", "since", "until", "openid")})


class ConsentsCsvHandler(AdminHandler):
    budgets_itself = ("get",)  # as AuditCsvHandler

    async def get(self) -> None:
        filters = _consent_filters(self)
        with pymongo.timeout(self.mongo_budget):
            await _check_version(self, filters)
            await self.runtime.audit.record(self.actor.name, "export", "consents.csv", after=_shown(filters),
                                            address=self.actor.address)
        self.stream_csv("consents.csv")
        sheet = ExcelCsv(RECORD_HEADINGS.values())
        async for record in each_within_budget(self.runtime.ledger.scan(**filters), self.mongo_budget):
            row = record_row(record, named=True)
            sheet.row([row[f] for f in RECORD_HEADINGS])
            if sheet.size > 32_000:
                self.write(sheet.take())
                await self.flush()
        self.write(sheet.take())
