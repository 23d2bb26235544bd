"""The WeChat API emulator, over real HTTP, with Tornado's client and wechatpy."""

from __future__ import annotations

import asyncio
import time
import json
import socket
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from emulator.app import EmulatorState, serve

APPID, SECRET = "wx_test_app", "test_secret"
ALICE = "oALICE_openid-000000000000001"
BOB = "oBOB_openid-00000000000000002"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Emu:
    state: EmulatorState
    base: str

    async def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                      **params) -> tuple[int, object, object]:
        """Returns (HTTP status, decoded JSON or None, response headers)."""
        url = self.base + path + ("?" + urlencode(params) if params else "")
        if raw is None and body is not None:
            raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if raw is None and method in ("POST", "PUT"):
            raw = b""
        response = await AsyncHTTPClient().fetch(
            HTTPRequest(url, method=method, body=raw, allow_nonstandard_methods=True),
            raise_error=False,
        )
        data = json.loads(response.body.decode("utf-8")) if response.body else None
        return response.code, data, response.headers

    async def get(self, path: str, **params):
        code, data, _ = await self.request("GET", path, **params)
        assert code == 200, (code, data)
        return data

    async def post(self, path: str, body=None, *, raw: bytes | None = None, **params):
        code, data, _ = await self.request("POST", path, body, raw=raw, **params)
        assert code == 200, (code, data)
        return data

    async def token(self, appid: str = APPID, secret: str = SECRET) -> str:
        data = await self.get("/cgi-bin/token", grant_type="client_credential",
                              appid=appid, secret=secret)
        return data["access_token"]

    def wechat(self, appid: str = APPID, secret: str = SECRET) -> WeChatClient:
        """A real wechatpy client aimed at this emulator (use it from a thread)."""
        base = self.base

        class EmulatedClient(WeChatClient):
            API_BASE_URL = base + "/cgi-bin/"

            def fetch_access_token(self):
                return self._fetch_access_token(
                    url=base + "/cgi-bin/token",
                    params={"grant_type": "client_credential",
                            "appid": self.appid, "secret": self.secret},
                )

        client = EmulatedClient(appid, secret, timeout=5)
        client._http.trust_env = False  # never route 127.0.0.1 through a proxy
        return client


@pytest.fixture
async def start_emulator():
    servers = []

    async def start(**config) -> Emu:
        state = EmulatorState(**config)
        port = free_port()
        servers.append(await serve("127.0.0.1", port, state))
        return Emu(state, f"http://127.0.0.1:{port}")

    yield start
    for server in servers:
        server.stop()
        await server.close_all_connections()


@pytest.fixture
async def emu(start_emulator) -> Emu:
    return await start_emulator()


def text_message(touser: str, content: str) -> dict:
    return {"touser": touser, "msgtype": "text", "text": {"content": content}}


async def test_the_root_says_what_the_emulator_serves(emu):
    # The demo's banner shows the emulator's address; opening it gave a 404.
    root = await emu.get("/")
    assert "emulator" in root["service"] and "/cgi-bin/message/custom/send" in root["endpoints"]


# -- access tokens ----------------------------------------------------------------


async def test_token_issue_rotates_and_old_token_is_stale(emu):
    data = await emu.get("/cgi-bin/token", grant_type="client_credential",
                         appid=APPID, secret=SECRET)
    assert data["expires_in"] == 7200
    first = data["access_token"]
    assert (await emu.get("/cgi-bin/user/info", access_token=first, openid=ALICE))["subscribe"] == 1

    second = await emu.token()
    assert second != first
    stale = await emu.get("/cgi-bin/user/info", access_token=first, openid=ALICE)
    assert stale == {"errcode": 40001,
                     "errmsg": "invalid credential, access_token is invalid or not latest"}
    assert (await emu.get("/cgi-bin/user/info", access_token=second, openid=ALICE))["openid"] == ALICE

    stats = await emu.get("/_emulator/stats")
    assert stats["token_requests"] == 2 and stats["tokens_issued"] == 2
    assert stats["calls"]["/cgi-bin/user/info"] == 3
    assert stats["calls"]["/cgi-bin/token"] == 2


async def test_token_missing_expired_invalidated(emu):
    assert (await emu.get("/cgi-bin/menu/get"))["errcode"] == 41001
    assert (await emu.get("/cgi-bin/menu/get", access_token=""))["errcode"] == 41001
    assert (await emu.get("/cgi-bin/menu/get", access_token="made-up"))["errcode"] == 40001

    token = await emu.token()
    assert (await emu.post("/_emulator/tokens/expire")) == {"ok": True}
    assert (await emu.get("/cgi-bin/menu/get", access_token=token)) == {
        "errcode": 42001, "errmsg": "access_token expired"}

    token = await emu.token()
    await emu.post("/_emulator/tokens/invalidate")
    assert (await emu.get("/cgi-bin/menu/get", access_token=token))["errcode"] == 40001


async def test_token_expires_after_ttl(start_emulator):
    emu = await start_emulator(token_ttl=60)
    now = [1_000_000.0]
    emu.state.clock = lambda: now[0]
    data = await emu.get("/cgi-bin/token", grant_type="client_credential", appid=APPID, secret=SECRET)
    assert data["expires_in"] == 60
    now[0] += 59
    assert (await emu.get("/cgi-bin/user/info", access_token=data["access_token"], openid=ALICE))["subscribe"] == 1
    now[0] += 1
    assert (await emu.get("/cgi-bin/user/info", access_token=data["access_token"], openid=ALICE))["errcode"] == 42001


async def test_stable_token_reuses_then_force_refresh_rotates(emu):
    now = [2_000_000.0]
    emu.state.clock = lambda: now[0]
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = await emu.post("/cgi-bin/stable_token", {**body, "force_refresh": False})
    assert first["expires_in"] == 7200
    now[0] += 100
    again = await emu.post("/cgi-bin/stable_token", body)
    assert again == {"access_token": first["access_token"], "expires_in": 7100}

    # A plain /cgi-bin/token does not disturb the stable token (separate on WeChat).
    await emu.token()
    assert (await emu.get("/cgi-bin/menu/get", access_token=first["access_token"]))["errcode"] == 46003

    rotated = await emu.post("/cgi-bin/stable_token", {**body, "force_refresh": True})
    assert rotated["access_token"] != first["access_token"] and rotated["expires_in"] == 7200
    assert (await emu.get("/cgi-bin/menu/get", access_token=first["access_token"]))["errcode"] == 40001
    assert (await emu.get("/cgi-bin/menu/get", access_token=rotated["access_token"]))["errcode"] == 46003

    # An expired stable token is replaced, not returned.
    await emu.post("/_emulator/tokens/expire")
    fresh = await emu.post("/cgi-bin/stable_token", body)
    assert fresh["access_token"] != rotated["access_token"]
    stats = await emu.get("/_emulator/stats")
    assert stats["token_requests"] == 5 and stats["tokens_issued"] == 4


async def test_credential_errors(start_emulator):
    emu = await start_emulator(appid=APPID, secret=SECRET)

    async def token(**params):
        return (await emu.get("/cgi-bin/token", **params)).get("errcode")

    good = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    assert await token(**{**good, "appid": "wx_other"}) == 40013
    assert await token(**{**good, "secret": "wrong"}) == 40125
    assert await token(appid=APPID, secret=SECRET) == 40002
    assert await token(**{**good, "grant_type": "password"}) == 40002
    assert await token(grant_type="client_credential", secret=SECRET) == 41002
    assert await token(**good) is None

    stable = {**good, "force_refresh": False}
    assert (await emu.post("/cgi-bin/stable_token", {**stable, "appid": "wx_other"}))["errcode"] == 40013
    assert (await emu.post("/cgi-bin/stable_token", {**stable, "secret": "x"}))["errcode"] == 40125
    assert (await emu.post("/cgi-bin/stable_token", {**stable, "grant_type": "x"}))["errcode"] == 40002
    assert (await emu.request("POST", "/_emulator/stats"))[:2] == (
        405, {"errcode": 405, "errmsg": "method not allowed"})
    assert (await emu.get("/_emulator/stats"))["tokens_issued"] == 1


async def test_wechatpy_refreshes_after_invalidate_and_expire(emu):
    client = emu.wechat()
    assert (await asyncio.to_thread(client.user.get, ALICE))["subscribe"] == 1
    await emu.post("/_emulator/tokens/invalidate")
    assert (await asyncio.to_thread(client.user.get, ALICE))["subscribe"] == 1
    await emu.post("/_emulator/tokens/expire")
    assert (await asyncio.to_thread(client.user.get, ALICE))["subscribe"] == 1
    stats = await emu.get("/_emulator/stats")
    assert stats["tokens_issued"] == 3
    assert stats["calls"]["/cgi-bin/user/info"] == 5  # 3 successes + 2 rejected


# -- customer-service messages ------------------------------------------------------


async def test_custom_send_kept_listed_and_chinese_round_trips(emu):
    client = emu.wechat()
    content = "你好，世界 🌏 \"quoted\" \\ back"
    result = await asyncio.to_thread(client.message.send_text, ALICE, content)
    assert result == {"errcode": 0, "errmsg": "ok"}
    token = await emu.token()
    await emu.post("/cgi-bin/message/custom/send", text_message(BOB, "hi bob"), access_token=token)

    code, alice_msgs, headers = await emu.request("GET", "/_emulator/messages", touser=ALICE)
    assert code == 200
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert len(alice_msgs) == 1
    msg = alice_msgs[0]
    assert (msg["kind"], msg["touser"], msg["msgtype"]) == ("custom", ALICE, "text")
    assert msg["body"] == text_message(ALICE, content)
    assert isinstance(msg["id"], int) and isinstance(msg["time"], float)

    everyone = await emu.get("/_emulator/messages")
    assert [m["touser"] for m in everyone] == [ALICE, BOB]
    assert everyone[0]["id"] < everyone[1]["id"]
    assert emu.state.messages[0]["body"]["text"]["content"] == content
    raw = (await AsyncHTTPClient().fetch(emu.base + "/_emulator/messages")).body
    assert "你好，世界 🌏".encode("utf-8") in raw  # written as UTF-8, not \u escapes

    assert (await emu.request("DELETE", "/_emulator/messages"))[1] == {"ok": True}
    assert await emu.get("/_emulator/messages") == []


async def test_custom_send_refuses_unsubscribed_without_keeping(emu):
    user = await emu.post("/_emulator/users", {"openid": BOB, "subscribed": False})
    assert user["subscribed"] is False
    client = emu.wechat()
    with pytest.raises(WeChatClientException) as caught:
        await asyncio.to_thread(client.message.send_text, BOB, "hello")
    assert caught.value.errcode == 43004
    assert caught.value.errmsg == "require subscribe"
    assert emu.state.messages == []


@pytest.mark.parametrize("body, errcode", [
    (text_message("bad openid!", "x"), 40003),
    (text_message("o" * 65, "x"), 40003),
    ({"msgtype": "text", "text": {"content": "x"}}, 40003),
    ({"touser": ALICE, "msgtype": "telegram", "text": {"content": "x"}}, 40008),
    (text_message(ALICE, ""), 44004),
    ({"touser": ALICE, "msgtype": "text"}, 44004),
    ({"touser": ALICE, "msgtype": "news", "news": {"articles": []}}, 44003),
    ({"touser": ALICE, "msgtype": "image", "image": {}}, 40007),
    (text_message(ALICE, "字" * 683), 45002),  # 2049 bytes
])
async def test_custom_send_validation(emu, body, errcode):
    token = await emu.token()
    result = await emu.post("/cgi-bin/message/custom/send", body, access_token=token)
    assert result["errcode"] == errcode
    assert emu.state.messages == []


async def test_custom_send_content_limit_is_in_utf8_bytes(emu):
    token = await emu.token()
    at_limit = "字" * 682 + "ab"  # 2048 bytes
    assert (await emu.post("/cgi-bin/message/custom/send", text_message(ALICE, at_limit),
                           access_token=token))["errcode"] == 0
    assert (await emu.post("/cgi-bin/message/custom/send", text_message(ALICE, at_limit + "c"),
                           access_token=token))["errcode"] == 45002
    page = {"touser": ALICE, "msgtype": "miniprogrampage",
            "miniprogrampage": {"title": "t", "appid": "wxmp", "pagepath": "pages/index"}}
    assert (await emu.post("/cgi-bin/message/custom/send", page, access_token=token))["errcode"] == 0
    assert [m["msgtype"] for m in emu.state.messages] == ["text", "miniprogrampage"]


async def test_malformed_bodies(emu):
    token = await emu.token()
    path = "/cgi-bin/message/custom/send"
    assert (await emu.post(path, raw=b"{not json", access_token=token)) == {
        "errcode": 47001, "errmsg": "data format error"}
    assert (await emu.post(path, raw=b"[1, 2]", access_token=token))["errcode"] == 47001
    assert (await emu.post(path, raw=b"\xff\xfe", access_token=token))["errcode"] == 47001
    assert (await emu.post(path, raw=b"", access_token=token))["errcode"] == 44002
    assert (await emu.post("/cgi-bin/stable_token", raw=b"{"))["errcode"] == 47001
    assert (await emu.get(path, access_token=token))["errcode"] == 43002
    assert emu.state.messages == []


async def test_unknown_path_is_http_404(emu):
    code, data, _ = await emu.request("GET", "/cgi-bin/no/such/api", access_token="x")
    assert code == 404 and data["errcode"] == 404
    code, data, _ = await emu.request("POST", "/elsewhere", {})
    assert code == 404 and data["errcode"] == 404


# -- template and mass messages ------------------------------------------------------


async def test_template_send(emu):
    client = emu.wechat()
    data = {"first": {"value": "订单已发货"}, "remark": {"value": "谢谢", "color": "#173177"}}
    result = await asyncio.to_thread(
        client.message.send_template, ALICE, "TPL_1", data, "https://wetoop.example/o/1",
        {"appid": "wxmp", "pagepath": "pages/order?id=1"},
    )
    assert result["errcode"] == 0 and result["errmsg"] == "ok"
    assert isinstance(result["msgid"], int)
    second = await asyncio.to_thread(client.message.send_template, ALICE, "TPL_1", data)
    assert second["msgid"] != result["msgid"]

    (msg, later) = await emu.get("/_emulator/messages", touser=ALICE)
    assert (msg["kind"], msg["msgtype"]) == ("template", "template")
    # Kept with the msgid the sender got: what a TEMPLATESENDJOBFINISH names.
    assert (msg["msgid"], later["msgid"]) == (result["msgid"], second["msgid"])
    assert msg["body"]["data"] == data
    assert msg["body"]["miniprogram"] == {"appid": "wxmp", "pagepath": "pages/order?id=1"}

    token = await emu.token()
    send = "/cgi-bin/message/template/send"
    assert (await emu.post(send, {"touser": ALICE, "data": {}}, access_token=token))["errcode"] == 40037
    assert (await emu.post(send, {"touser": "no way", "template_id": "T"}, access_token=token))["errcode"] == 40003
    await emu.post("/_emulator/users", {"openid": BOB, "subscribed": False})
    assert (await emu.post(send, {"touser": BOB, "template_id": "T"}, access_token=token))["errcode"] == 43004
    assert len(emu.state.messages) == 2


async def test_mass_send_stored_per_recipient(emu):
    carol = "oCAROL_openid-0000000000003"
    await emu.post("/_emulator/users", {"openid": carol, "subscribed": False})
    client = emu.wechat()
    result = await asyncio.to_thread(client.message.send_mass_text, [ALICE, BOB, carol], "群发 hello")
    assert result["errcode"] == 0 and result["errmsg"] == "send job submission success"
    assert isinstance(result["msg_id"], int) and isinstance(result["msg_data_id"], int)

    kept = await emu.get("/_emulator/messages")
    assert [m["touser"] for m in kept] == [ALICE, BOB]  # unsubscribed carol receives nothing
    for msg in kept:
        assert (msg["kind"], msg["msgtype"]) == ("mass", "text")
        assert msg["body"]["touser"] == msg["touser"]
        assert msg["body"]["text"] == {"content": "群发 hello"}


async def test_mass_send_list_size_rule(emu):
    token = await emu.token()
    send = "/cgi-bin/message/mass/send"

    def mass(touser):
        return {"touser": touser, "msgtype": "text", "text": {"content": "x"}}

    one = await emu.post(send, mass([ALICE]), access_token=token)
    assert one == {"errcode": 40130, "errmsg": "invalid openid list size, at least two openid"}
    assert (await emu.post(send, mass(ALICE), access_token=token))["errcode"] == 40130
    too_many = [f"o{i:027d}" for i in range(10001)]
    assert (await emu.post(send, mass(too_many), access_token=token))["errcode"] == 40130
    assert (await emu.post(send, mass([ALICE, "bad id"]), access_token=token))["errcode"] == 40003
    assert (await emu.post(send, {**mass([ALICE, BOB]), "msgtype": "news"}, access_token=token))["errcode"] == 40008
    assert emu.state.messages == []
    assert (await emu.post(send, mass(too_many[:10000]), access_token=token))["errcode"] == 0
    assert len(emu.state.messages) == 10000


# -- menu ---------------------------------------------------------------------------------


VALID_MENU = {"button": [
    {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
    {"name": "菜单", "sub_button": [
        {"type": "view", "name": "搜索", "url": "https://www.soso.com/"},
        {"type": "miniprogram", "name": "小程序", "url": "https://wetoop.example",
         "appid": "wx286b93c14bbf93aa", "pagepath": "pages/lunar/index"},
        {"type": "scancode_push", "name": "扫码", "key": "rselfmenu_0_1"},
    ]},
]}


async def test_menu_create_and_get(emu):
    client = emu.wechat()
    assert await asyncio.to_thread(client.menu.get) is None  # wechatpy's reading of 46003
    assert await asyncio.to_thread(client.menu.create, VALID_MENU) == {"errcode": 0, "errmsg": "ok"}
    assert await asyncio.to_thread(client.menu.get) == {"menu": VALID_MENU}

    token = await emu.token()
    bad = await emu.post("/cgi-bin/menu/create", {"button": []}, access_token=token)
    assert bad == {"errcode": 40016, "errmsg": "invalid button size"}
    assert emu.state.menu == VALID_MENU  # a refused menu leaves the old one


def _sub(**button):
    return {"button": [{"name": "父", "sub_button": [button]}]}


@pytest.mark.parametrize("menu, errcode", [
    ({}, 40016),
    ({"button": [{"type": "click", "name": "a", "key": "k"}] * 4}, 40016),
    ({"button": [{"name": "a", "sub_button": [{"type": "click", "name": "b", "key": "k"}] * 6}]}, 40023),
    ({"button": [{"name": "a"}]}, 40017),
    ({"button": [{"type": "teleport", "name": "a"}]}, 40017),
    ({"button": [{"type": "click", "name": "", "key": "k"}]}, 40018),
    ({"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]}, 40018),  # 18 bytes
    ({"button": [{"type": "click", "name": "a", "key": ""}]}, 40019),
    ({"button": [{"type": "click", "name": "a", "key": "k" * 129}]}, 40019),
    ({"button": [{"type": "view", "name": "a", "url": "ftp://x"}]}, 40055),
    ({"button": [{"type": "miniprogram", "name": "a", "url": "https://x"}]}, 40017),
    (_sub(type="view", name="b", url="javascript:alert(1)"), 40054),
    (_sub(type="click", name="字" * 21, key="k"), 40025),  # 63 bytes
    (_sub(type="nope", name="b"), 40024),
    (_sub(name="b", sub_button=[{"type": "click", "name": "c", "key": "k"}]), 40022),
])
async def test_menu_validation(emu, menu, errcode):
    token = await emu.token()
    assert (await emu.post("/cgi-bin/menu/create", menu, access_token=token))["errcode"] == errcode
    assert emu.state.menu is None


async def test_menu_name_limits_are_bytes(emu):
    token = await emu.token()
    menu = {"button": [{"type": "click", "name": "一二三四五", "key": "k"},  # 15 bytes
                       {"name": "a", "sub_button": [{"type": "click", "name": "字" * 20, "key": "k"}]}]}
    assert (await emu.post("/cgi-bin/menu/create", menu, access_token=token))["errcode"] == 0
    assert (await emu.get("/cgi-bin/menu/get", access_token=token)) == {"menu": menu}


# -- users ----------------------------------------------------------------------------------


async def test_user_info(emu):
    client = emu.wechat()
    info = await asyncio.to_thread(client.user.get, ALICE)
    assert info["subscribe"] == 1 and info["openid"] == ALICE
    assert info["language"] == "zh_CN" and info["subscribe_scene"] == "ADD_SCENE_QR_CODE"
    assert info["tagid_list"] == [] and isinstance(info["subscribe_time"], int)
    assert "unionid" not in info

    unionid = emu.state.unionid_for_user("alice")
    await emu.post("/_emulator/users", {"openid": ALICE, "unionid": unionid, "nickname": "爱丽丝"})
    info = await asyncio.to_thread(client.user.get, ALICE)
    assert (info["unionid"], info["nickname"], info["subscribe"]) == (unionid, "爱丽丝", 1)

    await emu.post("/_emulator/users", {"openid": BOB, "subscribed": False})
    assert await asyncio.to_thread(client.user.get, BOB) == {"subscribe": 0, "openid": BOB}

    users = await emu.get("/_emulator/users")
    assert {u["openid"]: u["subscribed"] for u in users} == {ALICE: True, BOB: False}
    # An upsert without "subscribed" keeps the earlier value.
    await emu.post("/_emulator/users", {"openid": BOB, "nickname": "b"})
    assert emu.state.users[BOB]["subscribed"] is False

    with pytest.raises(WeChatClientException) as caught:
        await asyncio.to_thread(client.user.get, "not an openid")
    assert caught.value.errcode == 40003
    code, _, _ = await emu.request("POST", "/_emulator/users", {"openid": "x y"})
    assert code == 400


async def test_user_info_batch(emu):
    client = emu.wechat()
    unionid = emu.state.unionid_for_user("alice")
    await emu.post("/_emulator/users", {"openid": ALICE, "unionid": unionid})
    await emu.post("/_emulator/users", {"openid": BOB, "subscribed": False})
    infos = await asyncio.to_thread(client.user.get_batch, [ALICE, BOB])
    assert infos == [await asyncio.to_thread(client.user.get, o) for o in (ALICE, BOB)]
    assert infos[0]["unionid"] == unionid and infos[1] == {"subscribe": 0, "openid": BOB}
    # One openid that is none refuses the whole request, as user/info refuses it.
    with pytest.raises(WeChatClientException) as caught:
        await asyncio.to_thread(client.user.get_batch, [ALICE, "not an openid"])
    assert caught.value.errcode == 40003
    # At most 100 a request; an empty or malformed list is refused.
    for users in ([ALICE] * 101, []):
        with pytest.raises(WeChatClientException) as caught:
            await asyncio.to_thread(client.user.get_batch, users)
        assert caught.value.errcode == 47001
    token = await emu.token()
    for body in ({"user_list": "x"}, {"user_list": [ALICE]}, {}):
        refused = await emu.post("/cgi-bin/user/info/batchget", body, access_token=token)
        assert refused["errcode"] == 47001, (body, refused)


# -- mini-program login -------------------------------------------------------------------


async def test_jscode2session(start_emulator):
    emu = await start_emulator(miniprogram_appid="wxmp", miniprogram_secret="mps")

    async def login(code, appid="wxmp", secret="mps"):
        return await emu.get("/sns/jscode2session", appid=appid, secret=secret,
                             js_code=code, grant_type="authorization_code")

    first, second, plain = await login("alice-1"), await login("alice-2"), await login("alice")
    assert first["openid"] == second["openid"] == plain["openid"]
    assert first["openid"] == emu.state.miniprogram_openid_for_user("alice")
    assert len(first["openid"]) == 28 and first["openid"].startswith("o")
    assert first["unionid"] == emu.state.unionid_for_user("alice")
    assert first["session_key"] != second["session_key"]
    bob = await login("bob-1")
    assert bob["openid"] != first["openid"] and bob["unionid"] != first["unionid"]

    assert await login("alice-1") == {"errcode": 40163, "errmsg": "code been used"}
    assert (await login("alice_1"))["errcode"] == 40029
    assert (await login(""))["errcode"] == 40029
    assert (await login("x" * 129))["errcode"] == 40029
    assert (await login("carol-1", appid="wx_other"))["errcode"] == 40013
    assert (await login("carol-1", secret="nope"))["errcode"] == 40125
    # The refused attempts did not use the code up.
    assert (await login("carol-1"))["openid"] == emu.state.miniprogram_openid_for_user("carol")


# -- rate limit, faults, reset, listeners ---------------------------------------------------


async def test_rate_limit(start_emulator):
    emu = await start_emulator(rate_limit=3)
    now = [3_000_000.0]
    emu.state.clock = lambda: now[0]
    token = await emu.token()
    send = "/cgi-bin/message/custom/send"
    # A refused message does not count toward the limit.
    assert (await emu.post(send, text_message("bad id", "x"), access_token=token))["errcode"] == 40003
    for i in range(3):
        assert (await emu.post(send, text_message(ALICE, f"m{i}"), access_token=token))["errcode"] == 0
        now[0] += 0.1
    limited = await emu.post(send, text_message(ALICE, "m3"), access_token=token)
    assert limited == {"errcode": 45009, "errmsg": "reach max api daily quota limit"}
    template = {"touser": ALICE, "template_id": "T"}
    assert (await emu.post("/cgi-bin/message/template/send", template, access_token=token))["errcode"] == 45009
    assert [m["body"]["text"]["content"] for m in emu.state.messages] == ["m0", "m1", "m2"]

    now[0] += 0.75  # the first accepted send is now more than a second old
    assert (await emu.post(send, text_message(ALICE, "m4"), access_token=token))["errcode"] == 0
    assert (await emu.post(send, text_message(ALICE, "m5"), access_token=token))["errcode"] == 45009
    assert len(emu.state.messages) == 4
    assert (await emu.get("/_emulator/stats"))["errors"] == {"40003": 1, "45009": 3}  # what a benchmark counts


async def test_rate_limit_in_real_time(start_emulator):
    emu = await start_emulator(rate_limit=5)
    token = await emu.token()
    results = [
        (await emu.post("/cgi-bin/message/custom/send", text_message(ALICE, str(i)),
                        access_token=token))["errcode"]
        for i in range(7)
    ]
    assert results == [0] * 5 + [45009] * 2
    assert len(await emu.get("/_emulator/messages")) == 5


async def test_fault_injection(emu):
    send = "/cgi-bin/message/custom/send"
    await emu.post("/_emulator/faults", {"path": send, "errcode": -1, "times": 2})
    await emu.post("/_emulator/faults", {"path": send, "errcode": 45015, "errmsg": "custom words"})
    token = await emu.token()

    # The access-token check comes first and does not consume the fault.
    assert (await emu.post(send, text_message(ALICE, "x")))["errcode"] == 41001
    assert await emu.post(send, text_message(ALICE, "x"), access_token=token) == {
        "errcode": -1, "errmsg": "system error"}
    # Faults win over body checks too.
    assert (await emu.post(send, raw=b"{", access_token=token))["errcode"] == -1
    client = emu.wechat()
    with pytest.raises(WeChatClientException) as caught:
        await asyncio.to_thread(client.message.send_text, ALICE, "x")
    assert (caught.value.errcode, caught.value.errmsg) == (45015, "custom words")
    assert emu.state.messages == []
    assert (await asyncio.to_thread(client.message.send_text, ALICE, "x"))["errcode"] == 0

    await emu.post("/_emulator/faults", {"path": "/cgi-bin/token", "errcode": 45011, "times": 5})
    assert (await emu.get("/cgi-bin/token", grant_type="client_credential",
                          appid=APPID, secret=SECRET))["errcode"] == 45011
    assert (await emu.request("DELETE", "/_emulator/faults"))[1] == {"ok": True}
    assert isinstance(await emu.token(), str)

    code, _, _ = await emu.request("POST", "/_emulator/faults", {"path": send, "errcode": "x"})
    assert code == 400
    for bad in ({"path": send}, {"path": send, "delay": -1}, {"path": send, "delay": "1"}, {"path": send, "delay": 61}):
        assert (await emu.request("POST", "/_emulator/faults", bad))[0] == 400


async def test_a_slow_answer(emu):
    send = "/cgi-bin/message/custom/send"
    await emu.post("/_emulator/faults", {"path": send, "delay": 0.5})
    await emu.post("/_emulator/faults", {"path": send, "delay": 0.3, "errcode": -1})
    token = await emu.token()
    timings = []
    for _ in range(3):
        started = time.monotonic()
        answer = await emu.post(send, text_message(ALICE, "x"), access_token=token)
        timings.append((answer["errcode"], time.monotonic() - started))
    assert [code for code, _ in timings] == [0, -1, 0]
    assert timings[0][1] >= 0.5 and timings[1][1] >= 0.3 and timings[2][1] < 0.3
    assert len(emu.state.messages) == 2


async def test_reset(emu):
    token = await emu.token()
    await emu.post("/cgi-bin/message/custom/send", text_message(ALICE, "x"), access_token=token)
    await emu.post("/cgi-bin/menu/create", VALID_MENU, access_token=token)
    await emu.post("/_emulator/users", {"openid": BOB, "subscribed": False})
    await emu.post("/_emulator/faults", {"path": "/cgi-bin/user/info", "errcode": -1})
    login = {"appid": "wxmp", "secret": "s", "js_code": "dave-1", "grant_type": "authorization_code"}
    assert "openid" in await emu.get("/sns/jscode2session", **login)

    assert await emu.post("/_emulator/reset") == {"ok": True}
    assert await emu.get("/_emulator/messages") == []
    assert await emu.get("/_emulator/users") == []
    assert await emu.get("/_emulator/stats") == {"token_requests": 0, "tokens_issued": 0, "calls": {}, "errors": {}}
    assert emu.state.menu is None
    assert (await emu.get("/cgi-bin/user/info", access_token=token, openid=BOB))["errcode"] == 40001
    token = await emu.token()
    assert (await emu.get("/cgi-bin/user/info", access_token=token, openid=BOB))["subscribe"] == 1
    assert "openid" in await emu.get("/sns/jscode2session", **login)


async def test_listeners(emu):
    seen_sync, seen_async = [], []
    done = asyncio.Event()

    async def on_message_async(message):
        await asyncio.sleep(0)
        seen_async.append(message["body"]["text"]["content"])
        done.set()

    def on_message(message):
        seen_sync.append((message["kind"], message["touser"]))

    def broken(message):
        raise RuntimeError("listener bug")

    for callback in (broken, on_message, on_message_async):
        emu.state.subscribe(callback)
    token = await emu.token()
    send = "/cgi-bin/message/custom/send"
    assert (await emu.post(send, text_message(ALICE, "一"), access_token=token))["errcode"] == 0
    await asyncio.wait_for(done.wait(), 2)
    assert seen_sync == [("custom", ALICE)] and seen_async == ["一"]

    emu.state.unsubscribe(on_message)
    emu.state.unsubscribe(on_message)  # unknown now: ignored
    await emu.post(send, text_message(BOB, "二"), access_token=token)
    assert seen_sync == [("custom", ALICE)]
    # Refused messages are not announced.
    await emu.post(send, text_message("bad id", "三"), access_token=token)
    await asyncio.sleep(0.01)
    assert seen_async == ["一", "二"]


def test_message_ids_grow_across_a_restart():
    # The simulator page asks for messages after the last id it saw: a new
    # emulator numbering from 1 hid its messages from an open page.
    before = EmulatorState()
    for _ in range(3):
        before._keep("custom", "o-a", "text", {"text": {"content": "x"}})
    after = EmulatorState()
    after._keep("custom", "o-a", "text", {"text": {"content": "y"}})
    assert after.messages[0]["id"] > before.messages[-1]["id"]
