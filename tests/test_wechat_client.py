"""The WeChat API client against the emulator: one shared token for every process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import AsyncIterator

import pytest

from storage import redis_store
from storage.redis_store import key
from tests.conftest import APPID, SECRET
from wechat.api import WeChatAPI, WeChatAPIError
from wechat.client import SharedTokenClient


@pytest.fixture
async def clients(backing, emulator):
    """Two clients as two processes would have them: separate objects and connections, one Redis."""
    made = []

    def make() -> WeChatAPI:
        sync_redis = redis_store.connect_sync(backing.redis_url)
        sync_redis.delete(key("wechat", "access_token", APPID), key("wechat", "token_refreshes", APPID))
        api = WeChatAPI(SharedTokenClient(APPID, SECRET, emulator.base, sync_redis))
        made.append((api, sync_redis))
        return api

    yield make
    for api, sync_redis in made:
        await api.aclose()
        sync_redis.close()


async def test_two_clients_share_one_token(clients, emulator):
    first, second = clients(), clients()
    await first.message.send_text("o-one", "来自进程一")
    await second.message.send_text("o-two", "来自进程二")
    assert emulator.state.stats()["tokens_issued"] == 1
    assert await first.access_token() == await second.access_token()
    sent = await emulator.messages()
    assert [(m["touser"], m["body"]["text"]["content"]) for m in sent] == [
        ("o-one", "来自进程一"),
        ("o-two", "来自进程二"),
    ]


async def test_concurrent_first_use_fetches_once(clients, emulator):
    apis = [clients() for _ in range(4)]
    await asyncio.gather(*(api.message.send_text(f"o-{i}", "并发") for i, api in enumerate(apis) for _ in range(3)))
    assert emulator.state.stats()["tokens_issued"] == 1
    assert apis[0].client.token_refreshes() == 1
    assert len(await emulator.messages()) == 12


async def test_threads_in_two_clients_refresh_once(clients, emulator):
    first, second = clients(), clients()
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def use(client: SharedTokenClient) -> None:
        barrier.wait()
        try:
            client.message.send_text("o-thread", "hi")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=use, args=((first if i % 2 else second).client,)) for i in range(8)]
    for t in threads:
        t.start()
    # The emulator runs on this event loop: wait without blocking it.
    await asyncio.gather(*(asyncio.to_thread(t.join) for t in threads))
    assert errors == []
    assert emulator.state.stats()["tokens_issued"] == 1


async def test_invalidated_token_is_replaced_once_and_call_retried(clients, emulator):
    first, second = clients(), clients()
    await first.message.send_text("o-a", "一")
    old = await first.access_token()
    emulator.state.invalidate_tokens()
    await first.message.send_text("o-a", "二")  # 40001, refresh, retry
    await second.message.send_text("o-a", "三")  # finds the new token in Redis
    new = await second.access_token()
    assert new != old
    assert emulator.state.stats()["tokens_issued"] == 2
    assert [m["body"]["text"]["content"] for m in await emulator.messages("o-a")] == ["一", "二", "三"]


async def test_expired_token_is_refreshed(clients, emulator):
    api = clients()
    await api.message.send_text("o-b", "一")
    emulator.state.expire_tokens()
    await api.message.send_text("o-b", "二")
    assert [m["body"]["text"]["content"] for m in await emulator.messages("o-b")] == ["一", "二"]


async def test_errors_carry_wechat_codes(clients, emulator):
    api = clients()
    await emulator.post("/_emulator/users", {"openid": "o-gone", "subscribed": False})
    with pytest.raises(WeChatAPIError) as info:
        await api.message.send_text("o-gone", "你还在吗")
    assert info.value.code == 43004
    assert await emulator.messages("o-gone") == []


@contextlib.asynccontextmanager
async def one_client(backing, appid: str, secret: str, base: str) -> AsyncIterator[WeChatAPI]:
    """A client with a 1 s timeout and no stored token."""
    sync_redis = redis_store.connect_sync(backing.redis_url)
    sync_redis.delete(key("wechat", "access_token", appid))
    api = WeChatAPI(SharedTokenClient(appid, secret, base, sync_redis, timeout=1))
    try:
        yield api
    finally:
        await api.aclose()
        sync_redis.close()


async def test_network_failure_is_a_typed_error(backing):
    async with one_client(backing, "wx-nowhere", "s", "http://127.0.0.1:9") as api:
        with pytest.raises(WeChatAPIError) as info:
            await api.message.send_text("o-x", "hi")
        assert info.value.code == -2


async def test_template_send_goes_out_as_wechatpy_builds_it(clients, emulator):
    api = clients()
    await api.message.send_text("o-t", "先取令牌")  # the first call may fetch the token in a thread
    api._executor.shutdown()  # a call made in a thread would now fail: this one must not use one
    result = await api.message.send_template("o-t", "TPL-1", {"first": {"value": "您好"}}, url="https://wetoop.example/n")
    assert isinstance(result.get("msgid"), int)
    sent = (await emulator.messages("o-t"))[-1]
    assert sent["body"] == {
        "touser": "o-t",
        "template_id": "TPL-1",
        "url": "https://wetoop.example/n",
        "data": {"first": {"value": "您好"}},
    }


async def test_rate_limit_error_from_the_async_path_carries_its_code(clients, emulator):
    api = clients()
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "errcode": 45009})
    with pytest.raises(WeChatAPIError) as info:
        await api.message.send_text("o-r", "太快了")
    assert info.value.code == 45009
    await api.message.send_text("o-r", "再试一次")
    assert [m["body"]["text"]["content"] for m in await emulator.messages("o-r")] == ["再试一次"]


async def test_a_send_without_an_answer_in_time_is_told_apart(backing, emulator):
    """-4, not -2: the request went out and WeChat may have acted on it."""
    await emulator.post("/_emulator/faults", {"path": "/cgi-bin/message/custom/send", "delay": 1.5})
    async with one_client(backing, APPID, SECRET, emulator.base) as api:
        with pytest.raises(WeChatAPIError) as info:
            await api.message.send_text("o-slow", "hi")
        assert info.value.code == -4


async def test_errors_never_carry_the_app_secret_or_a_token(backing):
    # A connection error names the URL: the AppSecret and js_code are in its
    # query (jscode2session), the access token in every other call's.
    from storage.embedded import free_port
    from wechat.miniprogram import MiniProgramAPI, MiniProgramClient

    down = f"http://127.0.0.1:{free_port()}"
    mini = MiniProgramAPI(MiniProgramClient("wxMINIAPPID", "TOPSECRET-mini-appsecret", down, timeout=1.0))
    sync_redis = redis_store.connect_sync(backing.redis_url)
    sync_redis.set(key("wechat", "access_token", "wxOFFICIAL"), "ACCESS-TOKEN-SECRET", ex=60)
    official = WeChatAPI(SharedTokenClient("wxOFFICIAL", "OFFICIAL-SECRET", down, sync_redis))
    try:
        with pytest.raises(WeChatAPIError) as login:
            await mini.code_to_session("the-js-code")
        with pytest.raises(WeChatAPIError) as info:
            await official.user.get("o-someone")
    finally:
        mini.close()
        await official.aclose()
        sync_redis.delete(key("wechat", "access_token", "wxOFFICIAL"))
        sync_redis.close()
    for error in (login.value, info.value):
        assert error.code in (-2, -4), error
        for secret in ("TOPSECRET-mini-appsecret", "the-js-code", "ACCESS-TOKEN-SECRET", "OFFICIAL-SECRET"):
            assert secret not in str(error), str(error)
