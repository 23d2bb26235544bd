"""/wechat over real HTTP: verification, the three modes, hostile input, retries, deadline."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

import pytest
from tornado.httpclient import AsyncHTTPClient

from bot import texts
from bot.chat import router as default_router
from bot.replies import Reply
from bot.router import Router
from storage import reply_cache
from tests.conftest import TOKEN
from tests.test_health import health
from tests.wx import event_xml, message_xml, sign, text_xml


async def fetch(url: str, **kwargs):
    return await AsyncHTTPClient().fetch(url, raise_error=False, **kwargs)


def error_of(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)["error"]


# -- URL verification -------------------------------------------------------


async def test_url_verification_echoes(service):
    ts, nonce = str(int(time.time())), "42"
    query = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "hello-wechat"}
    response = await fetch(service.url + "/wechat?" + urlencode(query))
    assert response.code == 200
    assert response.body == b"hello-wechat"


async def test_url_verification_refuses_a_stale_timestamp(service):
    # One verification URL from a log made the service echo anything, for ever.
    ts, nonce = str(int(time.time()) - 3600), "42"
    query = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "<script>x</script>"}
    response = await fetch(service.url + "/wechat?" + urlencode(query))
    assert response.code == 403 and error_of(response)["code"] == "stale_timestamp"


@pytest.mark.parametrize("tamper", ["signature", "timestamp", "missing"])
async def test_url_verification_refuses_bad_signature(service, tamper):
    ts, nonce = str(int(time.time())), "42"
    query = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "x"}
    if tamper == "signature":
        query["signature"] = sign("othertoken", ts, nonce)
    elif tamper == "timestamp":
        query["timestamp"] = str(int(ts) + 1)
    else:
        del query["signature"]
    response = await fetch(service.url + "/wechat?" + urlencode(query))
    assert response.code == 403
    assert error_of(response)["code"] == "bad_signature"
    assert b"x" != response.body


# -- the three modes --------------------------------------------------------


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
async def test_text_message_in_each_mode(service, mode):
    response = await service.wechat.post(text_xml("o-alice", "帮助", to_user="gh_account"), mode)
    assert response.code == 200
    if mode == "plain":
        assert b"<Encrypt>" not in response.body
    else:
        assert b"<Encrypt>" in response.body and "帮助".encode() not in response.body
    reply = service.wechat.reply(response)
    assert reply["Content"] == texts.HELP
    assert reply["ToUserName"] == "o-alice"
    assert reply["FromUserName"] == "gh_account"
    assert reply["MsgType"] == "text"


async def test_forged_signature_on_post_is_refused(service):
    query = service.wechat.query()
    query["signature"] = "0" * 40
    response = await service.wechat.post(text_xml("o-alice", "帮助"), query=query)
    assert response.code == 403
    assert error_of(response)["code"] == "bad_signature"


async def test_a_signed_query_reused_with_another_body_is_refused(service):
    # A signed query string (they reach access logs) must not sign pushes of
    # an attacker's choosing: the signature does not cover the body.
    query, body = service.wechat.query(), text_xml("o-victim", "帮助")
    genuine = await service.wechat.post(body, query=query)
    assert service.wechat.reply(genuine)["Content"] == texts.HELP
    forged = await service.wechat.post(text_xml("o-victim", "同意"), query=query)
    assert forged.code == 403 and error_of(forged)["code"] == "replayed_push"
    assert await service.runtime.ledger.history("o-victim") == []
    # WeChat's own retry (same query, same body) is still answered.
    again = await service.wechat.post(body, query=query)
    assert again.code == 200 and service.wechat.reply(again)["Content"] == texts.HELP


async def test_a_url_checks_query_cannot_sign_a_push(service):
    # The URL check's signature is a plaintext push's: seen in a log, it
    # signed one push of anyone's making (a consent for any openid).
    query = {k: v for k, v in service.wechat.query().items()}
    checked = await fetch(service.url + "/wechat?" + urlencode({**query, "echostr": "hello"}))
    assert checked.code == 200 and checked.body == b"hello"
    forged = await service.wechat.post(text_xml("o-victim", "同意"), query=query)
    assert forged.code == 403 and error_of(forged)["code"] == "replayed_push"
    assert await service.runtime.ledger.history("o-victim") == []
    # WeChat's console may check the URL more than once.
    assert (await fetch(service.url + "/wechat?" + urlencode({**query, "echostr": "again"}))).body == b"again"


async def test_a_safe_mode_query_cannot_sign_a_plaintext_push(service):
    query, body = service.wechat.envelope(text_xml("o-victim", "帮助"), "safe")
    assert (await service.wechat.post(body, query=query)).code == 200
    plain_query = {k: v for k, v in query.items() if k not in ("encrypt_type", "msg_signature")}
    forged = await service.wechat.post(text_xml("o-victim", "同意"), query=plain_query)
    assert forged.code == 403 and error_of(forged)["code"] == "replayed_push"
    assert await service.runtime.ledger.history("o-victim") == []


async def test_safe_mode_refuses_plaintext_pushes(make_service):
    # A plaintext push's signature covers its timestamp and nonce, not its text:
    # an account set to 安全模式 in WeChat's console takes encrypted pushes only.
    from tests.conftest import AES_KEY

    safe = await make_service(wechat_aes_key=AES_KEY, wechat_encrypt_mode="safe")
    response = await safe.wechat.post(text_xml("o-victim", "同意"), "plain")
    assert response.code == 403 and error_of(response)["code"] == "plaintext_refused"
    assert "安全模式" in error_of(response)["message"]
    assert await safe.runtime.ledger.history("o-victim") == []
    assert safe.wechat.reply(await safe.wechat.post(text_xml("o-alice", "帮助"), "safe"))["Content"] == texts.HELP
    # WeChat's URL check is a plaintext GET in every mode.
    ts, nonce = str(int(time.time())), "42"
    query = {"signature": sign(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce, "echostr": "hello-wechat"}
    assert (await fetch(safe.url + "/wechat?" + urlencode(query))).body == b"hello-wechat"


async def test_plain_mode_with_a_key_refuses_encrypted_pushes(make_service):
    from tests.conftest import AES_KEY

    plain = await make_service(wechat_aes_key=AES_KEY, wechat_encrypt_mode="plain")
    response = await plain.wechat.post(text_xml("o-alice", "帮助"), "safe")
    assert response.code == 400 and error_of(response)["code"] == "encrypted_refused"
    assert await plain.wechat.ask("o-alice", "帮助") == texts.HELP


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("offset", [-600, 600])
async def test_a_push_signed_long_ago_or_ahead_is_refused(service, mode, offset):
    timestamp = str(int(time.time()) + offset)
    query, body = service.wechat.envelope(text_xml("o-victim", "同意"), mode)
    query.update(timestamp=timestamp, signature=sign(TOKEN, timestamp, query["nonce"]))
    if mode == "safe":  # sealed again, so that only the time is wrong
        query, body = _sealed_at(service, text_xml("o-victim", "同意"), timestamp, query["nonce"])
    response = await service.wechat.post(body, query=query)
    assert response.code == 403 and error_of(response)["code"] == "stale_timestamp"
    assert "分钟" in error_of(response)["message"]
    assert await service.runtime.ledger.history("o-victim") == []


def _sealed_at(service, xml: str, timestamp: str, nonce: str) -> tuple[dict, str]:
    import xmltodict

    sealed = xmltodict.parse(service.wechat.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
             "encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}
    return query, f"<xml><ToUserName><![CDATA[gh_wetoop]]></ToUserName><Encrypt><![CDATA[{sealed['Encrypt']}]]></Encrypt></xml>"


async def test_forged_msg_signature_is_refused(service):
    query, body = service.wechat.envelope(text_xml("o-alice", "帮助"), "safe")
    query["msg_signature"] = "f" * 40
    response = await service.wechat.post(body, query=query)
    assert response.code == 403


async def test_signatures_are_compared_in_constant_time(service, monkeypatch):
    # wechatpy compares with != , which stops at the first wrong character.
    import hmac

    compared, compare = [], hmac.compare_digest

    def recording(a, b):
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    ts, nonce = str(int(time.time())), "ct-1"
    forged = {"signature": "0" * 40, "timestamp": ts, "nonce": nonce}
    assert (await service.wechat.post(text_xml("o-alice", "帮助"), query=forged)).code == 403
    assert compared == [(sign(TOKEN, ts, nonce).encode(), b"0" * 40)]
    query, body = service.wechat.envelope(text_xml("o-alice", "帮助"), "safe")
    query["msg_signature"] = "f" * 40
    assert (await service.wechat.post(body, query=query)).code == 403
    assert compared[-1][1] == b"f" * 40 and len(compared) == 3  # the query's signature, then msg_signature
    # A signature that is not ASCII is refused, not a 500 (compare_digest refuses such strings).
    forged["signature"] = "签" * 40
    assert (await service.wechat.post(text_xml("o-alice", "帮助"), query=forged)).code == 403


async def test_ciphertext_from_another_key_is_refused(service):
    from tests.wx import WeChatServer

    stranger = WeChatServer(service.url, TOKEN, "B" * 43, "wx-other")
    response = await stranger.post(text_xml("o-alice", "帮助"), "safe")
    assert response.code in (400, 403)
    assert "error" in json.loads(response.body)


async def test_encrypted_push_without_aes_key_configured(make_service):
    from tests.conftest import AES_KEY
    from tests.wx import WeChatServer

    plain_only = await make_service()
    sender = WeChatServer(plain_only.url, TOKEN, AES_KEY, "wx1234567890test")
    response = await sender.post(text_xml("o-alice", "帮助"), "safe")
    assert response.code == 400
    assert error_of(response)["code"] == "aes_not_configured"
    # Plaintext still works on that service.
    assert await plain_only.wechat.ask("o-alice", "帮助") == texts.HELP


# -- hostile and malformed input ---------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o-evil</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o-evil</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


#: A declaration between comments that hold what looks like CDATA: a regular
#: expression that dropped CDATA before looking for declarations dropped it too.
BETWEEN_COMMENTS = ('<!-- <![CDATA[ --><!DOCTYPE xml [<!ENTITY a "' + "A" * 2000 + '">]><!-- ]]> -->'
                    "<xml><ToUserName>gh</ToUserName><FromUserName>o-evil</FromUserName><CreateTime>1</CreateTime>"
                    "<MsgType>text</MsgType><Content>" + "&a;" * 50 + "</Content><MsgId>4</MsgId></xml>")


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, "<!doctype xml><xml/>", BETWEEN_COMMENTS])
async def test_doctype_and_entities_are_refused(service, body):
    response = await service.wechat.post(body.encode(), query=service.wechat.query())
    assert response.code == 400
    # A lower-case doctype is no declaration to expat: malformed XML.
    assert error_of(response)["code"] == ("bad_xml" if body.startswith("<!doctype") else "hostile_xml")
    assert b"root:" not in response.body


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_a_user_asking_about_doctype_is_answered(service, mode):
    # The words sit in CDATA and declare nothing: they were refused (400), and
    # WeChat then told the user the account could not serve them.
    for question in ("<!DOCTYPE html> 是什么", "如何防止 <!ENTITY 攻击"):
        reply = await service.wechat.ask("o-doctype", question, mode=mode)
        assert reply, question


async def test_entities_inside_the_ciphertext_are_refused(service):
    query, body = service.wechat.envelope(EXTERNAL_ENTITY, "safe")
    response = await service.wechat.post(body, query=query)
    assert response.code == 400
    assert error_of(response)["code"] == "hostile_xml"


def _bomb(levels: int = 5) -> str:
    entities = '<!ENTITY e0 "lol">' + "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, levels + 1))
    return (f'<?xml version="1.0"?><!DOCTYPE xml [{entities}]><xml><ToUserName>gh</ToUserName>'
            f"<FromUserName>o-evil</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
            f"<Content>&e{levels};</Content><MsgId>3</MsgId></xml>")


async def test_a_nul_in_a_message_is_named_as_the_reason(service):
    # Valid UTF-8 with a NUL in <Content>: refused as "must be UTF-8", which it was.
    response = await service.wechat.post(text_xml("o-nul", "你\x00好"))
    assert response.code == 400 and error_of(response)["code"] == "bad_encoding"
    assert "NUL" in error_of(response)["message"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_a_bomb_in_utf16_is_refused_at_once(service, encoding, mode):
    # UTF-16 of ASCII is valid UTF-8 with NULs between: the DOCTYPE check on the
    # bytes missed it, expat read it as UTF-16 and expanded a million characters
    # (the event loop blocked for seconds). A million-character question was logged.
    text = _bomb().encode(encoding).decode("ascii")
    query, body = service.wechat.envelope(text, mode)
    started = time.monotonic()
    response = await service.wechat.post(body.encode(), query=query)
    assert response.code == 400 and error_of(response)["code"] in ("bad_encoding", "hostile_xml")
    assert time.monotonic() - started < 1.0


async def test_a_signed_timestamp_too_large_for_a_number_is_refused(service):
    # int("9" * 400) cannot be compared with the clock's float: it was a 500.
    for timestamp in ("9" * 400, "1" + "0" * 309):
        query = service.wechat.query(timestamp=timestamp)
        response = await service.wechat.post(text_xml("o-alice", "帮助").encode(), query=query)
        assert response.code == 403, response.body


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml at all",
        b"<xml><FromUserName>o</FromUserName>",
        b"<other><a>1</a></other>",
        b"<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime></xml>",
        b"<xml><FromUserName>o</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>",
        "<xml><Content>中文</Content></xml>".encode("gbk"),
        b"<xml><MsgType><a>1</a></MsgType><FromUserName>o</FromUserName><CreateTime>1</CreateTime></xml>",
        # No openid: too long, or with characters WeChat's never have.
        b"<xml><MsgType>text</MsgType><FromUserName>" + b"o" * 65 + b"</FromUserName><CreateTime>1</CreateTime></xml>",
        "<xml><MsgType>text</MsgType><FromUserName>o 用户</FromUserName><CreateTime>1</CreateTime></xml>".encode(),
    ],
)
async def test_malformed_bodies_get_400_json(service, body):
    response = await service.wechat.post(body, query=service.wechat.query())
    assert response.code == 400
    error = error_of(response)
    assert error["code"] and error["message"]


async def test_oversize_body_gets_413(service):
    big = text_xml("o-alice", "长" * 30000)
    assert len(big.encode()) > 64 * 1024
    response = await service.wechat.post(big)
    assert response.code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_oversize_chunked_body_gets_413(service):
    chunk = b"<xml>" + b"a" * 70000 + b"</xml>"

    async def producer(write):
        for start in range(0, len(chunk), 8192):
            await write(chunk[start : start + 8192])

    query = service.wechat.query()
    response = await AsyncHTTPClient().fetch(
        service.wechat.url + "?" + urlencode(query), method="POST", body_producer=producer, raise_error=False
    )
    assert response.code == 413


async def test_a_request_that_never_finishes_arriving_is_cut_off(make_service, monkeypatch):
    # Tornado waited an hour for the rest of a body, or for the next request
    # on a kept-alive connection: 15,000 such connections were held open.
    import handlers.app

    monkeypatch.setattr(handlers.app, "BODY_TIMEOUT", 0.5)
    monkeypatch.setattr(handlers.app, "IDLE_TIMEOUT", 0.5)
    svc = await make_service()
    host, port = svc.url.removeprefix("http://").split(":")

    async def closed_by_server(request: bytes) -> bool:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it, having answered nothing
        finally:
            writer.close()

    query = urlencode(svc.wechat.query())
    partial_body = (f"POST /wechat?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                    f"Content-Length: 500\r\n\r\n<xml><ToUser").encode()
    assert await closed_by_server(partial_body)
    assert await closed_by_server(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    assert (await health(svc))[0] == 200


async def test_unknown_types_get_success(service):
    unknown_msg = message_xml("o-alice", "hologram", "<Beam>1</Beam>")
    response = await service.wechat.post(unknown_msg)
    assert response.code == 200 and response.body == b"success"
    unknown_event = event_xml("o-alice", "teleport")
    response = await service.wechat.post(unknown_event)
    assert response.code == 200 and response.body == b"success"


async def test_known_event_without_handler_gets_success(service):
    response = await service.wechat.post(event_xml("o-alice", "VIEW", "https://example.com/"))
    assert response.code == 200 and response.body == b"success"


async def test_other_message_types_are_told_to_use_text(service):
    image = message_xml("o-alice", "image", "<PicUrl>http://x/y.jpg</PicUrl><MediaId>m1</MediaId>")
    response = await service.wechat.post(image)
    assert service.wechat.reply(response)["Content"] == texts.ONLY_TEXT


async def test_a_voice_message_with_speech_recognition_is_answered_as_text(service):
    said = message_xml("o-voice", "voice", "<MediaId>m2</MediaId><Format>amr</Format>"
                                           "<Recognition><![CDATA[我上传的图片版权归谁？]]></Recognition>")
    answer = service.wechat.reply(await service.wechat.post(said))["Content"]
    assert "4.1" in answer or "知识产权" in answer, answer
    unrecognised = message_xml("o-voice", "voice", "<MediaId>m3</MediaId><Format>amr</Format><Recognition></Recognition>")
    assert service.wechat.reply(await service.wechat.post(unrecognised))["Content"] == texts.ONLY_TEXT


async def test_unknown_path_is_json_404(service):
    response = await fetch(service.url + "/nowhere")
    assert response.code == 404
    assert error_of(response)["code"] == "not_found"


# -- routing into the domain -------------------------------------------------


async def test_subscribe_welcomes_and_records(service):
    response = await service.wechat.post(event_xml("o-bob", "subscribe"))
    welcome = service.wechat.reply(response)["Content"]
    assert welcome.startswith("欢迎关注微拓") and "回复“同意”" in welcome
    follower = await service.runtime.followers.get("o-bob")
    assert follower is not None and follower.subscribed is True and follower.subscribed_at is not None

    response = await service.wechat.post(event_xml("o-bob", "unsubscribe", create_time=int(time.time()) + 1))
    assert response.body == b"success"
    follower = await service.runtime.followers.get("o-bob")
    assert follower.subscribed is False and follower.unsubscribed_at is not None


async def test_menu_click_and_free_text(service):
    response = await service.wechat.post(event_xml("o-carol", "CLICK", "HELP"))
    assert service.wechat.reply(response)["Content"] == texts.HELP
    # Free text goes to the Q&A, which says when the agreement does not cover it.
    weather = await service.wechat.ask("o-carol", "今天天气怎么样")
    assert "没有找到能回答这个问题的条款" in weather and texts.CONTACT in weather
    copyright_ = await service.wechat.ask("o-carol", "我上传的图片版权归谁？")
    assert "第4节" in copyright_ and "条款 4" in copyright_
    # Full-width and case are folded for command words.
    assert await service.wechat.ask("o-carol", "  ＨＥＬＰ ") == texts.HELP


async def test_handler_failure_is_a_polite_reply(make_service):
    router = Router()

    @router.fallback
    async def broken(chat):
        raise RuntimeError("boom")

    svc = await make_service(router=router)
    assert await svc.wechat.ask("o-dave", "anything") == texts.INTERNAL_ERROR


# -- retries and the deadline -------------------------------------------------


def counting_router(delay: float = 0.0, text: str = "收到") -> tuple[Router, list]:
    calls: list[str] = []
    router = Router()

    @router.fallback
    async def slow(chat):
        calls.append(chat.message.content)
        await asyncio.sleep(delay)
        return Reply(f"{text}：{chat.message.content}")

    @router.event("subscribe")
    async def sub(chat):
        calls.append("subscribe")
        return Reply(f"欢迎 {len(calls)}")

    return router, calls


async def test_retry_gets_same_reply_and_is_processed_once(make_service):
    router, calls = counting_router()
    svc = await make_service(router=router)
    xml = text_xml("o-erin", "你好", msg_id=777001)
    first = await svc.wechat.post(xml)
    second = await svc.wechat.post(xml)
    assert svc.wechat.reply(first)["Content"] == "收到：你好"
    assert svc.wechat.reply(second)["Content"] == "收到：你好"
    assert calls == ["你好"]


async def test_the_reply_does_not_wait_for_it_to_be_stored(make_service):
    # The reply is stored (for WeChat's retries) and the user's lock released
    # after it is sent: every reply used to wait that round trip. Redis paused
    # for writes once the message is handled: the reply comes all the same,
    # and a retry once Redis writes again gets the stored reply.
    router = Router()
    handled: list[str] = []

    @router.fallback
    async def answer(chat):
        handled.append(chat.message.content)
        await svc.runtime.redis.execute_command("CLIENT", "PAUSE", 600, "WRITE")  # well under the client's 1 s timeout
        return Reply(f"收到：{chat.message.content}")

    svc = await make_service(router=router)
    xml = text_xml("o-pause", "你好", msg_id=777010)
    started = time.monotonic()
    first = await svc.wechat.post(xml)
    assert svc.wechat.reply(first)["Content"] == "收到：你好"
    assert time.monotonic() - started < 0.5
    await asyncio.sleep(0.7)
    retry = await svc.wechat.post(xml)
    assert svc.wechat.reply(retry)["Content"] == "收到：你好" and handled == ["你好"]


async def test_a_retry_after_its_first_delivery_died_is_handled(make_service):
    # A process killed mid-message left its claim pending for 30 s: each of
    # WeChat's retries (about 5, 10 and 15 s after the first delivery) got
    # "success" and the message was lost. Released within 8 s, the second is handled.
    assert reply_cache.CLAIM_TTL < 10 - 1
    router, calls = counting_router()
    svc = await make_service(router=router)
    xml = text_xml("o-dead", "你好", msg_id=777020)
    # The dead process's claim as the gate writes it, its time shortened here.
    await svc.runtime.redis.set(reply_cache.reply_key("msg:o-dead:777020"), reply_cache.PENDING, px=300)
    await asyncio.sleep(0.4)
    retry = await svc.wechat.post(xml)
    assert svc.wechat.reply(retry)["Content"] == "收到：你好" and calls == ["你好"]


async def test_concurrent_retry_waits_for_the_first(make_service):
    router, calls = counting_router(delay=0.5)
    svc = await make_service(router=router)
    xml = text_xml("o-erin", "并发", msg_id=777002)
    first, second = await asyncio.gather(svc.wechat.post(xml), svc.wechat.post(xml))
    assert svc.wechat.reply(first)["Content"] == "收到：并发"
    assert svc.wechat.reply(second)["Content"] == "收到：并发"
    assert calls == ["并发"]


async def test_event_retry_is_deduplicated_by_user_time_event(make_service):
    router, calls = counting_router()
    svc = await make_service(router=router)
    xml = event_xml("o-frank", "subscribe", create_time=1700000000)
    replies = [svc.wechat.reply(await svc.wechat.post(xml))["Content"] for _ in range(3)]
    assert replies == ["欢迎 1"] * 3
    assert calls == ["subscribe"]
    # Same user and time but a later event is a different delivery.
    await svc.wechat.post(event_xml("o-frank", "subscribe", create_time=1700000001))
    assert calls == ["subscribe", "subscribe"]


async def test_retry_in_encrypted_mode_gets_same_reply(service):
    xml = text_xml("o-gina", "帮助", msg_id=777003)
    first = service.wechat.reply(await service.wechat.post(xml, "safe"))
    second = service.wechat.reply(await service.wechat.post(xml, "safe"))
    assert first["Content"] == second["Content"] == texts.HELP


async def test_deadline_answers_success_then_customer_service(make_service, emulator):
    router, calls = counting_router(delay=1.0, text="慢回复")
    svc = await make_service(router=router, deadline=0.3)
    xml = text_xml("o-hank", "慢", msg_id=777004)
    started = time.monotonic()
    response = await svc.wechat.post(xml)
    assert time.monotonic() - started < 0.9
    assert response.body == b"success"
    # A retry while the first is still working gets success too, and is not handled again.
    assert (await svc.wechat.post(xml)).body == b"success"
    for _ in range(60):
        sent = await emulator.messages("o-hank")
        if sent:
            break
        await asyncio.sleep(0.05)
    assert [m["body"]["text"]["content"] for m in sent] == ["慢回复：慢"]
    assert sent[0]["msgtype"] == "text"
    assert calls == ["慢"]


async def test_long_reply_continues_through_customer_service(make_service, emulator):
    long_text = "\n".join(f"第{i}行：" + "协议条款内容" * 12 for i in range(40))
    assert len(long_text.encode()) > 2048 * 3
    router = Router()

    @router.fallback
    async def long(chat):
        return Reply(long_text)

    svc = await make_service(router=router)
    response = await svc.wechat.post(text_xml("o-ivy", "全文"))
    passive = svc.wechat.reply(response)["Content"]
    assert len(passive.encode()) <= 2048
    assert passive.endswith(texts.CONTINUED)
    for _ in range(60):
        sent = await emulator.messages("o-ivy")
        if sent and not sent[-1]["body"]["text"]["content"].endswith(texts.CONTINUED):
            break
        await asyncio.sleep(0.05)
    pieces = [passive] + [m["body"]["text"]["content"] for m in sent]
    assert all(len(p.encode()) <= 2048 for p in pieces)
    joined = "\n".join(p.removesuffix(texts.CONTINUED) for p in pieces)
    assert joined == long_text


async def test_service_without_token_says_so(make_service):
    svc = await make_service(wechat_token=None)
    response = await fetch(svc.url + "/wechat?signature=x&timestamp=1&nonce=1&echostr=e")
    assert response.code == 503
    assert error_of(response)["code"] == "not_configured"
    pushed = await fetch(svc.url + "/wechat?signature=x&timestamp=1&nonce=1", method="POST", body=text_xml("o-x", "帮助"))
    assert pushed.code == 503
    assert error_of(pushed)["code"] == "not_configured"


async def test_healthz_reports_each_service(service):
    response = await fetch(service.url + "/healthz")
    assert response.code == 200
    assert json.loads(response.body) == {"status": "ok", "mongo": "ok", "redis": "ok", "qa": "ok"}


def test_default_router_has_help_commands():
    assert "帮助" in default_router.commands()


async def test_messages_of_one_user_are_handled_one_at_a_time(make_service):
    router = Router()

    @router.fallback
    async def read_modify_write(chat):
        redis = chat.services.dialogs._redis
        k = f"wb:test:counter:{chat.openid}"
        value = int(await redis.get(k) or 0)
        await asyncio.sleep(0.2)  # a slow step between reading and writing state
        await redis.set(k, value + 1)
        return Reply(str(value + 1))

    svc = await make_service(router=router)
    started = time.monotonic()
    replies = await asyncio.gather(*(svc.wechat.ask("o-serial", f"第{i}条") for i in range(3)))
    assert sorted(replies) == ["1", "2", "3"]
    assert time.monotonic() - started >= 0.6
    # Other users are not held up by this one.
    started = time.monotonic()
    await asyncio.gather(*(svc.wechat.ask(f"o-par{i}", "x") for i in range(3)))
    assert time.monotonic() - started < 0.55


# -- the push endpoint's own HTTP handling (handlers.wechat.PushDelegate) -----


def raw_push(svc, xml: str) -> bytes:
    query, body = svc.wechat.envelope(xml, "plain")
    data = body.encode("utf-8")
    return b"POST /wechat?%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (urlencode(query).encode(), len(data), data)


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head.decode("latin-1").strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status.encode(), headers, body


async def test_pushes_share_a_keep_alive_connection_with_proper_headers(service):
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for i in range(2):
            writer.write(raw_push(service, text_xml("o-keepalive", "帮助", msg_id=778100 + i)))
            status, headers, body = await read_response(reader)
            assert status.startswith(b"HTTP/1.1 200 "), status
            assert headers["content-type"] == "application/xml; charset=utf-8"
            assert "date" in headers
            assert texts.HELP.split("\n")[0].encode() in body
        writer.write(raw_push(service, "<xml>broken"))
        status, headers, body = await read_response(reader)
        assert status.startswith(b"HTTP/1.1 400 ")
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "bad_xml"
    finally:
        writer.close()
    put = await fetch(service.url + "/wechat", method="PUT", body="x")
    assert put.code == 405 and put.headers["Allow"] == "GET, POST"


async def test_a_push_whose_sender_hangs_up_is_still_handled(make_service):
    # The user's message was received: hanging up must not undo it (a 同意
    # is recorded all the same), and the shutdown's drain must not count it
    # for ever. WeChat's retry of it then gets the stored reply.
    router, calls = counting_router(delay=0.3)
    svc = await make_service(router=router)
    app = svc.server.request_callback
    host, port = svc.url.removeprefix("http://").split(":")
    xml = text_xml("o-hangup", "你好", msg_id=778200)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw_push(svc, xml))
    await writer.drain()
    await asyncio.sleep(0.1)
    assert app.in_flight == 1
    writer.close()
    # A body cut off half-way is never answered, and not counted either.
    reader2, writer2 = await asyncio.open_connection(host, int(port))
    writer2.write(raw_push(svc, text_xml("o-hangup2", "你好"))[:-10])
    await writer2.drain()
    await asyncio.sleep(0.1)
    writer2.close()
    for _ in range(100):
        if calls and app.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert calls == ["你好"] and app.in_flight == 0
    retry = await svc.wechat.post(xml)
    assert svc.wechat.reply(retry)["Content"] == "收到：你好"
    assert calls == ["你好"]


async def test_a_push_whose_handling_is_cancelled_gets_a_json_500_and_is_not_counted_for_ever(make_service):
    # CancelledError is no Exception: it escaped the handler's error handling,
    # the push was never answered, and every shutdown waited for it in vain.
    router = Router()

    @router.fallback
    async def cancelled(chat):
        raise asyncio.CancelledError()

    svc = await make_service(router=router)
    app = svc.server.request_callback
    response = await svc.wechat.post(text_xml("o-cancel", "你好"))
    assert response.code == 500
    assert error_of(response)["code"] == "internal_server_error"
    assert app.in_flight == 0
    assert (await fetch(svc.url + "/healthz")).code == 200


@pytest.mark.parametrize("path", ["/wechat", "/api/v1/terms"])
async def test_a_content_length_that_is_no_plain_number_is_refused(service, path):
    # "²" (0xB2 in Latin-1) passes str.isdigit(); int() refuses it. It raised
    # before any handler ran: no answer at all, the connection just closed.
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: \xb2\r\n\r\n<xml/>" % path.encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer


async def test_a_push_refused_before_its_body_says_the_connection_closes(service):
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        query = urlencode(service.wechat.query())
        writer.write(b"POST /wechat?%s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n<xml>" % query.encode())
        status, headers, body = await read_response(reader)
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 413 ")
    assert headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "body_too_large"
