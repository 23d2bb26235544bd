"""``wetoop-bot notice …`` and ``wetoop-bot worker``: broadcasts from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from bot.file_problems import os_problem
from bot.notice_checks import check_audience, openids_from_lines
from bot.notices import (
    CHANNELS, JOB_LABELS, NO_WORKER, PAUSED_BY, SKIP_REASONS, WECHAT_ERRORS, audit_entry, explain, unknown_recipients, unknown_recipients_warning,
)
from bot.merchants import status_code
from bot.preferences import category_from_name
from bot.validation import Invalid
from service import supervisor
from service.clitools import (
    UsageError, actor_of, add_by_flag, add_data_dir_flag, load_config, positive_int, require_wechat_account, start_embedded,
    with_runtime,
)
from storage.notices import CATEGORIES

#: The categories as --category takes them, for its help and its refusal.
_CATEGORY_CHOICES = "、".join(f"{code}（{name}）" for code, name in CATEGORIES.items()) + "，代码或中文名均可"
#: The audiences --audience takes, for its refusals.
_AUDIENCES = "all、consented、merchants、merchants:STATUS,…、openids:FILE"


def _category(text: str) -> str:
    """A category by its code or its Chinese name, as chat takes it (退订 服务公告)."""
    try:
        return category_from_name(text)
    except Invalid:
        raise argparse.ArgumentTypeError(f"没有这个通知类别 {text!r}。可选：{_CATEGORY_CHOICES}。") from None


def register(sub: argparse._SubParsersAction) -> None:
    notice = sub.add_parser("notice", help="通知：发送、查看进度、暂停、继续、取消")
    notice_sub = notice.add_subparsers(dest="notice_command", required=True, metavar="ACTION")

    send = notice_sub.add_parser("send", help="发送通知，打印通知编号")
    send.add_argument(
        "--category", required=True, type=_category, metavar="CATEGORY",
        help="类别：" + _CATEGORY_CHOICES,
    )
    send.add_argument("--title", required=True)
    send.add_argument("--body", required=True)
    send.add_argument(
        "--important", action=argparse.BooleanOptionalAction, default=None,
        help="标为重要（不受退订影响）；安全通告和条款修改通知默认重要",
    )
    send.add_argument(
        "--audience", default="all",
        help="all（所有关注者）、consented（曾同意协议的用户）、merchants 或 merchants:active,suspended（按状态）、"
             "openids:FILE（每行一个 openid）",
    )
    send.add_argument("--channel", choices=CHANNELS, default="auto", help="auto：模板消息或客服消息；mass：群发（每月次数有限）")
    add_by_flag(send)
    add_data_dir_flag(send)
    send.set_defaults(func=cmd_send)

    status = notice_sub.add_parser("status", help="查看发送进度")
    status.add_argument("id", help="通知 ID（notice send 输出的）")
    status.add_argument("--json", action="store_true", help="输出 JSON")
    add_data_dir_flag(status)
    status.set_defaults(func=cmd_status)

    for action, label in (("pause", "暂停"), ("resume", "继续"), ("cancel", "取消")):
        parser = notice_sub.add_parser(action, help=f"{label}发送")
        parser.add_argument("id", help="通知 ID（notice send 输出的）")
        add_by_flag(parser)
        add_data_dir_flag(parser)
        parser.set_defaults(func=cmd_control, action=action)

    worker = sub.add_parser("worker", help="运行通知发送进程（可多开）")
    worker.add_argument("--concurrency", type=positive_int, default=8, help="并发发送任务数（默认 8）")
    add_data_dir_flag(worker)
    worker.set_defaults(func=cmd_worker)


def parse_audience(text: str) -> dict:
    """``all``, ``consented``, ``merchants``, ``merchants:active,suspended`` or ``openids:FILE``."""
    kind, colon, rest = text.partition(":")
    if colon and not rest.strip():
        raise UsageError(f"受众 {text!r} 的冒号后缺少内容：可用 {_AUDIENCES}")
    if kind == "all" and not rest:
        audience: dict = {"type": "all"}
    elif kind == "consented" and not rest:  # the console's 曾同意协议的用户
        audience = {"type": "consented_any_version"}
    elif kind == "merchants":
        audience = {"type": "merchants"}
        if rest:  # codes or the labels merchants list shows (已生效); blank ones dropped, none left refused
            audience["statuses"] = [status_code(s) or s.strip() for s in rest.split(",") if s.strip()]
    elif kind == "openids" and rest:
        try:
            # utf-8-sig: Windows Notepad starts its UTF-8 files with a BOM.
            lines = Path(rest).read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise UsageError(f"无法读取 openid 文件 {rest}：{os_problem(exc)}") from None
        except UnicodeDecodeError:
            raise UsageError(f"openid 文件 {rest} 不是 UTF-8 编码的文本") from None
        audience = {"type": "openids", "openids": openids_from_lines(lines, f"openid 文件 {rest} ")}
    else:
        raise UsageError(f"无法识别的受众 {text!r}：可用 {_AUDIENCES}")
    check_audience(audience)
    return audience


def cmd_send(args: argparse.Namespace) -> int:
    audience = parse_audience(args.audience)
    created: list[str] = []

    async def work(runtime):
        unknown = await unknown_recipients(audience, runtime.followers, runtime.mini.identities)
        if unknown:
            print(unknown_recipients_warning(unknown), file=sys.stderr)

        async def announce(notice, audience_size: int | None) -> None:
            # Printed and audited once the notice exists, before its recipients are
            # recorded: stopped then (Ctrl-C), it is still sent, and the admin knows its id.
            created.append(notice.id)
            print(notice.id, flush=True)
            await runtime.audit.record(actor_of(args), "notice_send", notice.id, address="localhost",
                                       after=audit_entry(notice, audience_size))

        await runtime.broadcasts.send(
            category=args.category, title=args.title, body=args.body, important=args.important,
            audience=audience, channel=args.channel, by=actor_of(args), refuse_empty=True, on_created=announce,
        )
        if await runtime.queue.running() == 0:
            print(NO_WORKER, file=sys.stderr)

    try:
        with_runtime(args, work)
    except BaseException:
        # Stopped (Ctrl-C) or failed (Redis, MongoDB) once the notice exists: the
        # service's worker plans the rest when it can. Sending again would send twice.
        if created:
            print(f"通知 {created[0]} 已创建，会继续记录接收者并发送，请勿重新发送。"
                  f"查看进度：wetoop-bot notice status {created[0]}；如需停止：wetoop-bot notice cancel {created[0]}",
                  file=sys.stderr)
        raise
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    progress = with_runtime(args, lambda runtime: runtime.broadcasts.progress(args.id))
    data = progress.to_json()
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    eta = "—" if data["eta_seconds"] is None else f"{data['eta_seconds']} 秒"
    print(
        f"通知 {data['id']}（{CATEGORIES[data['category']]}{'，重要' if data['important'] else ''}）：{data['title']}\n"
        f"状态：{JOB_LABELS[data['status']]}　共 {data['total']}　已发送 {data['sent']}　失败 {data['failed']}　"
        f"跳过 {data['skipped']}　待发送 {data['pending'] + data['sending']}\n"
        f"{'平均速度' if data['status'] == 'done' else '速度'}：{data['rate_per_second']} 条/秒　预计剩余：{eta}"
    )
    if progress.recording:
        print(f"（正在记录接收者：已记录 {data['recorded']} / {data['total']}，未记录的计入待发送）")
    if not data["in_flight_known"]:
        print("（Redis 暂时无法连接：正在发送的数量无从得知，已计入待发送）")
    if progress.waiting_for_worker:
        print(NO_WORKER)
    if data["status"] == "paused" and data["paused_by"] in PAUSED_BY:
        print(f"{PAUSED_BY[data['paused_by']]}命令：wetoop-bot notice resume {data['id']}")
    if data["skipped_by_reason"]:
        print("跳过原因：" + "，".join(f"{explain(SKIP_REASONS, k)} {v}" for k, v in data["skipped_by_reason"].items()))
    if data["failed_by_code"]:
        print("失败原因（微信错误码或其他原因）：" + "，".join(f"{explain(WECHAT_ERRORS, k)} {v}" for k, v in data["failed_by_code"].items()))
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    async def work(runtime):
        before = await runtime.notices.get(args.id)
        done = await getattr(runtime.broadcasts, args.action)(args.id)  # refuses an unknown id
        if done.changed:  # a repeat changed nothing: nothing to audit
            await runtime.audit.record(actor_of(args), f"notice_{args.action}", args.id, before={"status": before.status},
                                       after={"status": done.notice.status}, address="localhost")
        return done

    done = with_runtime(args, work)
    print(done.already or f"通知 {done.notice.id} 当前状态：{JOB_LABELS[done.notice.status]}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from service.runtime import Runtime

    config = load_config(args)
    require_wechat_account(config, "发送通知")
    embedded = start_embedded(config)
    try:

        async def run() -> None:
            runtime = Runtime(config, config.mongodb_uri or embedded.url("mongo"), config.redis_url or embedded.url("redis"))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            # Embedded servers attached from a service that stops are taken over.
            ticking = asyncio.create_task(supervisor.tick_until(embedded.revive, stop)) if embedded.running else None
            try:
                await runtime.prepare(qa=False)  # a worker answers no questions
                # A dead planner's job is planned by upkeep: the rest of it in a
                # task, so that upkeep goes on taking over dead workers' batches.
                runtime.broadcasts.plan_in_background = True
                print(f"通知发送进程已启动（并发 {args.concurrency}）。按 Ctrl-C 停止。", flush=True)
                checking = asyncio.create_task(runtime.check_wechat())
                await runtime.worker(args.concurrency).run(stop)
                checking.cancel()  # WeChat not answering must not hold the stop
                await asyncio.gather(checking, return_exceptions=True)
            finally:
                stop.set()
                if ticking is not None:
                    await ticking
                await runtime.close()

        supervisor.run_loop(run())
    finally:
        embedded.stop()
    return 0
