"""The agreement's own rules for amendments, in one place.

《关于本协议》: amendments are not retroactive and take effect no sooner than
one week after publication, except changes for new features or for legal
reasons, which may take effect at once. A published version is immutable; a
correction is a new version. Chat, the API, the admin pages and the CLI all
publish through :func:`check_publication`.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Iterable

from bot.agreement import CHINA, REASONS, AgreementVersion, typed_utc
from bot.errors import BotError

MIN_NOTICE = dt.timedelta(days=7)
IMMEDIATE_REASONS = ("new_feature", "legal")
PUBLISHABLE_REASONS = ("routine", "new_feature", "legal")


class AmendmentRefused(BotError):
    """Publication refused; ``rule`` names the rule, ``message`` says why."""

    kind = "invalid"

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message, code=f"amendment_{rule}")
        self.rule = rule


#: The furthest ahead a version may take effect: a version years ahead would sit
#: before every later amendment (which must take effect after it) until withdrawn.
MAX_AHEAD = dt.timedelta(days=366)


def earliest_effective(reason: str, published_at: dt.datetime) -> dt.datetime:
    """The earliest ``effective_at`` the rules allow for ``reason``, to the microsecond."""
    return published_at if reason in IMMEDIATE_REASONS else published_at + MIN_NOTICE


def earliest_shown(reason: str, published_at: dt.datetime) -> dt.datetime:
    """:func:`earliest_effective` rounded up to the whole minute, as admins see and
    type times (17:04:37 → 17:05): the time shown is always one that is accepted."""
    earliest = earliest_effective(reason, published_at)
    whole = earliest.replace(second=0, microsecond=0)
    return whole if whole == earliest else whole + dt.timedelta(minutes=1)


def check_publication(
    draft: AgreementVersion,
    *,
    reason: str,
    effective_at: dt.datetime,
    published_at: dt.datetime,
    published: list[AgreementVersion],
    withdrawn: Iterable[str] = (),
) -> None:
    """Raise :class:`AmendmentRefused` unless ``draft`` may be published now."""
    if reason not in PUBLISHABLE_REASONS:
        allowed = "、".join(f"{r}（{REASONS[r]}）" for r in PUBLISHABLE_REASONS)
        raise AmendmentRefused("reason", f"修改原因必须是 {allowed} 之一")
    if effective_at.tzinfo is None:
        raise AmendmentRefused("timezone", "生效时间必须带时区")
    if any(v.version == draft.version for v in published):
        raise AmendmentRefused(
            "immutable", f"版本 {draft.version} 已发布，已发布的版本不可修改；如需更正，请以新的版本号发布"
        )
    # Users type version ids in chat in any case (条款 2026-12-v4): two that differ
    # only in case could not be told apart there.
    alike = [v for v in [*(p.version for p in published), *withdrawn]
             if v != draft.version and v.casefold() == draft.version.casefold()]
    if alike:
        raise AmendmentRefused(
            "immutable", f"版本号 {draft.version} 与已有的版本 {alike[0]} 只有大小写不同，用户无法区分；请换一个版本号"
        )
    if effective_at < published_at:
        # Typed as the current minute, the two differ in seconds only: show them.
        shown = _show_seconds if _show(effective_at) == _show(published_at) else _show
        raise AmendmentRefused(
            "retroactive",
            f"生效时间 {shown(effective_at)}早于发布时间 {shown(published_at)}：协议修改不具有追溯力"
            + ("；如要立即生效，请使用 now" if shown is _show_seconds and reason in IMMEDIATE_REASONS else ""),
        )
    if effective_at < earliest_effective(reason, published_at):
        raise AmendmentRefused(
            "notice_period",
            f"常规修改须在公布一周（7 天）后方始生效，最早可生效时间为 {_show(earliest_shown(reason, published_at))}；"
            "只有新功能（new_feature）或法律原因（legal）的修改可以立即生效",
        )
    if effective_at > published_at + MAX_AHEAD:
        raise AmendmentRefused(
            "too_far", f"生效时间 {_show(effective_at)}太远：最晚为公布后 {MAX_AHEAD.days} 天内（{_show(published_at + MAX_AHEAD)}之前）"
        )
    if published:
        latest = max(published, key=lambda v: v.effective_at)
        if effective_at <= latest.effective_at:
            pending = latest.effective_at > published_at
            hint = (f"；如需让这次修改更早生效，请先撤回尚未生效的版本 {latest.version}"
                    f"（管理后台该版本的页面，或 wetoop-bot terms withdraw {latest.version} --reason …）") if pending else ""
            raise AmendmentRefused(
                "order", f"生效时间须晚于已发布版本 {latest.version} 的生效时间 {_show(latest.effective_at)}{hint}"
            )
        if draft.text_sha256 == latest.text_sha256 and draft.summary == latest.summary and all(
            a.summary == b.summary for a, b in zip(draft.sections, latest.sections)
        ):
            raise AmendmentRefused("unchanged", f"与版本 {latest.version} 的内容完全相同，无需发布")
        if not draft.changes:
            raise AmendmentRefused("changes", "修订版本必须在 changes 中写明本次修改的摘要")
        _check_not_reverting(draft, latest, [v for v in published if v is not latest])
        if effective_at < published_at + MIN_NOTICE:
            _check_exception_named(draft, latest, reason)
        if list(draft.changes) == list(latest.changes):
            # A draft starts as a copy of the latest version: its summary of
            # changes, left as it was, would tell every user of the wrong ones.
            raise AmendmentRefused(
                "changes", f"修改摘要（changes）与版本 {latest.version} 的完全相同，像是复制后没有更新；"
                "请写明本次修改了什么（它会写进发给所有用户的条款修改通知）"
            )


def _check_exception_named(draft: AgreementVersion, latest: AgreementVersion, reason: str) -> None:
    """A version taking effect within the week (new_feature, legal) may change
    only what its ``changes`` names: the exception is for those changes, and a
    routine edit carried along unnamed (say, from a withdrawn routine version)
    would apply at once without the week's notice, and without users being told."""
    unnamed = _unnamed(latest, draft)
    if unnamed:
        raise AmendmentRefused(
            "unnamed_change",
            f"{REASONS[reason]}的修改可以立即生效，但只限于修改摘要（changes）写明的修改：与版本 {latest.version} 相比，"
            f"{places(unnamed)}有修改却没有写在 changes 中。请在 changes 中逐条写明（例如“{_label(unnamed[0])}：……”），"
            f"或把这些修改作为常规修改（routine）另行发布，公布 {MIN_NOTICE.days} 天后生效",
        )


def _check_not_reverting(draft: AgreementVersion, latest: AgreementVersion, older: list[AgreementVersion]) -> None:
    """Refuse a draft made from an older version than ``latest`` (:func:`undoes`)
    unless ``changes`` names each clause it undoes."""
    found = undoes(draft, [*older, latest])
    if found is None:
        return
    base, undone = found
    unnamed = [label for label in undone if not _named(label, draft.changes)]
    if not unnamed:
        return
    listed = places(unnamed)
    raise AmendmentRefused(
        "reverts",
        f"这份草稿与较早的版本 {base.version} 更接近，而不是最新版本 {latest.version}：发布后会撤销此后的修改（{listed}），"
        f"而用户只会看到 changes 中写的修改。请以最新版本 {latest.version} 为基础重新起草"
        f"（wetoop-bot terms show {latest.version}，或管理后台该版本页面的“以此版本为基础起草”）；"
        f"如确要撤销这些修改，请在 changes 中逐条写明（例如“{_label(unnamed[0])}：撤销版本 {latest.version} 的修改”）",
    )


def check_withdrawal(version: AgreementVersion, published: list[AgreementVersion]) -> None:
    """Refuse withdrawing ``version`` while a later version, not withdrawn,
    carries its changes without naming them (it was drafted from it): the
    withdrawal's notice tells users the changes will not take effect, and
    they would, with the later version, whose summary says nothing of them.
    ``published``: every version not withdrawn, ``version`` among them."""
    before = [v for v in published if v.effective_at < version.effective_at]
    if not before:
        return
    own = _units(version)
    changed = _differing(own, _units(max(before, key=lambda v: v.effective_at)))
    for later in sorted((v for v in published if v.effective_at > version.effective_at), key=lambda v: v.effective_at):
        theirs = _units(later)
        carried = sorted(k for k in changed if theirs.get(k) == own.get(k) and not _named(k, later.changes))
        if carried:
            raise AmendmentRefused(
                "carried",
                f"稍后生效的版本 {later.version} 包含版本 {version.version} 对{places(carried)}的修改，"
                f"而 {later.version} 的修改摘要没有写明：撤回 {version.version} 后，用户会被告知这些修改不会生效，"
                f"它们却会随 {later.version} 生效。请先撤回 {later.version}"
                f"（wetoop-bot terms withdraw {later.version} --reason …，或管理后台该版本的页面），再撤回 {version.version}；"
                "需要时再以当前生效的版本为基础起草、发布新版本。",
            )


def changes_warning(base: AgreementVersion, draft: AgreementVersion) -> str:
    """A warning (or "") when ``draft`` changes places of ``base``'s text that
    no line of its ``changes`` names (第2.2条, 2.2, 第2节 …): users are told of
    the changes the summary lists, in the amendment notice and when asked to
    consent again; or when it changes none at all (only the key points):
    everyone would be asked to accept the same text again. Said, not
    refused: a summary may well say 全文措辞调整."""
    if draft.text_sha256 == base.text_sha256:
        return (f"注意：条款全文与版本 {base.version} 相同（只改了要点）：发布后，"
                f"已同意版本 {base.version} 的用户也需要重新同意内容未变的条款。")
    unnamed = _unnamed(base, draft)
    if not unnamed or not draft.changes:
        return ""
    return (f"注意：与版本 {base.version} 相比，{places(unnamed)}有修改，但修改摘要（changes）没有提到。"
            "用户在修改通知和重新确认时只会看到 changes 中写的修改，请核对摘要是否完整。")


def undoes(draft: AgreementVersion, published: list[AgreementVersion]) -> tuple[AgreementVersion, list] | None:
    """When ``draft`` is closer to an older published version than to the
    latest one (it was drafted from it): that version, and the places of the
    latest's text the draft would undo; else None. Closeness counts places
    (preamble paragraphs and clauses, by number) whose text differs, so
    rewording a clause the latest version added is no undoing. The console
    asks this of a draft as it starts one; publishing refuses what it finds."""
    if len(published) < 2:
        return None
    latest = max(published, key=lambda v: v.effective_at)
    units = _units(draft)

    def distance(version: AgreementVersion) -> int:
        return len(_differing(units, _units(version)))

    older = [v for v in published if v is not latest]
    base = min(older, key=lambda v: (distance(v), -v.effective_at.timestamp()))
    if distance(base) >= distance(latest):
        return None
    # Places where the draft differs from the latest version with an older
    # version's text (or none, as in one without it): not only the base's. A draft
    # from a withdrawn version sits between published ones, and took back a
    # change in force since the base unseen.
    older_units = [_units(v) for v in older]
    undone = [k for k in _differing(units, _units(latest)) if any(u.get(k) == units.get(k) for u in older_units)]
    return (base, undone) if undone else None


def _unnamed(base: AgreementVersion, draft: AgreementVersion) -> list[tuple[int, int]]:
    """The places where ``draft``'s text differs from ``base``'s that no line of its ``changes`` names."""
    return [k for k in _differing(_units(draft), _units(base)) if not _named(k, draft.changes)]


def _differing(ours: dict, theirs: dict) -> list[tuple[int, int]]:
    """The places (see :func:`_units`) whose text differs between two versions' units, in order."""
    return sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))


def _units(version: AgreementVersion) -> dict[tuple[int, int], str]:
    """Preamble paragraphs ``(0, k)`` and clauses ``(section, clause)``: their texts."""
    units = {(0, k): text for k, text in enumerate(version.preamble, start=1)}
    for section in version.sections:
        units.update({(section.number, m): text for m, text in enumerate(section.clauses, start=1)})
    return units


def places(units: list) -> str:
    """Places as admins read them: 第1.6条、前言第2段 (at most eight, then 等)."""
    return "、".join(_label(u) for u in units[:8]) + ("等" if len(units) > 8 else "")


def _label(unit: tuple[int, int]) -> str:
    section, number = unit
    return f"前言第{number}段" if section == 0 else f"第{section}.{number}条"


def _named(unit: tuple[int, int], changes: Iterable[str]) -> bool:
    """Whether a line of ``changes`` names ``unit``: 第6.1条, 6.1, 第6节第1款, or its
    whole section (第6节); 前言第2段, 前言.2, or 前言 alone."""
    section, number = unit
    if section == 0:
        pattern = rf"前言(?!(第|\.)?\d)|前言(第|\.)?{number}(?!\d)"
    else:
        pattern = (rf"(?<![\d.]){section}\.{number}(?![\d])|第{section}节第{number}[款条]"
                   rf"|第{section}节(?!第)")
    return any(re.search(pattern, _folded(line)) for line in changes)


_NUMERALS = {c: i for i, c in enumerate("零一二三四五六七八九十")}


def _folded(line: str) -> str:
    """A line of ``changes`` as :func:`_named` reads it: full-width forms and
    spaces gone (第 4 节, ４．１), Chinese numbers as digits (第四节, 第十二条)."""
    line = re.sub(r"\s+", "", unicodedata.normalize("NFKC", line))

    def digits(match: re.Match) -> str:
        text = match.group(1)
        if text == "十":
            value = 10
        elif text.startswith("十"):
            value = 10 + _NUMERALS[text[1]]
        elif len(text) == 3 or text.endswith("十"):
            value = _NUMERALS[text[0]] * 10 + (_NUMERALS[text[2]] if len(text) == 3 else 0)
        else:
            value = _NUMERALS[text[0]]
        return f"第{value}{match.group(2)}"

    return re.sub(r"第([一二三四五六七八九十]{1,3})([节款条段])", digits, line)


def show(value: dt.datetime) -> str:
    """A time as admins read it (Beijing time): ``2026-11-28 20:31（北京时间）``.
    It ends in a full-width bracket, so no space follows it (已于 …（北京时间）撤回)."""
    return _show(value)


def _show(value: dt.datetime) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M（北京时间）")


def _show_seconds(value: dt.datetime) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S（北京时间）")


def parse_effective_at(text: str) -> dt.datetime | None:
    """Read an ``effective_at`` as admins type it: ISO 8601, ``now`` (``None``).

    A time without a zone is Beijing time; a date alone is its midnight.
    Raises :class:`AmendmentRefused` (rule ``format``) for anything else.
    """
    text = text.strip()
    if text.lower() in ("now", "立即"):
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AmendmentRefused(
            "format", f"无法识别的生效时间 {text!r}：请使用 ISO 8601 格式，例如 2026-12-08T00:00:00+08:00，或 now"
        ) from None
    try:
        return typed_utc(value)
    except ValueError as exc:
        raise AmendmentRefused("format", f"生效时间 {text!r}：{exc}") from None
