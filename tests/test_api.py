"""The mini-program API over real HTTP: sessions made through the emulator's
jscode2session, real Redis and MongoDB, every endpoint's happy path and errors."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
from urllib.parse import quote

import pytest
from tornado.httpclient import AsyncHTTPClient

from bot import api_texts, texts
from bot.agreement import load_seed
from bot.amendment_rules import show
from bot.mini_sessions import Limits
from bot.validation import Invalid, parse_phone
from emulator.app import EmulatorState
from storage.embedded import free_port
from storage.redis_store import key
from tests.wx import event_xml

MP_APPID = "wxminiprogramtest"
MP_SECRET = "mp-test-secret"
CODE = "91450103MA5L2K3R0W"
ENTERPRISE = {
    "entity_type": "enterprise",
    "entity_name": "南宁市测试贸易有限公司",
    "credit_code": CODE,
    "contact_name": "王五",
    "phone": "13812345678",
    "email": "wangwu@example.com",
}
_codes = itertools.count(1)


@dataclasses.dataclass
class Reply:
    status: int
    body: dict | None
    headers: dict

    def error(self) -> dict:
        assert self.body is not None and set(self.body) == {"error"}, self.body
        return self.body["error"]


class Api:
    """The service's /api/v1 over HTTP."""

    def __init__(self, svc, emulator) -> None:
        self.svc = svc
        self.emulator = emulator
        self.base = svc.url + "/api/v1"

    async def call(self, method: str, path: str, body=None, token: str | None = None, raw: bytes | None = None,
                   headers: dict | None = None) -> Reply:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else (json.dumps(body, ensure_ascii=False).encode() if body is not None else None)
        if payload is None and method in ("POST", "PUT"):
            payload = b""
        response = await AsyncHTTPClient().fetch(
            self.base + path, method=method, body=payload, headers=all_headers, raise_error=False,
            allow_nonstandard_methods=True,
        )
        assert response.code < 500 or response.code == 503, (response.code, response.body)
        parsed = json.loads(response.body) if response.body else None
        return Reply(response.code, parsed, dict(response.headers))

    async def login(self, user: str = "alice") -> tuple[str, dict]:
        reply = await self.call("POST", "/session", {"code": f"{user}-{next(_codes)}"})
        assert reply.status == 200, reply.body
        return reply.body["token"], reply.body["user"]

    async def token(self, user: str = "alice") -> str:
        return (await self.login(user))[0]

    async def accepted(self, token: str) -> None:
        reply = await self.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)
        assert reply.status == 200, reply.body


@pytest.fixture
async def api(make_service, emulator) -> Api:
    svc = await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET)
    return Api(svc, emulator)


def amended(version: str):
    """A new version of the seed with one clause changed."""
    seed = load_seed()
    first = seed.sections[0]
    changed = dataclasses.replace(first, clauses=(first.clauses[0] + "（修订）", *first.clauses[1:]))
    return dataclasses.replace(seed, version=version, changes=("第 1 节措辞调整",), sections=(changed, *seed.sections[1:]))


def mp_openid(user: str) -> str:
    return EmulatorState.miniprogram_openid_for_user(user)


# -- login ---------------------------------------------------------------------------------


async def test_login_returns_our_own_token_and_the_user_state(api):
    reply = await api.call("POST", "/session", {"code": "alice-1"})
    assert reply.status == 200
    body = reply.body
    assert set(body) == {"token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 7 * 24 * 3600
    assert len(body["token"]) >= 40 and mp_openid("alice") not in body["token"]
    assert body["user"] == {
        "openid": mp_openid("alice"),
        "linked_official_account": False,
        "consent": {
            "status": "none", "status_label": texts.CONSENT_STATUS["none"], "current_version": "2022-05-22",
            "accepted_version": None, "upcoming_version": None,
        },
        "registration": None,
        "unread_notices": 0,
    }
    # Kept in Redis under the token's hash, with WeChat's session_key, which never leaves the server.
    redis = api.svc.runtime.redis
    stored_key = key("api", "session", hashlib.sha256(body["token"].encode()).hexdigest())
    stored = json.loads(await redis.get(stored_key))
    assert stored["openid"] == mp_openid("alice") and stored["session_key"]
    assert stored["session_key"] not in json.dumps(body)
    assert 0 < await redis.ttl(stored_key) <= 7 * 24 * 3600
    assert [k async for k in redis.scan_iter(match=f"*{body['token']}*")] == []

    me = await api.call("GET", "/me", token=body["token"])
    assert me.status == 200 and me.body == body["user"]


async def test_login_errors_map_wechat_codes(api, emulator):
    bad = await api.call("POST", "/session", {"code": "-not-a-code"})
    assert (bad.status, bad.error()["code"]) == (401, "invalid_code")
    assert "wx.login" in bad.error()["message"]

    await api.call("POST", "/session", {"code": "bob-7"})
    used = await api.call("POST", "/session", {"code": "bob-7"})
    assert (used.status, used.error()["code"]) == (401, "code_used")

    fault = {"path": "/sns/jscode2session", "errcode": 45011}
    await AsyncHTTPClient().fetch(emulator.base + "/_emulator/faults", method="POST", body=json.dumps(fault))
    busy = await api.call("POST", "/session", {"code": "bob-8"})
    assert (busy.status, busy.error()["code"]) == (429, "too_frequent")
    assert int(busy.headers["Retry-After"]) > 0
    # A user WeChat refuses (40226): not 401, which the app answers by logging in again, and again.
    # 41008 (WeChat found no code): the code's fault, not our credentials' (logged as an error).
    for fault, status, code in (({"errcode": 40226}, 403, "user_blocked"), ({"errcode": -1}, 503, "wechat_unavailable"),
                                ({"errcode": 41008}, 401, "invalid_code")):
        await AsyncHTTPClient().fetch(emulator.base + "/_emulator/faults", method="POST",
                                      body=json.dumps({"path": "/sns/jscode2session", **fault}))
        refused = await api.call("POST", "/session", {"code": f"bob-{code}"})
        assert (refused.status, refused.error()["code"]) == (status, code), refused.body
        if status == 503:
            assert int(refused.headers["Retry-After"]) > 0  # as storage's 503s say when to try again

    for body, status, code in (
        ({}, 422, "invalid_field"),
        ({"code": ""}, 422, "invalid_field"),
        ({"code": 12}, 422, "invalid_field"),
        ({"code": "x" * 129}, 422, "invalid_field"),
    ):
        reply = await api.call("POST", "/session", body)
        assert (reply.status, reply.error()["code"], reply.error()["field"]) == (status, code, "code")
    for raw in (b"", b"not json", b"[1]", b'"code"', b"[" * 5000 + b"]" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000,
                b'{"code": "alice-1", "x": NaN}', b'{"code": "alice-1", "x": 1e99999}'):  # Python's extensions, no JSON
        reply = await api.call("POST", "/session", raw=raw)
        assert (reply.status, reply.error()["code"]) == (400, "bad_json")
    # A lone surrogate is valid JSON but no text: refused, with a readable error body.
    reply = await api.call("POST", "/session", raw=b'{"code": "\\ud800"}')
    assert (reply.status, reply.error()["code"]) == (400, "bad_text") and "无效的字符" in reply.error()["message"]


async def test_login_with_wrong_credentials_or_none_is_unavailable(api, make_service, emulator):
    emulator.state.miniprogram_appid = "wxsomeoneelse"
    try:
        reply = await api.call("POST", "/session", {"code": "carol-1"})
    finally:
        emulator.state.miniprogram_appid = None
    assert (reply.status, reply.error()["code"]) == (503, "login_unavailable")

    unconfigured = Api(await make_service(), emulator)
    reply = await unconfigured.call("POST", "/session", {"code": "carol-2"})
    assert (reply.status, reply.error()["code"]) == (503, "login_unavailable")


async def test_bearer_token_required_and_logout_ends_it(api):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        reply = await api.call("GET", "/me", headers=headers)
        assert (reply.status, reply.error()["code"]) == (401, "unauthorized")
        assert reply.headers["Www-Authenticate"].startswith("Bearer")
    reply = await api.call("GET", "/me", token="made-up-token")
    assert (reply.status, reply.error()["code"]) == (401, "invalid_token")

    token = await api.token()
    assert (await api.call("GET", "/me", token=token)).status == 200
    assert (await api.call("DELETE", "/session", token=token)).status == 204
    assert (await api.call("GET", "/me", token=token)).status == 401
    assert (await api.call("DELETE", "/session")).status == 401


async def test_errors_are_json_for_unknown_paths_and_methods(api):
    token = await api.token()
    reply = await api.call("GET", "/nothing-here", token=token)
    assert (reply.status, reply.error()["code"]) == (404, "not_found")
    reply = await api.call("PATCH", "/me", {}, token=token)
    assert (reply.status, reply.error()["code"]) == (405, "method_not_allowed")


# -- the agreement -----------------------------------------------------------------------


async def test_terms_current_upcoming_version_and_section(api):
    seed = load_seed()
    reply = await api.call("GET", "/terms")  # public: no token needed
    assert reply.status == 200
    current = reply.body["current"]
    assert current["version"] == seed.version and current["text_sha256"] == seed.text_sha256
    assert current["summary"] == list(seed.summary)
    assert [s["title"] for s in current["sections"]] == [s.title for s in seed.sections]
    assert all(s["summary"] for s in current["sections"]) and "clauses" not in current["sections"][0]
    assert reply.body["upcoming"] is None

    runtime = api.svc.runtime
    await runtime.terms.publish(amended("2026-12-31"), reason="routine", effective_at=runtime.clock() + dt.timedelta(days=8), by="test")
    reply = await api.call("GET", "/terms")
    assert reply.body["upcoming"]["version"] == "2026-12-31"
    assert reply.body["upcoming"]["changes"] == ["第 1 节措辞调整"]
    assert [v["version"] for v in reply.body["versions"]] == ["2022-05-22", "2026-12-31"]
    # Two scheduled: both listed, the next first (upcoming named only the next, chat listed both).
    later = dataclasses.replace(amended("2027-01-20"), changes=("第 7 节摘要改写",), sections=amended("2026-12-31").sections[:-1] + (
        dataclasses.replace(load_seed().sections[-1], summary="第七节摘要（再修订）"),))
    await runtime.terms.publish(later, reason="routine", effective_at=runtime.clock() + dt.timedelta(days=20), by="test")
    reply = await api.call("GET", "/terms")
    assert reply.body["upcoming"]["version"] == "2026-12-31"
    assert [v["version"] for v in reply.body["upcoming_all"]] == ["2026-12-31", "2027-01-20"]

    full = await api.call("GET", "/terms/2022-05-22")
    assert full.status == 200 and full.body["preamble"] == list(seed.preamble)
    assert full.body["sections"][0]["clauses"][0] == {"number": "1.1", "text": seed.sections[0].clauses[0]}

    section = await api.call("GET", "/terms/2022-05-22/sections/2")
    assert section.status == 200 and section.body["section"]["title"] == seed.sections[1].title
    assert section.body["section"]["clauses"][0]["number"] == "2.1"

    missing = await api.call("GET", "/terms/1999-01-01")
    assert (missing.status, missing.error()["code"]) == (404, "version_not_found")
    for n in ("0", "999"):
        missing = await api.call("GET", f"/terms/2022-05-22/sections/{n}")
        assert (missing.status, missing.error()["code"]) == (404, "section_not_found")
    assert (await api.call("GET", "/terms/2022-05-22/sections/abc")).status == 404
    assert full.body["withdrawn"] is None
    # A withdrawn version stays readable, said to be withdrawn (it was a 404: everyone had been told of it).
    await runtime.terms.withdraw("2027-01-20", reason="与下一版合并", by="test")
    gone = await api.call("GET", "/terms/2027-01-20")
    assert gone.status == 200 and gone.body["version"] == "2027-01-20", gone.body
    assert gone.body["withdrawn"]["reason"] == "与下一版合并" and "从未生效" in gone.body["withdrawn"]["message"]
    assert "2027-01-20" not in [v["version"] for v in (await api.call("GET", "/terms")).body["versions"]]


# -- consent -----------------------------------------------------------------------------


async def test_consent_accept_decline_withdraw_and_history(api):
    token = await api.token()
    reply = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)
    assert reply.status == 200
    assert reply.body["recorded"] is True and reply.body["consent"]["status"] == "accepted"
    assert reply.body["consent"]["accepted_version"] == "2022-05-22"
    again = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)
    assert again.body["recorded"] is False

    withdrawn = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "withdraw"}, token)
    assert withdrawn.body["consent"]["status"] == "withdrawn"
    nothing = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "withdraw"}, token)
    assert (nothing.status, nothing.error()["code"]) == (409, "nothing_to_withdraw")
    assert nothing.error()["message"] == api_texts.NOTHING_TO_WITHDRAW and "回复" not in nothing.error()["message"]

    declined = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "decline"}, token)
    assert declined.body["consent"]["status"] == "declined" and declined.body["recorded"] is True
    # Declining again, even many at once, adds nothing: it was a record each time.
    again = await asyncio.gather(*(api.call("POST", "/consents", {"version": "2022-05-22", "action": "decline"}, token)
                                   for _ in range(5)))
    assert [(r.status, r.body["recorded"]) for r in again] == [(200, False)] * 5

    history = await api.call("GET", "/me/consents", token=token)
    assert [(r["action"], r["version"], r["channel"]) for r in history.body["history"]] == [
        ("accept", "2022-05-22", "miniprogram"), ("withdraw", "2022-05-22", "miniprogram"),
        ("decline", "2022-05-22", "miniprogram"),
    ]
    assert history.body["consent"]["status"] == "declined"
    # The ledger keeps the unionid WeChat gave, so the evidence joins across apps.
    [record] = [r for r in await api.svc.runtime.ledger.history(mp_openid("alice")) if r.action == "accept"]
    assert record.unionid == EmulatorState.unionid_for_user("alice")
    assert record.text_sha256 == load_seed().text_sha256


async def test_consent_to_anything_but_the_current_version_is_refused(api):
    runtime = api.svc.runtime
    await runtime.terms.publish(
        amended("2026-12-31"), reason="routine",
        effective_at=runtime.clock() + dt.timedelta(days=8), by="test",
    )
    token = await api.token()
    upcoming = await api.call("POST", "/consents", {"version": "2026-12-31", "action": "accept"}, token)
    assert (upcoming.status, upcoming.error()["code"]) == (409, "consent_refused")
    assert "尚未生效" in upcoming.error()["message"] and "2022-05-22" in upcoming.error()["message"]
    older = await api.call("POST", "/consents", {"version": "2022-05-22-old", "action": "accept"}, token)
    assert (older.status, older.error()["code"]) == (404, "version_not_found")
    decline_other = await api.call("POST", "/consents", {"version": "2026-12-31", "action": "decline"}, token)
    assert decline_other.status == 409

    for body, field in (
        ({"version": "2022-05-22", "action": "maybe"}, "action"),
        ({"version": "2022-05-22"}, "action"),
        ({"action": "accept"}, "version"),
        ({"version": 5, "action": "accept"}, "version"),
        ({"version": "a\u0000b", "action": "accept"}, "version"),  # was quoted back, NUL and all
        ({"version": "2022-05-22；drop", "action": "accept"}, "version"),
        ({"version": "-abc1", "action": "accept"}, "version"),
    ):
        reply = await api.call("POST", "/consents", body, token)
        assert (reply.status, reply.error()["field"]) == (422, field), body
        assert "\x00" not in reply.error()["message"]
        if body.get("version") == "-abc1":  # said as the rule it breaks: it must start with a letter or digit
            assert "以字母或数字开头" in reply.error()["message"], reply.error()
    assert await runtime.ledger.history(mp_openid("alice")) == []


async def test_consent_to_a_version_not_there_is_404_and_a_withdrawn_one_says_when_it_was_withdrawn(api):
    # Both were 409 consent_refused "只能同意当前生效的版本…", as if 9999 were an older version
    # (GET /terms/9999 answers 404 version_not_found).
    runtime = api.svc.runtime
    await runtime.terms.publish(amended("2026-12-30"), reason="routine",
                                effective_at=runtime.clock() + dt.timedelta(days=8), by="test")
    await runtime.terms.withdraw("2026-12-30", reason="暂不修改", by="test")
    token = await api.token()
    for action in ("accept", "decline", "withdraw"):
        missing = await api.call("POST", "/consents", {"version": "9999", "action": action}, token)
        assert (missing.status, missing.error()["code"]) == (404, "version_not_found"), (action, missing.body)
        assert missing.error()["message"] == (await api.call("GET", "/terms/9999")).error()["message"]
        gone = await api.call("POST", "/consents", {"version": "2026-12-30", "action": action}, token)
        assert (gone.status, gone.error()["code"]) == (404, "version_not_found"), (action, gone.body)
        withdrawn_at = show((await runtime.terms.withdrawal("2026-12-30"))["at"])
        assert f"版本 2026-12-30 已于 {withdrawn_at}" in gone.error()["message"], gone.error()
        assert "撤回，从未生效" in gone.error()["message"] and "暂不修改" in gone.error()["message"]
    assert await runtime.ledger.history(mp_openid("alice")) == []
    # The operation's document says so.
    spec = (await api.call("GET", "/openapi.json")).body
    assert "version_not_found" in spec["paths"]["/consents"]["post"]["responses"]["404"]["x-error-codes"]


async def test_idempotency_key_records_a_repeated_request_once(api):
    token = await api.token()
    headers = {"Idempotency-Key": "req-000123"}
    for _ in range(2):
        reply = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "decline"}, token, headers=headers)
        assert reply.status == 200
    assert len(await api.svc.runtime.ledger.history(mp_openid("alice"))) == 1
    bad = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "decline"}, token,
                         headers={"Idempotency-Key": "x"})
    assert bad.status == 422
    # The same key with another request: refused, not answered "recorded: false" (the accept was dropped).
    other = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token, headers=headers)
    assert (other.status, other.error()["field"]) == (422, "Idempotency-Key") and "不同意" in other.error()["message"]
    assert [r.action for r in await api.svc.runtime.ledger.history(mp_openid("alice"))] == ["decline"]
    huge = await api.call("POST", "/consents", {"version": "v" * 14_000, "action": "accept"}, token)
    assert (huge.status, huge.error()["field"]) == (422, "version") and len(huge.error()["message"]) < 100
    typed = await api.call("POST", "/consents", {"version": 20220522, "action": "accept"}, token)
    assert (typed.status, typed.error()["field"]) == (422, "version") and "应为文字" in typed.error()["message"]


async def test_a_key_whose_request_changed_nothing_is_remembered_too(api):
    # Accepted already, an accept under K recorded nothing, so K was not kept: after a
    # withdrawal its retry recorded a new acceptance, and K took another action.
    token = await api.token()
    runtime = api.svc.runtime
    accept = {"version": "2022-05-22", "action": "accept"}
    assert (await api.call("POST", "/consents", accept, token)).body["recorded"] is True
    tap = {"Idempotency-Key": "tap-accept-0001"}
    first = await api.call("POST", "/consents", accept, token, headers=tap)
    assert first.status == 200 and first.body["recorded"] is False
    withdrawn = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "withdraw"}, token)
    assert withdrawn.body["recorded"] is True
    retry = await api.call("POST", "/consents", accept, token, headers=tap)
    assert retry.status == 200 and retry.body["recorded"] is False and retry.body["consent"]["status"] == "withdrawn"
    assert [r.action for r in await runtime.ledger.history(mp_openid("alice"))] == ["accept", "withdraw"]
    other = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "decline"}, token, headers=tap)
    assert (other.status, other.error()["field"]) == (422, "Idempotency-Key")


async def test_declining_a_version_not_yet_in_force_says_when_it_can_be(api):
    import datetime as dt

    from tests.test_consent_chat import amendment

    token = await api.token()
    assert (await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)).status == 200
    runtime = api.svc.runtime
    await runtime.terms.publish(amendment("2026-12-30"), reason="routine",
                                effective_at=runtime.clock() + dt.timedelta(days=8), by="t")
    refused = await api.call("POST", "/consents", {"version": "2026-12-30", "action": "decline"}, token)
    assert (refused.status, refused.error()["code"]) == (409, "consent_refused")
    assert "尚未生效" in refused.error()["message"] and "2022-05-22 继续有效" in refused.error()["message"]
    assert [r.action for r in await runtime.ledger.history(mp_openid("alice"))] == ["accept"]


async def test_an_api_consent_records_where_the_request_came_from(api):
    # The ledger kept "the request's metadata" for chat (message type, time) but only
    # "via api" for the mini-program: nothing to show later from where it was made.
    token = await api.token()
    reply = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token,
                           headers={"User-Agent": "Mozilla/5.0 MiniProgramEnv/Android"})
    assert reply.status == 200
    [record] = await api.svc.runtime.ledger.history(mp_openid("alice"))
    assert record.meta["address"] == "127.0.0.1" and record.meta["user_agent"].endswith("MiniProgramEnv/Android")


async def test_a_withdrawal_retried_under_its_key_is_recorded_once_not_refused(api):
    # The retry found nothing left to withdraw and said 409: the app told the user
    # their withdrawal failed, though it was recorded.
    token = await api.token()
    assert (await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)).status == 200
    key = {"Idempotency-Key": "tap-withdraw-01"}
    withdraw = {"version": "2022-05-22", "action": "withdraw"}
    first = await api.call("POST", "/consents", withdraw, token, headers=key)
    assert first.status == 200 and first.body["recorded"] is True
    for _ in range(2):
        retry = await api.call("POST", "/consents", withdraw, token, headers=key)
        assert retry.status == 200, retry.body
        assert retry.body["recorded"] is False and retry.body["consent"]["status"] == "withdrawn"
    assert [r.action for r in await api.svc.runtime.ledger.history(mp_openid("alice"))] == ["accept", "withdraw"]
    again = await api.call("POST", "/consents", withdraw, token, headers={"Idempotency-Key": "tap-withdraw-02"})
    assert (again.status, again.error()["code"]) == (409, "nothing_to_withdraw")  # a new request is checked


# -- registration ------------------------------------------------------------------------


async def test_text_that_cannot_be_encoded_gets_a_json_error_not_an_empty_body(api):
    token = await api.token()
    for path, method, raw in (
        ("/consents", "POST", b'{"version": "\\ud800", "action": "accept"}'),
        ("/me/preferences", "PUT", b'{"preferences": {"\\ud800": true}}'),
        ("/me/registration", "PUT", b'{"entity_type": "enterprise", "entity_name": "\\udfff\\ud800"}'),
    ):
        reply = await api.call(method, path, token=token, raw=raw)
        assert (reply.status, reply.error()["code"]) == (400, "bad_text"), (path, reply.body)


async def test_a_version_another_process_made_effective_is_the_one_accepted_at_once(api):
    # Another process (the CLI) publishes a legal change effective now; this
    # service's versions are cached for up to 5 s, but the version named in a
    # consent is checked against the versions as stored.
    from bot.terms import Terms

    runtime = api.svc.runtime
    token = await api.token()
    assert (await api.call("GET", "/terms", token=token)).body["current"]["version"] == "2022-05-22"  # cached
    other = Terms(runtime.versions, runtime.broadcasts, runtime.clock, locks=runtime.locks)
    await other.publish(amended("2026-11-20"), reason="legal", effective_at=None, by="cli")
    old = await api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token)
    assert (old.status, old.error()["code"]) == (409, "consent_refused"), old.body
    assert "2026-11-20" in old.error()["message"]
    new = await api.call("POST", "/consents", {"version": "2026-11-20", "action": "accept"}, token)
    assert new.status == 200 and new.body["recorded"] is True, new.body


async def test_registration_needs_consent_then_registers(api):
    token = await api.token()
    missing = await api.call("GET", "/me/registration", token=token)
    assert (missing.status, missing.error()["code"]) == (404, "no_account")

    refused = await api.call("PUT", "/me/registration", ENTERPRISE, token)
    assert (refused.status, refused.error()["code"]) == (403, "consent_required")
    assert "2022-05-22" in refused.error()["message"]

    await api.accepted(token)
    created = await api.call("PUT", "/me/registration", {**ENTERPRISE, "status": "active"}, token)
    assert created.status == 201 and created.body["outcome"] == "registered"
    registration = created.body["registration"]
    assert {k: registration[k] for k in ENTERPRISE} == ENTERPRISE
    assert registration["status"] == "pending_review"  # read-only: the body's status is ignored
    assert created.body["message"] == texts.registered("registered", "待审核", chat=False) and "回复" not in created.body["message"]

    read = await api.call("GET", "/me/registration", token=token)
    assert read.body["registration"] == registration
    merchant = await api.svc.runtime.merchants.get(mp_openid("alice"))
    assert merchant.profile() == ENTERPRISE

    me = await api.call("GET", "/me", token=token)
    assert me.body["registration"] == {"status": "pending_review", "status_label": "待审核"}


async def test_registration_takes_同上_and_跳过_as_chat_does(api):
    # Chat stored the registrant for 同上 and no e-mail for 跳过; the API refused both (one rule, two answers).
    token = await api.token("dora")
    await api.accepted(token)
    form = {"entity_type": "individual", "entity_name": "张三", "adult": True, "contact_name": "同上",
            "phone": "13812345678", "email": "跳过"}
    created = await api.call("PUT", "/me/registration", form, token)
    assert created.status == 201, created.body
    assert {k: created.body["registration"][k] for k in ("contact_name", "email")} == {"contact_name": "张三", "email": None}
    enterprise = await api.call("PUT", "/me/registration", {**ENTERPRISE, "contact_name": "同上"}, token)
    assert enterprise.status == 422 and enterprise.error()["code"] == "invalid_field"  # a company is no person


async def test_registration_validation_names_fields_with_the_chat_messages(api):
    token = await api.token()
    await api.accepted(token)
    reply = await api.call("PUT", "/me/registration", {**ENTERPRISE, "phone": "12345"}, token)
    assert reply.status == 422
    error = reply.error()
    assert (error["code"], error["field"]) == ("invalid_field", "phone")
    with pytest.raises(Invalid) as chat_error:
        parse_phone("12345")
    assert error["message"] == chat_error.value.message

    reply = await api.call(
        "PUT", "/me/registration",
        {**ENTERPRISE, "credit_code": "91350100M000100Y44", "email": "nope", "contact_name": None}, token,
    )
    assert [e["field"] for e in reply.error()["errors"]] == ["credit_code", "contact_name", "email"]
    assert "校验位" in reply.error()["errors"][0]["message"]

    # Said as what it is: missing, too long (it said "只能包含数字", "您输入了 0 位", "格式不正确").
    missing = {k: v for k, v in ENTERPRISE.items() if k != "credit_code"}
    reply = await api.call("PUT", "/me/registration", {**missing, "phone": " ", "email": "a" * 250 + "@x.cn"}, token)
    messages = {e["field"]: e["message"] for e in reply.error()["errors"]}
    assert messages["credit_code"].startswith("请填写统一社会信用代码") and messages["phone"].startswith("请填写手机号码")
    assert messages["email"].startswith("邮箱地址过长")
    long_code = await api.call("POST", "/session", {"code": "c" * 129})
    assert (long_code.status, long_code.error()["field"]) == (422, "code") and "过长" in long_code.error()["message"]

    reply = await api.call("PUT", "/me/registration", {**ENTERPRISE, "entity_type": "partnership"}, token)
    assert reply.error()["field"] == "entity_type"
    # An individual's form with a credit code: said, not dropped unsaid (it answered 201, credit_code null).
    person = {**ENTERPRISE, "entity_type": "individual", "entity_name": "张三", "adult": True}
    reply = await api.call("PUT", "/me/registration", person, token)
    assert reply.status == 422 and [e["field"] for e in reply.error()["errors"]] == ["credit_code"], reply.body
    assert "个人注册不填写统一社会信用代码" in reply.error()["errors"][0]["message"]
    # An empty form names every field it lacks, the name too (said only once the type was mended).
    empty = await api.call("PUT", "/me/registration", {}, token)
    assert [e["field"] for e in empty.error()["errors"]] == ["entity_type", "entity_name", "contact_name", "phone"]
    assert "请回复" not in reply.error()["message"]  # chat's wording stays in chat
    reply = await api.call("PUT", "/me/registration", {**ENTERPRISE, "contact_name": "李四😀"}, token)
    assert reply.error()["field"] == "contact_name" and "表情" in reply.error()["message"]
    for wrong in ({"phone": 13812345678}, {"phone": -13812345678}, {"entity_name": 123}):
        # The contract's type: a number was taken as text (and 123 called too short a name).
        reply = await api.call("PUT", "/me/registration", {**ENTERPRISE, **wrong}, token)
        [field] = wrong
        assert (reply.status, reply.error()["field"]) == (422, field) and "应为文字" in reply.error()["message"], reply.body
    for name in ('=HYPERLINK("http://x")', "<script>alert(1)</script>"):
        # Junk stored as a name (the CSV neutralised it) and "不能包含数字" for markup.
        reply = await api.call("PUT", "/me/registration", {**ENTERPRISE, "entity_name": name}, token)
        assert reply.error()["field"] == "entity_name" and ("符号" in reply.error()["message"] or "网页标记" in reply.error()["message"]), reply.body

    individual = {"entity_type": "个人", "entity_name": "张三", "contact_name": "张三", "phone": "+86 139-1234-5678"}
    reply = await api.call("PUT", "/me/registration", individual, token)
    assert (reply.status, reply.error()["field"]) == (422, "adult")
    reply = await api.call("PUT", "/me/registration", {**individual, "adult": "yes"}, token)
    assert (reply.status, reply.error()["field"]) == (422, "adult")  # a boolean, as the schema says
    reply = await api.call("PUT", "/me/registration", {**individual, "adult": False}, token)
    assert reply.error()["message"] == api_texts.UNDERAGE and "回复" not in reply.error()["message"]
    assert await api.svc.runtime.merchants.get(mp_openid("alice")) is None

    reply = await api.call("PUT", "/me/registration", {**individual, "adult": True}, token)
    assert reply.status == 201
    assert reply.body["registration"]["phone"] == "13912345678"
    assert reply.body["registration"]["email"] is None and reply.body["registration"]["entity_type"] == "individual"
    # An individual already confirmed 18+: a later change need not repeat it.
    reply = await api.call("PUT", "/me/registration", {**individual, "phone": "13800000000"}, token)
    assert (reply.status, reply.body["outcome"]) == (200, "updated")


async def test_a_version_named_in_another_case_is_the_same_version(api):
    # GET /terms/V-B and chat's 条款 took any case; accepting 2026-11-27-NF was refused.
    token = await api.token()
    runtime = api.svc.runtime
    await runtime.terms.publish(amended("2026-11-27-nf"), reason="new_feature", effective_at=None, by="test")
    reply = await api.call("POST", "/consents", {"version": "2026-11-27-NF", "action": "accept"}, token)
    assert reply.status == 200 and reply.body["consent"]["status"] == "accepted", reply.body
    assert [r.version for r in await runtime.ledger.history(mp_openid("alice"))] == ["2026-11-27-nf"]


def test_the_account_notices_read_in_the_apps_words():
    # The new notices told an app-only user to reply in chat.
    from bot import api_texts, texts

    for status, before in (("pending_review", "pending_review"), ("closed", "closed"), ("suspended", "active")):
        _title, body = texts.status_notice(status, before, "原因")
        assert "回复" not in api_texts.for_app(body), (status, before)


async def test_if_match_keeps_a_change_made_elsewhere_from_being_overwritten(api):
    # Chat refused to save over a change made in the app; the app saved over
    # chat's (the last writer won). With the GET's ETag as If-Match it does not.
    token = await api.token()
    await api.accepted(token)
    await api.call("PUT", "/me/registration", ENTERPRISE, token)
    shown = await api.call("GET", "/me/registration", token=token)
    etag = shown.headers["Etag"]
    assert etag.startswith('"') and len(etag) > 2
    await api.svc.runtime.merchants.save_profile(mp_openid("alice"), {
        **{k: v for k, v in ENTERPRISE.items() if k != "email"}, "contact_name": "赵六"})  # as chat's 修改资料 saves
    stale = await api.call("PUT", "/me/registration", {**ENTERPRISE, "phone": "13900000000"}, token,
                           headers={"If-Match": etag})
    assert (stale.status, stale.error()["code"]) == (412, "profile_changed") and "未保存" in stale.error()["message"]
    kept = await api.svc.runtime.merchants.get(mp_openid("alice"))
    assert (kept.contact_name, kept.phone) == ("赵六", ENTERPRISE["phone"])
    fresh = (await api.call("GET", "/me/registration", token=token)).headers["Etag"]
    saved = await api.call("PUT", "/me/registration", {**ENTERPRISE, "contact_name": "赵六", "phone": "13900000000"},
                           token, headers={"If-Match": fresh})
    assert saved.status == 200 and saved.headers["Etag"] != fresh
    # A list of tags matches if one does; without If-Match, as before: the whole form replaces the record.
    current = saved.headers["Etag"]
    listed = await api.call("PUT", "/me/registration", ENTERPRISE, token, headers={"If-Match": f'"stale", {current}'})
    assert listed.status == 200
    assert (await api.call("PUT", "/me/registration", ENTERPRISE, token)).status == 200
    # No record yet: nothing to overwrite, nothing to refuse.
    other = await api.token("newbie")
    await api.accepted(other)
    first = await api.call("PUT", "/me/registration", ENTERPRISE, other, headers={"If-Match": '"whatever"'})
    assert first.status == 201


async def test_if_none_match_keeps_a_registration_made_meanwhile_in_chat(api):
    # The app found no record (404, no ETag to send); the user registered in chat meanwhile;
    # the app's form replaced that record, an enterprise by an individual, both told "saved".
    token = await api.token("chatfirst")
    await api.accepted(token)
    assert (await api.call("GET", "/me/registration", token=token)).status == 404
    await api.svc.runtime.merchants.save_profile(mp_openid("chatfirst"), {
        k: v for k, v in ENTERPRISE.items() if k != "email"})  # as chat's registration saves
    individual = {"entity_type": "individual", "entity_name": "张三", "adult": True, "contact_name": "张三",
                  "phone": "13912345678"}
    refused = await api.call("PUT", "/me/registration", individual, token, headers={"If-None-Match": "*"})
    assert (refused.status, refused.error()["code"]) == (412, "profile_changed") and "未保存" in refused.error()["message"]
    assert (await api.svc.runtime.merchants.get(mp_openid("chatfirst"))).entity_type == "enterprise"
    fresh = await api.token("nobodyyet")
    await api.accepted(fresh)
    made = await api.call("PUT", "/me/registration", individual, fresh, headers={"If-None-Match": "*"})
    assert made.status == 201 and made.body["outcome"] == "registered"
    # Any other If-None-Match is refused, not taken for no condition (an ETag there wrote over a record).
    for value in ('"etag"', "{}"):
        odd = await api.call("PUT", "/me/registration", individual, fresh, headers={"If-None-Match": value})
        assert (odd.status, odd.error()["code"]) == (400, "bad_request") and "If-Match" in odd.error()["message"], value


async def test_a_saved_registration_retried_is_answered_and_an_unchanged_one_keeps_its_etag(api):
    # The retry the 503 message advises met 412 "changed elsewhere" for the app's own
    # save; and a save of the same answers moved the ETag, so the other device got 412.
    token = await api.token("retry")
    await api.accepted(token)
    created = await api.call("PUT", "/me/registration", ENTERPRISE, token, headers={"If-None-Match": "*"})
    assert created.status == 201
    again = await api.call("PUT", "/me/registration", ENTERPRISE, token, headers={"If-None-Match": "*"})
    assert again.status == 200 and again.body["outcome"] == "unchanged", again.body
    assert again.headers["Etag"] == created.headers["Etag"]
    etag = created.headers["Etag"]
    changed = {**ENTERPRISE, "contact_name": "赵六"}
    saved = await api.call("PUT", "/me/registration", changed, token, headers={"If-Match": etag})
    assert saved.status == 200 and saved.body["outcome"] == "updated"
    retried = await api.call("PUT", "/me/registration", changed, token, headers={"If-Match": etag})
    assert retried.status == 200 and retried.body["outcome"] == "unchanged" and "无需更新" in retried.body["message"]
    assert retried.headers["Etag"] == saved.headers["Etag"]
    # Another request with the stale tag, changing something, is still refused.
    stale = await api.call("PUT", "/me/registration", {**changed, "phone": "13900000000"}, token, headers={"If-Match": etag})
    assert (stale.status, stale.error()["code"]) == (412, "profile_changed")
    # The same answers confirmed in chat write nothing: the app's tag still holds.
    before = await api.svc.runtime.merchants.get(mp_openid("retry"))
    _record, outcome = await api.svc.runtime.merchants.save_profile(mp_openid("retry"), changed)
    assert outcome == "unchanged"
    assert (await api.svc.runtime.merchants.get(mp_openid("retry"))).updated_at == before.updated_at
    ok = await api.call("PUT", "/me/registration", {**changed, "phone": "13900000000"}, token,
                        headers={"If-Match": saved.headers["Etag"]})
    assert ok.status == 200 and ok.body["outcome"] == "updated"


async def test_registration_changes_follow_the_account_rules(api):
    token = await api.token()
    await api.accepted(token)
    await api.call("PUT", "/me/registration", ENTERPRISE, token)
    merchants = api.svc.runtime.merchants
    await merchants.set_status(mp_openid("alice"), "active", "审核通过", by="admin")

    contact = await api.call("PUT", "/me/registration", {**ENTERPRISE, "phone": "13900000000"}, token)
    assert (contact.body["outcome"], contact.body["registration"]["status"]) == ("updated", "active")
    entity = await api.call("PUT", "/me/registration", {**ENTERPRISE, "entity_name": "南宁市另一家贸易有限公司"}, token)
    assert (entity.body["outcome"], entity.body["registration"]["status"]) == ("resubmitted", "pending_review")

    assert (await api.call("GET", "/me/registration", token=token)).body["registration"]["suspension_reason"] is None
    # Returned for correction: the app can say why, until the form is sent again.
    await merchants.set_status(mp_openid("alice"), "pending_review", "请填写营业执照上的全称", by="admin")
    read = await api.call("GET", "/me/registration", token=token)
    assert read.body["registration"]["returned_reason"] == "请填写营业执照上的全称"
    same = await api.call("PUT", "/me/registration", {**ENTERPRISE, "entity_name": "南宁市另一家贸易有限公司"}, token)
    assert (same.status, same.error()["code"]) == (409, "nothing_corrected"), same.body
    corrected = await api.call("PUT", "/me/registration", {**ENTERPRISE, "entity_name": "南宁市另一家贸易有限公司（全称）"}, token)
    assert (corrected.body["outcome"], corrected.body["registration"]["status"]) == ("resubmitted", "pending_review")
    assert "重新提交审核" in corrected.body["message"]
    assert (await api.call("GET", "/me/registration", token=token)).body["registration"]["returned_reason"] is None
    await merchants.set_status(mp_openid("alice"), "suspended", "资料待核实", by="admin")
    refused = await api.call("PUT", "/me/registration", ENTERPRISE, token)
    assert (refused.status, refused.error()["code"]) == (409, "account_suspended")
    assert "原因：资料待核实" in refused.error()["message"]  # as chat says it
    assert "“我的账户”" not in refused.error()["message"]  # a chat command, meaningless here
    # The mini-program can say why (only the inbox notice told it).
    read = await api.call("GET", "/me/registration", token=token)
    assert read.body["registration"]["suspension_reason"] == "资料待核实"
    await api.svc.runtime.worker(concurrency=2).run_until_idle(30)
    [told] = [n for n in (await api.call("GET", "/me/notices", token=token)).body["notices"] if n["title"] == "商家账户已暂停"]
    assert "资料待核实" in told["body"] and "“我的账户”中查看" in told["body"] and "公众号回复" not in told["body"]

    # Closing does not lift the suspension: registering again is refused (only
    # an owner reinstates), while an account closed in good standing may return.
    closed = await api.call("DELETE", "/me", token=token)
    assert closed.status == 200 and "暂停期间注销" in closed.body["message"]
    assert closed.body["registration"]["reregistration_barred"] is True  # as its message says (it said false)
    assert "重新提交" not in closed.body["message"]  # no invitation to what would be refused
    again = await api.call("PUT", "/me/registration", ENTERPRISE, token)
    assert (again.status, again.error()["code"]) == (409, "account_suspended")
    assert "暂停期间注销" in again.error()["message"]
    assert (await merchants.get(mp_openid("alice"))).status == "closed"
    # Said by the record itself, before the app offers a form that would be refused.
    assert (await api.call("GET", "/me/registration", token=token)).body["registration"]["reregistration_barred"] is True
    bob = await api.token("bob")
    await api.accepted(bob)
    await api.call("PUT", "/me/registration", ENTERPRISE, bob)
    assert (await api.call("DELETE", "/me", token=bob)).body["registration"]["reregistration_barred"] is False
    assert (await api.call("GET", "/me/registration", token=bob)).body["registration"]["reregistration_barred"] is False
    assert (await api.call("PUT", "/me/registration", ENTERPRISE, bob)).body["outcome"] == "registered"


async def test_close_account_erases_the_profile_as_in_chat(api):
    token = await api.token()
    missing = await api.call("DELETE", "/me", token=token)
    assert (missing.status, missing.error()["code"]) == (404, "no_account")

    await api.accepted(token)
    await api.call("PUT", "/me/registration", ENTERPRISE, token)
    closed = await api.call("DELETE", "/me", token=token)
    assert closed.status == 200 and closed.body["message"] == api_texts.CLOSED
    registration = closed.body["registration"]
    assert registration["status"] == "closed"
    assert [registration[f] for f in ("entity_name", "credit_code", "contact_name", "phone", "email")] == [None] * 5
    [*_, entry] = await api.svc.runtime.merchants.repo.history(mp_openid("alice"))
    assert (entry.status, entry.by) == ("closed", "user")
    again = await api.call("DELETE", "/me", token=token)
    assert (again.status, again.error()["code"]) == (409, "already_closed")
    assert "已经注销" in again.error()["message"]
    # The consent ledger is kept, and the session still works (reading the agreement, asking).
    history = await api.call("GET", "/me/consents", token=token)
    assert len(history.body["history"]) == 1


# -- notices and preferences -------------------------------------------------------------


async def _follower_linked(api, user: str) -> str:
    """An official-account follower who is also ``user`` in the mini-program (same unionid)."""
    follower = f"oa-{user}-follower"
    runtime = api.svc.runtime
    await runtime.followers.subscribed(follower, runtime.clock())
    await runtime.mini.link_follower(follower, EmulatorState.unionid_for_user(user))
    return follower


async def test_inbox_lists_delivered_notices_and_marks_them_read(api):
    follower = await _follower_linked(api, "dora")
    token, user = await api.login("dora")
    assert user["linked_official_account"] is True
    runtime = api.svc.runtime
    first = await runtime.broadcasts.send(
        category="service", title="系统维护", body="今晚维护。", audience={"type": "openids", "openids": [follower]}, by="t"
    )
    second = await runtime.broadcasts.send(
        category="security", title="安全提醒", body="请勿泄露验证码。", audience={"type": "openids", "openids": [follower]}, by="t"
    )
    await runtime.worker(concurrency=2).run_until_idle(30)

    inbox = await api.call("GET", "/me/notices", token=token)
    assert inbox.status == 200 and inbox.body["unread"] == 2
    by_id = {n["id"]: n for n in inbox.body["notices"]}
    assert set(by_id) == {first, second}
    assert by_id[second]["important"] is True and by_id[second]["category_label"] == "安全通告"
    assert by_id[first]["read"] is False and by_id[first]["read_at"] is None and by_id[first]["delivered_at"]

    read = await api.call("POST", f"/me/notices/{first}/read", token=token)
    assert read.status == 200 and read.body["notice"]["read"] is True
    read_at = read.body["notice"]["read_at"]
    again = await api.call("POST", f"/me/notices/{first}/read", token=token)
    assert again.body["notice"]["read_at"] == read_at
    inbox = await api.call("GET", "/me/notices", token=token)
    assert inbox.body["unread"] == 1 and {n["id"]: n["read"] for n in inbox.body["notices"]} == {first: True, second: False}
    assert (await api.call("GET", "/me", token=token)).body["unread_notices"] == 1

    missing = await api.call("POST", "/me/notices/0123456789abcdef01234567/read", token=token)
    assert (missing.status, missing.error()["code"]) == (404, "notice_not_found")
    # Someone else's notice is not in your inbox.
    other = await api.token("erin")
    assert (await api.call("POST", f"/me/notices/{first}/read", token=other)).status == 404
    assert (await api.call("GET", "/me/notices", token=other)).body == {
        "notices": [], "unread": 0, "total": 0, "limit": 50, "offset": 0, "next_offset": None}

    # A page at a time (the inbox grows with every broadcast), newest first; unread counts them all.
    page = await api.call("GET", "/me/notices?limit=1", token=token)
    assert len(page.body["notices"]) == 1 and page.body["next_offset"] == 1
    assert page.body["total"] == 2 and page.body["unread"] == 1
    rest = await api.call("GET", "/me/notices?limit=1&offset=1", token=token)
    assert len(rest.body["notices"]) == 1 and rest.body["next_offset"] is None
    newer, older = page.body["notices"][0], rest.body["notices"][0]
    assert {newer["id"], older["id"]} == {first, second} and newer["delivered_at"] >= older["delivered_at"]
    for bad in ("limit=0", "limit=101", "offset=-1", "limit=abc"):
        refused = await api.call("GET", f"/me/notices?{bad}", token=token)
        assert (refused.status, refused.error()["field"]) == (422, bad.split("=")[0]), bad
    ledger = await api.call("GET", "/me/consents?limit=1", token=token)
    assert ledger.status == 200 and len(ledger.body["history"]) <= 1 and "next_offset" in ledger.body


async def test_a_mini_program_only_user_finds_the_amendment_notice_in_the_inbox(api):
    # Consented in the mini-program only: the official account cannot message them.
    token = await api.token("zed")
    await api.accepted(token)
    runtime = api.svc.runtime
    _version, notice_id = await runtime.terms.publish(
        amended("2026-12-31"), reason="routine", effective_at=runtime.clock() + dt.timedelta(days=8), by="test")
    await runtime.worker(concurrency=2).run_until_idle(30)
    progress = await runtime.broadcasts.progress(notice_id)
    assert progress.skipped_by_reason == {"no_channel": 1}
    inbox = await api.call("GET", "/me/notices", token=token)
    assert [n["id"] for n in inbox.body["notices"]] == [notice_id] and inbox.body["unread"] == 1
    # In the app's words: there is no chat to reply 条款 in.
    body = inbox.body["notices"][0]["body"]
    assert "回复" not in body and "可在“服务协议”中查看详情" in body and "2026-12-31" in body
    # What the user opted out of stays out.
    other = await api.token("yuri")
    await api.call("PUT", "/me/preferences", {"preferences": {"service": False}}, other)
    await runtime.broadcasts.send(category="service", title="维护", body="今晚维护。",
                                  audience={"type": "openids", "openids": [mp_openid("yuri")]}, by="t")
    await runtime.worker(concurrency=2).run_until_idle(30)
    assert (await api.call("GET", "/me/notices", token=other)).body["notices"] == []


async def test_no_template_goes_to_a_mini_program_only_user(make_service, emulator, tmp_path):
    # With a template for amendment notices (as the demo has), one went to the
    # mini-program openid and was counted sent: WeChat refuses another app's openid.
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"amendment": {"template_id": "TPL-AMD", "fields": {"first": "{title}"}}}))
    svc = await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET, notice_templates=str(templates))
    api = Api(svc, emulator)
    token = await api.token("zed")
    await api.accepted(token)
    await svc.wechat.ask("o-follows", "同意")
    runtime = svc.runtime
    _version, notice_id = await runtime.terms.publish(
        amended("2026-12-31"), reason="routine", effective_at=runtime.clock() + dt.timedelta(days=8), by="test")
    await runtime.worker(concurrency=2).run_until_idle(30)
    progress = await runtime.broadcasts.progress(notice_id)
    assert (progress.sent, progress.skipped_by_reason) == (1, {"no_channel": 1})
    assert await emulator.messages(mp_openid("zed")) == []
    assert [m["msgtype"] for m in await emulator.messages("o-follows")] == ["template"]
    inbox = await api.call("GET", "/me/notices", token=token)
    assert [n["id"] for n in inbox.body["notices"]] == [notice_id]


async def test_preferences_read_and_change(api):
    token = await api.token()
    reply = await api.call("GET", "/me/preferences", token=token)
    assert reply.status == 200 and all(reply.body["preferences"].values())
    assert {c["category"] for c in reply.body["categories"]} == set(reply.body["preferences"])

    changed = await api.call("PUT", "/me/preferences", {"preferences": {"service": False, "其他": False}}, token)
    assert changed.status == 200
    assert changed.body["preferences"]["service"] is False and changed.body["preferences"]["other"] is False
    assert changed.body["preferences"]["security"] is True
    assert await api.svc.runtime.preferences.repo.opted_out(mp_openid("alice")) == {"service", "other"}
    back = await api.call("PUT", "/me/preferences", {"preferences": {"service": True}}, token)
    assert back.body["preferences"]["service"] is True

    for body, field in (
        ({"preferences": {"weather": False}}, "preferences.weather"),
        ({"preferences": {"service": "no"}}, "preferences.service"),
        ({"preferences": {}}, "preferences"),
        ({}, "preferences"),
        ({"preferences": {"service": False, "服务公告": True}}, "preferences.服务公告"),  # the last one won
    ):
        reply = await api.call("PUT", "/me/preferences", body, token)
        assert (reply.status, reply.error()["field"]) == (422, field)
        assert "回复" not in reply.error()["message"] and "退订 服务公告" not in reply.error()["message"]


# -- Q&A, export, identity, limits ------------------------------------------------------------


async def test_qa_answers_with_clause_references_or_abstains(api):
    token = await api.token()
    reply = await api.call("GET", "/qa?q=" + "我上传的图片版权归谁？", token=token)
    assert reply.status == 200 and reply.body["kind"] == "answer"
    assert reply.body["refs"] and reply.body["references"][0]["kind"] == "clause"
    ref = reply.body["refs"][0]
    assert reply.body["references"][0]["section"] == int(ref.split(".")[0])

    off_topic = await api.call("GET", "/qa?q=" + "明天南宁会下雨吗", token=token)
    assert off_topic.status == 200 and off_topic.body["kind"] == "abstain"
    # The mini-program's wording: chat's commands (回复“条款 4”) mean nothing there.
    for question, kind in (("我上传的图片版权归谁？", "answer"), ("我上传的商品图片会被拿去做广告吗", None),
                           ("明天南宁会下雨吗", "abstain"), ("你好", "smalltalk"), ("嗯", None)):
        reply = await api.call("GET", "/qa?q=" + question, token=token)
        assert kind is None or reply.body["kind"] == kind
        assert "回复" not in reply.body["text"] and "条款 " not in reply.body["text"], reply.body
    chat = await api.svc.wechat.ask("o-qa-chat", "我上传的图片版权归谁？")
    assert "回复“条款 4”" in chat  # chat keeps them

    for query in ("", "?q=", "?q=%20%20", "?q=" + "问" * 201):
        reply = await api.call("GET", "/qa" + query, token=token)
        assert (reply.status, reply.error()["field"]) == (422, "q")
    assert (await api.call("GET", "/qa?q=hi")).status == 401


async def test_qa_reads_out_a_place_named_by_its_number(api):
    # The answers cite "refs": ["4.1"]; asked for 7.1 or 条款 4.1, the Q&A abstained (chat reads them out).
    token = await api.token()
    from urllib.parse import quote
    for question, ref, needle in (("7.1", "7.1", "7.1 "), ("条款 4.1", "4.1", "4.1 我们的某些服务"), ("第三节", "3", "隐私"),
                                  ("前言", "前言", "1. "), ("第4.2款", "4.2", "4.2 ")):
        reply = await api.call("GET", "/qa?q=" + quote(question), token=token)
        assert reply.status == 200 and reply.body["kind"] == "place", (question, reply.body)
        assert reply.body["refs"] == [ref] and needle in reply.body["text"], (question, reply.body["text"][:80])
        assert "回复" not in reply.body["text"]  # no chat commands in the app
    missing = await api.call("GET", "/qa?q=" + quote("9.9"), token=token)
    assert (missing.body["kind"], missing.body["refs"]) == ("place", []) and "共有 7 节" in missing.body["text"]
    no_clause = await api.call("GET", "/qa?q=" + quote("4.9"), token=token)
    assert no_clause.body["refs"] == [] and "没有第 9 款" in no_clause.body["text"]


async def test_qa_answers_questions_about_the_users_own_consent_from_their_record(api):
    # As chat does: "我同意了吗" quoted the preamble's clause; the user's record answers it.
    token = await api.token()
    before = await api.call("GET", "/qa?q=" + "我同意了吗？", token=token)
    assert before.status == 200 and before.body["kind"] == "consent_status", before.body
    assert before.body["text"].startswith("您尚未同意") and before.body["refs"] == []
    await api.accepted(token)
    after = await api.call("GET", "/qa?q=" + "我同意的是哪个版本", token=token)
    assert after.body["kind"] == "consent_status" and "已于" in after.body["text"], after.body
    assert (await api.call("GET", "/qa?q=" + "同意状态", token=token)).body["text"] == after.body["text"]
    assert "2022-05-22" in after.body["text"] and "即现行版本" in after.body["text"]

    declining = await api.call("GET", "/qa?q=" + "如果我不同意呢", token=token)
    assert declining.body["kind"] == "declining", declining.body
    assert declining.body["refs"] == ["7.1"] and declining.body["references"][0]["kind"] == "clause"
    assert "不同意" in declining.body["text"] and "协议第7.1款" in declining.body["text"]
    # With a version published to take effect later: told of it, as chat tells it (the API said nothing).
    await api.svc.runtime.terms.publish(amended("2026-12-31"), reason="routine",
                                        effective_at=api.svc.runtime.clock() + dt.timedelta(days=8), by="test")
    upcoming = await api.call("GET", "/qa?q=" + "我同意了吗", token=token)
    assert "【即将生效】版本 2026-12-31" in upcoming.body["text"] and "届时我们会请您重新确认" in upcoming.body["text"]
    # Asked what changes: asked again only if they accepted the version in force (bob never did).
    bob = await api.token("bob")
    for who, says, not_said in ((token, "届时我们会请您重新确认", "同意即是同意新版本"),
                                (bob, "生效后，同意即是同意新版本", "届时")):
        changes = (await api.call("GET", "/qa?q=" + "协议最近改了什么", token=who)).body["text"]
        assert "【即将生效】版本 2026-12-31" in changes and says in changes and not_said not in changes, changes
    for reply in (before, after, declining, upcoming):
        assert "回复" not in reply.body["text"], reply.body  # no chat commands
    # "我同意了" says yes in chat; here it is no question about the record.
    assert (await api.call("GET", "/qa?q=" + "我同意了", token=token)).body["kind"] != "consent_status"


async def test_qa_answers_what_the_amendments_changed_from_the_published_versions(api):
    # As chat does: "协议最近改了什么" quoted 7.1 (how amendments work), not what changed.
    token = await api.token()
    never = await api.call("GET", "/qa?q=" + quote("协议最近改了什么"), token=token)
    assert never.body["kind"] == "changes" and never.body["refs"] == [], never.body
    assert never.body["text"] == "《微拓软件服务使用协议》自版本 2022-05-22（2022-05-22 起生效）以来没有修改过。"
    rule = await api.call("GET", "/qa?q=" + quote("协议修改了什么时候生效"), token=token)
    assert rule.body["kind"] == "answer" and rule.body["refs"] == ["7.1"], rule.body
    await api.svc.runtime.terms.publish(amended("2026-12-31"), reason="legal", effective_at=None, by="test")
    changed = await api.call("GET", "/qa?q=" + quote("条款有什么变化"), token=token)
    assert changed.body["kind"] == "changes", changed.body
    assert "最近一次修改：版本 2026-12-31" in changed.body["text"] and "· 第 1 节措辞调整" in changed.body["text"]
    assert "修改前的版本 2022-05-22" in changed.body["text"] and "回复" not in changed.body["text"], changed.body


async def test_qa_says_a_choice_typed_as_a_question_is_not_recorded(api):
    # "同意" typed into the Q&A quoted 前言.3 (…即表示您已同意…): as if the choice were made.
    token = await api.token()
    for words in ("同意", "我不同意。", "撤回同意"):
        reply = await api.call("GET", "/qa?q=" + words, token=token)
        assert reply.body["kind"] == "consent_choice" and "不会记录" in reply.body["text"], reply.body
        assert reply.body["refs"] == []
    me = await api.call("GET", "/me", token=token)
    assert me.body["consent"]["status"] == "none", me.body["consent"]


async def test_export_is_the_chat_document_with_the_mini_program_parts(api):
    token = await api.token()
    await api.accepted(token)
    await api.call("GET", "/qa?q=" + "我上传的图片版权归谁", token=token)
    reply = await api.call("GET", "/me/export", token=token)
    assert reply.status == 200
    document = reply.body
    # The questions the user asked are theirs too.
    [asked] = document["questions"]
    assert asked["question"] == "我上传的图片版权归谁" and asked["refs"] == ["4.1"] and asked["at"]
    assert document["openid"] == mp_openid("alice")
    assert [c["action"] for c in document["consents"]] == ["accept"]
    assert document["consent_status"]["status"] == "accepted"
    [login] = document["miniprogram_logins"]
    assert login["miniprogram_openid"] == mp_openid("alice")
    assert login["unionid"] == EmulatorState.unionid_for_user("alice")
    assert document["notice_reads"] == []
    chat_document = await api.svc.runtime.exports.document(mp_openid("alice"))
    assert set(chat_document) == set(document)
    # A mini-program user with nothing but a log-in is still someone the CLI can export.
    await api.token("lena")
    assert await api.svc.runtime.exports.knows(mp_openid("lena"))
    assert not await api.svc.runtime.exports.knows("o-nobody-at-all")


async def test_unionid_makes_the_follower_and_the_mini_program_user_one_person(api):
    follower = await _follower_linked(api, "frank")
    token, user = await api.login("frank")
    assert user["linked_official_account"] is True
    await api.accepted(token)
    # The chat sees the consent given in the mini-program: same person.
    assert (await api.svc.runtime.consents.state(follower)).accepted
    assert texts.already_accepted(load_seed()) == await api.svc.wechat.ask(follower, "同意")
    [record] = await api.svc.runtime.ledger.history(follower)
    assert (record.channel, record.unionid) == ("miniprogram", EmulatorState.unionid_for_user("frank"))

    # A later login of the same person (another code) is still linked.
    _token, again = await api.login("frank")
    assert again["linked_official_account"] is True and again["consent"]["status"] == "accepted"
    # Someone without a known follower is their own mini-program openid.
    _token, other = await api.login("gina")
    assert other["linked_official_account"] is False


async def test_per_user_rate_limit(api):
    api.svc.runtime.mini.limits = Limits(per_user=3, login_per_address=100)
    token = await api.token()
    statuses = [(await api.call("GET", "/me", token=token)).status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    reply = await api.call("GET", "/me/preferences", token=token)
    assert (reply.status, reply.error()["code"]) == (429, "rate_limited")
    assert 0 < int(reply.headers["Retry-After"]) <= 61
    # Another user has their own budget.
    assert (await api.call("GET", "/me", token=await api.token("hank"))).status == 200


async def test_login_rate_limit_per_address(api):
    api.svc.runtime.mini.limits = Limits(per_user=100, login_per_address=2)
    statuses = [(await api.call("POST", "/session", {"code": f"ivy-{i}"})).status for i in range(3)]
    assert statuses == [200, 200, 429]


async def test_reading_the_agreement_does_not_use_up_the_log_ins_of_an_address(api):
    # Behind one carrier NAT, someone paging through the agreement must not lock out log-ins.
    api.svc.runtime.mini.limits = Limits(per_user=100, login_per_address=3)
    assert all([(await api.call("GET", "/terms")).status == 200 for _ in range(5)])
    assert (await api.call("POST", "/session", {"code": "iris-1"})).status == 200


async def _follows(api, follower: str, user: str) -> str:
    """``follower`` follows the official account; WeChat's user/info knows their
    unionid. Returns the welcome."""
    await AsyncHTTPClient().fetch(
        api.emulator.base + "/_emulator/users", method="POST",
        body=json.dumps({"openid": follower, "unionid": EmulatorState.unionid_for_user(user)}),
    )
    response = await api.svc.wechat.post(event_xml(follower, "subscribe"))
    assert response.code == 200
    return api.svc.wechat.reply(response)["Content"]


async def test_following_learns_the_unionid_from_user_info(api):
    await _follows(api, "oa-kate", "kate")
    assert (await api.svc.runtime.followers.get("oa-kate")).unionid == EmulatorState.unionid_for_user("kate")
    token, user = await api.login("kate")
    assert user["linked_official_account"] is True
    await api.accepted(token)
    assert (await api.svc.runtime.consents.state("oa-kate")).accepted


async def test_a_mini_program_user_who_came_first_becomes_the_follower(api):
    token, user = await api.login("leo")
    assert user["linked_official_account"] is False
    await _follows(api, "oa-leo", "leo")
    # The same session now acts as the follower (nothing was kept under the mini-program openid).
    me = await api.call("GET", "/me", token=token)
    assert me.body["linked_official_account"] is True
    await api.accepted(token)
    assert (await api.svc.runtime.consents.state("oa-leo")).accepted
    assert await api.svc.runtime.ledger.history(mp_openid("leo")) == []


async def _registered_in_the_mini_program(api, user: str) -> str:
    """``user`` accepts, registers, opts out of service notices, gets a
    security notice in the inbox and reads it, and asks a question: all under
    their mini-program openid, before following. Returns their token."""
    runtime = api.svc.runtime
    token, _user = await api.login(user)
    await api.accepted(token)
    assert (await api.call("PUT", "/me/registration", ENTERPRISE, token)).status in (200, 201)
    assert (await api.call("PUT", "/me/preferences", {"preferences": {"service": False}}, token)).status == 200
    notice = await runtime.broadcasts.send(
        category="security", title="安全提醒", body="请勿泄露验证码。",
        audience={"type": "openids", "openids": [mp_openid(user)]}, by="t",
    )
    await runtime.worker(concurrency=2).run_until_idle(30)
    assert (await api.call("POST", f"/me/notices/{notice}/read", token=token)).status == 200
    # Asked just before following: still in the question log's buffer when the move runs.
    assert (await api.call("GET", "/qa?q=" + "我上传的图片版权归谁", token=token)).status == 200
    return token


async def test_the_cli_export_of_a_joined_mini_program_openid_names_the_follower(api, backing):
    from tests.test_cli import BIN, clean_env

    runtime = api.svc.runtime
    await _registered_in_the_mini_program(api, "vic")
    await _follows(api, "oa-vic", "vic")
    env = clean_env(MONGODB_URI=backing.database_uri(runtime.db.name), REDIS_URL=backing.redis_url)
    proc = await asyncio.create_subprocess_exec(str(BIN), "export", "--openid", mp_openid("vic"), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert "已与公众号关注者 oa-vic 合并" in err.decode() and "export --openid oa-vic" in err.decode()


async def test_a_mini_program_user_who_registered_first_joins_the_follower_with_their_records(api):
    runtime = api.svc.runtime
    token = await _registered_in_the_mini_program(api, "mia")
    mp = mp_openid("mia")
    await runtime.consent_view.catch_up(runtime.clock())  # the service's minute replay, before the follow

    welcome = await _follows(api, "oa-mia", "mia")
    # One person: chat sees the consent and the registration made in the mini-program.
    assert "您已同意当前版本" in welcome
    assert "南宁市测试贸易有限公司" in await api.svc.wechat.ask("oa-mia", "我的账户")
    settings = await api.svc.wechat.ask("oa-mia", "通知设置")
    assert [line for line in settings.splitlines() if "服务公告" in line][0].endswith("已退订"), settings
    # The ledger is never updated: the record stays as written, and a copy
    # naming it is appended under the follower's openid.
    [original] = await runtime.ledger.history(mp)
    [record] = await runtime.ledger.history("oa-mia")
    assert (record.action, record.channel, record.copied_from) == ("accept", "miniprogram", mp)
    assert (record.at, record.version, record.text_sha256, record.message_id, record.unionid) == \
        (original.at, original.version, original.text_sha256, original.message_id, original.unionid)
    assert original.copied_from is None and await runtime.merchants.get(mp) is None
    # Counted once: the dashboard's view and the audience of everyone who accepted.
    assert await runtime.consent_view.accepted("2022-05-22") == {"oa-mia"}
    assert await runtime.ledger.openids_with_action("accept") == ["oa-mia"]
    await runtime.consent_view.catch_up(runtime.clock())  # the minute's replay reaches the original again
    assert await runtime.consent_view.accepted("2022-05-22") == {"oa-mia"}
    assert await runtime.db["consent_latest"].count_documents({"openid": "oa-mia"}) == 1
    from storage.admin_stats import AdminStats  # the dashboard's 30-day chart: one acceptance, not two

    assert [a for _at, a in await AdminStats(runtime.db).consents_since(runtime.clock() - dt.timedelta(days=1))] == ["accept"]
    await runtime.db["views"].delete_many({})  # a whole replay leaves the original out too
    await runtime.consent_view.catch_up(runtime.clock())
    assert await runtime.consent_view.accepted("2022-05-22") == {"oa-mia"}

    # The same session now acts as the follower, with everything it had.
    me = await api.call("GET", "/me", token=token)
    assert me.body["linked_official_account"] is True and me.body["consent"]["status"] == "accepted"
    assert me.body["unread_notices"] == 0
    [notice] = (await api.call("GET", "/me/notices", token=token)).body["notices"]
    assert notice["read"] is True and notice["title"] == "安全提醒"
    registration = await api.call("GET", "/me/registration", token=token)
    assert registration.body["registration"]["entity_name"] == "南宁市测试贸易有限公司"
    document = (await api.call("GET", "/me/export", token=token)).body
    assert document["openid"] == "oa-mia" and [c["action"] for c in document["consents"]] == ["accept"]
    assert document["consents"][0]["copied_from"] == mp  # the person's export says where it was given
    assert [q["question"] for q in document["questions"]] == ["我上传的图片版权归谁"]
    assert [login["miniprogram_openid"] for login in document["miniprogram_logins"]] == [mp]


async def test_two_merchant_records_of_one_person_stay_apart(api):
    runtime = api.svc.runtime
    # Followed before the unionid was asked for, and registered in chat.
    await runtime.followers.subscribed("oa-nora", runtime.clock())
    await api.svc.wechat.ask("oa-nora", "同意")
    await runtime.merchants.save_profile("oa-nora", {"entity_type": "individual", "entity_name": "诺拉",
                                                     "contact_name": "诺拉", "phone": "13812345678", "adult": True})
    token = await _registered_in_the_mini_program(api, "nora")
    # As the backfill does: which account to keep is an admin's call.
    assert await runtime.mini.link_follower("oa-nora", EmulatorState.unionid_for_user("nora")) == 1
    me = await api.call("GET", "/me", token=token)
    assert me.body["linked_official_account"] is False
    assert (await runtime.merchants.get(mp_openid("nora"))).entity_name == "南宁市测试贸易有限公司"
    assert [r.channel for r in await runtime.ledger.history("oa-nora")] == ["official_account"]


async def test_consent_given_on_both_sides_joins_and_the_latest_choice_counts(api):
    runtime = api.svc.runtime
    # The welcome asks for 同意 at once; the unionid was not known at the follow.
    await runtime.followers.subscribed("oa-pia", runtime.clock())
    await api.svc.wechat.ask("oa-pia", "同意")
    await api.svc.wechat.ask("oa-pia", "撤回同意")
    token = await _registered_in_the_mini_program(api, "pia")  # accepted after the withdrawal
    assert await runtime.mini.link_follower("oa-pia", EmulatorState.unionid_for_user("pia")) == 0
    assert (await api.call("GET", "/me", token=token)).body["linked_official_account"] is True
    history = await runtime.ledger.history("oa-pia")
    assert [(r.action, r.copied_from) for r in history] == [("accept", None), ("withdraw", None), ("accept", mp_openid("pia"))]
    assert (await runtime.consents.state("oa-pia")).accepted
    assert "南宁市测试贸易有限公司" in await api.svc.wechat.ask("oa-pia", "我的账户")


async def test_a_request_that_waited_for_the_join_writes_to_the_follower(api):
    # A request resolved to the mini-program openid just before the join, and
    # waited for its lock while the join moved the records: its write must go
    # to the follower, not to records just moved away.
    from bot import my_account
    from bot.consent import Origin

    runtime = api.svc.runtime
    token, _user = await api.login("quin")
    await _follows(api, "oa-quin", "quin")
    services = runtime.services
    state, recorded = await my_account.record_consent(
        services, mp_openid("quin"), "2022-05-22", "accept", Origin(channel="miniprogram", message_id=None))
    assert recorded and state.accepted
    assert await runtime.ledger.history(mp_openid("quin")) == []
    assert [r.action for r in await runtime.ledger.history("oa-quin")] == ["accept"]
    settings = await my_account.set_preferences(services, mp_openid("quin"), {"service": False})
    assert settings["service"] is False and await runtime.preferences.settings("oa-quin") == settings
    assert (await api.call("GET", "/me/preferences", token=token)).body["preferences"]["service"] is False


async def test_a_follow_while_the_mini_program_user_is_busy_is_still_welcomed(api):
    runtime = api.svc.runtime
    await api.login("rex")
    await AsyncHTTPClient().fetch(
        api.emulator.base + "/_emulator/users", method="POST",
        body=json.dumps({"openid": "oa-rex", "unionid": EmulatorState.unionid_for_user("rex")}),
    )
    async with runtime.locks.exclusive(mp_openid("rex")):  # a slow API call of theirs
        response = await api.svc.wechat.post(event_xml("oa-rex", "subscribe"))
    assert response.code == 200 and "欢迎" in api.svc.wechat.reply(response)["Content"]
    # Joined by the upkeep within a minute instead (a log-in may be days away).
    assert await runtime.mini.finish_joins() == 1
    assert (await runtime.mini.identities.get(mp_openid("rex"))).subject == "oa-rex"


async def test_an_unfollowed_users_notices_are_in_the_mini_program_inbox(api):
    runtime = api.svc.runtime
    token, _user = await api.login("sue")
    await _follows(api, "oa-sue", "sue")
    await api.svc.wechat.post(event_xml("oa-sue", "unsubscribe"))
    notice = await runtime.broadcasts.send(
        category="security", title="安全提醒", body="请勿泄露验证码。",
        audience={"type": "openids", "openids": ["oa-sue"]}, by="t",
    )
    await runtime.worker(concurrency=2).run_until_idle(30)
    assert (await runtime.broadcasts.progress(notice)).skipped_by_reason == {"unsubscribed": 1}
    [item] = (await api.call("GET", "/me/notices", token=token)).body["notices"]
    assert item["id"] == notice


async def test_a_move_cut_short_is_finished_at_the_next_login(api):
    runtime = api.svc.runtime
    await _registered_in_the_mini_program(api, "otto")
    mp = mp_openid("otto")
    await runtime.followers.subscribed("oa-otto", runtime.clock())
    await runtime.followers.set_unionid("oa-otto", EmulatorState.unionid_for_user("otto"))
    # Where a move stops when MongoDB goes away after the ledger: the follower
    # now holds a consent, the merchant record is still under the old openid.
    await runtime.mini.identities.start_joining(mp, "oa-otto")
    await runtime.ledger.carry(mp, "oa-otto", runtime.clock())

    _token, user = await api.login("otto")
    assert user["linked_official_account"] is True
    assert (await runtime.merchants.get("oa-otto")).entity_name == "南宁市测试贸易有限公司"
    assert await runtime.merchants.get(mp) is None
    assert (await runtime.mini.identities.get(mp)).joining is None


async def test_a_move_cut_short_is_finished_by_the_upkeep_even_after_a_chat_registration(api):
    runtime = api.svc.runtime
    token = await _registered_in_the_mini_program(api, "ula")
    mp = mp_openid("ula")
    await runtime.followers.subscribed("oa-ula", runtime.clock())
    await runtime.followers.set_unionid("oa-ula", EmulatorState.unionid_for_user("ula"))
    await runtime.mini.identities.start_joining(mp, "oa-ula")
    await runtime.ledger.carry(mp, "oa-ula", runtime.clock())
    # Meanwhile, chat saw no registration, and the person registered there.
    await runtime.merchants.save_profile("oa-ula", {"entity_type": "individual", "entity_name": "乌拉",
                                                    "contact_name": "乌拉", "phone": "13812345678", "adult": True})
    assert await runtime.mini.finish_joins() == 1  # the service's upkeep, every minute
    assert (await runtime.mini.identities.get(mp)).subject == "oa-ula"
    assert (await runtime.merchants.get("oa-ula")).entity_name == "乌拉"  # the newer one stays theirs
    assert (await runtime.preferences.settings("oa-ula"))["service"] is False
    assert (await api.call("GET", "/me", token=token)).body["linked_official_account"] is True
    _token, user = await api.login("ula")  # log-ins go on working
    assert user["linked_official_account"] is True
    assert await runtime.mini.finish_joins() == 0


async def test_followers_from_before_the_unionid_are_backfilled_from_the_cli(api, backing, tmp_path, monkeypatch):
    from tests.test_cli import BIN, clean_env

    async def backfill(env) -> tuple[int, str, str]:
        # Not subprocess.run: the emulator answers on this test's event loop.
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "followers", "backfill-unionid", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(), err.decode()

    # Followed before the service asked user/info; WeChat knows the unionid now.
    runtime = api.svc.runtime
    for follower, user in (("oa-pam", "pam"), ("oa-quinn", None)):
        body = {"openid": follower, **({"unionid": EmulatorState.unionid_for_user(user)} if user else {})}
        await AsyncHTTPClient().fetch(api.emulator.base + "/_emulator/users", method="POST", body=json.dumps(body))
        await runtime.followers.subscribed(follower, runtime.clock())
    await runtime.followers.flush()
    token, user = await api.login("pam")
    assert user["linked_official_account"] is False
    assert await runtime.followers.without_unionid() == ["oa-pam", "oa-quinn"]

    env = clean_env(
        MONGODB_URI=backing.database_uri(runtime.db.name), REDIS_URL=backing.redis_url,
        WECHAT_APPID=runtime.config.wechat_appid, WECHAT_SECRET=runtime.config.wechat_secret,
        WECHAT_API_BASE=api.emulator.base,
        DATA_DIR=str(tmp_path),  # not ./var: a demo running there would lend its WeChat account
    )
    async def batch_calls() -> int:
        stats = json.loads((await AsyncHTTPClient().fetch(api.emulator.base + "/_emulator/stats")).body)
        return stats["calls"].get("/cgi-bin/user/info/batchget", 0)

    before = await batch_calls()
    code, out, err = await backfill(env)
    assert code == 0, err
    assert "已查询 2 位" in out and "找到并关联 1 位" in out and "未提供 unionid 1 位" in out
    assert await batch_calls() == before + 1  # 100 a call, not one call each (some 20 minutes for 100,000)
    assert "已查询 2 / 2" in err  # progress as it goes (some 20 minutes for 100,000)
    assert (await runtime.followers.get("oa-pam")).unionid == EmulatorState.unionid_for_user("pam")
    me = await api.call("GET", "/me", token=token)
    assert me.body["linked_official_account"] is True  # the same session now acts as the follower
    assert await runtime.followers.without_unionid() == ["oa-quinn"]
    code, _out, err = await backfill({**env, "WECHAT_APPID": "", "WECHAT_SECRET": ""})
    assert code == 2 and "WECHAT_APPID" in err
    # One openid WeChat refuses (40003) refuses its whole batch: the others are asked one by one.
    counts = await runtime.mini.backfill_unionids(["oa-pam", "oa-quinn", "not an openid"])
    assert (counts["found"], counts["none"], counts["failed"]) == (1, 1, 1), counts
    # A first chunk with no unionid at all (an account not bound to the open platform): the rest not asked.
    from bot import mini_sessions

    monkeypatch.setattr(mini_sessions, "BACKFILL_CHUNK", 1)
    counts = await runtime.mini.backfill_unionids(["oa-quinn", "oa-nobody-1", "oa-nobody-2"])
    assert counts["stopped"] == 1 and counts["found"] + counts["none"] + counts["failed"] == 1


async def test_following_without_a_unionid_or_with_wechat_down_still_welcomes(api, emulator):
    response = await api.svc.wechat.post(event_xml("oa-nick", "subscribe"))
    assert response.code == 200 and "欢迎" in api.svc.wechat.reply(response)["Content"]
    assert (await api.svc.runtime.followers.get("oa-nick")).unionid is None
    fault = {"path": "/cgi-bin/user/info", "errcode": -1}
    await AsyncHTTPClient().fetch(emulator.base + "/_emulator/faults", method="POST", body=json.dumps(fault))
    response = await api.svc.wechat.post(event_xml("oa-olga", "subscribe"))
    assert response.code == 200 and api.svc.wechat.reply(response)["Content"]


async def test_redis_down_answers_503_but_the_agreement_still_reads(api, make_service, backing, monkeypatch):
    monkeypatch.setattr(backing, "redis_url", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    down = Api(await make_service(miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET), api.emulator)
    assert (await down.call("GET", "/terms")).status == 200
    for method, path, body in (("POST", "/session", {"code": "zoe-1"}), ("GET", "/me", None)):
        reply = await down.call(method, path, body, token="some-token")
        assert (reply.status, reply.error()["code"]) == (503, "service_unavailable")
    # The Q&A is the public agreement's: answered as chat answers it meanwhile (it was 503).
    asked = await down.call("GET", "/qa?q=" + quote("我上传的图片版权归谁"), token="some-token")
    assert asked.status == 200 and asked.body["kind"] == "answer" and "4.1" in asked.body["refs"], asked.body
    own = await down.call("GET", "/qa?q=" + quote("我同意了吗"), token="some-token")
    assert own.status == 200 and own.body["kind"] == "consent_status" and "稍后" in own.body["text"], own.body


@pytest.mark.parametrize("path", ["/api/v1/session", "/admin/login", "/wechat"])
async def test_a_huge_body_is_refused_before_it_is_read(api, path):
    # Announced larger than anything the service takes: refused at once, not
    # held in memory while it arrives (Tornado's default allowed 100 MB).
    host, port = api.svc.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.split()[1] in (b"400", b"413"), status_line
    assert (await AsyncHTTPClient().fetch(api.svc.url + "/healthz")).code == 200


@pytest.mark.parametrize("path", ["/api/v1/session", "/admin/login", "/wechat"])
@pytest.mark.parametrize("one_chunk", [False, True], ids=["small-chunks", "one-huge-chunk"])
async def test_a_huge_chunked_body_gets_the_json_413(api, path, one_chunk):
    # A chunked body carries no length to refuse up front: it is counted as
    # it arrives, and past the limit answered as a declared one is, not with
    # Tornado's bare 400.
    host, port = api.svc.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        piece = b"x" * 65536
        if one_chunk:
            writer.write(b"%x\r\n" % (8 * 1024 * 1024))
        try:
            for _ in range(40):  # 2.5 MiB, past the 1 MiB limit
                writer.write(piece if one_chunk else b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
        except ConnectionError:
            pass  # answered and closed before all of it was sent
        answer = b""
        while True:  # until closed; a reset (the rest was unread) ends it too
            try:
                data = await asyncio.wait_for(reader.read(65536), 5)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[:2] == [b"HTTP/1.1", b"413"], head
    error = json.loads(body)["error"]
    assert error["code"] == "body_too_large" and error["message"]  # the same code as below 1 MiB
    # The route's own limit, as below 1 MiB (it said 1 MiB where the API takes 16 KiB).
    limit = {"/api/v1/session": "16 KiB", "/wechat": "64 KiB"}.get(path, "1 MiB")
    assert limit in error["message"], error
    assert (await AsyncHTTPClient().fetch(api.svc.url + "/healthz")).code == 200


async def test_a_declared_huge_body_is_refused_with_the_apis_own_limit(api):
    token = await api.token()
    response = await AsyncHTTPClient().fetch(
        api.svc.url + "/api/v1/me/preferences", method="PUT", body=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, raise_error=False)
    error = json.loads(response.body)["error"]
    assert response.code == 413 and error["code"] == "body_too_large" and "16 KiB" in error["message"], error


async def test_an_api_consent_action_waits_for_the_users_chat_message_in_progress(api):
    # Chat holds the user's lock while it handles a message (a 同意 reading
    # the state, then appending); the API's action must not run in between.
    token = await api.token()
    openid = mp_openid("alice")
    locks = api.svc.runtime.locks
    held = await locks.acquire(openid)
    accept = asyncio.create_task(api.call("POST", "/consents", {"version": "2022-05-22", "action": "accept"}, token))
    await asyncio.sleep(0.5)
    assert not accept.done() and await api.svc.runtime.ledger.history(openid) == []
    await locks.release(openid, held)
    assert (await accept).status == 200
    assert [r.action for r in await api.svc.runtime.ledger.history(openid)] == ["accept"]


async def test_closing_twice_at_once_says_already_closed(api):
    token = await api.token()
    await api.accepted(token)
    await api.call("PUT", "/me/registration", ENTERPRISE, token)
    first, second = await asyncio.gather(api.call("DELETE", "/me", token=token), api.call("DELETE", "/me", token=token))
    assert sorted((first.status, second.status)) == [200, 409]
    refused = first if first.status == 409 else second
    assert refused.error()["code"] == "already_closed"


async def test_a_method_the_resource_lacks_gets_405_naming_the_ones_it_has(api):
    token = await api.token()
    reply = await api.call("PATCH", "/me", {"x": 1}, token)
    assert (reply.status, reply.error()["code"]) == (405, "method_not_allowed")
    assert reply.headers["Allow"] == "GET, HEAD, DELETE"
    assert (await api.call("DELETE", "/terms")).headers["Allow"] == "GET, HEAD"
    # HEAD answers as GET would, without the body (it was a 405); not where there is no GET.
    got, head = await api.call("GET", "/terms"), await api.call("HEAD", "/terms")
    assert (head.status, head.body) == (200, None)
    assert head.headers["Content-Length"] == got.headers["Content-Length"] != "0"
    assert (await api.call("HEAD", "/me")).status == 401  # the same checks as GET
    assert (await api.call("HEAD", "/me", token=token)).status == 200
    assert (await api.call("HEAD", "/session")).status == 405


async def test_a_notice_still_pending_at_the_join_reaches_the_persons_inbox(api):
    # Pending deliveries stay under the mini-program openid (the worker finishes
    # them there); the inbox, now the follower's, showed nothing of it.
    runtime = api.svc.runtime
    token, _user = await api.login("wes")
    await api.accepted(token)
    notice = await runtime.broadcasts.send(
        category="security", title="安全提醒", body="请勿泄露验证码。",
        audience={"type": "openids", "openids": [mp_openid("wes")]}, by="t",
    )
    await _follows(api, "oa-wes", "wes")
    await runtime.worker(concurrency=2).run_until_idle(30)
    [item] = (await api.call("GET", "/me/notices", token=token)).body["notices"]
    assert item["id"] == notice
    assert (await api.call("POST", f"/me/notices/{notice}/read", token=token)).body["notice"]["read"] is True


async def test_a_move_resumed_after_the_merchant_step_brings_the_status_history(api):
    runtime = api.svc.runtime
    await _registered_in_the_mini_program(api, "xia")
    mp = mp_openid("xia")
    await runtime.merchants.set_status(mp, "suspended", "测试暂停", by="t")
    assert [e.status for e in await runtime.merchants.repo.history(mp)] == ["pending_review", "suspended"]
    await runtime.followers.subscribed("oa-xia", runtime.clock())
    await runtime.followers.set_unionid("oa-xia", EmulatorState.unionid_for_user("xia"))
    # Cut short after the merchant record moved, before its history did.
    await runtime.mini.identities.start_joining(mp, "oa-xia")
    await runtime.ledger.carry(mp, "oa-xia", runtime.clock())
    await runtime.db["merchants"].update_one({"openid": mp}, {"$set": {"openid": "oa-xia", "last_change.openid": "oa-xia"}})
    assert await runtime.mini.finish_joins() == 1
    assert [e.status for e in await runtime.merchants.repo.history("oa-xia")] == ["pending_review", "suspended"]
    assert await runtime.merchants.repo.history(mp) == []


async def test_a_merchant_record_from_before_last_change_moves_whole(api):
    runtime = api.svc.runtime
    await _registered_in_the_mini_program(api, "yan")
    mp = mp_openid("yan")
    await runtime.db["merchants"].update_one({"openid": mp}, {"$unset": {"last_change": ""}})  # an older record
    await _follows(api, "oa-yan", "yan")
    record = await runtime.db["merchants"].find_one({"openid": "oa-yan"})
    assert "last_change" not in record
    assert [e.status for e in await runtime.merchants.repo.history("oa-yan")] == ["pending_review"]


async def test_a_question_logged_under_the_mini_program_openid_after_the_join_is_in_the_export(api):
    # Another process's buffered question is written after the move, under the old openid.
    runtime = api.svc.runtime
    token, _user = await api.login("zoe")
    await _follows(api, "oa-zoe", "zoe")
    runtime.qa_log.record(question="迟到的问题", kind="abstain", refs=(), score=0.0, version="2022-05-22",
                          openid=mp_openid("zoe"), channel="miniprogram", at=runtime.clock())
    document = (await api.call("GET", "/me/export", token=token)).body
    assert document["openid"] == "oa-zoe" and [q["question"] for q in document["questions"]] == ["迟到的问题"]
