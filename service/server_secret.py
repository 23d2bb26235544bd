"""The deployment's own secret: ``COOKIE_SECRET``, else one generated once.

It signs the admin console's cookies and seals the export links' snapshots
(:mod:`storage.export_links`), so it must be the same in every process of a
deployment and survive restarts.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from service.config import ConfigError

log = logging.getLogger(__name__)


def server_secret(config) -> str:
    """``COOKIE_SECRET``, else a secret generated once and kept in
    ``DATA_DIR/run/cookie_secret`` (mode 0600), so every process of one
    deployment signs cookies alike and sessions survive restarts."""
    if config.cookie_secret:
        return config.cookie_secret
    path = Path(config.data_dir) / "run" / "cookie_secret"
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    try:
        return _create_secret(path)
    except OSError as exc:
        # The chat must not go down for the console's sake: a per-process
        # secret (sessions and export links then hold in this process only).
        log.warning("cannot keep a cookie secret in %s (%s); set COOKIE_SECRET", path, exc)
        return secrets.token_urlsafe(48)


def _create_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".cookie_secret.{os.getpid()}")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        # link() fails if another process got there first: everyone keeps the first secret.
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        candidate.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    text = path.read_text(encoding="utf-8").strip()
    if len(text) < 32:
        raise ConfigError(f"{path} 中没有可用的密钥（至少 32 个字符）：删除该文件，服务会重新生成；或设置 COOKIE_SECRET")
    return text
