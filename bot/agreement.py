"""The agreement as data: versions, sections, numbered clauses, summaries.

A version's legal text is its title, preamble clauses and sections (title and
clauses), exactly as published. :meth:`AgreementVersion.canonical_text` joins
them with blank lines, and its SHA-256 (``text_sha256``) identifies what a
user was shown when they consented. Our own summaries are not part of the
legal text and not hashed.

The file format (TOML) is what ``wetoop-bot terms show`` prints and
``wetoop-bot terms publish`` reads::

    version = "2026-12-01"
    title = "微拓软件服务使用协议"
    summary = ["三到五行的整体摘要", "…"]
    changes = ["本次修改的摘要（修订版本必填）"]
    preamble = ["欢迎使用微拓软件服务!", "…"]

    [[sections]]
    title = "使用微拓的服务"
    summary = "不超过 80 字的白话摘要"
    clauses = ["第一款原文", "第二款原文"]

Sections are numbered 1.. in file order, clauses ``N.M`` within a section.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import tomllib
from pathlib import Path

from bot.errors import BotError
from bot.file_problems import toml_problem

#: Data folder holding the seed version(s).
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "agreement"
SEED_VERSION = "2022-05-22"

SECTION_SUMMARY_MAX = 80
SUMMARY_LINES = (3, 5)
#: The longest version id.
VERSION_MAX = 32
VERSION_RE = re.compile(rf"^[0-9A-Za-z][0-9A-Za-z._-]{{0,{VERSION_MAX - 1}}}$")
REASONS = {
    "routine": "常规修改",
    "new_feature": "新功能",
    "legal": "法律原因",
    "initial": "初始版本",
}


class InvalidAgreement(BotError):
    """An agreement file or draft that cannot be published as it is."""

    code = "invalid_agreement"
    kind = "invalid"


@dataclasses.dataclass(frozen=True)
class Section:
    number: int
    title: str
    summary: str
    clauses: tuple[str, ...]

    def clause_number(self, index: int) -> str:
        """``"3.2"`` for the second clause of section 3."""
        return f"{self.number}.{index + 1}"

    def full_text(self) -> str:
        lines = [f"第{self.number}节 {self.title}"]
        lines += [f"{self.clause_number(i)} {clause}" for i, clause in enumerate(self.clauses)]
        return "\n\n".join(lines)


@dataclasses.dataclass(frozen=True)
class AgreementVersion:
    """One version of the agreement. Publication fields are ``None`` in a draft."""

    version: str
    title: str
    summary: tuple[str, ...]
    preamble: tuple[str, ...]
    sections: tuple[Section, ...]
    changes: tuple[str, ...] = ()
    reason: str | None = None
    published_at: dt.datetime | None = None
    effective_at: dt.datetime | None = None

    def canonical_text(self) -> str:
        parts = [self.title, *self.preamble]
        for section in self.sections:
            parts.append(section.title)
            parts.extend(section.clauses)
        return "\n\n".join(parts)

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.canonical_text().encode("utf-8")).hexdigest()

    def section(self, number: int) -> Section | None:
        if 1 <= number <= len(self.sections):
            return self.sections[number - 1]
        return None

    def published(self, reason: str, published_at: dt.datetime, effective_at: dt.datetime) -> "AgreementVersion":
        return dataclasses.replace(self, reason=reason, published_at=published_at, effective_at=effective_at)

    # -- the file format ----------------------------------------------------

    def to_toml(self) -> str:
        """The version in the file format ``publish`` reads (metadata as comments)."""
        out = []
        if self.published_at is not None:
            out += [
                f"# 发布时间：{beijing_iso(self.published_at)}",
                f"# 生效时间：{beijing_iso(self.effective_at)}",
                f"# 修改原因：{self.reason}（{REASONS.get(self.reason or '', '')}）",
                f"# 文本 SHA-256：{self.text_sha256}",
                "# 修改后发布新版本：请改用新的 version，并更新 changes。",
                "",
            ]
        out += [
            f"version = {_q(self.version)}",
            f"title = {_q(self.title)}",
            f"summary = {_array(self.summary)}",
            f"changes = {_array(self.changes)}",
            f"preamble = {_array(self.preamble)}",
        ]
        for section in self.sections:
            out += [
                "",
                "[[sections]]",
                f"# 第{section.number}节",
                f"title = {_q(section.title)}",
                f"summary = {_q(section.summary)}",
                f"clauses = {_array(section.clauses)}",
            ]
        return "\n".join(out) + "\n"

    def to_document(self) -> dict:
        """A JSON-ready form, for storage and the API."""
        return {
            "version": self.version,
            "title": self.title,
            "summary": list(self.summary),
            "changes": list(self.changes),
            "preamble": list(self.preamble),
            "sections": [
                {"number": s.number, "title": s.title, "summary": s.summary, "clauses": list(s.clauses)}
                for s in self.sections
            ],
            "reason": self.reason,
            "published_at": self.published_at,
            "effective_at": self.effective_at,
            "text_sha256": self.text_sha256,
        }

    @classmethod
    def from_document(cls, doc: dict) -> "AgreementVersion":
        return cls(
            version=doc["version"],
            title=doc["title"],
            summary=tuple(doc.get("summary") or ()),
            changes=tuple(doc.get("changes") or ()),
            preamble=tuple(doc.get("preamble") or ()),
            sections=tuple(
                Section(int(s["number"]), s["title"], s["summary"], tuple(s["clauses"])) for s in doc["sections"]
            ),
            reason=doc.get("reason"),
            published_at=_utc(doc.get("published_at")),
            effective_at=_utc(doc.get("effective_at")),
        )


def parse_toml(text: str) -> AgreementVersion:
    """Read and check a version file. Raises :class:`InvalidAgreement`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidAgreement(f"协议文件{toml_problem(exc, text)}") from None
    problems: list[str] = []

    def string(value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where} 必须是非空文本")
            return ""
        return value

    def strings(value, where: str, allow_empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or (not value and not allow_empty):
            problems.append(f"{where} 必须是{'' if allow_empty else '非空的'}文本列表")
            return ()
        return tuple(string(v, f"{where}[{i + 1}]") for i, v in enumerate(value))

    version = string(doc.get("version"), "version")
    if version and not VERSION_RE.fullmatch(version):  # match() lets "$" pass a trailing newline
        problems.append(f"version 只能包含字母、数字、点、连字符和下划线（最多 {VERSION_MAX} 个字符），例如 2026-12-01")
    elif version and re.fullmatch(r"\d+(?:\.\d+)*", version):
        # Chat reads "条款 4.1" as clause 4.1: such a version could never be asked for.
        problems.append(f"version 不能只由数字和点组成（{version} 在公众号中会被当作节号或条款号），例如 2026-12-01")
    elif version and not any(c.isdigit() for c in version):
        # Chat reads "条款 v-b" as a question (条款 GDPR, 条款pdf): a version is named with a digit.
        problems.append(f"version 需要包含数字（否则用户在公众号中回复“条款 {version}”会被当作提问），例如 2026-12-01")
    title = string(doc.get("title"), "title")
    summary = strings(doc.get("summary"), "summary")
    if summary and not SUMMARY_LINES[0] <= len(summary) <= SUMMARY_LINES[1]:
        problems.append(f"summary（整体摘要）须为 {SUMMARY_LINES[0]} 到 {SUMMARY_LINES[1]} 行，当前为 {len(summary)} 行")
    changes = strings(doc.get("changes", []), "changes", allow_empty=True)
    preamble = strings(doc.get("preamble", []), "preamble", allow_empty=True)
    raw_sections = doc.get("sections")
    sections: list[Section] = []
    if not isinstance(raw_sections, list) or not raw_sections:
        problems.append("至少需要一个 [[sections]]")
        raw_sections = []
    for number, raw in enumerate(raw_sections, start=1):
        where = f"第{number}节"
        if not isinstance(raw, dict):
            problems.append(f"{where} 格式不正确")
            continue
        extra = sorted(set(raw) - {"title", "summary", "clauses"})
        if extra:
            problems.append(f"{where} 有未知的字段：{', '.join(extra)}")
        section_summary = string(raw.get("summary"), f"{where} summary")
        if len(section_summary) > SECTION_SUMMARY_MAX:
            problems.append(f"{where} 的摘要超过 {SECTION_SUMMARY_MAX} 个字（当前 {len(section_summary)} 个）")
        sections.append(
            Section(
                number=number,
                title=string(raw.get("title"), f"{where} title"),
                summary=section_summary,
                clauses=strings(raw.get("clauses"), f"{where} clauses"),
            )
        )
    unknown = sorted(set(doc) - {"version", "title", "summary", "changes", "preamble", "sections"})
    if unknown:
        problems.append(f"未知的字段：{', '.join(unknown)}")
    if problems:
        raise InvalidAgreement("协议文件有误：" + "；".join(problems))
    return AgreementVersion(
        version=version, title=title, summary=summary, changes=changes, preamble=preamble, sections=tuple(sections)
    )


def load_seed() -> AgreementVersion:
    """The product's default content: version 2022-05-22 from ``data/agreement``."""
    draft = parse_toml((DATA_DIR / f"{SEED_VERSION}.toml").read_text(encoding="utf-8"))
    # Published on its 更新于 date, midnight in China.
    published = dt.datetime(2022, 5, 22, tzinfo=CHINA).astimezone(dt.timezone.utc)
    return draft.published("initial", published, published)


CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def _utc(value) -> dt.datetime | None:
    from storage.mongo import as_datetime

    return as_datetime(value)


#: Years an admin may type (further out is a typo, and at year 1 or 9999 a change
#: of zone overflows Python's datetime).
TYPED_YEARS = range(2000, 2100)


def typed_utc(value: dt.datetime) -> dt.datetime:
    """A time an admin typed (Beijing time when it has no zone) in UTC; raises
    :class:`ValueError` with a Chinese message outside :data:`TYPED_YEARS`."""
    if value.year not in TYPED_YEARS:
        raise ValueError(f"时间超出范围：年份须在 {TYPED_YEARS.start} 到 {TYPED_YEARS.stop - 1} 之间")
    return (value if value.tzinfo else value.replace(tzinfo=CHINA)).astimezone(dt.timezone.utc)


def beijing_iso(value: dt.datetime | None) -> str:
    """ISO 8601 in Beijing time with its offset: what admins read in files, still exact for scripts."""
    return value.astimezone(CHINA).isoformat(timespec="seconds") if value else ""


def _q(text: str) -> str:
    # A JSON string is a valid TOML basic string.
    return json.dumps(text, ensure_ascii=False)


def _array(items) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"  {_q(item)},\n" for item in items) + "]"
