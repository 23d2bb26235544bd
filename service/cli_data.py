"""``wetoop-bot terms …``, ``consents export`` and ``export``: the agreement,
the consent ledger and a user's data, from the command line.

Each command uses the running service's storage (or starts the embedded one
for itself); refusals print the rule's reason and exit with code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from bot import terms_diff
from bot.agreement import CHINA, REASONS, AgreementVersion, InvalidAgreement, parse_toml, typed_utc
from bot.amendment_rules import PUBLISHABLE_REASONS, changes_warning, parse_effective_at, show
from bot.consent import RECORD_FIELDS, record_row
from bot.consent_import import import_consents, parse_lines
from bot.file_problems import os_problem
from bot.periods import check_period
from bot.qa.units import examples_lost_warning
from bot.spreadsheet import ExcelCsv
from service.clitools import (UsageError, actor_of, add_by_flag, add_data_dir_flag, load_config, print_table,
                              require_data_dir, with_runtime)
from storage.consents import ACTIONS



def register(sub: argparse._SubParsersAction) -> None:
    terms = sub.add_parser("terms", help="协议版本：列出、查看、发布、比较")
    terms_sub = terms.add_subparsers(dest="terms_command", required=True, metavar="ACTION")

    listing = terms_sub.add_parser("list", help="列出所有版本")
    add_data_dir_flag(listing)
    listing.set_defaults(func=cmd_terms_list)

    show = terms_sub.add_parser("show", help="以发布文件格式打印一个版本（可复制修改后发布）")
    show.add_argument("version", help="版本号，如 2022-05-22（见 terms list）")
    add_data_dir_flag(show)
    show.set_defaults(func=cmd_terms_show)

    publish = terms_sub.add_parser("publish", help="发布新版本")
    publish.add_argument("file", type=Path, help="版本文件（terms show 的格式）")
    publish.add_argument("--effective-at", required=True, help="生效时间，ISO 8601（无时区按北京时间），或 now")
    publish.add_argument("--reason", required=True, choices=PUBLISHABLE_REASONS, help="修改原因")
    add_by_flag(publish)
    add_data_dir_flag(publish)
    publish.set_defaults(func=cmd_terms_publish)

    withdraw = terms_sub.add_parser("withdraw", help="撤回尚未生效的版本（并通知曾同意协议的用户）")
    withdraw.add_argument("version", help="要撤回的尚未生效的版本号")
    withdraw.add_argument("--reason", required=True, help="撤回原因（会告知用户）")
    add_by_flag(withdraw)
    add_data_dir_flag(withdraw)
    withdraw.set_defaults(func=cmd_terms_withdraw)

    diff = terms_sub.add_parser("diff", help="比较两个版本（逐款）；版本可以是尚未发布的版本文件（.toml），发布前先看修改")
    diff.add_argument("old", help="版本号或版本文件")
    diff.add_argument("new", help="版本号或版本文件")
    add_data_dir_flag(diff)
    diff.set_defaults(func=cmd_terms_diff)

    consents = sub.add_parser("consents", help="同意记录")
    consents_sub = consents.add_subparsers(dest="consents_command", required=True, metavar="ACTION")
    export = consents_sub.add_parser("export", help="导出同意记录")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--version", dest="terms_version", help="只导出该版本的记录")
    export.add_argument("--action", choices=ACTIONS, help="只导出该动作的记录")
    export.add_argument("--since", help="起始时间（含），ISO 8601")
    export.add_argument("--until", help="截止时间（不含），ISO 8601；只写日期时含当天（北京时间），与管理后台一致")
    export.add_argument("--output", type=Path, help="写入文件（默认标准输出）")
    add_data_dir_flag(export)
    export.set_defaults(func=cmd_consents_export)

    imported = consents_sub.add_parser(
        "import", help="导入在别处作出的同意记录（JSON Lines，每行 openid、version、action、at，可选 ref）",
        description="每行一条：{\"openid\": …, \"version\": \"2022-05-22\", \"action\": \"accept\", "
                    "\"at\": \"2024-03-01T10:00:00+08:00\", \"ref\": \"contract-001\"}。同意或拒绝只能针对当时生效的版本；"
                    "任何一行有误则不导入任何记录；同一行（或同一 ref）重复导入不会重复记录。",
    )
    imported.add_argument("file", type=Path, help="JSON Lines 文件")
    add_by_flag(imported)
    add_data_dir_flag(imported)
    imported.set_defaults(func=cmd_consents_import)

    user_export = sub.add_parser("export", help="导出一位用户的全部数据（JSON）")
    user_export.add_argument("--openid", required=True, help="用户的 openid（公众号或小程序的）")
    add_data_dir_flag(user_export)
    user_export.set_defaults(func=cmd_export)


# -- terms ----------------------------------------------------------------------


def cmd_terms_list(args: argparse.Namespace) -> int:
    async def work(runtime):
        terms = runtime.terms
        return await terms.versions(), await terms.current(), await terms.upcoming(), await terms.withdrawn()

    versions, current, upcoming, withdrawn = with_runtime(args, work)
    rows = []
    for v in sorted([*versions, *withdrawn], key=lambda v: (v.effective_at, v.version)):
        if any(v.version == w.version for w in withdrawn):
            status = "已撤回"
        else:
            status = "当前" if v.version == current.version else ("待生效" if upcoming and v.effective_at > current.effective_at else "已失效")
        rows.append([v.version, status, REASONS.get(v.reason or "", v.reason or ""), _local(v.published_at),
                     _local(v.effective_at), v.text_sha256[:16]])
    print_table(["版本", "状态", "原因", "发布时间", "生效时间", "SHA-256"], rows)
    return 0


def cmd_terms_show(args: argparse.Namespace) -> int:
    version, withdrawal = with_runtime(args, lambda runtime: runtime.terms.readable(args.version))
    sys.stdout.write(version.to_toml())
    if withdrawal is not None:  # readable, to fix and publish again, but say what it is
        print(f"注意：版本 {version.version} 已于 {show(withdrawal['at'])}撤回，不会生效"
              f"（原因：{withdrawal['reason']}）；以它为基础重新发布时请换一个版本号。", file=sys.stderr)
    return 0


def _version_file(path: Path) -> AgreementVersion:
    """A drafted version from its file (the format of ``terms show``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"无法读取 {path}：{os_problem(exc)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} 不是 UTF-8 编码的文本") from None
    try:
        return parse_toml(text)
    except InvalidAgreement as exc:
        raise UsageError(f"{path}：{exc.message}") from None


def cmd_terms_publish(args: argparse.Namespace) -> int:
    draft = _version_file(args.file)
    effective_at = parse_effective_at(args.effective_at)

    async def work(runtime):
        latest = (await runtime.terms.versions())[-1]
        published = await runtime.terms.publish(draft, reason=args.reason, effective_at=effective_at, by=actor_of(args),
                                                address="localhost")
        for warning in (changes_warning(latest, draft),
                        examples_lost_warning(latest, draft, Path(runtime.config.data_dir) / "qa")):
            if warning:
                print(warning, file=sys.stderr)
        return published

    version, notice_id = with_runtime(args, work)
    print(
        f"已发布版本 {version.version}（{REASONS[version.reason]}），"
        f"生效时间 {_local(version.effective_at)}（北京时间），文本 SHA-256 {version.text_sha256}。\n"
        f"已创建重要的条款修改通知 {notice_id}，发送给所有曾同意协议的用户。"
    )
    return 0


def cmd_terms_withdraw(args: argparse.Namespace) -> int:
    async def work(runtime):
        return await runtime.terms.withdraw(args.version, reason=args.reason, by=actor_of(args), address="localhost")

    version, notice_id = with_runtime(args, work)
    print(
        f"已撤回版本 {version.version}（原定 {_local(version.effective_at)} 生效），它不会生效。\n"
        f"已创建重要的条款修改通知 {notice_id}，告知所有曾同意协议的用户。"
    )
    return 0


def cmd_terms_diff(args: argparse.Namespace) -> int:
    # A name ending in .toml (or an existing file) is a drafted version: what
    # publishing it would change is seen before it is published.
    files = {name: _version_file(Path(name)) for name in (args.old, args.new)
             if name.endswith(".toml") or Path(name).is_file()}

    async def work(runtime):
        return [files.get(name) or await runtime.terms.get(name, withdrawn_too=True) for name in (args.old, args.new)]

    async def work_and_warn(runtime):
        old, new = await work(runtime)
        # The summary names what a draft changes from the version it follows (not from any older one).
        return old, new, [changes_warning(old, new) if args.new in files else "",
                          examples_lost_warning(old, new, Path(runtime.config.data_dir) / "qa")]

    old, new, warnings = with_runtime(args, work_and_warn)
    output = terms_diff.unified(old, new)
    print(output if output else f"版本 {old.version} 与 {new.version} 的条款文本相同。")
    for warning in warnings:
        if warning:
            print(warning, file=sys.stderr)
    return 0


# -- consents and user data --------------------------------------------------------


def cmd_consents_import(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"无法读取 {args.file}：{os_problem(exc)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.file} 不是 UTF-8 编码的文本") from None
    lines = parse_lines(text)

    async def work(runtime):
        result = await import_consents(runtime.ledger, runtime.terms, lines, by=actor_of(args),
                                       source=args.file.name, now=runtime.clock())
        await runtime.consent_view.refresh(result.openids)  # the dashboard's per-user view
        await runtime.audit.record(actor_of(args), "consents_import", args.file.name, address="localhost",
                                   after={"lines": len(lines), "added": result.added, "already": result.already})
        return result

    result = with_runtime(args, work)
    print(f"已导入 {result.added} 条同意记录" + (f"，{result.already} 条此前已导入" if result.already else "")
          + f"（{len(result.openids)} 位用户）。")
    return 0


def cmd_consents_export(args: argparse.Namespace) -> int:
    since = _instant(args.since, "--since")
    until = _instant(args.until, "--until", day_end=True)
    check_period(since, until, f"--since（{args.since}）", f"--until（{args.until}）")
    require_data_dir(load_config(args))  # before the output file exists: a refusal leaves none behind
    opened = []

    async def work(runtime):
        if args.terms_version:
            await runtime.terms.get(args.terms_version, withdrawn_too=True)  # a typo is no "0 records"
        try:
            out = args.output.open("w", encoding="utf-8", newline="") if args.output else sys.stdout
        except OSError as exc:
            raise UsageError(f"无法写入 {args.output}：{os_problem(exc)}") from None
        opened.append(out)
        count = 0
        # As the console's CSV: for Excel, a BOM in a file (not on a pipe) and no formula cells.
        sheet = ExcelCsv(RECORD_FIELDS, bom=args.output is not None) if args.format == "csv" else None
        async for record in runtime.ledger.scan(args.terms_version, args.action, since, until):
            row = record_row(record)
            if sheet:
                sheet.row([row[f] for f in RECORD_FIELDS])
                if sheet.size > 64 * 1024:
                    out.write(sheet.take())
            else:
                out.write(json.dumps({**row, "meta": record.meta}, ensure_ascii=False, default=str) + "\n")
            count += 1
        if sheet:
            out.write(sheet.take())
        return count

    try:
        count = with_runtime(args, work)
    finally:
        if args.output and opened:
            opened[0].close()
    if args.output:
        print(f"已导出 {count} 条同意记录到 {args.output}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    openid = args.openid.strip()
    if not openid:
        raise UsageError("--openid 不能为空")

    async def work(runtime):
        joined = await runtime.mini.joined(openid)  # a mini-program openid whose records moved to a follower
        return (await runtime.exports.document(openid) if await runtime.exports.knows(openid) else None), joined

    document, joined = with_runtime(args, work)
    if joined is not None:
        print(f"注意：{openid} 是小程序用户，已与公众号关注者 {joined} 合并为同一人，其资料在 {joined} 名下："
              f"wetoop-bot export --openid {joined}", file=sys.stderr)
    if document is None:
        if joined is not None:
            return 2
        raise UsageError(f"没有 openid 为 {openid} 的用户：既未关注公众号，也没有同意记录或商家资料")
    print(json.dumps(document, ensure_ascii=False, indent=2))
    return 0


def _instant(text: str | None, flag: str, day_end: bool = False) -> dt.datetime | None:
    """An ISO 8601 time (Beijing time without a zone). With ``day_end``, a date
    alone means the end of that day, as the console's date fields do."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} 不是 ISO 8601 时间：{text!r}") from None
    try:
        instant = typed_utc(value)
    except ValueError as exc:
        raise UsageError(f"{flag} {text}：{exc}") from None
    if day_end and _date_alone(text):
        instant += dt.timedelta(days=1)
    return instant


def _date_alone(text: str) -> bool:
    """Whether ``text`` names a day and no time (2026-11-27, 20261127, 2026-W48-5)."""
    try:
        dt.date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _local(value: dt.datetime | None) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if value else ""
