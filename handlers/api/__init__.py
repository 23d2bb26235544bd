"""The mini-program's JSON API under ``/api/v1`` (contract: ``handlers/api/spec.py``).

Handlers are thin: parse, call the domain (:mod:`bot.mini_sessions`,
:mod:`bot.my_account`, :mod:`bot.inbox` and the services chat uses), render
(:mod:`handlers.api.render`).
"""

from __future__ import annotations

from handlers.api import me, qa, session, terms
from handlers.api.openapi import IndexHandler, OpenAPIHandler
from handlers.api.spec import PREFIX

_VERSION = r"([0-9A-Za-z][0-9A-Za-z._-]{0,31})"

#: (path as in the OpenAPI document, URL pattern, handler)
ROUTES = (
    ("/", r"/?", IndexHandler),
    ("/session", r"/session", session.SessionHandler),
    ("/me", r"/me", me.MeHandler),
    ("/terms", r"/terms", terms.TermsHandler),
    ("/terms/{version}", rf"/terms/{_VERSION}", terms.VersionHandler),
    ("/terms/{version}/sections/{n}", rf"/terms/{_VERSION}/sections/(\d{{1,6}})", terms.SectionHandler),
    ("/consents", r"/consents", me.ConsentsHandler),
    ("/me/consents", r"/me/consents", me.MyConsentsHandler),
    ("/me/registration", r"/me/registration", me.RegistrationHandler),
    ("/me/notices", r"/me/notices", me.NoticesHandler),
    ("/me/notices/{id}/read", r"/me/notices/([0-9A-Za-z]{1,64})/read", me.NoticeReadHandler),
    ("/me/preferences", r"/me/preferences", me.PreferencesHandler),
    ("/qa", r"/qa", qa.QAHandler),
    ("/me/export", r"/me/export", me.ExportHandler),
    ("/openapi.json", r"/openapi\.json", OpenAPIHandler),
)


def routes(runtime) -> list[tuple]:
    """URL rules of the API."""
    return [(PREFIX + pattern, handler, {"runtime": runtime}) for _path, pattern, handler in ROUTES]
