"""CLI commands: ``wetoop-bot menu push [--file F]`` and ``wetoop-bot menu show``.

The menu goes to WeChat (``WECHAT_API_BASE``: the emulator in the demo) through
``runtime.wechat.menu``, the asyncio face of wechatpy, with the shared access
token. A bad file or a menu WeChat refuses exits 2; a network failure exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from service.clitools import UsageError, add_data_dir_flag, require_wechat_account, with_runtime
from wechat.menu import DEFAULT_MENU, MenuFileError, load_menu

#: WeChat's menu refusals, said plainly (the code is printed too).
MENU_ERRORS = {
    40016: "一级菜单数量不对（1 到 3 个）",
    40023: "子菜单数量不对（1 到 5 个）",
    40017: "菜单类型不正确",
    40024: "子菜单类型不正确",
    40018: "菜单名称为空或过长（一级菜单最多 16 字节，约 5 个汉字）",
    40025: "子菜单名称为空或过长（最多 60 字节）",
    40019: "菜单 key 为空或过长（最多 128 字节）",
    40026: "子菜单 key 为空或过长（最多 128 字节）",
    40020: "菜单链接缺失或过长",
    40027: "子菜单链接缺失或过长",
    40054: "子菜单链接必须以 http:// 或 https:// 开头",
    40055: "菜单链接必须以 http:// 或 https:// 开头",
    40007: "缺少 media_id",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands of this module to the parser."""
    menu = sub.add_parser("menu", help="公众号自定义菜单：推送、查看")
    menu_sub = menu.add_subparsers(dest="menu_command", required=True, metavar="ACTION")

    push = menu_sub.add_parser("push", help="把菜单文件推送到微信（演示环境中是模拟器）")
    push.add_argument("--file", default=str(DEFAULT_MENU), help=f"菜单 JSON 文件（默认 {DEFAULT_MENU.relative_to(DEFAULT_MENU.parents[1])}）")
    add_data_dir_flag(push)
    push.set_defaults(func=cmd_push)

    show = menu_sub.add_parser("show", help="打印微信当前的菜单")
    add_data_dir_flag(show)
    show.set_defaults(func=cmd_show)


def _explain(exc) -> str:
    reason = MENU_ERRORS.get(exc.code, exc.message)
    return f"微信拒绝了菜单：{reason}（错误码 {exc.code}）"


def cmd_push(args: argparse.Namespace) -> int:
    from wechat.api import WeChatAPIError

    try:
        menu = load_menu(args.file)
    except MenuFileError as exc:
        raise UsageError(str(exc)) from None

    async def work(runtime):
        require_wechat_account(runtime.config, "读取或推送菜单")
        try:
            await runtime.wechat.menu.create(menu)
        except WeChatAPIError as exc:
            return exc
        return None

    failure = with_runtime(args, work)
    if failure is None:
        count = sum(len(b.get("sub_button") or [b]) for b in menu["button"])
        print(f"菜单已推送：{len(menu['button'])} 个一级菜单，{count} 个菜单项（{_api_base(args)}）")
        unhandled = _unhandled_keys(menu)
        if unhandled:  # pushed all the same: WeChat takes any key, and the bot answers with its help
            print(f"注意：这些菜单项的 key 没有对应的功能，用户点击只会收到帮助信息：{'、'.join(unhandled)}", file=sys.stderr)
        return 0
    if failure.code < 0:  # network: not the file's fault
        print(f"wetoop-bot: 无法连接微信接口：{failure.message}", file=sys.stderr)
        return 1
    raise UsageError(_explain(failure))


def _unhandled_keys(menu: dict) -> list[str]:
    """Click keys in ``menu`` that the chat does not handle (a typo, a key of another version)."""
    from bot.chat import router

    known = router.menu_keys()
    leaves = [leaf for button in menu["button"] for leaf in (button.get("sub_button") or [button])]
    return [leaf.get("key") or "（空）" for leaf in leaves if leaf["type"] == "click" and leaf.get("key") not in known]


def _api_base(args: argparse.Namespace) -> str:
    from service.clitools import load_config

    return load_config(args).wechat_api_base


def cmd_show(args: argparse.Namespace) -> int:
    from wechat.api import WeChatAPIError

    async def work(runtime):
        require_wechat_account(runtime.config, "读取或推送菜单")
        try:
            return await runtime.wechat.menu.get()
        except WeChatAPIError as exc:
            raise UsageError(f"无法读取菜单：{exc.message}（错误码 {exc.code}）") from None

    menu = with_runtime(args, work)
    if not menu:
        print("公众号当前没有自定义菜单（用 wetoop-bot menu push 推送）")
        return 0
    print(json.dumps(menu.get("menu", menu), ensure_ascii=False, indent=2))
    return 0
