"""The admin console under ``/admin``: server-rendered pages.

Handlers are thin: parse the form, call one action of :class:`bot.console.Console`
(or :class:`bot.admin_accounts.AdminAccounts`), render a template from
``templates/admin/``. :class:`handlers.admin.base.AdminHandler` does the
session, role and xsrf checks for every route.
"""

from __future__ import annotations

from service.server_secret import server_secret


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
    """The secret that signs the console's cookies: :func:`service.server_secret.server_secret`."""
    return server_secret(config)
