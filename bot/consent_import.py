"""Consents given elsewhere (on paper, in an earlier system), recorded by an admin.

The ledger's third channel, ``admin_import`` (``wetoop-bot consents import``).
The rules are the ledger's: a choice is of one exact version, and an
acceptance or refusal only of the version in force when it was made, a
withdrawal only of an acceptance that stands then (chat's and the API's rule);
nothing is dated in the future. Every line is checked before anything is written: a
file with one bad line records nothing. Each record is bound to its line's id
(``ref``, else a hash of the line): importing a file again adds nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re

from bot.agreement import AgreementVersion, typed_utc
from bot.amendment_rules import show
from bot.consent import ACTION_LABELS, acceptance_to_withdraw
from bot.errors import BotError
from bot.file_problems import SHOWN_BAD_LINES
from bot.inbound import OPENID
from bot.terms import Terms
from storage.consents import ACTIONS, ConsentLedger, ConsentRecord

_REF = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class ImportRefused(BotError):
    kind = "invalid"
    code = "bad_import"


@dataclasses.dataclass(frozen=True)
class Line:
    """One non-blank line of the file: its object, or why it holds none."""

    number: int
    row: dict | None
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class ImportResult:
    added: int
    #: Lines recorded by an earlier import (the same ``ref`` or line).
    already: int
    openids: list[str]


def parse_lines(text: str) -> list[Line]:
    """The lines of a JSON Lines text (blank lines skipped), numbered from 1 as
    an editor shows them; a line that holds no JSON object carries its problem
    (:func:`import_consents` names it beside the other bad lines). ImportRefused
    for a file with no line at all."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            lines.append(Line(number, None, f"第 {number} 行不是 JSON：{line[:60]}"))
            continue
        if not isinstance(row, dict):
            lines.append(Line(number, None, f"第 {number} 行应为对象，如 " + _EXAMPLE))
            continue
        lines.append(Line(number, row))
    if not lines:
        raise ImportRefused("文件中没有记录。每行一条，如 " + _EXAMPLE)
    return lines


_EXAMPLE = '{"openid": "o…", "version": "2022-05-22", "action": "accept", "at": "2024-03-01T10:00:00+08:00", "ref": "合同-001"}'


async def import_consents(ledger: ConsentLedger, terms: Terms, lines: list[Line], *,
                          by: str, source: str, now: dt.datetime) -> ImportResult:
    """Record ``lines`` (from :func:`parse_lines`) against the versions
    published (a withdrawn one never took effect); ImportRefused says how
    many lines are bad and names the first :data:`SHOWN_BAD_LINES` of them, be
    they no JSON or against a rule, and nothing is written."""
    versions = await terms.versions()
    # Withdrawn versions are few: looked up once, for the lines that name one.
    withdrawn = {v.version.casefold(): (v, await terms.withdrawal(v.version)) for v in await terms.withdrawn()}
    problems: list[tuple[int, str]] = []
    records: list[ConsentRecord] = []
    for line in lines:
        if line.row is None:
            problems.append((line.number, line.problem))
            continue
        problem, record = _record(line.row, versions, withdrawn, by=by, source=source, now=now, line=line.number)
        if problem:
            problems.append((line.number, f"第 {line.number} 行：{problem}"))
        else:
            records.append(record)
    problems += [(number, f"第 {number} 行：{problem}") for number, problem in await _withdrawals_refused(ledger, records)]
    errors = [problem for _number, problem in sorted(problems)]
    if errors:
        more = f"（只列出前 {SHOWN_BAD_LINES} 行）" if len(errors) > SHOWN_BAD_LINES else ""
        raise ImportRefused(f"{source} 中有 {len(errors)} 行有误{more}：\n" + "\n".join(errors[:SHOWN_BAD_LINES])
                            + "\n没有导入任何记录。")
    added = 0
    for record in records:
        added += await ledger.append(record)
    return ImportResult(added, len(records) - added, sorted({r.openid for r in records}))


async def _withdrawals_refused(ledger: ConsentLedger, records: list[ConsentRecord]) -> list[tuple[int, str]]:
    """The withdrawals among ``records`` with no acceptance to take back, by
    the rule chat and the API follow (:func:`acceptance_to_withdraw`), each
    with its line and why. The user's last choice before one is read off the
    ledger and the file's other lines together, by time (a line at the same
    time as a recorded choice comes after it, and after the file's earlier lines)."""
    withdrawing = sorted({r.openid for r in records if r.action == "withdraw"})
    if not withdrawing:
        return []
    in_file = {r.message_id for r in records}
    choices: dict[str, list[tuple[tuple, ConsentRecord]]] = {}
    for openid, history in (await ledger.histories(withdrawing)).items():
        # A line imported before is in the ledger too: counted once, as the line.
        choices[openid] = [((r.at, 0, 0), r) for r in history
                           if not (r.channel == "admin_import" and r.message_id in in_file)]
    for record in records:
        if record.openid in withdrawing:
            choices.setdefault(record.openid, []).append(((record.at, 1, record.meta["line"]), record))
    refused = []
    for record in records:
        if record.action != "withdraw":
            continue
        own = (record.at, 1, record.meta["line"])
        before = [choice for choice in choices[record.openid] if choice[0] < own]
        latest = max(before, key=lambda choice: choice[0])[1] if before else None
        accepted = acceptance_to_withdraw(latest)
        if latest is None:
            why = f"用户 {record.openid} 在 {show(record.at)}之前没有同意过任何版本（账本和本文件中都没有），无可撤回"
        elif accepted is None:
            why = (f"用户 {record.openid} 在此之前最后的选择是{ACTION_LABELS[latest.action]}"
                   f"（{show(latest.at)}），没有有效的同意可撤回")
        elif accepted.version != record.version:
            why = f"用户 {record.openid} 当时同意的是版本 {accepted.version}，不能撤回对版本 {record.version} 的同意"
        else:
            continue
        refused.append((record.meta["line"], why))
    return refused


def _record(row: dict, versions: list[AgreementVersion], withdrawn: dict, *, by: str, source: str, now: dt.datetime,
            line: int) -> tuple[str, ConsentRecord | None]:
    openid, action, named, at, ref = (row.get(k) for k in ("openid", "action", "version", "at", "ref"))
    if not isinstance(openid, str) or not OPENID.fullmatch(openid):
        return "openid 缺失或格式不对（字母、数字、- 和 _，最长 64 个字符）", None
    if action not in ACTIONS:
        return f"action 应为 {'、'.join(ACTIONS)} 之一", None
    version = next((v for v in versions if isinstance(named, str) and v.version.casefold() == named.strip().casefold()), None)
    if version is None:
        gone, withdrawal = withdrawn.get(named.strip().casefold(), (None, None)) if isinstance(named, str) else (None, None)
        if gone is not None and withdrawal is not None:
            published = f"于 {show(gone.published_at)}发布、" if gone.published_at else "曾发布，"
            return (f"版本 {gone.version} {published}于 {show(withdrawal['at'])}撤回，从未生效："
                    "不能记录对它的同意、拒绝或撤回"), None
        return f"没有已发布的版本 {named!r}", None
    try:
        when = typed_utc(dt.datetime.fromisoformat(at)) if isinstance(at, str) else None
    except ValueError:
        when = None
    if when is None:
        return "at 应为 ISO 8601 时间（作出选择的时间，不带时区时按北京时间）", None
    if when > now:
        return "at 晚于现在：不能记录将来的选择", None
    in_force = [v for v in versions if v.effective_at <= when]
    if action in ("accept", "decline") and (not in_force or in_force[-1].version != version.version):
        held = f"生效的是版本 {in_force[-1].version}" if in_force else "还没有生效的版本"
        later = f"（版本 {version.version} 自 {show(version.effective_at)}起生效）" if version.effective_at > when else ""
        return f"{show(when)}时{held}，只能同意或拒绝当时生效的版本{later}", None
    if action == "withdraw" and version.effective_at > when:
        return (f"版本 {version.version} 在 {show(when)}时尚未生效（自 {show(version.effective_at)}起生效），"
                "不能撤回对它的同意"), None
    if ref is not None and (not isinstance(ref, str) or not _REF.fullmatch(ref)):
        return "ref 应为 1 到 64 位字母、数字或 _.:-", None
    canonical = json.dumps({"openid": openid, "version": version.version, "action": action, "at": when.isoformat()},
                           sort_keys=True)
    message_id = ref or hashlib.sha256(canonical.encode()).hexdigest()[:24]
    return "", ConsentRecord(
        openid=openid, version=version.version, text_sha256=version.text_sha256, action=action,
        channel="admin_import", at=when, message_id=message_id,
        meta={"source": source, "line": line, "imported_by": by, "imported_at": now.isoformat()},
    )
