"""Why a file could not be read or written, or a port bound, in Chinese.

For admins (the CLI, configuration checks): ``OSError.strerror`` and json's
own messages are English, and they ended sentences that are otherwise Chinese.
"""

from __future__ import annotations

import errno
import json
import re
import tomllib

#: The bad lines a refusal of a list an admin wrote names (an openid list,
#: consents to import), before it says how many there are: enough to see what is
#: wrong and find them, not a screenful for a file that is wrong throughout.
SHOWN_BAD_LINES = 5

_OS_ERRORS = {
    errno.ENOENT: "文件或目录不存在",
    errno.EISDIR: "这是一个目录，不是文件",
    errno.ENOTDIR: "路径中有一段不是目录",
    errno.EACCES: "没有权限",
    errno.EPERM: "没有权限",
    errno.EROFS: "文件系统只读",
    errno.ENOSPC: "磁盘空间不足",
    errno.EDQUOT: "磁盘配额已用完",
    errno.EEXIST: "已经存在",
    errno.ENAMETOOLONG: "文件名过长",
    errno.ELOOP: "符号链接层数过多",
    errno.EMFILE: "打开的文件过多",
    errno.EIO: "读写出错（I/O 错误）",
    errno.EADDRINUSE: "端口已被占用",
    errno.EADDRNOTAVAIL: "本机没有这个地址",
}


def os_problem(exc: OSError) -> str:
    """``exc`` in Chinese: the cause for the common ones, else the system's
    own text with its number (something an admin can still look up)."""
    known = _OS_ERRORS.get(exc.errno) if exc.errno is not None else None
    if known:
        return known
    return f"系统错误 {exc.errno}（{exc.strerror}）" if exc.errno is not None else f"系统错误（{exc}）"


def json_problem(exc: json.JSONDecodeError) -> str:
    """Where the JSON went wrong, in Chinese."""
    return f"不是有效的 JSON：第 {exc.lineno} 行第 {exc.colno} 列有语法错误"


#: tomllib's messages (their beginnings) in Chinese; others are "a syntax error".
_TOML_ERRORS = (
    ("Unterminated string", "字符串缺少结尾的引号"),
    ("Illegal character", "有不允许的字符（如字符串中的换行）"),
    ("Invalid value", "值的写法不对（文字要加引号）"),
    ("Cannot overwrite a value", "同一项写了两次"),
    ("Cannot declare", "同一个表写了两次"),
    ("Expected '=' after a key", "键后面缺少 ="),
    ("Invalid statement", "这一行不是“键 = 值”的写法"),
    ("Unclosed array", "数组缺少结尾的 ]"),
    ("Expected ']'", "表名缺少结尾的 ]"),
    ("Expected newline or end of document after a statement", "一行只能写一项（值后面有多余的内容）"),
    ("Unclosed inline table", "内联表缺少结尾的 }"),
)


def toml_problem(exc: tomllib.TOMLDecodeError, text: str | None = None) -> str:
    """Where and why the TOML in ``text`` went wrong, in Chinese (tomllib says it in English)."""
    message = str(exc)
    where = re.search(r"line (\d+), column (\d+)", message)
    if where:
        at = f"第 {where[1]} 行第 {where[2]} 列附近"
    elif "end of document" in message and message.startswith("Cannot overwrite") and text and text.strip():
        # tomllib places a key written twice after its value: the end of a
        # document that ends with it. The value's last line is a better guide.
        at = f"第 {len(text.rstrip().splitlines())} 行附近"
    else:
        at = "文件末尾" if "end of document" in message else ""
    why = next((chinese for english, chinese in _TOML_ERRORS if message.startswith(english)), "有语法错误")
    return f"不是有效的 TOML：{at}{'：' if at else ''}{why}"
