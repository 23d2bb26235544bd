"""The admin console over real HTTP: access control, xsrf, log-in limiting,
sessions, the audit log, and each page's actions against real storage."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import time
import re
import subprocess
import sys
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from bot import console as console_module
from bot.admin_accounts import CLI
from bot.notices import NO_WORKER
from storage.redis_store import key

BIN = Path(sys.executable).parent / "wetoop-bot"
PASSWORD = "correct-horse-battery"
HEX = "0123456789abcdef01234567"


class AdminClient:
    """A cookie-keeping HTTP client for the console (no redirects followed)."""

    def __init__(self, base: str, address: str | None = None) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, form: dict | None = None, xsrf: bool = True) -> HTTPResponse:
        body = None
        if method == "POST":
            form = dict(form or {})
            if xsrf:
                form.setdefault("_xsrf", await self.xsrf())
            body = urlencode(form, doseq=True)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        response = await AsyncHTTPClient().fetch(
            self.base + path, method=method, body=body, headers=headers, follow_redirects=False, raise_error=False,
        )
        for header in response.headers.get_list("Set-Cookie"):
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel.value and "1970" not in morsel.get("expires", ""):
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    async def get(self, path: str) -> HTTPResponse:
        return await self.request("GET", path)

    async def post(self, path: str, form: dict | None = None, xsrf: bool = True) -> HTTPResponse:
        return await self.request("POST", path, form, xsrf)

    async def xsrf(self) -> str:
        if not {"_xsrf", "__Host-xsrf"} & set(self.cookies):
            await self.get("/admin/login")
        return self.cookies.get("__Host-xsrf") or self.cookies["_xsrf"]

    async def login(self, name: str, password: str = PASSWORD) -> HTTPResponse:
        return await self.post("/admin/login", {"name": name, "password": password, "next": "/admin"})


def text(response: HTTPResponse) -> str:
    return response.body.decode("utf-8", "replace")


async def make_admins(svc) -> None:
    for name, role in (("vera", "viewer"), ("eddie", "editor"), ("olga", "owner")):
        await svc.runtime.admins.create(name, role, PASSWORD, by=CLI)


async def logged_in(svc, name: str) -> AdminClient:
    client = AdminClient(svc.url)
    response = await client.login(name)
    assert response.code == 303, text(response)
    return client


@pytest.fixture
async def svc(make_service, tmp_path):
    svc = await make_service(data_dir=tmp_path / "data")
    await make_admins(svc)
    return svc


# Every console route, the method, and the lowest role allowed.
ROUTES = [
    ("GET", "/admin", "viewer"),
    ("GET", "/admin/audit", "viewer"),
    ("GET", "/admin/audit.csv", "viewer"),
    ("GET", "/admin/terms", "viewer"),
    ("GET", "/admin/terms/diff", "viewer"),
    ("GET", "/admin/terms/v/2022-05-22", "viewer"),
    ("POST", "/admin/terms/v/2022-05-22", "owner"),
    ("GET", "/admin/terms/new", "editor"),
    ("POST", "/admin/terms/new", "editor"),
    ("GET", "/admin/notices", "viewer"),
    ("GET", "/admin/notices/new", "editor"),
    ("POST", "/admin/notices/new", "editor"),
    ("GET", f"/admin/notices/{HEX}", "viewer"),
    ("GET", f"/admin/notices/{HEX}/progress", "viewer"),
    ("POST", f"/admin/notices/{HEX}/pause", "owner"),
    ("POST", f"/admin/notices/{HEX}/resume", "owner"),
    ("POST", f"/admin/notices/{HEX}/cancel", "owner"),
    ("POST", f"/admin/drafts/{HEX}/discard", "editor"),
    ("GET", "/admin/merchants", "viewer"),
    ("GET", "/admin/merchants.csv", "viewer"),
    ("GET", "/admin/merchants/o-m1", "viewer"),
    ("POST", "/admin/merchants/o-m1", "editor"),
    ("GET", "/admin/consents", "viewer"),
    ("GET", "/admin/consents.csv", "viewer"),
    ("GET", "/admin/qa", "viewer"),
    ("GET", "/admin/qa/lexicon.toml", "viewer"),
    ("POST", "/admin/qa/lexicon.toml", "editor"),
    ("POST", "/admin/qa/examples.toml", "editor"),
    ("GET", "/admin/users", "owner"),
    ("POST", "/admin/users", "owner"),
    ("POST", "/admin/users/vera/role", "owner"),
    ("POST", "/admin/users/vera/disable", "owner"),
    ("POST", "/admin/users/vera/enable", "owner"),
    ("POST", "/admin/users/vera/revoke", "owner"),
    ("POST", "/admin/users/vera/password", "owner"),
    ("POST", "/admin/logout", "viewer"),
]
RANK = {"viewer": 1, "editor": 2, "owner": 3}
USERS = {"viewer": "vera", "editor": "eddie", "owner": "olga"}


def test_every_route_is_listed():
    """A new console route must be added to ROUTES (and so to these tests)."""
    from handlers import admin

    patterns = {pattern for pattern, _, _ in admin.routes(None)} - {r"/admin/login", r"/admin/.*"}
    covered = set()
    for _, path, _ in ROUTES:
        for pattern in patterns:
            if re.fullmatch(pattern, path):
                covered.add(pattern)
    assert covered == patterns


async def test_anonymous_requests_go_to_the_login_form(svc):
    client = AdminClient(svc.url)
    for method, path, _ in ROUTES + [("GET", "/admin/nowhere", "viewer")]:
        response = await client.request(method, path, {})
        if path.endswith("/progress"):  # read by the page's script: a log-in page is no answer for it
            assert response.code == 401 and json.loads(response.body)["error"]["message"] == "需要登录"
            continue
        assert response.code in (302, 303), (method, path, response.code)
        assert response.headers["Location"].startswith("/admin/login?next="), (method, path)
    login = await client.get("/admin/login")
    assert login.code == 200 and "登录管理后台" in text(login)
    assert await svc.runtime.admins.list() and not await svc.runtime.console.stats.recent_notices()


@pytest.mark.parametrize("target, lands", [
    ("/admin/notices?page=2", "/admin/notices?page=2"),
    ("//evil.example/admin", "/admin"), ("https://evil.example/admin", "/admin"), ("/admin\\@evil.example", "/admin"),
    # A line break passed the check, then failed the redirect: 500 after the session was made.
    ("/admin\r\nSet-Cookie: x=1", "/admin"), ("/admin\nx", "/admin"), ("/admin\tx", "/admin"),
])
async def test_login_goes_back_to_a_console_page_only(svc, target, lands):
    name = f"nx{uuid.uuid4().hex[:8]}"
    await svc.runtime.admins.create(name, "viewer", PASSWORD, by=CLI)
    client = AdminClient(svc.url)
    response = await client.post("/admin/login", {"name": name, "password": PASSWORD, "next": target})
    assert response.code == 303 and response.headers["Location"] == lands
    assert "x" not in client.cookies


async def test_a_role_too_low_gets_403(svc):
    clients = {role: await logged_in(svc, name) for role, name in USERS.items()}
    for method, path, needed in ROUTES:
        for role, client in clients.items():
            if RANK[role] >= RANK[needed] or path == "/admin/logout":
                continue
            response = await client.request(method, path, {})
            assert response.code == 403, (role, method, path, response.code)
            assert "没有权限" in text(response) and "<html" in text(response)
    # Allowed roles get past the check (a page, a redirect, or the domain's 4xx for empty forms).
    for method, path, needed in ROUTES:
        if path == "/admin/logout" or method == "POST":
            continue
        response = await clients[needed].request(method, path)
        assert response.code in (200, 404), (needed, path, response.code)
        if response.headers["Content-Type"].startswith("text/html"):
            assert 'href="/admin/audit"' in text(response), path  # the audit log is in every page's navigation


async def test_post_without_xsrf_token_is_refused(svc):
    owner = await logged_in(svc, "olga")
    response = await owner.post("/admin/users", {"name": "mallory", "role": "owner", "password": PASSWORD}, xsrf=False)
    assert response.code == 403
    assert "xsrf" in text(response)
    forged = await owner.post("/admin/users", {"name": "mallory", "role": "owner", "password": PASSWORD, "_xsrf": "2|00|00|00"})
    assert forged.code == 403
    assert await svc.runtime.admins.users.get("mallory") is None
    # The same form with the token works.
    assert (await owner.post("/admin/users", {"name": "mallory", "role": "viewer", "password": PASSWORD})).code == 303
    assert (await svc.runtime.admins.users.get("mallory")).role == "viewer"


async def test_login_is_limited_per_account(svc):
    client = AdminClient(svc.url)
    for attempt in range(10):
        response = await client.login("olga", "wrong-password")
        assert response.code == 401, attempt
        assert "用户名或密码不正确" in text(response)
    locked = await client.login("olga", PASSWORD)
    assert locked.code == 429
    assert "登录失败次数过多" in text(locked) and "分钟后再试" in text(locked)
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60  # as the API's 429s say it
    assert "wb_admin" not in client.cookies
    # From another address the account is still locked (the counter is per account).
    await svc.runtime.redis.delete(key("admin", "loginfail", "addr", "127.0.0.1"))
    assert (await AdminClient(svc.url).login("olga", PASSWORD)).code == 429
    # A new password set by an owner ends the lock-out (the guessing was at the old one).
    from bot.admin_accounts import CLI

    await svc.runtime.admins.set_password("olga", PASSWORD + "-new", by=CLI)
    assert (await AdminClient(svc.url).login("olga", PASSWORD + "-new")).code == 303
    await svc.runtime.admins.set_password("olga", PASSWORD, by=CLI)
    for _ in range(10):
        await client.login("olga", "wrong-password")
    # When the lock expires, the right password works again.
    await svc.runtime.redis.expire(key("admin", "loginfail", "name", "olga"), 1)
    await svc.runtime.redis.delete(key("admin", "loginfail", "addr", "127.0.0.1"))
    await asyncio.sleep(1.2)
    assert (await client.login("olga", PASSWORD)).code == 303


async def test_strangers_guessing_do_not_lock_the_admin_out_of_their_own_browser(svc):
    # Anyone who knew an admin's name could lock the account with 10 wrong guesses.
    own = AdminClient(svc.url)
    assert (await own.login("olga", PASSWORD)).code == 303  # this browser is remembered
    stranger = AdminClient(svc.url)
    for _ in range(10):
        await stranger.login("olga", "wrong-password")
    await svc.runtime.redis.delete(key("admin", "loginfail", "addr", "127.0.0.1"))  # they were elsewhere
    assert (await AdminClient(svc.url).login("olga", PASSWORD)).code == 429  # a new browser: locked
    assert (await own.login("olga", PASSWORD)).code == 303  # the admin's own: not
    # Guessing from a remembered browser is limited too, on its own counter.
    for _ in range(10):
        await own.login("olga", "wrong-password")
    await svc.runtime.redis.delete(key("admin", "loginfail", "addr", "127.0.0.1"))
    assert (await own.login("olga", PASSWORD)).code == 429


async def test_parallel_guesses_are_limited_too(svc):
    # Each attempt is counted before its password is checked: a burst cannot
    # have every guess checked while the counter lags behind.
    responses = await asyncio.gather(*(AdminClient(svc.url).login("olga", f"guess-{n}") for n in range(30)))
    codes = sorted(r.code for r in responses)
    assert codes.count(401) == 10 and codes.count(429) == 20, codes
    assert len(await svc.runtime.audit.recent(action="login_failed")) == 10


async def test_right_passwords_do_not_use_up_the_address(svc):
    for _ in range(12):  # an office signing in all morning from one address
        assert (await AdminClient(svc.url).login("vera", PASSWORD)).code == 303


async def test_login_is_limited_per_address(svc):
    client = AdminClient(svc.url)
    for n in range(10):
        assert (await client.login(f"nobody{n}", "wrong-password")).code == 401
    # Another account from the same address: refused, right password or not.
    response = await client.login("vera", PASSWORD)
    assert response.code == 429
    entries = await svc.runtime.audit.recent(action="login_failed")
    assert len(entries) == 10
    # A name no account has (often a password typed in the wrong box) is kept as its start only.
    assert entries[0].target == "no…（7 个字符）" and entries[0].actor == "?no…（7 个字符）"


async def test_a_new_password_ends_the_lock_out_of_the_admins_own_browser_too(svc):
    # The new password cleared the account's counter only: the browser's own stayed locked.
    from bot.admin_accounts import CLI

    own = AdminClient(svc.url)
    assert (await own.login("vera", PASSWORD)).code == 303  # this browser is remembered
    assert (await own.post("/admin/logout")).code == 303
    for _ in range(10):
        await own.login("vera", "wrong-password")
    assert (await own.login("vera", PASSWORD)).code == 429
    await svc.runtime.admins.set_password("vera", PASSWORD + "-new", by=CLI)
    assert (await own.login("vera", PASSWORD + "-new")).code == 303


async def test_a_password_typed_as_the_name_is_not_kept_in_the_audit_log(svc):
    assert (await AdminClient(svc.url).login("MySecretPass!2026", "x")).code == 401
    entry = (await svc.runtime.audit.recent(action="login_failed"))[0]
    assert entry.target == "My…（17 个字符）" and "Secret" not in entry.actor
    assert (await AdminClient(svc.url).login("vera", "wrong-password")).code == 401
    assert (await svc.runtime.audit.recent(action="login_failed"))[0].target == "vera"  # an account's name, kept


async def test_failures_from_the_address_do_not_lock_an_admin_out_of_their_own_browser(svc):
    # Behind one office NAT, another account's ten mistypes locked every admin out,
    # remembered browsers too, for 15 minutes, and nobody could lift it.
    own = AdminClient(svc.url)
    assert (await own.login("vera", PASSWORD)).code == 303  # this browser is remembered
    assert (await own.post("/admin/logout")).code == 303
    colleague = AdminClient(svc.url)
    for _ in range(10):
        await colleague.login("olga", "wrong-password")
    assert (await AdminClient(svc.url).login("vera", PASSWORD)).code == 429  # a new browser there: still
    assert (await own.login("vera", PASSWORD)).code == 303


async def test_session_cookie_and_logout(svc):
    client = AdminClient(svc.url)
    response = await client.login("vera")
    cookie = next(h for h in response.headers.get_list("Set-Cookie") if h.startswith("wb_admin="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert response.headers["Location"] == "/admin"
    page = await client.get("/admin")
    assert page.code == 200 and "vera" in text(page) and "/admin/audit" in text(page)
    assert (await client.post("/admin/logout")).code == 303
    assert (await client.get("/admin")).code == 302
    # A tampered cookie is no session.
    client.cookies["wb_admin"] = "x" + client.cookies.get("wb_admin", "abc")
    assert (await client.get("/admin")).code == 302


async def test_cookie_is_secure_behind_https(make_service, tmp_path):
    svc = await make_service(data_dir=tmp_path / "data", public_url="https://admin.wetoop.example")
    await svc.runtime.admins.create("vera", "viewer", PASSWORD, by=CLI)
    client = AdminClient(svc.url)
    form = await client.get("/admin/login")
    xsrf = next(h for h in form.headers.get_list("Set-Cookie") if "xsrf=" in h)
    assert "Secure" in xsrf and "HttpOnly" in xsrf  # Tornado's own cookie was left out
    # Named so that a sibling subdomain or plain http cannot plant it (an
    # _xsrf cookie planted so let another site's form pass the check).
    assert xsrf.startswith("__Host-xsrf=") and "Path=/" in xsrf and "Domain" not in xsrf
    planted = AdminClient(svc.url)
    planted.cookies["_xsrf"] = client.cookies["__Host-xsrf"]
    assert (await planted.post("/admin/login", {"name": "vera", "password": PASSWORD, "next": "/admin",
                                                "_xsrf": client.cookies["__Host-xsrf"]}, xsrf=False)).code == 403
    response = await client.login("vera")
    cookies = [h for h in response.headers.get_list("Set-Cookie") if h.startswith(("wb_admin=", "wb_admin_device="))]
    assert len(cookies) == 2 and all("Secure" in c and "HttpOnly" in c for c in cookies)


async def test_owner_revokes_and_disables(svc):
    viewer = await logged_in(svc, "vera")
    owner = await logged_in(svc, "olga")
    assert (await owner.post("/admin/users/vera/revoke")).code == 303
    assert (await viewer.get("/admin")).code == 302
    viewer = await logged_in(svc, "vera")
    assert (await owner.post("/admin/users/vera/disable")).code == 303
    assert (await viewer.get("/admin")).code == 302
    assert (await viewer.login("vera")).code == 401
    assert (await owner.post("/admin/users/vera/role", {"role": "editor"})).code == 303
    assert (await svc.runtime.admins.users.get("vera")).role == "editor"
    assert (await owner.post("/admin/users/vera/enable")).code == 303
    short = await owner.post("/admin/users/vera/password", {"password": "short"})
    assert short.code == 400 and "至少需要 10 个字符" in text(short)
    # Long enough, and the first guesses of anyone who knows the name: refused.
    for weak, said in (("aaaaaaaaaaaa", "至少需要 4 个不同的字符"), ("veraveravera", "不能包含用户名"),
                       ("VERA-is-the-best", "不能包含用户名")):
        refused = await owner.post("/admin/users/vera/password", {"password": weak})
        assert refused.code == 400 and said in text(refused), weak
    from bot.admin_accounts import AdminRefused, _check_password

    with pytest.raises(AdminRefused):  # a name of three letters too (bobbob123456 was taken)
        _check_password("bobbob123456", "bob")
    _check_password("li-and-a-long-one", "li")  # two letters are in too many good passwords
    # --generate-password never makes one the policy refuses (the name in it by chance).
    import secrets

    from bot.admin_accounts import generate_password

    drawn = iter(["xxBOBxxxxxxxxxxx", "aaaaaaaaaaaaaaaa", "Good-Random-0123"])
    original, secrets.token_urlsafe = secrets.token_urlsafe, lambda n: next(drawn)
    try:
        assert generate_password("bob") == "Good-Random-0123"
    finally:
        secrets.token_urlsafe = original
    huge = await owner.post("/admin/users/vera/password", {"password": "p" * 200_000})  # was cut to 1,024 and kept
    assert huge.code == 400 and "最多 128 个字符，您输入了 200000 个" in text(huge)
    assert (await owner.post("/admin/users/vera/password", {"password": "a-new-password-1"})).code == 303
    assert (await AdminClient(svc.url).login("vera")).code == 401
    assert (await AdminClient(svc.url).login("vera", "a-new-password-1")).code == 303
    assert (await svc.runtime.admins.users.get("vera")).password_hash.startswith("$argon2id$")
    # No such admin: not found (it said 400, as for a bad request).
    for action in ("disable", "enable", "revoke", "role"):
        missing = await owner.post(f"/admin/users/nobody/{action}", {"role": "viewer"})
        assert missing.code == 404 and "没有名为 nobody 的管理员" in text(missing), action
    # The last owner cannot be demoted.
    response = await owner.post("/admin/users/olga/role", {"role": "viewer"})
    assert response.code == 400 and "至少要保留一位" in text(response)
    # A role change applies to live sessions at once.
    editor = await logged_in(svc, "eddie")
    assert (await editor.get("/admin/notices/new")).code == 200
    assert (await owner.post("/admin/users/eddie/role", {"role": "viewer"})).code == 303
    assert (await editor.get("/admin/notices/new")).code == 403


async def test_sessions_expire(svc):
    client = await logged_in(svc, "vera")
    sessions = [k async for k in svc.runtime.redis.scan_iter(match=key("admin", "session", "*"))]
    assert sessions
    ttl = await svc.runtime.redis.ttl(sessions[0])
    assert 0 < ttl <= 2 * 3600
    await svc.runtime.redis.expire(sessions[0], 1)
    await asyncio.sleep(1.2)
    assert (await client.get("/admin")).code == 302


async def test_a_pages_progress_polling_does_not_keep_the_session_alive(svc):
    # The notice page polls every few seconds for as long as it is open: each
    # poll restarted the 2-hour idle expiry, so an open tab never logged out.
    await followers(svc, "o-a")
    owner = await logged_in(svc, "olga")
    sent = await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})
    notice_id = sent.headers["Location"].split("/")[3].split("?")[0]
    session = [k async for k in svc.runtime.redis.scan_iter(match=key("admin", "session", "*"))][0]
    await svc.runtime.redis.expire(session, 100)
    assert (await owner.get(f"/admin/notices/{notice_id}/progress")).code == 200
    assert await svc.runtime.redis.ttl(session) <= 100
    assert (await owner.get(f"/admin/notices/{notice_id}")).code == 200  # the admin's own request does
    assert await svc.runtime.redis.ttl(session) > 3600
    await svc.runtime.redis.delete(session)
    expired = await owner.get(f"/admin/notices/{notice_id}/progress")
    assert expired.code == 401 and json.loads(expired.body)["error"]["code"] == "unauthorized"


async def test_audit_log_records_who_what_before_after_and_exports(svc):
    owner = await logged_in(svc, "olga")
    await owner.post("/admin/users/vera/role", {"role": "editor"})
    page = await owner.get("/admin/audit?action=admin_role")
    assert page.code == 200
    body = text(page)
    assert "修改角色" in body and "olga" in body and "vera" in body
    entry = (await svc.runtime.audit.recent(action="admin_role"))[0]
    assert entry.actor == "olga" and entry.target == "vera"
    assert entry.before["role"] == "viewer" and entry.after["role"] == "editor"
    export = await owner.get("/admin/audit.csv")
    assert export.code == 200 and export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    # Headings and actions in Chinese, as on the page (admins open it in Excel).
    assert list(rows[0]) == ["时间（北京）", "管理员", "操作", "对象", "变更前", "变更后", "地址"]
    assert {"登录", "修改角色", "创建管理员"} <= {r["操作"] for r in rows}
    role_row = next(r for r in rows if r["操作"] == "修改角色")
    assert json.loads(role_row["变更后"])["role"] == "editor" and role_row["对象"] == "vera"
    assert role_row["时间（北京）"].endswith("+08:00")  # Beijing time, as on the pages
    assert (await svc.runtime.audit.recent(action="export"))[0].target == "audit.csv"
    bad = await owner.get("/admin/audit?since=yesterday")
    assert bad.code == 400 and "日期格式不正确" in text(bad)
    for query in ("since=0001-01-01", "until=9999-12-31"):  # a change of zone overflowed: 500
        for page in ("/admin/audit", "/admin/consents", "/admin/consents.csv"):
            far = await owner.get(f"{page}?{query}")
            assert far.code == 400 and "超出范围" in text(far), (page, query, far.code)
    assert (await owner.get("/admin/audit?page=99999999999999999999")).code == 200
    # A period ending before it starts, or a version that does not exist: said, as the CLI says it
    # (the pages answered 共 0 条, as if there were no records).
    for page in ("/admin/audit", "/admin/consents", "/admin/consents.csv"):
        reversed_period = await owner.get(f"{page}?since=2026-12-01&until=2026-11-01")
        assert reversed_period.code == 400 and "应早于结束日期" in text(reversed_period), page
    for page in ("/admin/consents", "/admin/consents.csv"):
        typo = await owner.get(f"{page}?version=nope")
        assert typo.code == 404 and "没有版本" in text(typo), (page, typo.code)
    assert (await owner.get("/admin/consents?version=2022-05-22")).code == 200


# -- notices ------------------------------------------------------------------------------


NOTICE = {"category": "service", "title": "系统维护", "body": "今晚 23:00 至 24:00 系统维护。", "important": "default",
          "audience_type": "all", "channel": "auto"}


async def test_an_amendment_notice_is_always_important(svc):
    # Sent as not important, it skipped users who had opted out, though chat tells them
    # that notices of changes to the agreement arrive whatever they opted out of.
    from bot.notice_checks import NoticeRefused

    await followers(svc, "o-a")
    owner = await logged_in(svc, "olga")
    refused = await owner.post("/admin/notices/new", {**NOTICE, "category": "amendment", "important": "no", "action": "send"})
    assert refused.code == 422 and "条款修改通知必须标为重要" in text(refused)
    # Said by the preview too (it showed a normal one, "已退订该类通知的用户会被跳过").
    preview = await owner.post("/admin/notices/new", {**NOTICE, "category": "amendment", "important": "no", "action": "preview"})
    assert preview.code == 422 and "条款修改通知必须标为重要" in text(preview) and "会被跳过" not in text(preview)
    with pytest.raises(NoticeRefused):
        await svc.runtime.broadcasts.send(category="amendment", title="t", body="b", important=False,
                                          audience={"type": "all"}, by="t")
    assert await svc.runtime.db["notices"].count_documents({}) == 0
    notice_id = await svc.runtime.broadcasts.send(category="amendment", title="t", body="b", important=None,
                                                  audience={"type": "all"}, by="t")
    assert (await svc.runtime.notices.get(notice_id)).important


async def test_the_notice_list_pages_and_keeps_unfinished_broadcasts_in_sight(svc, monkeypatch):
    # Only the latest 50 were listed: a day of merchant reviews (a notice each)
    # pushed a paused broadcast off the page, with no way to page or filter.
    from handlers.admin import content

    monkeypatch.setattr(content, "NOTICE_PAGE", 5)
    await followers(svc, "o-a")
    broadcasts = svc.runtime.broadcasts
    paused = await broadcasts.send(category="service", title="暂停的广播", body="b", audience={"type": "all"}, by="t")
    await broadcasts.pause(paused)
    for i in range(7):
        await broadcasts.send(category="admin", title=f"审核结果{i}", body="b", audience={"type": "openids", "openids": ["o-a"]},
                              by="t")
    await svc.runtime.worker(concurrency=2).run_until_idle(30)  # the reviews' notices done, the broadcast paused
    owner = await logged_in(svc, "olga")
    first = text(await owner.get("/admin/notices"))
    assert "未完成的发送" in first and "暂停的广播" in first and "审核结果6" in first and "审核结果1" not in first
    assert "page=2" in first
    second = text(await owner.get("/admin/notices?page=2"))
    assert "审核结果1" in second and "审核结果0" in second and "未完成的发送" not in second
    service_only = text(await owner.get("/admin/notices?category=service"))
    assert "暂停的广播" in service_only and "审核结果" not in service_only
    assert (await owner.get("/admin/notices?category=nope")).code == 400
    assert "没有更多通知" in text(await owner.get("/admin/notices?page=99"))


async def followers(svc, *openids):
    for openid in openids:
        await svc.runtime.followers.subscribed(openid, svc.runtime.clock())


async def test_notice_preview_draft_send_progress_and_control(svc, emulator):
    await followers(svc, "o-a", "o-b", "o-c")
    editor = await logged_in(svc, "eddie")
    preview = await editor.post("/admin/notices/new", {**NOTICE, "action": "preview"})
    assert preview.code == 200
    body = text(preview)
    assert "【服务公告】系统维护" in body and "受众：<b>3</b> 人" in body and "没有记录" not in body
    # Listed openids nobody here has are named: a mistyped one was counted as reached.
    listed = await editor.post("/admin/notices/new", {**NOTICE, "audience_type": "openids", "openids": "o-a\no-typo",
                                                      "action": "preview"})
    body = text(listed)
    assert "受众：<b>2</b> 人" in body and "其中 1 个 openid 在系统中没有记录" in body and "o-typo" in body, body
    # A list too long for the form is said on the form, with what was typed (a bare error page lost it).
    huge = "\n".join(f"o-{i:026d}" for i in range(20_000))
    too_long = await editor.post("/admin/notices/new", {**NOTICE, "audience_type": "openids", "openids": huge,
                                                        "action": "preview"})
    body = text(too_long)
    assert too_long.code == 400 and "openid 名单过长：20,000 行" in body and "--audience openids:" in body, body[:500]
    assert "今晚 23:00 至 24:00 系统维护。" in body and 'name="title"' in body
    # So is a title or body too long, the notice's own limit (a bare 400 page of the field's name lost the text).
    long_title = await editor.post("/admin/notices/new", {**NOTICE, "title": "长" * 300, "action": "preview"})
    body = text(long_title)
    assert long_title.code == 422 and "标题最多 64 个字" in body and "今晚 23:00 至 24:00 系统维护。" in body, body[:300]
    bogus = await editor.post("/admin/notices/new", {**NOTICE, "audience_type": "bogus", "action": "preview"})
    assert "曾同意协议的用户" in text(bogus)  # every choice the form offers
    # An editor cannot send, but can save a draft that the owner sends.
    refused = await editor.post("/admin/notices/new", {**NOTICE, "action": "send"})
    assert refused.code == 403 and "所有者" in text(refused)
    saved = await editor.post("/admin/notices/new", {**NOTICE, "action": "save"})
    assert saved.code == 303
    draft_id = re.search(r"draft=([0-9a-f]{24})", saved.headers["Location"]).group(1)
    # Drafts can be reopened, changed and discarded.
    draft_page = text(await editor.get(f"/admin/notices/new?draft={draft_id}"))
    assert "今晚 23:00 至 24:00 系统维护。" in draft_page
    other = await editor.post("/admin/notices/new", {**NOTICE, "title": "作废的草稿", "action": "save"})
    other_id = re.search(r"draft=([0-9a-f]{24})", other.headers["Location"]).group(1)
    assert (await editor.post(f"/admin/drafts/{other_id}/discard", {"kind": "notice"})).code == 303
    assert (await svc.runtime.console.drafts.get(other_id)).status == "discarded"
    closed = await editor.post("/admin/notices/new", {**NOTICE, "action": "save", "draft": other_id})
    assert closed.code == 404 and "已发布或已放弃" in text(closed)
    owner = await logged_in(svc, "olga")
    listing = text(await owner.get("/admin/notices"))
    assert "系统维护" in listing and "作废的草稿" not in listing
    sent = await owner.post("/admin/notices/new", {**NOTICE, "action": "send", "draft": draft_id})
    assert sent.code == 303, text(sent)
    notice_id = re.search(r"/admin/notices/([0-9a-f]{24})", sent.headers["Location"]).group(1)
    assert (await svc.runtime.console.drafts.get(draft_id)).status == "published"
    # No worker runs (as with `serve --no-worker` alone): the page says so, not only 排队中.
    waiting = text(await owner.get(f"/admin/notices/{notice_id}"))
    assert re.search(r'data-show="waiting_for_worker"\s*>' + re.escape(NO_WORKER), waiting)
    assert json.loads((await owner.get(f"/admin/notices/{notice_id}/progress")).body)["waiting_for_worker"] is True
    await svc.runtime.worker(concurrency=2).run_until_idle(20)
    progress = json.loads((await owner.get(f"/admin/notices/{notice_id}/progress")).body)
    assert progress["status"] == "done" and progress["sent"] == 3 and progress["total"] == 3
    assert progress["waiting_for_worker"] is False
    missing = await owner.get(f"/admin/notices/{'0' * 24}/progress")  # the page's script reads JSON, errors too
    assert missing.code == 404 and missing.headers["Content-Type"].startswith("application/json")
    assert json.loads(missing.body)["error"]["code"] == "notice_not_found"
    page = text(await owner.get(f"/admin/notices/{notice_id}"))
    assert "发送报告" in page and "已完成" in page
    assert len(await emulator.messages()) == 3
    sent_entry = (await svc.runtime.audit.recent(action="notice_send"))[0]
    assert sent_entry.actor == "olga" and sent_entry.after["audience_size"] == 3
    # A finished job cannot be paused: a clear 409.
    late = await owner.post(f"/admin/notices/{notice_id}/pause")
    assert late.code == 409 and "不能暂停" in text(late)


async def test_a_notice_whose_planning_fails_is_audited_all_the_same(svc, monkeypatch):
    # The console audited after planning: a database failure then left a
    # notice that is still sent (upkeep plans it again) and no audit entry.
    from pymongo.errors import AutoReconnect

    await followers(svc, "o-a", "o-b")

    async def cut_off(*args, **kwargs):
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(svc.runtime.deliveries, "create_pending", cut_off)
    owner = await logged_in(svc, "olga")
    failed = await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})
    assert failed.code == 503
    [notice] = await svc.runtime.console.stats.recent_notices()
    [entry] = await svc.runtime.audit.recent(action="notice_send")
    assert (entry.target, entry.actor, entry.after["audience_size"]) == (notice.id, "olga", 2)


async def test_a_compose_form_submitted_twice_sends_once(svc):
    # Two POSTs of one form (a double click, a retry) created two notices.
    await followers(svc, "o-a", "o-b")
    owner = await logged_in(svc, "olga")
    page = text(await owner.get("/admin/notices/new"))
    token = re.search(r'name="submit_token" value="([^"]+)"', page).group(1)
    form = {**NOTICE, "action": "send", "submit_token": token}
    first, second = await asyncio.gather(owner.post("/admin/notices/new", form), owner.post("/admin/notices/new", form))
    assert (first.code, second.code) == (303, 303)  # the second waits and is shown the same notice
    assert first.headers["Location"] == second.headers["Location"]
    assert await svc.runtime.db["notices"].count_documents({}) == 1
    again = await owner.post("/admin/notices/new", form)  # later: shown the notice it sent
    assert again.code == 303 and again.headers["Location"] == (first if first.code == 303 else second).headers["Location"]
    assert await svc.runtime.db["notices"].count_documents({}) == 1
    # A fresh form is a new notice.
    fresh = re.search(r'name="submit_token" value="([^"]+)"', text(await owner.get("/admin/notices/new"))).group(1)
    assert fresh != token


async def test_a_malformed_or_empty_compose_is_refused_not_guessed(svc):
    await followers(svc, "o-a")
    owner = await logged_in(svc, "olga")
    bogus = await owner.post("/admin/notices/new", {**NOTICE, "audience_type": "merchants", "statuses": "bogus",
                                                     "action": "send"})
    assert bogus.code == 422 and "未知的商家状态" in text(bogus)  # the form's fault, not a refused action
    maybe = await owner.post("/admin/notices/new", {**NOTICE, "important": "maybe", "action": "send"})
    assert maybe.code == 422 and "重要" in text(maybe)
    odd = await owner.post("/admin/notices/new", {**NOTICE, "audience_type": "openids", "openids": "o-a\nnot an openid",
                                                   "action": "send"})
    assert odd.code == 422 and "openid 列表中有 1 行不是有效的 openid" in text(odd) and "第 2 行" in text(odd)
    # Merchants that are suspended: there are none. Nothing is sent to nobody.
    nobody = await owner.post("/admin/notices/new", {**NOTICE, "audience_type": "merchants", "statuses": "suspended",
                                                      "action": "send"})
    assert nobody.code == 409 and "没有符合条件的接收者" in text(nobody)
    assert await svc.runtime.db["notices"].count_documents({}) == 0
    assert (await svc.runtime.audit.recent(action="notice_send")) == []


async def test_delivery_report_lists_failures_by_wechat_code(svc, emulator):
    await followers(svc, "o-a", "o-b", "o-c")
    await svc.runtime.preferences.set("o-c", "service", False)
    await AsyncHTTPClient().fetch(emulator.base + "/_emulator/faults", method="POST", body=json.dumps(
        {"path": "/cgi-bin/message/custom/send", "errcode": 43004, "times": 1}))
    owner = await logged_in(svc, "olga")
    sent = await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})
    notice_id = sent.headers["Location"].split("/")[3]
    await svc.runtime.worker(concurrency=1).run_until_idle(20)
    progress = json.loads((await owner.get(f"/admin/notices/{notice_id}/progress")).body)
    assert (progress["sent"], progress["failed"], progress["skipped"]) == (1, 1, 1)
    assert progress["failed_by_code"] == {"43004": 1} and progress["failed_labels"] == {"43004": "用户未关注公众号"}
    page = text(await owner.get(f"/admin/notices/{notice_id}"))
    assert "43004" in page and "用户未关注公众号" in page and "用户已退订该类通知" in page
    # A code no list here has: said so (the cell was empty).
    await AsyncHTTPClient().fetch(emulator.base + "/_emulator/faults", method="POST", body=json.dumps(
        {"path": "/cgi-bin/message/custom/send", "errcode": 99999, "times": 1}))
    again = (await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})).headers["Location"].split("/")[3]
    await svc.runtime.worker(concurrency=1).run_until_idle(20)
    progress = json.loads((await owner.get(f"/admin/notices/{again}/progress")).body)
    assert progress["failed_labels"] == {"99999": "未收录的微信错误码：请查阅微信公众平台的全局返回码说明"}, progress
    assert "未收录的微信错误码" in text(await owner.get(f"/admin/notices/{again}"))


async def test_two_admins_saving_one_draft_the_later_stale_form_is_refused(svc):
    # Both opened the draft; the second save from the older form silently replaced the first.
    eddie, olga = await logged_in(svc, "eddie"), await logged_in(svc, "olga")
    saved = await eddie.post("/admin/notices/new", {**NOTICE, "action": "save"})
    draft_id = re.search(r"draft=([0-9a-f]{24})", saved.headers["Location"]).group(1)

    def seen_in(page) -> str:
        return re.search(r'name="seen" value="([^"]*)"', text(page)).group(1)

    eddie_seen = seen_in(await eddie.get(f"/admin/notices/new?draft={draft_id}"))
    olga_seen = seen_in(await olga.get(f"/admin/notices/new?draft={draft_id}"))
    assert eddie_seen and eddie_seen == olga_seen
    first = await olga.post("/admin/notices/new", {**NOTICE, "title": "A 的修改", "action": "save", "draft": draft_id,
                                                   "seen": olga_seen})
    assert first.code == 303
    stale = await eddie.post("/admin/notices/new", {**NOTICE, "title": "B 的修改", "action": "save", "draft": draft_id,
                                                    "seen": eddie_seen})
    assert stale.code == 409 and "olga" in text(stale) and "本次未保存" in text(stale)
    assert (await svc.runtime.console.drafts.get(draft_id)).fields["title"] == "A 的修改"
    # Reopened, the draft saves again.
    fresh = seen_in(await eddie.get(f"/admin/notices/new?draft={draft_id}"))
    again = await eddie.post("/admin/notices/new", {**NOTICE, "title": "B 的修改", "action": "save", "draft": draft_id,
                                                    "seen": fresh})
    assert again.code == 303 and (await svc.runtime.console.drafts.get(draft_id)).fields["title"] == "B 的修改"
    # Sending from a form opened before that save sends nothing: the text sent would not be the draft's.
    stale_send = await olga.post("/admin/notices/new", {**NOTICE, "title": "A 的修改", "action": "send",
                                                        "draft": draft_id, "seen": fresh})
    assert stale_send.code == 409 and "本次未发送" in text(stale_send)
    assert await svc.runtime.console.recent_notices(CLI) == []
    assert (await svc.runtime.console.drafts.get(draft_id)).status == "draft"


async def test_pause_resume_cancel(svc):
    await followers(svc, "o-a", "o-b")
    owner = await logged_in(svc, "olga")
    sent = await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})
    notice_id = sent.headers["Location"].split("/")[3].split("?")[0]
    assert (await owner.post(f"/admin/notices/{notice_id}/pause")).code == 303
    assert (await svc.runtime.notices.get(notice_id)).status == "paused"
    assert (await owner.post(f"/admin/notices/{notice_id}/resume")).code == 303
    assert (await owner.post(f"/admin/notices/{notice_id}/cancel")).code == 303
    progress = await svc.runtime.broadcasts.progress(notice_id)
    assert progress.notice.status == "cancelled" and progress.skipped == 2
    actions = [e.action for e in await svc.runtime.audit.recent(actor="olga")]
    assert {"notice_pause", "notice_resume", "notice_cancel"} <= set(actions)


async def test_the_audit_filter_cli_takes_in_every_cli_name(svc, backing, tmp_path):
    # The CLI records ``--by NAME`` as cli:NAME; filtering by 操作人 cli found only
    # the entries made without --by. cli:NAME stays exact, and a name is no prefix.
    from tests.test_cli import clean_env

    paper = tmp_path / "paper.jsonl"
    paper.write_text(json.dumps({"openid": "o-paper", "version": "2022-05-22", "action": "accept",
                                 "at": "2024-03-01T10:00:00+08:00"}) + "\n", encoding="utf-8")
    imported = subprocess.run(
        [str(BIN), "consents", "import", str(paper), "--by", "ann"], capture_output=True, text=True, timeout=60,
        env=clean_env(MONGODB_URI=backing.database_uri(svc.runtime.db.name), REDIS_URL=backing.redis_url,
                      DATA_DIR=str(tmp_path)))
    assert imported.returncode == 0, imported.stderr
    await svc.runtime.audit.record("cli:bob", "notice_send", "n-bob")
    await svc.runtime.audit.record("cxi:zed", "notice_send", "n-zed")  # "c.i" must not match it as a regex would
    await svc.runtime.admins.create("clinton", "owner", PASSWORD, by=CLI)
    await logged_in(svc, "clinton")  # his log-in: actor "clinton", not a cli:* one
    owner = await logged_in(svc, "olga")

    async def actors(query: str) -> set[str]:
        export = await owner.get(f"/admin/audit.csv?{query}")
        assert export.code == 200, text(export)
        return {row["管理员"] for row in csv.DictReader(io.StringIO(export.body.decode("utf-8-sig")))}

    assert await actors("actor=cli") == {"cli", "cli:ann", "cli:bob"}
    assert await actors("actor=cli&action=consents_import") == {"cli:ann"}
    assert await actors("actor=cli:ann") == {"cli:ann"}
    assert await actors("actor=clinton") == {"clinton"}
    assert await actors("actor=c.i") == set()
    page = text(await owner.get("/admin/audit?actor=cli"))
    assert "cli:ann" in page and "cli:bob" in page and "n-zed" not in page


async def test_the_amendment_notice_of_a_version_cannot_be_cancelled_nor_paused(svc):
    # The agreement promises notice of every change to whoever accepted a version;
    # paused, the notice stayed so past the version's effective date, nobody told.
    from tests.test_consent_chat import amendment

    await followers(svc, "o-a")
    await svc.wechat.ask("o-a", "同意")
    _version, notice_id = await svc.runtime.terms.publish(amendment("2026-12-02"), reason="legal",
                                                          effective_at=None, by="t")
    owner = await logged_in(svc, "olga")
    page = text(await owner.get(f"/admin/notices/{notice_id}"))
    assert "不能暂停或取消" in page and f"/admin/notices/{notice_id}/cancel" not in page
    assert f"/admin/notices/{notice_id}/pause" not in page
    for action in ("cancel", "pause"):
        refused = await owner.post(f"/admin/notices/{notice_id}/{action}")
        assert refused.code == 409 and "条款修改通知" in text(refused) and "尚未生效的可以撤回" in text(refused)
    assert (await svc.runtime.notices.get(notice_id)).status in ("queued", "sending")
    # Paused by WeChat (its quota), it is resumed as any other.
    assert await svc.runtime.notices.transition(notice_id, ("queued", "sending"), "paused", svc.runtime.clock(), by="quota")
    assert f"/admin/notices/{notice_id}/resume" in text(await owner.get(f"/admin/notices/{notice_id}"))
    assert (await owner.post(f"/admin/notices/{notice_id}/resume")).code == 303
    # Once done, cancelling is refused for that, without a hint to pause (refused too).
    await svc.runtime.worker(concurrency=2).run_until_idle(30)
    assert (await svc.runtime.notices.get(notice_id)).status == "done"
    late = await owner.post(f"/admin/notices/{notice_id}/cancel")
    assert late.code == 409 and "已完成" in text(late) and "暂停" not in text(late), text(late)


async def test_a_repeated_notice_control_is_said_not_refused(svc):
    # A second tab's 暂停 on a paused notice was a 409 error page; the same rule
    # as the CLI's (bot.notices): said on the notice's page, nothing audited again.
    await followers(svc, "o-a", "o-b")
    notice_id = await svc.runtime.broadcasts.send(category="service", title="维护", body="b", audience={"type": "all"}, by="t")
    owner = await logged_in(svc, "olga")
    assert (await owner.post(f"/admin/notices/{notice_id}/pause")).code == 303
    again = await owner.post(f"/admin/notices/{notice_id}/pause")
    assert again.code == 303 and again.headers["Location"] == f"/admin/notices/{notice_id}", text(again)
    assert f"通知 {notice_id} 已处于暂停状态，无需再次暂停。" in text(await owner.get(again.headers["Location"]))
    assert len(await svc.runtime.audit.recent(action="notice_pause")) == 1
    assert (await owner.post(f"/admin/notices/{notice_id}/cancel")).code == 303
    twice = await owner.post(f"/admin/notices/{notice_id}/cancel")
    assert twice.code == 303 and "已取消，无需再次取消" in text(await owner.get(twice.headers["Location"]))
    refused = await owner.post(f"/admin/notices/{notice_id}/resume")
    assert refused.code == 409 and "已取消，不能继续发送" in text(refused)


async def test_large_audience_needs_confirmation(svc, monkeypatch):
    monkeypatch.setattr(console_module, "LARGE_AUDIENCE", 2)
    await followers(svc, "o-a", "o-b", "o-c")
    owner = await logged_in(svc, "olga")
    response = await owner.post("/admin/notices/new", {**NOTICE, "action": "send"})
    assert response.code == 409
    assert "请在确认框中填写人数 3" in text(response) and 'name="confirm_size"' in text(response)
    wrong = await owner.post("/admin/notices/new", {**NOTICE, "action": "send", "confirm_size": "2"})
    assert wrong.code == 409 and "您填写的人数 2 与当前受众人数不符" in text(wrong)
    odd = await owner.post("/admin/notices/new", {**NOTICE, "action": "send", "confirm_size": "፩"})
    assert odd.code == 409  # a digit to str.isdigit(), no number to int()
    assert not await svc.runtime.console.stats.recent_notices()
    ok = await owner.post("/admin/notices/new", {**NOTICE, "action": "send", "confirm_size": "3"})
    assert ok.code == 303


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"title": " "}, "不能为空"),
        ({"category": "gossip"}, "未知的通知类别"),
        ({"audience_type": "openids", "openids": ""}, "openid 列表不能为空"),
        ({"audience_type": "everyone"}, "受众"),
    ],
)
async def test_bad_notice_forms_get_a_message(svc, changes, needle):
    owner = await logged_in(svc, "olga")
    response = await owner.post("/admin/notices/new", {**NOTICE, **changes, "action": "send"})
    assert 400 <= response.code < 500
    assert needle in text(response) and "Traceback" not in text(response)
    assert not await svc.runtime.console.stats.recent_notices()


# -- agreement ------------------------------------------------------------------------


async def draft_toml(svc, version: str = "2026-12-20") -> str:
    current = await svc.runtime.terms.current()
    toml = current.to_toml()
    toml = re.sub(r'^version = ".*"$', f'version = "{version}"', toml, count=1, flags=re.M)
    toml = re.sub(r"^changes = \[.*?\]$", 'changes = ["第 4 节：补充一句"]', toml, count=1, flags=re.M | re.S)
    first_clause = current.sections[3].clauses[0]
    return toml.replace(first_clause, first_clause + "（补充说明。）", 1)


async def test_the_console_says_before_publishing_what_publishing_would_refuse(svc):
    # 预览修改 showed the diff alone; only 发布 met the 7-day rule. An unknown action was ignored silently.
    owner = await logged_in(svc, "olga")
    toml = await draft_toml(svc)
    soon = await owner.post("/admin/terms/new", {"toml": toml, "reason": "routine", "effective_at": "now",
                                                  "action": "preview"})
    assert soon.code == 200 and "发布将被拒绝" in text(soon) and "7 天" in text(soon) and "补充说明" in text(soon)
    fine = await owner.post("/admin/terms/new", {"toml": toml, "reason": "legal", "effective_at": "now",
                                                  "action": "preview"})
    assert fine.code == 200 and "发布将被拒绝" not in text(fine)
    for path in ("/admin/terms/new", "/admin/notices/new"):
        odd = await owner.post(path, {"toml": toml, "title": "T", "body": "B", "action": "draft"})
        assert odd.code == 400 and "未知的操作：draft" in text(odd), path
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22"]
    # Every version to come is on the overview (it named the next one only).
    from bot.agreement import CHINA

    for version, days in (("2026-12-30", 8), ("2026-12-31", 9)):
        toml = (await draft_toml(svc, version)).replace("第 4 节：补充一句", f"第 4 节：补充一句（{version}）")
        toml = toml.replace("（补充说明。）", f"（补充说明 {version}。）")
        if version == "2026-12-31":  # drafted on the one before, not undoing it
            previous = await svc.runtime.terms.get("2026-12-30")
            toml = previous.to_toml().replace('version = "2026-12-30"', 'version = "2026-12-31"').replace(
                "第 4 节：补充一句（2026-12-30）", "第 4 节：补充一句（2026-12-31）").replace(
                "（补充说明 2026-12-30。）", "（补充说明 2026-12-31。）")
        at = (dt.datetime.now(CHINA) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")
        published = await owner.post("/admin/terms/new", {"toml": toml, "reason": "routine", "effective_at": at,
                                                          "action": "publish"})
        assert published.code == 303, text(published)
    board = text(await owner.get("/admin"))
    assert "版本 2026-12-30 将于" in board and "版本 2026-12-31 将于" in board


async def test_a_version_draft_published_from_elsewhere_leaves_the_draft_list(svc):
    # An editor's draft stayed under 草稿 after the owner published that version from
    # another form (or the CLI): it can no longer be published.
    toml = await draft_toml(svc)
    editor = await logged_in(svc, "eddie")
    saved = await editor.post("/admin/terms/new", {"toml": toml, "reason": "routine", "effective_at": "", "action": "save"})
    assert saved.code == 303
    assert len(await svc.runtime.console.open_drafts(CLI, "version")) == 1
    draft_id = re.search(r"draft=([0-9a-f]{24})", saved.headers["Location"]).group(1)
    assert f"draft={draft_id}" in text(await editor.get("/admin/terms"))
    # A viewer sees that it exists, with no link to a form it may not open (403).
    viewer = text(await (await logged_in(svc, "vera")).get("/admin/terms"))
    assert "2026-12-20" in viewer.split("草稿", 1)[1] and f"draft={draft_id}" not in viewer
    from bot.agreement import parse_toml

    await svc.runtime.terms.publish(parse_toml(toml), reason="legal", effective_at=None, by="cli")
    assert await svc.runtime.console.open_drafts(CLI, "version") == []
    assert f"draft={draft_id}" not in text(await editor.get("/admin/terms"))


async def test_publishing_follows_the_shared_seven_day_rule(svc):
    toml = await draft_toml(svc)
    owner = await logged_in(svc, "olga")
    form = await owner.get("/admin/terms/new")
    assert form.code == 200 and "7 天" in text(form) and "最晚为发布后 366 天内" in text(form)
    now = svc.runtime.clock()
    soon = now.astimezone(console_module.CHINA) + __import__("datetime").timedelta(days=3)
    refused = await owner.post("/admin/terms/new", {"toml": toml, "reason": "routine",
                                                    "effective_at": soon.strftime("%Y-%m-%d %H:%M"), "action": "publish"})
    assert refused.code == 422 and "一周（7 天）" in text(refused)
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22"]
    # An editor drafts; publishing is the owner's.
    editor = await logged_in(svc, "eddie")
    # What a draft changes is shown before anything is saved or published.
    preview = await editor.post("/admin/terms/new", {"toml": toml, "reason": "routine", "effective_at": "", "action": "preview"})
    assert preview.code == 200 and "修改预览：2026-12-20 相对于 2022-05-22" in text(preview)
    assert "<ins>（补充说明。）</ins>" in text(preview) and "第 4 节：补充一句" in text(preview)
    assert "补充说明" in text(preview).split("<textarea", 1)[1]  # the form keeps what was typed
    assert await svc.runtime.console.open_drafts(CLI, "version") == []
    assert "示例问题" not in text(preview)  # 4.1's anchor is kept
    reworded = toml.replace("我们可能会增加或删除功能", "我们可能会增加（例如直播带货）或删除功能")
    dropping = await editor.post("/admin/terms/new", {"toml": reworded, "reason": "routine", "effective_at": "",
                                                      "action": "preview"})
    assert "问答将不再使用条款 5.1 的" in text(dropping), text(dropping)
    assert "changes-unnamed" not in text(preview)  # 第 4 节 names what it changed
    assert "第5.1条有修改，但修改摘要（changes）没有提到" in text(dropping)  # 5.1 is not in it
    unreadable = await editor.post("/admin/terms/new", {"toml": "version = ", "reason": "routine", "action": "preview"})
    assert unreadable.code == 422 and "不是有效的 TOML" in text(unreadable)
    later = now.astimezone(console_module.CHINA) + __import__("datetime").timedelta(days=8)
    fields = {"toml": toml, "reason": "routine", "effective_at": later.strftime("%Y-%m-%d %H:%M")}
    saved = await editor.post("/admin/terms/new", {**fields, "action": "save"})
    assert saved.code == 303
    draft_id = re.search(r"draft=([0-9a-f]{24})", saved.headers["Location"]).group(1)
    assert (await editor.post("/admin/terms/new", {**fields, "action": "publish", "draft": draft_id})).code == 403
    # The owner's form from before the editor saved again publishes nothing (the editor's change was lost).
    opened = re.search(r'name="seen" value="([^"]*)"', text(await owner.get(f"/admin/terms/new?draft={draft_id}"))).group(1)
    resaved = await editor.post("/admin/terms/new", {**fields, "action": "save", "draft": draft_id, "seen": opened})
    assert resaved.code == 303
    stale = await owner.post("/admin/terms/new", {**fields, "action": "publish", "draft": draft_id, "seen": opened})
    assert stale.code == 409 and "本次未发布" in text(stale)
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22"]
    published = await owner.post("/admin/terms/new", {**fields, "action": "publish", "draft": draft_id})
    assert published.code == 303, text(published)
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22", "2026-12-20"]
    entry = (await svc.runtime.audit.recent(action="version_publish"))[0]
    assert entry.after["version"] == "2026-12-20" and entry.after["reason"] == "routine"
    # In Beijing time, as typed and as the rest of the page shows (it read "… 15:59:00+00:00").
    assert entry.after["effective_at"] == later.strftime("%Y-%m-%dT%H:%M:00+08:00"), entry.after
    listing = text(await owner.get("/admin/terms"))
    assert "待生效" in listing and "第 4 节：补充一句" in listing
    diff = await owner.get("/admin/terms/diff?old=2022-05-22&new=2026-12-20")
    assert diff.code == 200 and "<ins>（补充说明。）</ins>" in text(diff)
    bad = await owner.post("/admin/terms/new", {"toml": "version = ", "reason": "routine", "effective_at": "now", "action": "save"})
    assert bad.code == 422
    # Withdrawn from its page (only the CLI could), the owner's; the reason is required.
    upcoming = text(await owner.get("/admin/terms/v/2026-12-20"))
    assert "撤回此版本" in upcoming
    assert "撤回此版本" not in text(await editor.get("/admin/terms/v/2026-12-20"))
    assert (await editor.post("/admin/terms/v/2026-12-20", {"reason": "x"})).code == 403
    no_reason = await owner.post("/admin/terms/v/2026-12-20", {"reason": " "})
    assert no_reason.code == 422 and "撤回的原因" in text(no_reason)
    withdrawn = await owner.post("/admin/terms/v/2026-12-20", {"reason": "与法律修订合并"})
    assert withdrawn.code == 303 and withdrawn.headers["Location"].startswith("/admin/notices/")
    # Sent again (a second tab, a double click): a conflict saying when it was withdrawn (it was a 404).
    twice = await owner.post("/admin/terms/v/2026-12-20", {"reason": "再撤一次"})
    assert twice.code == 409 and "已于" in text(twice) and "无需再次撤回" in text(twice), (twice.code, text(twice))
    in_force = await owner.post("/admin/terms/v/2022-05-22", {"reason": "x"})
    assert in_force.code == 422 and "已生效的版本不能撤回" in text(in_force)
    assert "撤回此版本" not in text(await owner.get("/admin/terms/v/2022-05-22"))
    # A withdrawn version stays listed, marked (it vanished from the console; `terms list` kept it).
    listing = text(await owner.get("/admin/terms"))
    assert "2026-12-20" in listing and "已撤回" in listing
    # ... and its link opens it (it was a 404), to read, compare or draft from.
    page = await owner.get("/admin/terms/v/2026-12-20")
    assert page.code == 200 and "已撤回" in text(page) and "与法律修订合并" in text(page)
    compared = await owner.get("/admin/terms/diff?old=2022-05-22&new=2026-12-20")
    # Selected in the lists as it is compared (only versions in effect were listed: 比较 compared others).
    assert compared.code == 200 and '<option value="2026-12-20" selected>2026-12-20（已撤回）</option>' in text(compared)
    from_withdrawn = text(await owner.get("/admin/terms/new?from=2026-12-20"))
    assert "（补充说明。）" in from_withdrawn and "较早的版本" not in from_withdrawn  # it undoes nothing
    # Chat says it was withdrawn, and shows what everyone was told of (it showed nothing but that).
    read = await svc.wechat.ask("o-withdrawn", "条款 2026-12-20 4")
    assert read.startswith("【已撤回】版本 2026-12-20 已于") and "与法律修订合并" in read and "（补充说明。）" in read, read
    assert (await svc.wechat.ask("o-withdrawn", "条款 2026-12-20")).startswith("【已撤回】")
    assert "没有版本为 2099-01-01" in await svc.wechat.ask("o-withdrawn", "条款 2099-01-01 4")


async def test_publishing_in_the_console_shows_the_warnings_the_cli_prints_first(svc):
    # Published at once (preview not pressed), a change its summary did not name
    # reached users unannounced: the CLI warned, the console said nothing.
    toml = await draft_toml(svc)
    reworded = toml.replace("我们可能会增加或删除功能", "我们可能会增加（例如直播带货）或删除功能")  # 5.1, not named
    owner = await logged_in(svc, "olga")
    # Taking effect at once, a change not named is refused outright: the legal exception is for named changes.
    at_once = await owner.post("/admin/terms/new", {"toml": reworded, "reason": "legal", "effective_at": "now",
                                                    "action": "publish"})
    assert at_once.code == 422 and "第5.1条有修改却没有写在 changes 中" in text(at_once), text(at_once)
    from bot.agreement import CHINA

    def in_days(days: int) -> str:
        return (dt.datetime.now(CHINA) + dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")

    fields = {"toml": reworded, "reason": "routine", "effective_at": in_days(8), "action": "publish"}
    asked = await owner.post("/admin/terms/new", fields)
    page = text(asked)
    assert asked.code == 409 and "发布前请核对" in page, page
    assert "第5.1条有修改，但修改摘要（changes）没有提到" in page and "问答将不再使用条款 5.1 的" in page
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22"]
    key = re.search(r'name="acknowledged" value="([0-9a-f]+)"', page).group(1)
    # Confirmed for another text (edited since): asked again, for what it says now.
    edited = await owner.post("/admin/terms/new", {**fields, "toml": reworded.replace("直播带货", "短视频"),
                                                   "acknowledged": key})
    assert edited.code == 409 and "短视频" in text(edited)
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22"]
    published = await owner.post("/admin/terms/new", {**fields, "acknowledged": key})
    assert published.code == 303, text(published)
    assert [v.version for v in await svc.runtime.terms.versions()] == ["2022-05-22", "2026-12-20"]
    # A version with nothing to warn of is published at once, as before.
    # (From the version just published, pending: a draft of the one in force would undo its 5.1.)
    clean = (reworded.replace('version = "2026-12-20"', 'version = "2026-12-21"')
             .replace("第 4 节：补充一句", "第 4 节：再补充一句").replace("（补充说明。）", "（补充说明，再补充。）"))
    # Sent twice at once (a double click): one version, one notice, and both answered as published
    # (the second said 已发布的版本不可修改).
    later = {**fields, "toml": clean, "effective_at": in_days(9)}
    first, second = await asyncio.gather(owner.post("/admin/terms/new", later), owner.post("/admin/terms/new", later))
    assert (first.code, second.code) == (303, 303), (text(first), text(second))
    assert first.headers["Location"] == second.headers["Location"]
    assert [v.version for v in await svc.runtime.terms.versions()][-1] == "2026-12-21"
    assert await svc.runtime.db["notices"].count_documents({"category": "amendment", "version": "2026-12-21"}) == 1


async def test_a_new_draft_starts_from_the_latest_published_version(make_service, clock, tmp_path):
    # With two versions pending, the form started from the nearer one: publishing
    # an edit of it would have undone the later one's changes.
    import dataclasses
    import datetime as dt

    svc = await make_service(clock=clock, data_dir=tmp_path / "data")
    await make_admins(svc)
    owner = await logged_in(svc, "olga")
    terms = svc.runtime.terms
    for version, days, extra in (("2026-12-20", 8, "（第一次补充。）"), ("2026-12-22", 10, "（第二次补充。）")):
        latest = (await terms.versions())[-1]
        first = latest.sections[0]
        section = dataclasses.replace(first, clauses=(first.clauses[0] + extra, *first.clauses[1:]))
        draft = dataclasses.replace(latest, version=version, changes=(f"第1节{extra}",),
                                    sections=(section, *latest.sections[1:]))
        await terms.publish(draft, reason="routine", effective_at=clock.now + dt.timedelta(days=days), by="t")
    form = text(await owner.get("/admin/terms/new"))
    assert 'version = &quot;2026-12-22&quot;' in form or 'version = "2026-12-22"' in form
    assert "（第二次补充。）" in form and "（第一次补充。）" in form and "较早的版本" not in form
    # From an earlier one, on purpose: the form says at once what publishing it will need.
    earlier = text(await owner.get("/admin/terms/new?from=2026-12-20"))
    assert "以较早的版本 2026-12-20 为基础起草，最新版本是 2026-12-22" in earlier and "逐条写明" in earlier


# -- merchants ---------------------------------------------------------------------------


async def register(svc, openid: str, name: str) -> None:
    """A merchant who accepted the agreement and registered (as chat and the API require)."""
    from bot.consent import Origin

    await svc.runtime.consents.accept(openid, Origin("official_account"))
    await svc.runtime.merchants.save_profile(
        openid, {"entity_type": "individual", "entity_name": name, "contact_name": name, "phone": "13812345678"}
    )


async def test_a_credit_code_on_another_account_is_pointed_out_for_review(svc):
    # Two openids registered one company's code under different names; nothing told the reviewer.
    company = {"entity_type": "enterprise", "credit_code": "91450100MA5K00000B", "contact_name": "王五",
               "phone": "13812345678"}
    from bot.validation import credit_code_check_char
    company["credit_code"] = company["credit_code"][:17] + credit_code_check_char(company["credit_code"][:17])
    await svc.runtime.merchants.save_profile("o-real", {**company, "entity_name": "南宁市真实贸易有限公司"})
    await svc.runtime.merchants.save_profile("o-copy", {**company, "entity_name": "南宁市冒名贸易有限公司"})
    await register(svc, "o-alone", "张三小店")
    editor = await logged_in(svc, "eddie")
    page = text(await editor.get("/admin/merchants/o-copy"))
    owner = await logged_in(svc, "olga")
    assert "如因违规终止服务，请先暂停再注销" in text(await owner.get("/admin/merchants/o-copy"))  # what closing does
    assert "也登记在另外 1 个账户上" in page and "南宁市真实贸易有限公司" in page and "/admin/merchants/o-real" in page
    assert "也登记在另外" not in text(await editor.get("/admin/merchants/o-alone"))
    # Many of them: all counted (it said 20, the first 20 it listed), 20 listed.
    for n in range(24):
        await svc.runtime.merchants.save_profile(f"o-many{n:02d}", {**company, "entity_name": f"南宁市冒名{n:02d}贸易有限公司"})
    page = text(await editor.get("/admin/merchants/o-copy"))
    assert "也登记在另外 25 个账户上" in page and page.count("/admin/merchants/o-many") == 20 and "）等。" in page, page


async def test_the_merchant_list_pages_and_puts_the_longest_waiting_review_first(svc, monkeypatch):
    # It showed the first 200 by openid with no page 2: the rest of the review queue out of reach.
    from handlers.admin import people

    monkeypatch.setattr(people, "PAGE", 2)
    for openid, name in (("o-z", "最早提交"), ("o-b", "第二个"), ("o-a", "最晚提交")):
        await register(svc, openid, name)
        await asyncio.sleep(0.01)
    editor = await logged_in(svc, "eddie")
    first = text(await editor.get("/admin/merchants?status=pending_review"))
    assert "第 1 / 2 页" in first and first.index("最早提交") < first.index("第二个") and "最晚提交" not in first
    second = text(await editor.get("/admin/merchants?status=pending_review&page=2"))
    assert "最晚提交" in second and "最早提交" not in second
    assert "最早提交" in text(await editor.get("/admin/merchants?page=99"))  # by openid; past the end: the last page


async def test_a_merchant_who_declined_the_agreement_is_not_approved_and_the_page_says_why(svc):
    # Approved, a merchant who had declined was told 现在可以使用商家服务, while chat and the
    # API refused them for want of consent; nothing on the page showed it.
    from bot.consent import Origin

    await register(svc, "o-no", "王五小店")
    await svc.runtime.consents.decline("o-no", Origin("official_account"))
    editor = await logged_in(svc, "eddie")
    page = text(await editor.get("/admin/merchants/o-no"))
    assert "协议" in page and "不同意" in page and "不能审核通过或恢复" in page
    refused = await editor.post("/admin/merchants/o-no", {"status": "active", "reason": "资料齐全"})
    assert refused.code == 409 and "该用户目前不同意" in text(refused)
    assert (await svc.runtime.merchants.get("o-no")).status == "pending_review"
    # Once they accept the version in force, approval goes through.
    await svc.runtime.consents.accept("o-no", Origin("official_account"))
    page = text(await editor.get("/admin/merchants/o-no"))
    assert "已同意当前版本" in page and "不能审核通过" not in page
    assert (await editor.post("/admin/merchants/o-no", {"status": "active", "reason": "资料齐全"})).code == 303


async def test_merchants_review_suspend_reinstate_and_export(svc):
    from bot.consent import Origin

    await register(svc, "o-m1", "张三小店")
    await register(svc, "o-m2", "李四商行")
    editor = await logged_in(svc, "eddie")
    listing = await editor.get("/admin/merchants?q=%E5%BC%A0%E4%B8%89")  # 张三
    assert "张三小店" in text(listing) and "李四商行" not in text(listing)
    assert (await editor.post("/admin/merchants/o-m1", {"status": "active", "reason": "资料齐全"})).code == 303
    assert (await svc.runtime.merchants.get("o-m1")).status == "active"
    # Suspending is the owner's.
    assert (await editor.post("/admin/merchants/o-m1", {"status": "suspended", "reason": "滥用"})).code == 403
    owner = await logged_in(svc, "olga")
    no_reason = await owner.post("/admin/merchants/o-m1", {"status": "suspended", "reason": " "})
    assert no_reason.code == 422 and "请写明原因" in text(no_reason)
    assert (await owner.post("/admin/merchants/o-m1", {"status": "suspended", "reason": "发布违规内容"})).code == 303
    detail = text(await owner.get("/admin/merchants/o-m1"))
    assert "发布违规内容" in detail and "管理员 olga" in detail
    assert "状态已改为“已暂停”" in detail  # said once, after the action
    again = text(await owner.get("/admin/merchants/o-m1?done=%E8%AF%B7%E8%BD%AC%E8%B4%A6"))  # 请转账
    assert "状态已改为" not in again and "请转账" not in again
    # Pending again: 退回修改, the merchant told what to correct (an editor's, as reviewing is).
    returned = await editor.post("/admin/merchants/o-m2", {"status": "pending_review", "reason": "请上传与营业执照一致的名称"})
    assert returned.code == 303 and "已退回修改，并已通知商家" in text(await editor.get(returned.headers["Location"]))
    assert (await svc.runtime.merchants.get("o-m2")).status == "pending_review"
    assert [e.reason for e in await svc.runtime.merchants.repo.history("o-m2")][-1] == "请上传与营业执照一致的名称"
    for admin in (owner, editor):  # wrong input for anyone (an editor got 需要所有者角色)
        bogus = await admin.post("/admin/merchants/o-m2", {"status": "bogus", "reason": "x"})
        assert bogus.code == 422 and "未知的状态 bogus" in text(bogus) and "active（已生效）" in text(bogus)
    assert (await owner.post("/admin/merchants/o-m1", {"status": "active", "reason": "已整改"})).code == 303
    # Approving an approved account: said so, not "needs the owner's role".
    again = await editor.post("/admin/merchants/o-m1", {"status": "active", "reason": "再审"})
    assert again.code == 409 and "已经是“已生效”" in text(again)
    export = await owner.get("/admin/merchants.csv?status=active")
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert [r["openid"] for r in rows] == ["o-m1"]
    assert rows[0]["状态"] == "已生效" and rows[0]["主体类型"] in ("个人", "企业")
    assert rows[0]["注册时间（北京）"].endswith("+08:00") and rows[0]["更新时间（北京）"].endswith("+08:00")
    # What users typed never runs as a formula in Excel.
    await register(svc, "o-m3", '=HYPERLINK("http://x.cn","点")')
    export = await owner.get("/admin/merchants.csv?status=pending_review")
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert [r["主体名称"] for r in rows if r["openid"] == "o-m3"] == ["'=HYPERLINK(\"http://x.cn\",\"点\")"]
    # A credit code of digits alone stays text (Excel showed 9.14403E+17 and kept 15 digits).
    await svc.runtime.consents.accept("o-m4", Origin("official_account"))
    await svc.runtime.merchants.save_profile("o-m4", {"entity_type": "enterprise", "entity_name": "华为技术有限公司",
                                                      "credit_code": "914403001922038216", "contact_name": "任正非",
                                                      "phone": "13800138000"})
    export = await owner.get("/admin/merchants.csv?status=pending_review")
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert [r["统一社会信用代码"] for r in rows if r["openid"] == "o-m4"] == ['="914403001922038216"']
    assert [r["手机"] for r in rows if r["openid"] == "o-m4"] == ["13800138000"]  # 11 digits show whole
    assert (await owner.get("/admin/merchants/o-none")).code == 404
    # The notices a status change sent name their creator as the audit log does (they showed admin:olga).
    notices = text(await owner.get("/admin/notices"))
    assert "<td>olga</td>" in notices and "admin:" not in notices
    entry = (await svc.runtime.audit.recent(action="merchant_status"))[0]
    assert entry.before == {"status": "suspended"} and entry.after["status"] == "active"
    # Closed while suspended: the page offers the owner 允许重新注册, and only then.
    assert (await owner.post("/admin/merchants/o-m2", {"status": "suspended", "reason": "核实中"})).code == 303
    assert (await owner.post("/admin/merchants/o-m2", {"status": "closed", "reason": "商家申请"})).code == 303
    page = text(await owner.get("/admin/merchants/o-m2"))
    assert "允许重新注册" in page and "确定注销" not in page
    lifted = await owner.post("/admin/merchants/o-m2", {"status": "closed", "reason": "申诉通过"})
    assert lifted.code == 303 and "已允许重新注册，并已通知商家" in text(await owner.get(lifted.headers["Location"]))
    assert "允许重新注册</button>" not in text(await owner.get("/admin/merchants/o-m2"))


# -- consents, dashboard, Q&A -------------------------------------------------------------


async def test_consents_filter_export_and_dashboard(svc):
    from bot.consent import Origin

    await followers(svc, "o-a", "o-b", "o-c", "o-d")
    consents = svc.runtime.consents
    await consents.accept("o-a", Origin("official_account", "m1"))
    await consents.accept("o-b", Origin("official_account", "m2"))
    await consents.decline("o-c", Origin("official_account", "m3"))
    viewer = await logged_in(svc, "vera")
    page = await viewer.get("/admin/consents?action=accept")
    assert page.code == 200 and "共 2 条" in text(page)
    newest_first = text(page)
    assert newest_first.index("o-b") < newest_first.index("o-a")  # the newest on top
    one = await viewer.get("/admin/consents?openid=o-c")
    assert "共 1 条" in text(one) and "o-a" not in text(one)
    # Date filters (Beijing days): the count agrees with the rows shown.
    today = svc.runtime.clock().astimezone(console_module.CHINA).date()
    tomorrow = today + __import__("datetime").timedelta(days=1)
    same_day = text(await viewer.get(f"/admin/consents?since={today}&until={today}"))
    assert "共 3 条" in same_day and "o-a" in same_day
    assert "公众号" in same_day and "official_account" not in same_day  # the channel by its name
    later = text(await viewer.get(f"/admin/consents?since={tomorrow}"))
    assert "共 0 条" in later and "o-a" not in later
    export = await viewer.get("/admin/consents.csv?action=decline")
    rows = list(csv.DictReader(io.StringIO(export.body.decode("utf-8-sig"))))
    assert [(r["openid"], r["动作"], r["渠道"]) for r in rows] == [("o-c", "不同意", "公众号")]
    assert rows[0]["时间（北京）"].endswith("+08:00")
    assert (await viewer.get("/admin/consents?action=maybe")).code == 400
    board = text(await viewer.get("/admin"))
    assert "50.0%" in board and "<svg" in board and "<polyline" in board
    numbers = await svc.runtime.console.dashboard(CLI)
    assert numbers.followers == 4 and numbers.accepted == 2
    assert numbers.days[-1][1:] == (2, 1, 0)


async def test_a_slow_dashboard_is_read_in_the_background_and_kept_a_while(svc, monkeypatch):
    # With a year's data it took 8 s on the embedded database: 503 at every log-in.
    console = svc.runtime.console
    read = console._dashboard_figures

    async def slow():
        await asyncio.sleep(0.6)
        return await read()

    monkeypatch.setattr(console, "_dashboard_figures", slow)
    monkeypatch.setattr(console_module, "DASHBOARD_WAIT", 0.2)
    monkeypatch.setattr(console_module, "DASHBOARD_SLOW", 0.5)
    await followers(svc, "o-a")
    owner = await logged_in(svc, "olga")
    first = await owner.get("/admin")
    assert first.code == 200 and "正在统计" in text(first) and 'http-equiv="refresh"' in text(first)
    await asyncio.sleep(0.6)
    ready = text(await owner.get("/admin"))
    assert "统计于" in ready and "关注者" in ready and "正在统计" not in ready
    await followers(svc, "o-b")
    assert "<div class=\"figure\">1</div><div>关注者" in text(await owner.get("/admin"))  # kept, not read again
    monkeypatch.setattr(console_module, "DASHBOARD_KEPT", 0.0)
    await owner.get("/admin")  # read anew in the background
    await asyncio.sleep(0.7)
    assert "<div class=\"figure\">2</div><div>关注者" in text(await owner.get("/admin"))


async def test_the_dashboard_counts_each_users_latest_choice_whoever_wrote_it(svc):
    """The share comes from a view of each user's latest record, caught up
    from the ledger: a withdrawal counts, and so does a record some other
    process wrote (here: straight into the ledger) before or after the
    view's last catch-up."""
    import datetime as dt

    from bot.consent import Origin

    await followers(svc, "o-a", "o-b", "o-c", "o-d")
    consents, console = svc.runtime.consents, svc.runtime.console
    await consents.accept("o-a", Origin("official_account", "m1"))
    await consents.accept("o-b", Origin("official_account", "m2"))
    assert (await console.dashboard(CLI)).accepted == 2
    await consents.withdraw("o-b", Origin("official_account", "m3"))
    assert (await console.dashboard(CLI)).accepted == 1
    current = await svc.runtime.terms.current()
    now = svc.runtime.clock()
    ledger = svc.runtime.db["consents"]
    for openid, seconds in (("o-c", -120), ("o-d", 30)):  # 2 minutes before the last catch-up, and after it
        await ledger.insert_one({
            "openid": openid, "version": current.version, "text_sha256": current.text_sha256, "action": "accept",
            "channel": "miniprogram", "at": now + dt.timedelta(seconds=seconds), "message_id": None, "meta": {},
        })
    numbers = await console.dashboard(CLI)
    assert numbers.accepted == 3 and numbers.share == 0.75


async def test_the_consent_view_replays_a_busy_second_and_never_goes_back(svc, monkeypatch):
    import datetime as dt

    from storage import consent_view

    monkeypatch.setattr(consent_view, "PAGE", 2)
    db = svc.runtime.db
    view = consent_view.ConsentView(db)
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)

    def record(_id, openid, action, at):
        return {"_id": _id, "openid": openid, "version": "v9", "text_sha256": "x", "action": action,
                "channel": "official_account", "at": at, "meta": {}}

    # Five users in one second (more than a window should hold), then one of them withdraws.
    await db["consents"].insert_many([record(f"r{i}", f"u{i}", "accept", t0) for i in range(5)])
    await db["consents"].insert_one(record("w1", "u1", "withdraw", t0 + dt.timedelta(seconds=1)))
    assert await view.catch_up(t0 + dt.timedelta(minutes=1)) == 6
    assert await view.accepted("v9") == {"u0", "u2", "u3", "u4"}
    # A late record older than the user's latest one is replayed, and changes nothing.
    await db["consents"].insert_one(record("late", "u1", "accept", t0 + dt.timedelta(milliseconds=500)))
    await view.catch_up(t0 + dt.timedelta(minutes=2))
    assert await view.accepted("v9") == {"u0", "u2", "u3", "u4"}
    assert (await db["consent_latest"].find_one({"_id": "u1"}))["record"] == "w1"


async def test_qa_overrides_are_checked_then_saved(svc):
    editor = await logged_in(svc, "eddie")
    target = Path(svc.runtime.config.data_dir) / "qa" / "lexicon.toml"
    bad = await editor.post("/admin/qa/lexicon.toml", {"text": "[synonyms\n"})
    assert bad.code == 422 and "不是有效的 TOML" in text(bad) and not target.exists()
    assert "第 1 行" in text(bad)
    nowhere = await editor.post("/admin/qa/examples.toml", {"text": '[clauses."99.1"]\nexamples = ["火星上能开店吗"]\n'})
    assert nowhere.code == 422 and "没有条款 99.1" in text(nowhere)
    # A version whose 1.1 no longer holds the shipped anchor: an override's own
    # anchor that matches nothing was saved there, its examples silently unused.
    import dataclasses as _dc

    from bot.agreement import load_seed
    seed = load_seed()
    first = seed.sections[0]
    edited = _dc.replace(first, clauses=("您必须遵守服务中的各项规定。", *first.clauses[1:]))
    await svc.runtime.terms.publish(_dc.replace(seed, version="2026-11-27-legal", changes=("第1节第1款：改写",),
                                                sections=(edited, *seed.sections[1:])),
                                    reason="legal", effective_at=None, by="test")
    stale = await editor.post("/admin/qa/examples.toml",
                              {"text": '[clauses."1.1"]\nanchor = "不存在的锚点文字"\nexamples = ["规定要遵守吗"]\n'})
    assert stale.code == 422 and "条款 1.1 的锚点 anchor" in text(stale)
    # Clause 4.1 exists; only its anchor matches nothing (it said there was no clause 4.1).
    unanchored = await editor.post("/admin/qa/examples.toml",
                                   {"text": '[clauses."4.1"]\nanchor = "不存在的锚"\nexamples = ["图片归谁"]\n'})
    assert unanchored.code == 422 and "条款 4.1 的锚点 anchor" in text(unanchored) and "没有条款" not in text(unanchored)
    assert not (target.parent / "examples.toml").exists()
    wrong_shape = await editor.post("/admin/qa/lexicon.toml", {"text": 'stopwords = "的"'})
    assert wrong_shape.code == 422 and not target.exists()
    good = await editor.post("/admin/qa/lexicon.toml", {"text": '[synonyms]\n"小铺" = ["商家"]\n'})
    assert good.code == 303
    assert '"小铺"' in target.read_text(encoding="utf-8")
    assert "小铺" in text(await editor.get("/admin/qa/lexicon.toml"))
    assert (await svc.runtime.audit.recent(action="qa_edit"))[0].after["text"].startswith("[synonyms]")
    # Saved again unchanged (with a browser's line endings): said so, and no entry in the audit.
    again = await editor.post("/admin/qa/lexicon.toml", {"text": '[synonyms]\r\n"小铺" = ["商家"]\r\n'})
    assert again.code == 303 and "内容没有变化" in text(await editor.get("/admin/qa/lexicon.toml"))
    assert len(await svc.runtime.audit.recent(action="qa_edit")) == 1
    # A large file saved: the audit page shows the start of it (each save made the page megabytes), the CSV all.
    big = '[synonyms]\n' + "".join(f'"词{i:05d}" = ["商家"]\n' for i in range(3000))
    assert (await editor.post("/admin/qa/lexicon.toml", {"text": big})).code == 303
    owner = await logged_in(svc, "olga")
    audit_page = text(await owner.get("/admin/audit?action=qa_edit"))
    assert "此处只显示开头" in audit_page and "词02999" not in audit_page and len(audit_page) < 60_000
    assert "词02999" in text(await owner.get("/admin/audit.csv?action=qa_edit"))
    await svc.runtime.answers.answer("你好")
    await svc.runtime.answers.answer("火星上能开店吗")
    await asyncio.sleep(0.2)
    unanswered = text(await editor.get("/admin/qa"))
    assert "火星上能开店吗" in unanswered and "你好" not in unanswered
    assert "公众号" in unanswered and "official_account" not in unanswered  # the channel by its name


async def test_an_example_question_added_in_the_console_reloads_the_index(svc):
    question = "店铺装修图片算谁的"
    answers = svc.runtime.answers
    await answers.prepare()
    assert (await answers.answer(question)).kind == "abstain"
    editor = await logged_in(svc, "eddie")
    saved = await editor.post("/admin/qa/examples.toml", {"text": f'[clauses."4.1"]\nexamples = ["{question}"]\n'})
    assert saved.code == 303, text(saved)
    for _ in range(60):  # the override folder is checked every few seconds, the index rebuilt in a thread
        result = await answers.answer(question)
        if result.kind == "answer":
            break
        await asyncio.sleep(0.25)
    assert result.kind == "answer" and "4.1" in result.refs


async def test_demo_owner_can_be_created_again_with_a_new_password(svc):
    from bot.admin_accounts import generate_password

    first, second = generate_password(), generate_password()
    await svc.runtime.admins.create_or_reset("demo", "owner", first)
    await svc.runtime.admins.set_disabled("demo", True, by=CLI)
    user = await svc.runtime.admins.create_or_reset("demo", "owner", second)
    assert user.role == "owner" and not user.disabled
    assert (await AdminClient(svc.url).login("demo", first)).code == 401
    assert (await AdminClient(svc.url).login("demo", second)).code == 303


async def test_cookie_secret_is_generated_once_and_kept(tmp_path):
    from handlers.admin import cookie_secret
    from service.config import Config

    config = Config(data_dir=tmp_path)
    first = cookie_secret(config)
    assert cookie_secret(config) == first and len(first) >= 32
    assert oct((tmp_path / "run" / "cookie_secret").stat().st_mode & 0o777) == "0o600"
    assert cookie_secret(Config(data_dir=tmp_path, cookie_secret="s" * 40)) == "s" * 40


# -- the command line ---------------------------------------------------------------------


def cli_redis(backing) -> str:
    """A Redis database of its own, so what these commands queue reaches no other test's worker."""
    base = backing.redis_url.rstrip("/")
    return re.sub(r"/\d+$", "", base) + "/7"


def cli_mongo(backing) -> str:
    """The backing server's URI naming a database of this test's own."""
    parts = urlsplit(backing.mongodb_uri)
    return urlunsplit((parts.scheme, parts.netloc, "/wetoop_cli_admin", parts.query, ""))


def run_cli(backing, data_dir, *args, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("ADMIN_PASSWORD", "DATA_DIR")}
    environ.update(MONGODB_URI=cli_mongo(backing), REDIS_URL=cli_redis(backing),
                   DATA_DIR=str(data_dir), **env)
    return subprocess.run([str(BIN), "admin", *args], env=environ, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_ctrl_d_at_the_password_prompt_exits_2_without_a_traceback(backing, tmp_path):
    import pty
    import select

    environ = {k: v for k, v in os.environ.items() if k not in ("ADMIN_PASSWORD", "DATA_DIR")}
    environ.update(MONGODB_URI=cli_mongo(backing), REDIS_URL=cli_redis(backing), DATA_DIR=str(tmp_path))
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.execve(str(BIN), [str(BIN), "admin", "create-user", "tty", "--role", "viewer"], environ)
    output, sent = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child is gone
            break
        if not chunk:
            break
        output += chunk
        if not sent and "密码".encode() in output:
            os.write(fd, b"\x04")  # Ctrl-D
            sent = True
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 2, text
    assert "没有输入密码" in text and "Traceback" not in text


def test_cli_creates_and_manages_admins(backing, tmp_path):
    import pymongo

    client = pymongo.MongoClient(backing.mongodb_uri)
    client.drop_database("wetoop_cli_admin")
    try:
        done = run_cli(backing, tmp_path, "create-user", "root", "--role", "owner", ADMIN_PASSWORD="a-long-password")
        assert done.returncode == 0, done.stderr
        assert "已创建管理员 root" in done.stdout
        stored = client["wetoop_cli_admin"]["admin_users"].find_one({"_id": "root"})
        assert stored["password_hash"].startswith("$argon2id$") and "a-long-password" not in str(stored)
        again = run_cli(backing, tmp_path, "create-user", "root", "--role", "owner", ADMIN_PASSWORD="a-long-password")
        assert again.returncode == 2 and "已存在" in again.stderr
        # Log-in limits count names case-blind: ROOT would share root's lock.
        upper = run_cli(backing, tmp_path, "create-user", "ROOT", "--role", "viewer", ADMIN_PASSWORD="a-long-password")
        assert upper.returncode == 2 and "管理员 root 已存在（用户名不区分大小写）" in upper.stderr
        # An admin named cli (or user) would read as the command line (the merchant) in the audit log.
        for reserved in ("cli", "User"):
            taken = run_cli(backing, tmp_path, "create-user", reserved, "--role", "viewer", ADMIN_PASSWORD="a-long-password")
            assert taken.returncode == 2 and "是保留名称" in taken.stderr, taken.stderr
        short = run_cli(backing, tmp_path, "create-user", "kid", "--role", "viewer", ADMIN_PASSWORD="short")
        assert short.returncode == 2 and "至少需要 10 个字符" in short.stderr
        no_tty = run_cli(backing, tmp_path, "create-user", "kid", "--role", "viewer")
        assert no_tty.returncode == 2 and "ADMIN_PASSWORD" in no_tty.stderr
        bad_role = run_cli(backing, tmp_path, "create-user", "kid", "--role", "god", ADMIN_PASSWORD="a-long-password")
        assert bad_role.returncode == 2
        generated = run_cli(backing, tmp_path, "create-user", "kid", "--role", "viewer", "--generate-password")
        assert generated.returncode == 0 and "初始密码：" in generated.stdout
        reset = run_cli(backing, tmp_path, "set-password", "kid", "--generate-password")
        assert reset.returncode == 0 and "新密码：" in reset.stdout, reset.stderr
        assert reset.stdout.split("新密码：")[1].strip() != generated.stdout.split("初始密码：")[1].strip()
        listing = run_cli(backing, tmp_path, "list-users")
        assert "root" in listing.stdout and "所有者" in listing.stdout and "kid" in listing.stdout
        assert run_cli(backing, tmp_path, "set-role", "kid", "editor").returncode == 0
        assert run_cli(backing, tmp_path, "disable", "kid").returncode == 0
        last = run_cli(backing, tmp_path, "disable", "root")
        assert last.returncode == 2 and "至少要保留一位" in last.stderr
        assert run_cli(backing, tmp_path, "revoke-sessions", "kid").returncode == 0
        audit = [d["action"] for d in client["wetoop_cli_admin"]["admin_audit"].find({"actor": "cli"})]
        assert {"admin_create", "admin_role", "admin_disable", "admin_revoke_sessions"} <= set(audit)
        # Admin actions taken with the other commands are in the same log.
        (tmp_path / "ids.txt").write_text("o-cli-1\n", encoding="utf-8")
        sent = subprocess.run(
            [str(BIN), "notice", "send", "--category", "service", "--title", "T", "--body", "B",
             "--audience", f"openids:{tmp_path / 'ids.txt'}", "--important", "--channel", "mass"],
            env={**os.environ, "MONGODB_URI": cli_mongo(backing),
                 "REDIS_URL": cli_redis(backing), "DATA_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        entry = client["wetoop_cli_admin"]["admin_audit"].find_one({"action": "notice_send"})
        assert entry["actor"] == "cli" and entry["target"] == sent.stdout.strip()
        # What the console's entry says, from the CLI too: it lacked importance, channel and size.
        after = entry["after"]
        assert (after["important"], after["channel"], after["audience_size"]) == (True, "mass", 1), after
        assert after["audience"] == {"type": "openids", "count": 1, "first": ["o-cli-1"]}
    finally:
        client.drop_database("wetoop_cli_admin")
        client.close()
        import redis

        with redis.Redis.from_url(cli_redis(backing)) as spare:
            keys = list(spare.scan_iter(match="wb:*"))
            if keys:
                spare.delete(*keys)


async def test_owner_changes_are_made_one_at_a_time(svc):
    # "At least one enabled owner" holds only if no other change lands between
    # the check and the write: two owners disabling each other both succeeded.
    from bot.admin_accounts import OWNERS_LOCK, Actor, AdminRefused

    admins, locks = svc.runtime.admins, svc.runtime.locks
    await admins.create("otto", "owner", PASSWORD, by=CLI)
    olga, otto = Actor("olga", "owner"), Actor("otto", "owner")
    held = await locks.acquire(OWNERS_LOCK)  # another process changing owners
    first = asyncio.create_task(admins.set_disabled("otto", True, by=olga))
    await asyncio.sleep(0.3)
    assert not first.done() and not (await admins.users.get("otto")).disabled
    await locks.release(OWNERS_LOCK, held)
    await first
    with pytest.raises(AdminRefused) as refused:
        await admins.set_disabled("olga", True, by=otto)
    assert refused.value.code == "last_owner"
    assert [u.name for u in await admins.list() if u.role == "owner" and not u.disabled] == ["olga"]


async def test_a_profile_changed_after_the_page_was_opened_is_not_approved_unseen(svc):
    await register(svc, "o-m3", "王五小店")
    editor = await logged_in(svc, "eddie")
    page = text(await editor.get("/admin/merchants/o-m3"))
    seen = re.search(r'name="seen" value="([^"]*)"', page).group(1)
    assert "王五小店" in page and seen
    # The merchant changes the name meanwhile (still in review).
    await svc.runtime.merchants.save_profile(
        "o-m3", {"entity_type": "individual", "entity_name": "另一家店", "contact_name": "王五", "phone": "13812345678"}
    )
    refused = await editor.post("/admin/merchants/o-m3", {"status": "active", "reason": "资料齐全", "seen": seen})
    assert refused.code == 409 and "有更新" in text(refused) and "另一家店" in text(refused)
    assert (await svc.runtime.merchants.get("o-m3")).status == "pending_review"
    fresh = re.search(r'name="seen" value="([^"]*)"', text(refused)).group(1)
    approved = await editor.post("/admin/merchants/o-m3", {"status": "active", "reason": "资料齐全", "seen": fresh})
    assert approved.code == 303 and (await svc.runtime.merchants.get("o-m3")).status == "active"


async def test_a_method_a_console_page_lacks_gets_405_naming_the_ones_it_has(svc):
    owner = await logged_in(svc, "olga")
    response = await owner.post("/admin/audit", {"x": "1"})  # a read-only page, with a valid xsrf token
    assert response.code == 405 and response.headers["Allow"] == "GET"



async def test_a_version_id_that_starts_like_a_date_is_counted_and_filtered(svc):
    # nx-27017 compared "2026-11-27-nf" as a date (null) even in an $in: the
    # dashboard said 0 % accepted, and the consents filter found nothing.
    from bot.consent import Origin
    from tests.test_consent_chat import amendment

    await followers(svc, "o-a", "o-b", "o-c")
    await svc.runtime.terms.publish(amendment("2026-11-27-nf"), reason="new_feature", effective_at=None, by="test")
    for openid in ("o-a", "o-b"):
        await svc.runtime.consents.accept(openid, Origin("official_account", f"m-{openid}"))
    numbers = await svc.runtime.console.dashboard(CLI)
    assert numbers.current.version == "2026-11-27-nf" and numbers.accepted == 2
    owner = await logged_in(svc, "olga")
    listed = text(await owner.get("/admin/consents?version=2026-11-27-nf"))
    assert "o-a" in listed and "o-b" in listed
