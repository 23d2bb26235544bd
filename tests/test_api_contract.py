"""The API's OpenAPI contract: every route is in the document (and only those),
and schemathesis, generating requests from the served document over real HTTP
with a real session, finds no 5xx and no response that breaks the schema."""

from __future__ import annotations

import asyncio
import json
import re

import hypothesis
import pytest
import schemathesis
import tornado.web
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tornado.httpclient import AsyncHTTPClient

from bot.mini_sessions import Limits
from emulator.app import EmulatorState
from handlers import api as api_routes
from handlers.api import spec
from handlers.app import make_app
from tests.test_api import ENTERPRISE, MP_APPID, MP_SECRET, Api

METHODS = ("get", "post", "put", "delete", "patch")


def _implemented(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


@pytest.fixture
async def api(make_service, emulator) -> Api:
    svc = await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET)
    return Api(svc, emulator)


async def test_every_route_is_in_the_document_with_its_methods(api):
    document = spec.document("http://example.test")
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert {path for path, _pattern, _handler in api_routes.ROUTES} == set(paths)
    for path, pattern, handler in api_routes.ROUTES:
        assert _implemented(handler) == set(paths[path]), path
        # The URL pattern accepts the documented path shape (parameters filled in).
        example = re.sub(r"\{version\}", "2022-05-22", re.sub(r"\{n\}", "3", re.sub(r"\{id\}", "abc123", path)))
        assert re.fullmatch(pattern, example), (pattern, example)
    # Every /api/v1 rule of the application's URL table comes from ROUTES.
    app = make_app(api.svc.runtime)
    served = [r.matcher.regex.pattern for r in app.wildcard_router.rules if r.matcher.regex.pattern.startswith("/api/")]
    assert sorted(set(served)) == sorted({spec.PREFIX + p + "$" for _path, p, _h in api_routes.ROUTES})
    # Each operation documents its errors with the shared Error schema.
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


async def test_the_document_is_served(api):
    response = await AsyncHTTPClient().fetch(api.base + "/openapi.json")
    served = json.loads(response.body)
    assert served["servers"] == [{"url": api.svc.url + "/api/v1"}]
    assert served["paths"] == json.loads(json.dumps(spec.PATHS))
    # Log-in's 403 says what it is there (the shared words spoke of consent).
    assert "user_blocked" in served["paths"]["/session"]["post"]["responses"]["403"]["description"]
    # Without PUBLIC_URL its address comes from the request's Host: no shared cache may keep it.
    spoofed = await AsyncHTTPClient().fetch(api.base + "/openapi.json", headers={"Host": "evil.example"})
    assert json.loads(spoofed.body)["servers"] == [{"url": "http://evil.example/api/v1"}]
    assert spoofed.headers["Cache-Control"] == "no-store"


async def test_the_api_root_points_to_the_document(api):
    for path in ("", "/"):
        response = await AsyncHTTPClient().fetch(api.base + path)
        assert json.loads(response.body)["openapi"] == api.svc.url + "/api/v1/openapi.json"


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(api):
    runtime = api.svc.runtime
    runtime.mini.limits = Limits(per_user=100_000, login_per_address=100_000)
    token = await api.token("fuzz")
    await api.accepted(token)
    await api.call("PUT", "/me/registration", ENTERPRISE, token)
    # A notice in the user's inbox, so marking read can succeed too.
    openid = EmulatorState.miniprogram_openid_for_user("fuzz")
    await runtime.followers.subscribed(openid, runtime.clock())  # inside the 48-hour window
    notice = await runtime.broadcasts.send(
        category="service", title="维护", body="今晚维护。", audience={"type": "openids", "openids": [openid]}, by="test"
    )
    await runtime.worker(concurrency=1).run_until_idle(30)
    served = json.loads((await AsyncHTTPClient().fetch(api.base + "/openapi.json")).body)
    failures, calls = await asyncio.to_thread(_run_schemathesis, served, api.base, token, {"id": notice})
    assert failures == []
    operations = {f"{m.upper()} {p}" for p, ops in spec.PATHS.items() for m in ops} - {"DELETE /session"}
    assert set(calls) == operations  # every operation but logout was exercised
    assert sum(len(statuses) for statuses in calls.values()) >= 100
    # Not just refusals: every operation (with a real token) succeeded at least once.
    no_success = [label for label, statuses in calls.items() if not any(200 <= s < 300 for s in statuses)]
    assert no_success == [], str(no_success)
    # The session survives the run unless schemathesis logged it out; either way the service still answers.
    assert (await api.call("GET", "/terms")).status == 200


def _run_schemathesis(document: dict, base_url: str, token: str, known: dict) -> tuple[list[str], dict[str, list[int]]]:
    """Runs every operation's generated cases (blocking: in a thread, the
    service's event loop keeps serving). Returns the failures found."""
    schema = schemathesis.openapi.from_dict(document)
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance, response_headers_conformance,
    ]
    failures: list[str] = []
    calls: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() == "DELETE" and operation.path == "/session":
            continue  # logging out would end the token the other operations use

        label = f"{operation.method.upper()} {operation.path}"

        def check(case) -> None:
            # Generated cases carry made-up bearer tokens; use the real session.
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call(base_url=base_url)
            calls.setdefault(label, []).append(response.status_code)
            case.validate_response(response, checks=checks)

        # The document's examples (valid requests) once each, then generated cases.
        runs = [(strategy, 1) for strategy in schema.get_strategies_from_examples(operation)]
        params = {p.name for p in operation.path_parameters}
        if params and params <= set(known):  # an existing resource as well
            runs.append((operation.as_strategy(path_parameters={p: known[p] for p in params}), 1))
        runs.append((operation.as_strategy(), 12))
        for strategy, count in runs:
            run = hypothesis.settings(
                max_examples=count, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(hypothesis.HealthCheck), phases=[hypothesis.Phase.generate],
            )(hypothesis.given(case=strategy)(check))
            try:
                run()
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure
                failures.append(f"{label}: {exc}")
    return failures, calls


def test_every_domain_error_has_a_kind_the_handlers_map_to_a_status():
    # The domain names what went wrong; HTTP statuses live in handlers alone.
    import importlib
    import pkgutil

    import bot
    from bot.errors import KINDS, BotError
    from handlers.base import HTTP_STATUS

    for module in pkgutil.walk_packages(bot.__path__, "bot."):
        importlib.import_module(module.name)
    found, seen = [BotError], []
    while found:
        cls = found.pop()
        seen.append(cls)
        found += cls.__subclasses__()
    assert len(seen) > 30
    assert set(HTTP_STATUS) == set(KINDS)
    for cls in seen:
        assert cls.kind in KINDS, cls
        assert "status" not in vars(cls), cls


def test_each_operation_lists_its_error_codes_and_each_code_exists():
    # A front end branches on error.code (log in again, call wx.login again, …): the
    # contract named two codes by way of example and none per operation.
    import re
    from pathlib import Path

    from handlers.api.spec import ERROR_CODES, PATHS

    root = Path(__file__).resolve().parent.parent
    source = "".join(p.read_text(encoding="utf-8") for d in ("bot", "handlers") for p in (root / d).rglob("*.py")
                     if p.name != "spec.py")
    for code in ERROR_CODES:
        # Raised somewhere (a code= or a class's code), or an HTTP status's own (not_found, method_not_allowed).
        assert re.search(rf'code ?= ?"{code}"|"code": "{code}"|, "{code}", ', source) or code in ("not_found", "method_not_allowed"), code
    listed = {code for ops in PATHS.values() for op in ops.values() for response in op["responses"].values()
              for code in response.get("x-error-codes", [])}
    assert listed <= set(ERROR_CODES)
    assert {"invalid_code", "code_used", "invalid_token", "account_suspended", "nothing_corrected",
            "profile_changed", "nothing_to_withdraw", "consent_required"} <= listed
    put = PATHS["/me/registration"]["put"]["responses"]
    assert "nothing_corrected" in put["409"]["x-error-codes"] and "ETag" in put["201"]["headers"]
