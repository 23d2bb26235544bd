"""``wetoop-bot followers backfill-unionid``: the unionid of followers who followed before it was asked."""

from __future__ import annotations

import argparse
import sys

from service.clitools import add_data_dir_flag, load_config, require_wechat_account, with_runtime


def register(sub: argparse._SubParsersAction) -> None:
    followers = sub.add_parser("followers", help="公众号关注者")
    followers_sub = followers.add_subparsers(dest="followers_command", required=True, metavar="ACTION")
    backfill = followers_sub.add_parser(
        "backfill-unionid",
        help="为还没有 unionid 的关注者向微信查询（user/info），并与同一人的小程序账户关联",
    )
    add_data_dir_flag(backfill)
    backfill.set_defaults(func=cmd_backfill_unionid)


def cmd_backfill_unionid(args: argparse.Namespace) -> int:
    config = load_config(args)
    require_wechat_account(config, "查询 unionid ")

    async def work(runtime):
        openids = await runtime.followers.without_unionid()

        def progress(asked: int, counts: dict) -> None:  # said as it goes (a large account has 100,000s)
            print(f"已查询 {asked} / {len(openids)}：找到 {counts['found']}，无 unionid {counts['none']}，"
                  f"失败 {counts['failed']}", file=sys.stderr, flush=True)

        return len(openids), await runtime.mini.backfill_unionids(openids, progress=progress)

    total, counts = with_runtime(args, work)
    asked = counts["found"] + counts["none"] + counts["failed"]
    print(
        f"已查询 {asked} 位（共 {total} 位没有 unionid 的关注者）：找到并关联 {counts['found']} 位，"
        f"微信未提供 unionid {counts['none']} 位（公众号未绑定开放平台时如此），失败 {counts['failed']} 位。"
    )
    if counts["stopped"]:
        print(f"前 {asked} 位都没有 unionid：公众号很可能未绑定微信开放平台，其余的不再查询。"
              "绑定后再运行本命令。", file=sys.stderr)
    if counts["apart"]:
        print(f"其中 {counts['apart']} 位在公众号和小程序各有一份商家资料，未合并：请管理员核对后处理（见日志）。")
    return 0 if counts["failed"] == 0 else 1
