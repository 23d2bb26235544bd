"""What the ``wetoop-bot`` subcommands share: configuration, storage, errors."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from service.config import Config, load
from storage.embedded import EmbeddedServers

T = TypeVar("T")


class UsageError(Exception):
    """A command that cannot run as given: message printed, exit code 2."""


def add_data_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="数据目录（默认 DATA_DIR 或 ./var）")


def load_config(args: argparse.Namespace) -> Config:
    """The configuration from the environment, the TOML file and the flags."""
    config = load(toml_path=args.config)
    changes = {}
    for field in ("host", "port", "data_dir"):
        value = getattr(args, field, None)
        if value is not None:
            changes[field] = value
    return config.replace(**changes) if changes else config


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
