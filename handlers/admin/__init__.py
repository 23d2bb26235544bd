"""The admin console under ``/admin``: server-rendered pages.

Handlers are thin: parse the form, call one action of :class:`bot.console.Console`
(or :class:`bot.admin_accounts.AdminAccounts`), render a template from
``templates/admin/``. :class:`handlers.admin.base.AdminHandler` does the
session, role and xsrf checks for every route.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def routes(runtime) -> list[tuple]:
    """URL rules of the admin console."""
    from handlers.admin import auth, content, people, records

    args = {"runtime": runtime}
    table = [
        (r"/admin/?", records.DashboardHandler),
        (r"/admin/login", auth.LoginHandler),
        (r"/admin/logout", auth.LogoutHandler),
        (r"/admin/audit", records.AuditHandler),
        (r"/admin/audit\.csv", records.AuditCsvHandler),
        (r"/admin/terms", content.TermsHandler),
        (r"/admin/terms/diff", content.TermsDiffHandler),
        (r"/admin/terms/new", content.TermsPublishHandler),
        (r"/admin/terms/v/([^/]{1,64})", content.TermsVersionHandler),
        (r"/admin/notices", content.NoticesHandler),
        (r"/admin/notices/new", content.NoticeComposeHandler),
        (r"/admin/notices/([0-9a-f]{24})", content.NoticeHandler),
        (r"/admin/notices/([0-9a-f]{24})/progress", content.NoticeProgressHandler),
        (r"/admin/notices/([0-9a-f]{24})/(pause|resume|cancel)", content.NoticeControlHandler),
        (r"/admin/drafts/([0-9a-f]{24})/discard", content.DraftDiscardHandler),
        (r"/admin/merchants", people.MerchantsHandler),
        (r"/admin/merchants\.csv", people.MerchantsCsvHandler),
        (r"/admin/merchants/([^/]{1,128})", people.MerchantHandler),
        (r"/admin/consents", records.ConsentsHandler),
        (r"/admin/consents\.csv", records.ConsentsCsvHandler),
        (r"/admin/qa", content.QAHandler),
        (r"/admin/qa/(lexicon\.toml|examples\.toml)", content.QAFileHandler),
        (r"/admin/users", people.AdminsHandler),
        (r"/admin/users/([A-Za-z0-9_.-]{2,32})/(role|disable|enable|revoke|password)", people.AdminUserHandler),
        (r"/admin/.*", auth.AdminNotFoundHandler),
    ]
    return [(pattern, handler, args) for pattern, handler in table]


def cookie_secret(config) -> str:
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
        # The chat must not go down for the console's sake: sign with a
        # per-process secret (sessions then hold in this process only).
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
        raise RuntimeError(f"{path} holds no usable cookie secret; delete it to generate a new one")
    return text
