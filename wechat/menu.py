"""The official account's custom menu as a file (``data/menu.json``).

The file is WeChat's own ``menu/create`` JSON. :func:`load_menu` reads it and
checks its shape, so a typo is reported before WeChat is asked; WeChat (or the
emulator) still has the last word on names, keys and URLs.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.file_problems import json_problem, os_problem

#: The menu pushed by ``wetoop-bot menu push`` and the demo.
DEFAULT_MENU = Path(__file__).resolve().parent.parent / "data" / "menu.json"


class MenuFileError(ValueError):
    """A menu file that cannot be pushed; the message is Chinese and names the file."""


def load_menu(path: str | Path = DEFAULT_MENU) -> dict:
    """The menu in ``path``: ``{"button": [...]}`` with 1-3 buttons, each a
    leaf with a ``type`` or a group of 1-5 leaves under ``sub_button``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise MenuFileError(f"无法读取菜单文件 {path}：{os_problem(exc)}") from None
    except UnicodeDecodeError:
        raise MenuFileError(f"菜单文件 {path} 不是 UTF-8 编码的文本") from None
    except json.JSONDecodeError as exc:
        raise MenuFileError(f"菜单文件 {path} {json_problem(exc)}") from None
    buttons = data.get("button") if isinstance(data, dict) else None
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise MenuFileError(f"菜单文件 {path} 需要 \"button\"：1 到 3 个一级菜单")
    for button in buttons:
        if not isinstance(button, dict) or not isinstance(button.get("name"), str):
            raise MenuFileError(f"菜单文件 {path} 中每个菜单都需要 \"name\"")
        subs = button.get("sub_button")
        if subs is None:
            leaves = [button]
        elif isinstance(subs, list) and 1 <= len(subs) <= 5:
            leaves = subs
        else:
            raise MenuFileError(f"菜单文件 {path} 中“{button['name']}”的子菜单必须是 1 到 5 个")
        for leaf in leaves:
            if not isinstance(leaf, dict) or not isinstance(leaf.get("type"), str) or not isinstance(leaf.get("name"), str):
                raise MenuFileError(f"菜单文件 {path} 中“{button['name']}”的每个菜单项都需要 \"type\" 和 \"name\"")
    return data
