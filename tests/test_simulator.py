"""The chat simulator's backend through real HTTP: users in the emulator, signed
(and encrypted) pushes to /wechat, live messages; ``wetoop-bot menu push``."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import AES_KEY, APPID, SECRET
from tests.test_cli import BIN, clean_env
from wechat.menu import DEFAULT_MENU, load_menu


async def call(svc, method: str, path: str, body=None, content_type: str = "application/json") -> tuple[int, dict | list]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode())
    response = await AsyncHTTPClient().fetch(
        svc.url + path, method=method, body=data, raise_error=False, allow_nonstandard_methods=True,
        headers={"Content-Type": content_type},
    )
    return response.code, json.loads(response.body)


async def new_user(svc, nickname: str = "小明") -> str:
    code, user = await call(svc, "POST", "/simulator/api/users", {"nickname": nickname})
    assert code == 201, user
    assert user["subscribed"] is False and len(user["openid"]) == 28
    return user["openid"]


async def send(svc, openid: str, kind: str, mode: str = "safe", **fields) -> tuple[int, dict]:
    return await call(svc, "POST", "/simulator/api/send", {"openid": openid, "kind": kind, "mode": mode, **fields})


@pytest.fixture
async def sim(make_service, tmp_path):
    return await make_service(wechat_aes_key=AES_KEY, simulator=True, data_dir=tmp_path)


async def test_simulator_is_404_unless_enabled(make_service):
    svc = await make_service(wechat_aes_key=AES_KEY)
    for path in ("/simulator", "/simulator/api/users", "/simulator/api/state"):
        response = await AsyncHTTPClient().fetch(svc.url + path, raise_error=False)
        assert response.code == 404, path
        assert json.loads(response.body)["error"]["code"] == "not_found"


async def test_page_and_its_assets_are_served(sim):
    page = await AsyncHTTPClient().fetch(sim.url + "/simulator")
    html = page.body.decode()
    assert "聊天模拟器" in html and 'lang="zh-CN"' in html
    # Everything local: no CDN, no other origin.
    assert "http://" not in html and "https://" not in html
    for asset in ("simulator/simulator.js", "simulator/simulator.css"):
        assert f"/static/{asset}?v=" in html
        response = await AsyncHTTPClient().fetch(f"{sim.url}/static/{asset}")
        assert response.code == 200 and len(response.body) > 1000


async def test_follow_chat_and_menu_in_safe_mode(sim, emulator):
    openid = await new_user(sim)

    code, refused = await send(sim, openid, "text", content="帮助")
    assert code == 409 and refused["error"]["code"] == "not_following" and "请先关注" in refused["error"]["message"]

    code, welcome = await send(sim, openid, "subscribe")
    assert code == 200, welcome
    assert welcome["reply"].startswith("欢迎关注微拓")
    # What went over the wire is WeChat's safe mode: signed query, ciphertext only.
    wire = welcome["wire"]
    assert wire["query"]["encrypt_type"] == "aes" and wire["query"]["msg_signature"]
    assert "<Encrypt>" in wire["request"] and "subscribe" not in wire["request"]
    assert "<Encrypt>" in wire["response"] and "欢迎" not in wire["response"]
    assert emulator.state.users[openid]["subscribed"] is True
    assert (await sim.runtime.followers.get(openid)).subscribed

    code, accepted = await send(sim, openid, "click", key="CONSENT_ACCEPT")
    assert code == 200 and "已记录：您同意了" in accepted["reply"]
    assert (await sim.runtime.consents.state(openid)).accepted

    code, answer = await send(sim, openid, "text", mode="plain", content="帮助")
    assert code == 200 and "注册" in answer["reply"]
    assert "<Content><![CDATA[帮助]]></Content>" in answer["wire"]["request"]

    code, _ = await send(sim, openid, "unsubscribe")
    assert code == 200 and emulator.state.users[openid]["subscribed"] is False
    assert not (await sim.runtime.followers.get(openid)).subscribed
    code, refused = await send(sim, openid, "click", key="HELP")
    assert code == 409
    # Followed again at once (within the second, as clicks here can be): a follow,
    # not the first one retried (that kept the user unfollowed and replayed its welcome).
    code, again = await send(sim, openid, "subscribe")
    assert code == 200 and (await sim.runtime.followers.get(openid)).subscribed
    code, _ = await send(sim, openid, "unsubscribe")
    code, _ = await send(sim, openid, "subscribe")
    assert code == 200 and (await sim.runtime.followers.get(openid)).subscribed


async def test_text_that_looks_like_markup_travels_intact(sim):
    openid = await new_user(sim)
    await send(sim, openid, "subscribe")
    await send(sim, openid, "text", content="同意")
    code, reply = await send(sim, openid, "text", content="注册")
    assert code == 200
    code, reply = await send(sim, openid, "text", content="企业")
    code, reply = await send(sim, openid, "text", content="南宁测试&公司")
    assert code == 200, reply
    # The dialog took the whole name and moved on to the credit code.
    assert "统一社会信用代码" in reply["reply"]
    # A question holding what XML holds dear reaches the service whole (its question log).
    code, reply = await send(sim, openid, "text", content="取消")
    question = "南宁]]>测试<公司>&的图片归谁？"
    code, reply = await send(sim, openid, "text", content=question)
    assert code == 200 and reply["reply"], reply
    assert question in [q["question"] for q in await sim.runtime.qa_log.export(openid)]


async def test_live_messages_are_listed_with_their_kind_after_the_cursor(sim, emulator):
    openid = await new_user(sim, "小红")
    await send(sim, openid, "subscribe")
    code, listed = await call(sim, "GET", f"/simulator/api/messages?openid={openid}&since=0")
    assert (code, listed) == (200, [])

    await sim.runtime.broadcasts.send(
        category="security", title="安全提醒", body="请勿向任何人透露验证码。", audience={"type": "all"}, by="test"
    )
    await sim.runtime.worker(concurrency=2).run_until_idle(30)
    code, listed = await call(sim, "GET", f"/simulator/api/messages?openid={openid}&since=0")
    assert code == 200 and len(listed) == 1
    [notice] = listed
    assert (notice["kind"], notice["label"]) == ("custom", "客服消息")
    assert "安全提醒" in notice["text"] and "请勿向任何人透露验证码" in notice["text"]

    code, later = await call(sim, "GET", f"/simulator/api/messages?openid={openid}&since={notice['id']}")
    assert (code, later) == (200, [])


async def test_template_and_mass_messages_are_labelled(sim):
    first, second = await new_user(sim, "甲"), await new_user(sim, "乙")
    for openid in (first, second):
        await send(sim, openid, "subscribe")
    wx = sim.runtime.wechat
    await wx.message.send_template(
        first, "TPL-SECURITY", {"first": {"value": "安全提醒"}, "keyword1": {"value": "异地登录"}, "remark": {"value": "如非本人操作请修改密码"}},
        url="https://example.com/n/1",
    )
    await wx.message.send_mass_text([first, second], "今晚 23:00 系统维护")
    code, listed = await call(sim, "GET", f"/simulator/api/messages?openid={first}")
    assert code == 200
    assert [(m["kind"], m["label"]) for m in listed] == [("template", "模板消息"), ("mass", "群发")]
    assert listed[0]["text"] == "安全提醒\nkeyword1：异地登录\n如非本人操作请修改密码\n详情：https://example.com/n/1"
    assert listed[1]["text"] == "今晚 23:00 系统维护"
    # A template configured for notices: its fields by what they hold, not keyword1 (the demo showed that).
    sim.runtime.templates = {"security": {"template_id": "TPL-SECURITY", "fields": {"first": "{title}", "keyword1": "{category}"}}}
    code, listed = await call(sim, "GET", f"/simulator/api/messages?openid={first}")
    assert listed[0]["text"] == "安全提醒\n通知类型：异地登录\n如非本人操作请修改密码\n详情：https://example.com/n/1"
    code, other = await call(sim, "GET", f"/simulator/api/messages?openid={second}")
    assert [m["kind"] for m in other] == ["mass"]


@pytest.mark.parametrize(
    "path, body, status, code, needle",
    [
        ("/simulator/api/users", {"nickname": ""}, 400, "bad_nickname", "昵称"),
        ("/simulator/api/users", {"nickname": "长" * 21}, 400, "bad_nickname", "昵称"),
        ("/simulator/api/users", b"not json", 400, "bad_json", "JSON"),
        ("/simulator/api/users", b"[" * 5000 + b"]" * 5000, 400, "bad_json", "JSON"),
        ("/simulator/api/users", b'{"nickname": "\\ud800"}', 400, "bad_text", "无效的字符"),
        ("/simulator/api/send", {"openid": "bad openid!", "kind": "text", "content": "x"}, 400, "bad_openid", "openid"),
        ("/simulator/api/send", {"openid": "o-nobody", "kind": "text", "content": "x"}, 404, "no_such_user", "新建"),
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "  "}, 400, "empty_text", "不能为空"),
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "字" * 2001}, 400, "text_too_long", "最长"),
        # Characters XML cannot carry (they were a 502 quoting the service's refusal of the push).
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "a\u0001\u001fb"}, 400, "bad_text", "控制字符"),
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "\ufffe\uffff"}, 400, "bad_text", "控制字符"),
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "a\u0000b"}, 400, "bad_text", "控制字符"),
        ("/simulator/api/users", {"nickname": "a\u0000b"}, 400, "bad_nickname", "控制字符"),
        ("/simulator/api/send", {"openid": "USER", "kind": "shake"}, 400, "bad_kind", "kind"),
        ("/simulator/api/send", {"openid": "o-nobody", "kind": "shake"}, 400, "bad_kind", "kind"),  # was no_such_user
        ("/simulator/api/send", {"openid": "USER", "kind": "click"}, 400, "bad_key", "菜单"),
        ("/simulator/api/send", {"openid": "USER", "kind": "text", "content": "x", "mode": "aes"}, 400, "bad_mode", "明文"),
        ("/simulator/api/messages?openid=USER&since=abc", None, 400, "bad_since", "整数"),
    ],
)
async def test_bad_input_gets_a_clear_chinese_answer(sim, path, body, status, code, needle):
    openid = await new_user(sim)
    await send(sim, openid, "subscribe")
    path = path.replace("USER", openid)
    if isinstance(body, dict):
        body = {k: (openid if v == "USER" else v) for k, v in body.items()}
    got_status, answer = await call(sim, "GET" if body is None else "POST", path, body)
    assert got_status == status, answer
    assert answer["error"]["code"] == code and needle in answer["error"]["message"]


async def test_only_json_is_accepted(sim):
    # A cross-site HTML form can post text/plain or form data, never JSON without a preflight.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        code, answer = await call(sim, "POST", "/simulator/api/users", {"nickname": "小明"}, content_type)
        assert code == 415 and answer["error"]["code"] == "not_json", answer
    code, users = await call(sim, "GET", "/simulator/api/users")
    assert (code, users) == (200, [])


async def test_safe_mode_needs_an_aes_key(make_service, tmp_path):
    svc = await make_service(simulator=True, data_dir=tmp_path)
    code, state = await call(svc, "GET", "/simulator/api/state")
    assert code == 200 and state["safe_mode_available"] is False
    openid = await new_user(svc)
    code, answer = await send(svc, openid, "subscribe", mode="safe")
    assert code == 400 and answer["error"]["code"] == "aes_not_configured"
    code, answer = await send(svc, openid, "subscribe", mode="plain")
    assert code == 200 and answer["reply"].startswith("欢迎关注微拓")


async def test_in_safe_mode_the_simulator_sends_encrypted_only(make_service, tmp_path):
    from tests.conftest import AES_KEY

    svc = await make_service(simulator=True, data_dir=tmp_path, wechat_aes_key=AES_KEY, wechat_encrypt_mode="safe")
    code, state = await call(svc, "GET", "/simulator/api/state")
    assert code == 200 and state["safe_mode_available"] is True and state["plain_mode_available"] is False
    openid = await new_user(svc)
    code, answer = await send(svc, openid, "subscribe", mode="plain")
    assert code == 400 and answer["error"]["code"] == "plaintext_refused"
    code, answer = await send(svc, openid, "subscribe", mode="safe")
    assert code == 200 and answer["reply"].startswith("欢迎关注微拓")


async def test_the_page_shows_the_pushed_menu_else_the_file(sim):
    code, state = await call(sim, "GET", "/simulator/api/state")
    assert code == 200 and state["menu_source"] == "file" and state["menu"] == load_menu()
    pushed = {"button": [{"type": "click", "name": "只有帮助", "key": "HELP"}]}
    await sim.runtime.wechat.menu.create(pushed)
    code, state = await call(sim, "GET", "/simulator/api/state")
    assert state["menu_source"] == "wechat" and state["menu"] == pushed


def test_menu_file_only_uses_keys_the_bot_handles():
    from bot import chat

    handled = {chat.MENU_HELP, chat.MENU_TERMS, chat.MENU_ACCEPT, chat.MENU_DECLINE, chat.MENU_WITHDRAW,
               chat.MENU_REGISTER, chat.MENU_ACCOUNT}
    leaves = [leaf for b in load_menu()["button"] for leaf in (b.get("sub_button") or [b])]
    keys = {leaf["key"] for leaf in leaves if leaf["type"] == "click"}
    assert keys == handled
    assert all(leaf["url"].startswith("https://") for leaf in leaves if leaf["type"] == "view")


# -- wetoop-bot menu push --------------------------------------------------------------------------


async def test_menu_push_cli(make_service, emulator, backing, tmp_path):
    svc = await make_service()
    env = dict(
        MONGODB_URI=backing.database_uri(svc.runtime.db.name), REDIS_URL=backing.redis_url,
        WECHAT_APPID=APPID, WECHAT_SECRET=SECRET, WECHAT_API_BASE=emulator.base,
        # Not ./var: a demo running there lent its WeChat account to the run without one.
        DATA_DIR=str(tmp_path),
    )

    async def cli(*args, **extra) -> subprocess.CompletedProcess:
        # Not subprocess.run: the emulator answering the CLI runs on this event loop.
        proc = await asyncio.create_subprocess_exec(
            str(BIN), *args, env=clean_env(**{**env, **extra}),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())

    empty = await cli("menu", "show")
    assert empty.returncode == 0 and "没有自定义菜单" in empty.stdout

    pushed = await cli("menu", "push")
    assert pushed.returncode == 0, pushed.stderr
    assert "菜单已推送" in pushed.stdout and emulator.base in pushed.stdout
    assert emulator.state.menu == json.loads(DEFAULT_MENU.read_text(encoding="utf-8"))
    shown = await cli("menu", "show")
    assert json.loads(shown.stdout) == emulator.state.menu
    assert "注意" not in pushed.stderr  # every key of the shipped menu has its handler
    # At DEBUG urllib3 logged each URL whole (the access token, jscode2session's
    # AppSecret) and PyMongo every command with its documents: libraries stay at INFO.
    debug = await cli("menu", "push", LOG_LEVEL="DEBUG")
    assert debug.returncode == 0, debug.stderr
    assert "access_token=" not in debug.stderr and "pymongo.command" not in debug.stderr, debug.stderr[:2000]

    # A key the bot does not handle (a typo) is pushed, with a warning naming it.
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"button": [{"type": "click", "name": "帮助", "key": "HELP"},
                                           {"type": "click", "name": "促销", "key": "PROMO_TYPO"}]}), encoding="utf-8")
    warned = await cli("menu", "push", "--file", str(typo))
    assert warned.returncode == 0 and "PROMO_TYPO" in warned.stderr and "HELP" not in warned.stderr
    assert emulator.state.menu["button"][1]["key"] == "PROMO_TYPO"
    assert (await cli("menu", "push")).returncode == 0

    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    long_name = tmp_path / "long.json"
    long_name.write_text(json.dumps({"button": [{"type": "click", "name": "一个太长的菜单名称", "key": "HELP"}]}), encoding="utf-8")
    too_many = tmp_path / "many.json"
    too_many.write_text(json.dumps({"button": [{"type": "click", "name": "帮助", "key": "HELP"}] * 4}), encoding="utf-8")
    for path, needle in (
        (broken, "不是有效的 JSON"), (tmp_path / "missing.json", "无法读取菜单文件"),
        (too_many, "1 到 3 个一级菜单"), (long_name, "40018"),
    ):
        result = await cli("menu", "push", "--file", str(path))
        assert result.returncode == 2, (path, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    # A refused push leaves the previous menu in place.
    assert emulator.state.menu == json.loads(DEFAULT_MENU.read_text(encoding="utf-8"))

    no_credentials = await cli("menu", "push", WECHAT_APPID="", WECHAT_SECRET="")
    assert no_credentials.returncode == 2 and "WECHAT_APPID" in no_credentials.stderr


async def test_without_the_emulator_the_page_still_loads_and_says_why(make_service, tmp_path):
    from storage.embedded import free_port

    svc = await make_service(simulator=True, wechat_api_base=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path)
    code, state = await call(svc, "GET", "/simulator/api/state")
    assert code == 200 and state["menu_source"] == "file"
    code, answer = await call(svc, "GET", "/simulator/api/users")
    assert code == 502 and answer["error"]["code"] == "emulator_unavailable"
    assert "无法连接微信 API 模拟器" in answer["error"]["message"]


async def test_users_are_kept_across_a_restart(make_service, emulator, tmp_path):
    # The emulator forgets its users when the demo stops; the simulator gives
    # them back, so the people the bot remembers can be picked again.
    first = await make_service(simulator=True, data_dir=tmp_path)
    kept = await new_user(first, "持久")
    assert (await send(first, kept, "subscribe", mode="plain"))[0] == 200
    gone = await new_user(first, "走了")
    emulator.state.reset()  # the demo stopped: a new emulator knows nobody
    second = await make_service(simulator=True, data_dir=tmp_path)
    code, users = await call(second, "GET", "/simulator/api/users")
    assert code == 200
    assert {u["openid"]: (u["nickname"], u["subscribed"]) for u in users} == {kept: ("持久", True), gone: ("走了", False)}
    code, reply = await send(second, kept, "text", mode="plain", content="帮助")
    assert code == 200, reply

    # The emulator restarts while the service runs: nobody is lost, old or new.
    emulator.state.reset()
    later = await new_user(second, "后来")
    code, users = await call(second, "GET", "/simulator/api/users")
    assert {u["openid"] for u in users} == {kept, gone, later}
    # Saves at once (two tabs) leave a whole file.
    await asyncio.gather(*(new_user(second, f"并发{i}") for i in range(8)))
    saved = json.loads((tmp_path / "simulator" / "users.json").read_text(encoding="utf-8"))
    assert len(saved) == 11 and not list((tmp_path / "simulator").glob("*.part"))


async def test_the_page_state_does_not_need_the_emulator_even_with_saved_users(make_service, tmp_path):
    from storage.embedded import free_port

    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "users.json").write_text('[{"openid": "o-saved", "nickname": "存", "subscribed": true}]')
    svc = await make_service(simulator=True, wechat_api_base=f"http://127.0.0.1:{free_port()}", data_dir=tmp_path)
    code, state = await call(svc, "GET", "/simulator/api/state")
    assert code == 200 and state["menu_source"] == "file"


async def test_a_simulated_user_logs_in_to_the_mini_program_as_the_same_person(make_service, tmp_path):
    # Simulator users had no unionid: chat and the app were two people in the demo.
    from tests.test_api import MP_APPID, MP_SECRET

    svc = await make_service(wechat_aes_key=AES_KEY, simulator=True, data_dir=tmp_path,
                             miniprogram_appid=MP_APPID, miniprogram_secret=MP_SECRET)
    code, user = await call(svc, "POST", "/simulator/api/users", {"nickname": "小红"})
    assert code == 201 and user["miniprogram_code"].endswith("-1")
    await send(svc, user["openid"], "subscribe")
    code, reply = await send(svc, user["openid"], "text", content="同意")
    assert "已记录" in reply["reply"]
    response = await AsyncHTTPClient().fetch(svc.url + "/api/v1/session", method="POST",
                                             body=json.dumps({"code": user["miniprogram_code"]}))
    me = json.loads(response.body)["user"]
    assert me["linked_official_account"] is True and me["consent"]["status"] == "accepted"
    code, listed = await call(svc, "GET", "/simulator/api/users")
    assert [u["miniprogram_code"] for u in listed if u["openid"] == user["openid"]] == [user["miniprogram_code"]]
