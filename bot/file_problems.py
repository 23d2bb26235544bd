"""Why a file could not be read or written, or a port bound, in Chinese.

For admins (the CLI, configuration checks): ``OSError.strerror`` and json's
own messages are English, and they ended sentences that are otherwise Chinese.
"""

from __future__ import annotations

import errno
import json

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
