"""What the ``wetoop-bot`` subcommands share: configuration, storage, errors."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from service.config import Config, load
from storage.embedded import EmbeddedServers

T = TypeVar("T")


class UsageError(Exception):
    """A command that cannot run as given: message printed, exit code 2."""


def add_by_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", help="操作人（记入审计日志，默认 cli）")


def actor_of(args: argparse.Namespace) -> str:
    """Who an audited CLI action is recorded as: ``cli``, or ``cli:NAME`` with ``--by NAME``."""
    return f"cli:{args.by}" if args.by else "cli"


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="数据目录（默认 DATA_DIR 或 ./var）")


#: Written by a running ``wetoop-bot demo`` under ``DATA_DIR/run``: its WeChat
#: settings (the emulator's address, the random secret), so that commands run
#: beside it (``worker``, ``menu``) talk to the same emulator.
DEMO_SETTINGS = "demo-wechat.json"
DEMO_FIELDS = ("wechat_token", "wechat_appid", "wechat_secret", "wechat_aes_key", "wechat_api_base")


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
    if not config.wechat_appid:
        config = config.replace(**running_demo_settings(config.data_dir))
    return config


def write_demo_settings(config: Config) -> Path:
    """Record a starting demo's WeChat settings (readable by its owner only)."""
    path = Path(config.data_dir) / "run" / DEMO_SETTINGS
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {field: getattr(config, field) for field in DEMO_FIELDS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"pid": os.getpid(), **values}, fh)
    return path


def running_demo_settings(data_dir: Path) -> dict:
    """The WeChat settings of the demo running on ``data_dir``; {} if none runs."""
    try:
        saved = json.loads((Path(data_dir) / "run" / DEMO_SETTINGS).read_text(encoding="utf-8"))
        os.kill(int(saved["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):  # no file, unreadable, or its demo is gone
        return {}
    return {field: saved[field] for field in DEMO_FIELDS if saved.get(field)}


def start_embedded(config: Config) -> EmbeddedServers:
    """The embedded servers this configuration needs: attached to a running
    service's, or started for this process."""
    names = tuple(
        name for name, url in (("mongo", config.mongodb_uri), ("redis", config.redis_url)) if not url
    )
    return EmbeddedServers(config.data_dir, names).start()


def with_runtime(args: argparse.Namespace, work: Callable[["Runtime"], Awaitable[T]]) -> T:  # noqa: F821
    """Run ``work(runtime)`` against the configured (or embedded) storage.

    While the service runs, its embedded servers are used; otherwise they are
    started for the command and stopped after it.
    """
    from service.runtime import Runtime

    config = load_config(args)
    embedded = start_embedded(config)
    try:

        async def run() -> T:
            runtime = Runtime(
                config,
                config.mongodb_uri or embedded.url("mongo"),
                config.redis_url or embedded.url("redis"),
            )
            try:
                await runtime.prepare(qa=False)
                return await work(runtime)
            finally:
                await runtime.close()

        return asyncio.run(run())
    finally:
        embedded.stop()
