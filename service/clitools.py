"""What the ``wetoop-bot`` subcommands share: configuration, storage, errors."""

from __future__ import annotations

import argparse
import sys
import asyncio
import errno
import json
import os
import unicodedata
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from bot.file_problems import os_problem
from service.config import Config, load
from storage.embedded import EmbeddedServers

T = TypeVar("T")


#: argparse's own messages in Chinese. argparse asks gettext for each one when
#: it prints it, so replacing the module's ``_`` is how a program translates
#: them without a compiled catalog.
_ARGPARSE_ZH = {
    "usage: ": "用法：",
    "positional arguments": "位置参数",
    "options": "选项",
    "show this help message and exit": "显示帮助并退出",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s\n",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "the following arguments are required: %s": "缺少必需的参数：%s",
    "one of the arguments %s is required": "需要以下参数之一：%s",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "invalid choice: %(value)r (choose from %(choices)s)": "无效的取值 %(value)r（可选：%(choices)s）",
    "invalid %(type)s value: %(value)r": "无效的值 %(value)r（应为 %(type)s）",
    "expected one argument": "需要一个值",
    "expected at most one argument": "最多需要一个值",
    "expected at least one argument": "至少需要一个值",
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "ambiguous option: %(option)s could match %(matches)s": "有歧义的选项 %(option)s，可能是：%(matches)s",
    "ignored explicit argument %r": "多余的取值 %r",
    "unknown parser %(parser_name)r (choices: %(choices)s)": "未知的命令 %(parser_name)r（可选：%(choices)s）",
}


def speak_chinese_in_argparse() -> None:
    """Make argparse's usage lines and errors Chinese, as the rest of the CLI is."""
    argparse._ = lambda message: _ARGPARSE_ZH.get(message, message)  # type: ignore[attr-defined]


def add_global_flags_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept ``--config``, ``-v`` and ``--data-dir`` after any subcommand too, not only before it.

    Defaults are suppressed below the top level, so a flag given before the
    subcommand is not reset by the subcommand's parser.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                child.add_argument("--config", default=argparse.SUPPRESS, help="TOML 配置文件（环境变量优先）")
                child.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="输出更多日志")
                if "--data-dir" not in child._option_string_actions:  # accepted everywhere, as the README says
                    add_data_dir_flag(child)
                add_global_flags_everywhere(child)


class UsageError(Exception):
    """A command that cannot run as given: message printed, exit code 2."""


def print_table(headers: list[str], rows: list[list[object]]) -> None:
    """Columns aligned by display width (a Chinese character takes two cells)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)).rstrip())


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"必须是正整数：{text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"必须是正整数：{value}")
    return value


def require_wechat_account(config: Config, doing: str) -> None:
    """:class:`UsageError` unless ``config`` names the official account (``doing`` says what needs it)."""
    if not (config.wechat_appid and config.wechat_secret):
        raise UsageError(
            f"{doing}需要公众号的 WECHAT_APPID 和 WECHAT_SECRET（公众号的 AppID 与 AppSecret；同一数据目录上的演示环境运行时，没有设置任何 WECHAT_ 项的命令会使用它的设置）"
        )


def add_by_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", help="操作人（记入审计日志，默认 cli）")


def actor_of(args: argparse.Namespace) -> str:
    """Who an audited CLI action is recorded as: ``cli``, or ``cli:NAME`` with ``--by NAME``."""
    return f"cli:{args.by}" if args.by else "cli"


def data_dir_path(text: str) -> Path:
    """``--data-dir``'s value; an empty one (``--data-dir "$DATA_DIR"`` with the
    variable unset) would be the current directory, a new empty installation."""
    if not text.strip():
        raise argparse.ArgumentTypeError("数据目录不能为空（--data-dir 后面需要一个目录路径）")
    return Path(text)


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    # Suppressed when not given, so a --data-dir before the subcommand stands.
    parser.add_argument("--data-dir", type=data_dir_path, default=argparse.SUPPRESS, help="数据目录（默认 DATA_DIR 或 ./var）")


#: Written by a running ``wetoop-bot demo`` under ``DATA_DIR/run``: its WeChat
#: settings (the emulator's address, the random secret), so that commands run
#: beside it (``worker``, ``menu``) talk to the same emulator.
DEMO_SETTINGS = "demo-wechat.json"
#: The settings that name an official account: with none of them, a running demo's are used.
WECHAT_ACCOUNT_FIELDS = ("wechat_token", "wechat_appid", "wechat_secret", "wechat_aes_key")
#: What a command joined to a running demo takes from it: its account, and how its
#: notices go (a worker with other templates sent the demo's security notices as
#: customer-service messages, skipping those outside 48 hours; another rate broke its pace).
DEMO_FIELDS = (*WECHAT_ACCOUNT_FIELDS, "wechat_api_base", "notice_templates", "notice_rate")


def load_config(args: argparse.Namespace) -> Config:
    """The configuration from the environment, the TOML file and the flags,
    then, when no WeChat account is configured and a demo runs on the same
    data directory, the demo's WeChat settings."""
    config = load(toml_path=args.config)
    changes = {}
    for field in ("host", "port", "data_dir"):
        value = getattr(args, field, None)
        if value is not None:
            changes[field] = value
    config = config.replace(**changes) if changes else config
    if not any(getattr(config, field) for field in WECHAT_ACCOUNT_FIELDS):
        # Only with no WeChat setting at all: a Token or key given for the
        # service is never replaced by the demo's published ones.
        config = config.replace(**running_demo_settings(config.data_dir))
    return config


def write_demo_settings(config: Config) -> Path:
    """Record a starting demo's WeChat settings (readable by its owner only)."""
    path = Path(config.data_dir) / "run" / DEMO_SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {field: getattr(config, field) for field in DEMO_FIELDS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), "data_dir": str(Path(config.data_dir).resolve()), **values}, fh)
    return path


def _running_demo(data_dir: Path) -> dict:
    """What the demo running on ``data_dir`` recorded (``pid``, its data
    directory and its settings); {} if none runs. A file left by a killed demo,
    whose pid may now belong to something else, or copied from another data
    directory, is no running demo."""
    try:
        saved = json.loads((Path(data_dir) / "run" / DEMO_SETTINGS).read_text(encoding="utf-8"))
        pid = int(saved["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no file, unreadable, or its demo is gone
        return {}
    if "data_dir" in saved and saved["data_dir"] != str(Path(data_dir).resolve()):
        return {}  # the file copied from another data directory, whose demo may still run
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # no /proc (not Linux): trust the pid
        return saved
    return saved if b"demo" in command and any(b"wetoop" in part for part in command) else {}


def running_demo_settings(data_dir: Path) -> dict:
    """The WeChat settings of the demo running on ``data_dir``; {} if none runs."""
    saved = _running_demo(data_dir)
    return {field: saved[field] for field in DEMO_FIELDS if saved.get(field)}


def running_demo_pid(data_dir: Path) -> int | None:
    """The process id of another demo running on ``data_dir``, if one is."""
    pid = _running_demo(data_dir).get("pid")
    return int(pid) if pid and int(pid) != os.getpid() else None


def remove_demo_settings(path: Path) -> None:
    """Remove a demo's settings file, if it is still this process's."""
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") != os.getpid():
            return
    except (OSError, ValueError, AttributeError):
        return
    path.unlink(missing_ok=True)


def start_embedded(config: Config) -> EmbeddedServers:
    """The embedded servers this configuration needs: attached to a running
    service's, or started for this process."""
    names = tuple(
        name for name, url in (("mongo", config.mongodb_uri), ("redis", config.redis_url)) if not url
    )
    try:
        _refuse_a_file(config)
        return EmbeddedServers(config.data_dir, names).start()
    except OSError as exc:
        if exc.filename is None or not str(exc.filename).startswith(str(Path(config.data_dir).resolve())):
            raise  # not about the data directory (e.g. a server's binary)
        raise _unusable(config, exc) from None


def make_data_dir(config: Config) -> None:
    """Create the data directory (and its parents), or refuse it in one line."""
    try:
        _refuse_a_file(config)
        Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(config, exc) from None


def _refuse_a_file(config: Config) -> None:
    path = Path(config.data_dir)
    if path.exists() and not path.is_dir():  # mkdir's own error for it reads "already exists"
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path.resolve()))


def _unusable(config: Config, exc: OSError) -> UsageError:
    """Not writable, a file, under /proc, ..."""
    why = "这不是一个目录" if exc.errno == errno.ENOTDIR and Path(config.data_dir).is_file() else os_problem(exc)
    return UsageError(f"无法使用数据目录 {config.data_dir}：{why}（DATA_DIR 或 --data-dir）")


def require_data_dir(config: Config) -> None:
    """Refuse a data directory that does not exist when the command would keep
    its data there (embedded databases): a mistyped ``--data-dir`` showed an
    empty, newly made installation, and so did the default ``./var`` in a
    shell without the service's settings (its DATA_DIR, MONGODB_URI and
    REDIS_URL live in the service's environment file), where the command then
    wrote to a database the service never reads."""
    if (config.mongodb_uri and config.redis_url) or Path(config.data_dir).exists():
        return
    if Path(config.data_dir) != Config().data_dir:
        raise UsageError(
            f"数据目录 {config.data_dir} 不存在，请检查 --data-dir 或 DATA_DIR"
            "（服务运行时用的是哪个目录）。新安装请先运行 wetoop-bot serve，它会创建该目录。"
        )
    raise UsageError(
        f"当前目录下没有数据目录 {config.data_dir}：服务不在这里运行，或它的设置（DATA_DIR、MONGODB_URI、REDIS_URL）"
        "没有在这个终端中设置。请在服务运行的目录中执行，或设置与服务相同的环境变量、--data-dir；"
        "新安装请先运行 wetoop-bot serve，它会创建该目录。"
    )


def with_runtime(args: argparse.Namespace, work: Callable[["Runtime"], Awaitable[T]],  # noqa: F821
                 new_install: bool = False) -> T:
    """Run ``work(runtime)`` against the configured (or embedded) storage.

    While the service runs, its embedded servers are used; otherwise they are
    started for the command and stopped after it. A data directory named but
    missing is refused (:func:`require_data_dir`), unless ``new_install``: the
    command may be the first on a new server (creating the first admin).
    """
    from service.runtime import Runtime

    config = load_config(args)
    if not new_install:
        require_data_dir(config)
    elif not (config.mongodb_uri and config.redis_url):
        # Said, so that a shell without the service's settings is noticed.
        print(f"（使用数据目录 {Path(config.data_dir).resolve()} 中的内置数据库）", file=sys.stderr)
    embedded = start_embedded(config)
    try:

        async def run() -> T:
            runtime = Runtime(
                config,
                config.mongodb_uri or embedded.url("mongo"),
                config.redis_url or embedded.url("redis"),
            )
            try:
                await runtime.prepare(qa=False, require_mongo=True)  # else a warning, then the same error
                return await work(runtime)
            finally:
                await runtime.close()

        return asyncio.run(run())
    finally:
        embedded.stop()
