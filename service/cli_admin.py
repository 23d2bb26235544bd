"""``wetoop-bot admin …``: accounts of the admin console.

Commands typed on the server act as the owner ``cli`` (whoever runs them has
the shell already); every change is in the audit log like a console action.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from bot.admin_accounts import CLI, ROLES, generate_password
from bot.agreement import CHINA
from service.clitools import UsageError, add_data_dir_flag, print_table, with_runtime


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="管理后台账户：创建、列出、角色、停用、会话")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")

    create = admin_sub.add_parser("create-user", help="创建管理员（密码来自提示输入或 ADMIN_PASSWORD）")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=tuple(ROLES), help="viewer（只读）、editor（编辑）、owner（所有者）")
    create.add_argument("--generate-password", action="store_true", help="生成随机密码并打印")
    add_data_dir_flag(create)
    create.set_defaults(func=cmd_create)

    listing = admin_sub.add_parser("list-users", help="列出管理员")
    add_data_dir_flag(listing)
    listing.set_defaults(func=cmd_list)

    role = admin_sub.add_parser("set-role", help="修改角色")
    role.add_argument("name")
    role.add_argument("role", choices=tuple(ROLES))
    add_data_dir_flag(role)
    role.set_defaults(func=cmd_set_role)

    for action, label in (("disable", "停用管理员（并注销其会话）"), ("enable", "重新启用管理员")):
        parser = admin_sub.add_parser(action, help=label)
        parser.add_argument("name")
        add_data_dir_flag(parser)
        parser.set_defaults(func=cmd_disable, disabled=(action == "disable"))

    revoke = admin_sub.add_parser("revoke-sessions", help="注销一位管理员的全部会话")
    revoke.add_argument("name")
    add_data_dir_flag(revoke)
    revoke.set_defaults(func=cmd_revoke)

    password = admin_sub.add_parser("set-password", help="重设密码（提示输入或 ADMIN_PASSWORD），并注销其会话")
    password.add_argument("name")
    password.add_argument("--generate-password", action="store_true", help="生成随机密码并打印")
    add_data_dir_flag(password)
    password.set_defaults(func=cmd_set_password)


def read_password() -> str:
    """``ADMIN_PASSWORD``, else typed twice at a prompt."""
    from_env = os.environ.get("ADMIN_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise UsageError("没有终端可输入密码：请设置环境变量 ADMIN_PASSWORD，或使用 --generate-password")
    try:
        first = getpass.getpass("密码（至少 10 位）：")
        again = getpass.getpass("再输入一次：")
    except EOFError:  # Ctrl-D at the prompt
        raise UsageError("没有输入密码，未作任何更改") from None
    if again != first:
        raise UsageError("两次输入的密码不一致")
    return first


def cmd_create(args: argparse.Namespace) -> int:
    password = generate_password(args.name) if args.generate_password else read_password()
    user = with_runtime(args, lambda runtime: runtime.admins.create(args.name, args.role, password, by=CLI),
                        new_install=True)  # the first admin, before the service ever ran
    print(f"已创建管理员 {user.name}（{ROLES[user.role]}）。")
    if args.generate_password:
        print(f"初始密码：{password}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    async def work(runtime):
        users = await runtime.admins.list()
        return [(u, await runtime.admins.sessions.count(u.name)) for u in users]

    rows = with_runtime(args, work)
    if not rows:
        print("还没有管理员。用 wetoop-bot admin create-user NAME --role owner 创建。")
        return 0
    table = []
    for user, sessions in rows:
        created = user.created_at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M") if user.created_at else ""
        table.append([user.name, ROLES[user.role], "停用" if user.disabled else "启用", sessions, created])
    print_table(["用户名", "角色", "状态", "会话", "创建时间"], table)
    return 0


def cmd_set_role(args: argparse.Namespace) -> int:
    user = with_runtime(args, lambda runtime: runtime.admins.set_role(args.name, args.role, by=CLI))
    print(f"{user.name} 的角色已改为 {ROLES[user.role]}。")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    user = with_runtime(args, lambda runtime: runtime.admins.set_disabled(args.name, args.disabled, by=CLI))
    print(f"已{'停用' if user.disabled else '启用'}管理员 {user.name}。")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    count = with_runtime(args, lambda runtime: runtime.admins.revoke_sessions(args.name, by=CLI))
    print(f"已注销 {args.name} 的 {count} 个会话。")
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    password = generate_password(args.name) if args.generate_password else read_password()
    with_runtime(args, lambda runtime: runtime.admins.set_password(args.name, password, by=CLI))
    print(f"已重设 {args.name} 的密码，其会话已全部注销。")
    if args.generate_password:
        print(f"新密码：{password}")
    return 0
