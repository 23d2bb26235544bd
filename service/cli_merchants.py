"""``wetoop-bot merchants list|set-status``: merchant accounts for admins."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from bot.admin_accounts import CLI
from bot.agreement import CHINA
from bot.merchants import STATUSES, TRANSITIONS
from service.clitools import actor_of, add_by_flag, add_data_dir_flag, print_table, with_runtime


def register(sub: argparse._SubParsersAction) -> None:
    merchants = sub.add_parser("merchants", help="商家账户：列出、审核、暂停、恢复、注销")
    merchants_sub = merchants.add_subparsers(dest="merchants_command", required=True, metavar="ACTION")

    listing = merchants_sub.add_parser("list", help="列出商家")
    listing.add_argument("--status", choices=tuple(STATUSES), help="只列出该状态的商家")
    add_data_dir_flag(listing)
    listing.set_defaults(func=cmd_list)

    status = merchants_sub.add_parser("set-status", help="变更状态：审核通过（active）、暂停（suspended）、恢复（回到暂停前的状态：active 或 pending_review）、注销（closed）；"
                                         "对暂停期间注销的账户再次 closed：允许其用户重新注册；对待审核的账户再次 pending_review：退回修改")
    status.add_argument("openid", help="商家的 openid（见 merchants list）")
    status.add_argument("status", choices=tuple(STATUSES))
    status.add_argument("--reason", required=True, help="原因（会告知商家，并记入状态历史）")
    add_by_flag(status)
    add_data_dir_flag(status)
    status.set_defaults(func=cmd_set_status)


def cmd_list(args: argparse.Namespace) -> int:
    # All of them: an admin's list that stopped at 1,000 without a word looked complete.
    merchants = with_runtime(args, lambda runtime: runtime.merchants.repo.list(args.status, limit=None))
    if not merchants:
        print("没有符合条件的商家。")
        return 0
    rows = []
    for m in merchants:
        updated = m.updated_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if m.updated_at else ""
        kind = {"individual": "个人", "enterprise": "企业"}.get(m.entity_type or "", "")
        rows.append([m.openid, STATUSES[m.status], kind, m.entity_name or "-", m.credit_code or "-", m.contact_name or "-",
                     m.phone or "-", updated])
    print_table(["openid", "状态", "类型", "名称", "信用代码", "联系人", "手机", "更新时间"], rows)
    return 0


def cmd_set_status(args: argparse.Namespace) -> int:
    async def work(runtime):
        before = await runtime.merchants.get(args.openid)
        # The console's action: under the merchant's lock, changed only from the status it
        # was decided on (a change in chat meanwhile is not overwritten), audited.
        merchant = await runtime.console.set_merchant_status(
            dataclasses.replace(CLI, name=actor_of(args)), args.openid, args.status, args.reason)
        sharing = ([], 0) if merchant.status == "closed" else await runtime.merchants.sharing_credit_code(merchant)
        return before, merchant, sharing

    before, merchant, (sharing, sharing_total) = with_runtime(args, work)
    if sharing:  # as the console's merchant page says it
        others = "、".join(f"{m.openid}（{m.entity_name or '已注销'}，{STATUSES[m.status]}）" for m in sharing[:5])
        more = "等" if sharing_total > min(len(sharing), 5) else ""
        print(f"注意：统一社会信用代码 {merchant.credit_code} 也登记在另外 {sharing_total} 个账户上：{others}{more}",
              file=sys.stderr)
    if before is not None and before.status == merchant.status:  # an action of its own (允许重新注册, 退回修改)
        print(f"商家 {merchant.openid}：已{TRANSITIONS[(merchant.status, merchant.status)]}（原因：{args.reason.strip()}），并已通知商家")
    else:
        print(f"商家 {merchant.openid} 的状态已改为：{STATUSES[merchant.status]}（原因：{args.reason.strip()}）")
    return 0
