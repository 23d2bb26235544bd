"""The chat simulator (demo and development mode only: ``SIMULATOR=1``).

A WeChat-like chat page at ``/simulator`` and the small JSON API behind it.
The browser cannot sign pushes with the Token, so ``POST /simulator/api/send``
plays WeChat's server: it builds the push as XML, signs it (and encrypts it in
safe mode) with :mod:`wechat.push_client`, POSTs it over real HTTP to this
service's own ``/wechat``, and opens the passive reply. Users, follow state
and the messages sent later through the API (customer-service, template,
mass) live where WeChat keeps them: in the WeChat API emulator at
``WECHAT_API_BASE``, read through its control API (``/_emulator/...``).

API (errors: ``{"error": {"code", "message"}}`` with 4xx/5xx):

* ``GET /simulator/api/state``: ``{"safe_mode_available", "plain_mode_available", "menu", "menu_source"}``
  (the menu the emulator holds, else ``data/menu.json``)
* ``GET /simulator/api/users``, ``POST /simulator/api/users`` ``{"nickname"}``
* ``POST /simulator/api/send`` ``{"openid", "kind": text|subscribe|unsubscribe|click|view,
  "content"|"key"|"url", "mode": plain|safe|compat}``: ``{"reply", "wire"}``
* ``GET /simulator/api/messages?openid=&since=``: messages the account sent
  the user through the API after emulator id ``since``, oldest first
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from bot.inbound import OPENID
from emulator.state import EmulatorState
from handlers.base import BaseHandler, json_object, name_allowed_methods
from wechat.menu import MenuFileError, load_menu
from wechat.push_client import MODES, WECHAT_TIMEOUT, PushClient, event_xml, text_xml

#: The account's original id (gh_…) in the pushes the simulator sends.
ACCOUNT_ID = "gh_wetoop"


#: Longest text a user can type (WeChat's own input stops near this length).
MAX_TEXT = 2000

#: Labels of the messages that reach the user later, by the emulator's kind.
KIND_LABELS = {"custom": "客服消息", "template": "模板消息", "mass": "群发"}

_MSGTYPE_LABELS = {
    "image": "图片", "voice": "语音", "video": "视频", "mpvideo": "视频", "music": "音乐",
    "news": "图文消息", "mpnews": "图文消息", "mpnewsarticle": "图文消息", "wxcard": "卡券",
    "miniprogrampage": "小程序卡片", "msgmenu": "菜单消息",
}


class SimulatorError(Exception):
    """A request the simulator refuses: HTTP status, stable code, Chinese message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class EmulatorControl:
    """The emulator's control API (users and kept messages), over non-blocking HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    async def _call(self, path: str, method: str = "GET", body: Any = None) -> Any:
        try:
            response = await AsyncHTTPClient().fetch(
                self.base + path, method=method, request_timeout=5,
                body=None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={"Content-Type": "application/json"},
            )
            return json.loads(response.body)
        except (OSError, HTTPClientError, ValueError) as exc:
            raise SimulatorError(
                502, "emulator_unavailable", f"无法连接微信 API 模拟器（{self.base}）：{exc}"
            ) from None

    async def users(self) -> list[dict]:
        return await self._call("/_emulator/users")

    async def user(self, openid: str) -> dict | None:
        return next((u for u in await self.users() if u.get("openid") == openid), None)

    async def set_user(self, openid: str, **fields: Any) -> dict:
        return await self._call("/_emulator/users", "POST", {"openid": openid, **fields})

    async def messages(self, touser: str) -> list[dict]:
        return await self._call("/_emulator/messages?" + urlencode({"touser": touser}))


#: What a template field holding one of our values is labelled in the thread
#: (WeChat shows the template's own labels, which the emulator does not know).
_VALUE_LABELS = {"category": "通知类型", "date": "时间", "title": "标题", "body": "内容"}


def field_labels(templates: dict) -> dict[str, dict[str, str]]:
    """``template_id -> {field: label}`` for the notice templates configured
    (``{"keyword1": "{category}"}`` is 通知类型)."""
    labels: dict[str, dict[str, str]] = {}
    for spec in templates.values():
        for field, pattern in (spec.get("fields") or {}).items():
            found = re.fullmatch(r"\{(\w+)\}", pattern.strip()) if isinstance(pattern, str) else None
            if found and found.group(1) in _VALUE_LABELS:
                labels.setdefault(spec["template_id"], {})[field] = _VALUE_LABELS[found.group(1)]
    return labels


def describe(message: dict, labels: dict[str, dict[str, str]] | None = None) -> dict:
    """A message the emulator kept, as a thread entry: ``{id, kind, label, title, text, time}``.
    ``labels``: see :func:`field_labels`; a field without one is shown by its name."""
    body = message.get("body") or {}
    msgtype = message.get("msgtype", "")
    title = ""
    if msgtype == "text":
        text = (body.get("text") or {}).get("content", "")
    elif msgtype == "template":
        data = body.get("data") or {}
        known = (labels or {}).get(body.get("template_id"), {})
        lines = []
        for name, field in data.items():
            value = field.get("value", "") if isinstance(field, dict) else str(field)
            if not value:
                continue
            lines.append(value if name in ("first", "remark") else f"{known.get(name, name)}：{value}")
        title = "模板消息"
        text = "\n".join(lines) or "（空模板消息）"
        if body.get("url"):
            text += f"\n详情：{body['url']}"
    else:
        text = f"[{_MSGTYPE_LABELS.get(msgtype, msgtype)}]"
    kind = message.get("kind", "")
    return {
        "id": message.get("id"), "kind": kind, "label": KIND_LABELS.get(kind, kind),
        "title": title, "text": text, "time": message.get("time"),
    }


class Simulator:
    """What the simulator's handlers do, apart from HTTP."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.emulator = EmulatorControl(runtime.config.wechat_api_base)
        # The emulator forgets its users when it stops (the demo, or a separate
        # `wetoop-bot emulator`); the bot does not. The simulator keeps its own
        # list, so that the same people can be picked after either restarts.
        self._saved = Path(runtime.config.data_dir) / "simulator" / "users.json"
        self._users: dict[str, dict] | None = None  # openid -> {"nickname", "subscribed"}; read on first use
        self._last_event: dict[str, int] = {}  # openid -> the CreateTime of its latest event
        self._file_lock = asyncio.Lock()

    async def restore(self) -> None:
        """Give the emulator any saved user it does not know (after its restart)."""
        saved = await self._saved_users()
        if not saved:
            return
        known = {u.get("openid") for u in await self.emulator.users()}
        for openid, fields in list(saved.items()):
            if openid not in known:
                await self.emulator.set_user(openid, nickname=fields["nickname"], subscribed=fields["subscribed"],
                                             unionid=unionid_of(openid))

    async def _saved_users(self) -> dict[str, dict]:
        async with self._file_lock:
            if self._users is None:
                self._users = await asyncio.to_thread(_read_users, self._saved)
            return self._users

    async def _remember(self, user: dict) -> None:
        """Add or update one user in the saved list (merged by openid, written whole)."""
        users = await self._saved_users()
        async with self._file_lock:
            users[user["openid"]] = {"nickname": user.get("nickname") or "", "subscribed": bool(user.get("subscribed"))}
            listed = [{"openid": o, **fields} for o, fields in users.items()]
            await asyncio.to_thread(_write_json, self._saved, listed)

    async def menu(self) -> tuple[dict, str]:
        """The menu WeChat (the emulator) holds, else the file's; and which it is."""
        if self.runtime.wechat is not None:
            from wechat.api import WeChatAPIError

            try:
                held = await self.runtime.wechat.menu.get()
            except WeChatAPIError:
                held = None
            if held and isinstance(held.get("menu"), dict):
                return held["menu"], "wechat"
        try:
            return load_menu(), "file"
        except MenuFileError as exc:
            raise SimulatorError(500, "menu_file", str(exc)) from None

    async def create_user(self, nickname: Any) -> dict:
        if not isinstance(nickname, str) or not 1 <= len(nickname.strip()) <= 20:
            raise SimulatorError(400, "bad_nickname", "昵称需为 1 到 20 个字")
        if _NOT_IN_XML.search(nickname):
            raise SimulatorError(400, "bad_nickname", "昵称不能含有控制字符")
        # Real openids are 28 characters of this alphabet.
        openid = "o" + secrets.token_urlsafe(21)[:27]
        user = await self.emulator.set_user(openid, nickname=nickname.strip(), subscribed=False,
                                            unionid=unionid_of(openid))
        await self._remember(user)
        return user

    async def send(self, request: dict, own_url: str) -> dict:
        """Push one message or event as WeChat would; the passive reply's text."""
        config = self.runtime.config
        openid, kind, mode = request.get("openid"), request.get("kind"), request.get("mode", "plain")
        if not isinstance(openid, str) or not OPENID.fullmatch(openid):
            raise SimulatorError(400, "bad_openid", "openid 需为 1 到 64 个英文字母、数字、- 或 _")
        if mode not in MODES:
            raise SimulatorError(400, "bad_mode", "mode 只能是 plain（明文）、compat（兼容）或 safe（安全）")
        if kind not in ("text", "click", "view", "subscribe", "unsubscribe"):  # the request's own fault first
            raise SimulatorError(400, "bad_kind", "kind 只能是 text、subscribe、unsubscribe、click 或 view")
        if not config.wechat_token:
            raise SimulatorError(503, "no_token", "服务未配置 WECHAT_TOKEN，/wechat 不接收消息")
        if mode != "plain" and not config.safe_mode:
            raise SimulatorError(400, "aes_not_configured", "服务未配置 WECHAT_AES_KEY，只能使用明文模式")
        if mode == "plain" and config.encrypt_mode == "safe":
            raise SimulatorError(400, "plaintext_refused", "服务配置为安全模式（WECHAT_ENCRYPT_MODE=safe），只能发送加密消息")
        user = await self.emulator.user(openid)
        if user is None:
            raise SimulatorError(404, "no_such_user", "没有这个用户，请先新建")
        if kind == "text":
            content = request.get("content")
            if not isinstance(content, str) or not content.strip():
                raise SimulatorError(400, "empty_text", "消息不能为空")
            if len(content) > MAX_TEXT:
                raise SimulatorError(400, "text_too_long", f"消息最长 {MAX_TEXT} 个字")
            if _NOT_IN_XML.search(content):  # WeChat's clients cannot send them, nor can XML carry them
                raise SimulatorError(400, "bad_text", "消息含有微信无法发送的控制字符，请删去后再发")
            xml = text_xml(openid, content, to_user=ACCOUNT_ID)
        elif kind in ("click", "view"):
            field = "key" if kind == "click" else "url"
            value = request.get(field)
            if not isinstance(value, str) or not 1 <= len(value.encode("utf-8")) <= 1024:
                raise SimulatorError(400, f"bad_{field}", f"{'菜单 key' if kind == 'click' else '链接'}不能为空")
            xml = event_xml(openid, kind.upper(), value, create_time=self._event_time(openid), to_user=ACCOUNT_ID)
        elif kind in ("subscribe", "unsubscribe"):
            # WeChat knows the follow first, then tells the account.
            await self._remember(await self.emulator.set_user(openid, subscribed=kind == "subscribe"))
            xml = event_xml(openid, kind, create_time=self._event_time(openid), to_user=ACCOUNT_ID)
        if kind in ("text", "click", "view") and not user.get("subscribed"):
            raise SimulatorError(409, "not_following", "请先关注公众号，才能发消息或使用菜单")

        client = PushClient(own_url, config.wechat_token, config.wechat_aes_key, config.wechat_appid or "")
        query, body = client.envelope(xml, mode)
        try:
            response = await client.post(body, query=query, request_timeout=WECHAT_TIMEOUT)
        except HTTPClientError:  # raise_error=False still raises for a timeout (599)
            raise SimulatorError(
                504, "endpoint_timeout", f"公众号接口 {WECHAT_TIMEOUT:g} 秒内没有回复（微信会放弃这次回复）"
            ) from None
        except OSError as exc:
            raise SimulatorError(502, "endpoint_unreachable", f"无法连接公众号接口 /wechat：{exc}") from None
        wire = {"query": query, "request": body, "xml": xml, "status": response.code,
                "response": (response.body or b"").decode("utf-8", "replace")}
        if response.code != 200:
            raise SimulatorError(502, "endpoint_refused", f"公众号接口返回 HTTP {response.code}：{wire['response'][:200]}")
        try:
            reply = client.reply(response)
        except ValueError as exc:
            raise SimulatorError(502, "bad_reply", f"公众号的回复无法解析：{exc}") from None
        text = None
        if reply is not None:
            text = reply.get("Content") if reply.get("MsgType") == "text" else f"[{reply.get('MsgType')}]"
        return {"reply": text, "wire": wire}

    def _event_time(self, openid: str) -> int:
        """An event's CreateTime, later than this user's previous one: the
        service tells a WeChat retry by user, second and event (as WeChat
        advises), and a follow, unfollow and follow again clicked within one
        second here (not possible in WeChat's own app) read as one follow retried."""
        at = max(int(time.time()), self._last_event.get(openid, 0) + 1)
        self._last_event[openid] = at
        return at

    async def messages(self, openid: Any, since: Any) -> list[dict]:
        if not isinstance(openid, str) or not OPENID.fullmatch(openid):
            raise SimulatorError(400, "bad_openid", "openid 需为 1 到 64 个英文字母、数字、- 或 _")
        try:
            since = int(since or 0)
        except ValueError:
            raise SimulatorError(400, "bad_since", "since 必须是整数") from None
        labels = field_labels(self.runtime.templates)
        return [describe(m, labels) for m in await self.emulator.messages(openid) if m.get("id", 0) > since]


#: Characters XML 1.0 cannot carry (control characters but tab and line breaks, U+FFFE, U+FFFF).
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class _Base(BaseHandler):
    def initialize(self, simulator: Simulator) -> None:
        self.simulator = simulator


    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    def json_body(self) -> dict:
        # JSON only: a cross-site form cannot send this type without a CORS
        # preflight, which the simulator never grants.
        if not self.request.headers.get("Content-Type", "").startswith("application/json"):
            raise SimulatorError(415, "not_json", "请求体必须是 JSON（Content-Type: application/json）")
        body, problem = json_object(self.request.body or b"{}")
        if problem == "bad_text":
            raise SimulatorError(400, "bad_text", "请求中含有无效的字符（不成对的 Unicode 代理项）")
        if body is None:
            raise SimulatorError(400, "bad_json", "请求体必须是 JSON 对象")
        return body

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, SimulatorError):
            self.send_error_json(exc.status, exc.code, exc.message)
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, SimulatorError):
            super().log_exception(typ, value, tb)


class PageHandler(tornado.web.RequestHandler):
    """``/simulator``: the chat page."""

    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.render("simulator.html")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        name_allowed_methods(self, status_code)
        super().write_error(status_code, **kwargs)


class StateHandler(_Base):
    async def get(self) -> None:
        menu, source = await self.simulator.menu()
        config = self.simulator.runtime.config
        self.write_json({"safe_mode_available": config.safe_mode,
                        "plain_mode_available": config.encrypt_mode != "safe", "menu": menu, "menu_source": source})


class UsersHandler(_Base):
    async def get(self) -> None:
        await self.simulator.restore()
        users = await self.simulator.emulator.users()
        self.write_json([_user_json(u) for u in users])

    async def post(self) -> None:
        user = await self.simulator.create_user(self.json_body().get("nickname"))
        self.set_status(201)
        self.write_json(_user_json(user))


def miniprogram_user(openid: str) -> str:
    """The name a simulated user logs in to the mini-program API with
    (code ``<name>-<any number>``, the emulator's rule): the same person."""
    return "sim" + hashlib.sha256(openid.encode()).hexdigest()[:8]


def unionid_of(openid: str) -> str:
    """The unionid WeChat gives a simulated follower: the one the emulator's
    jscode2session gives :func:`miniprogram_user`, so chat and the app are one person."""
    return EmulatorState.unionid_for_user(miniprogram_user(openid))


def _user_json(user: dict) -> dict:
    return {"openid": user["openid"], "nickname": user.get("nickname") or "", "subscribed": bool(user.get("subscribed")),
            "miniprogram_code": f"{miniprogram_user(user['openid'])}-1"}


class SendHandler(_Base):
    async def post(self) -> None:
        # The push goes to the address this request arrived on: the same
        # process's /wechat, whatever Host header a proxy passed along.
        host, port = self.request.connection.stream.socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        request = self.json_body()
        await self.simulator.restore()
        self.write_json(await self.simulator.send(request, f"http://{host}:{port}"))


class MessagesHandler(_Base):
    async def get(self) -> None:
        self.write_json(await self.simulator.messages(
            self.get_query_argument("openid", None), self.get_query_argument("since", "0")
        ))


def _read_users(path: Path) -> dict[str, dict]:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: start with no users
    users = {}
    for user in saved if isinstance(saved, list) else []:
        openid = user.get("openid") if isinstance(user, dict) else None
        if isinstance(openid, str) and OPENID.fullmatch(openid):
            users[openid] = {"nickname": str(user.get("nickname") or "")[:20], "subscribed": bool(user.get("subscribed"))}
    return users


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` whole or not at all (a file cut off by a crash would lose every user)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, part = tempfile.mkstemp(dir=path.parent, prefix=".users-", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise


def routes(runtime) -> list[tuple]:
    """URL rules of the simulator; none unless the simulator is enabled (``SIMULATOR=1``)."""
    if not runtime.config.simulator:
        return []
    args = {"simulator": Simulator(runtime)}
    return [
        (r"/simulator/?", PageHandler),
        (r"/simulator/api/state", StateHandler, args),
        (r"/simulator/api/users", UsersHandler, args),
        (r"/simulator/api/send", SendHandler, args),
        (r"/simulator/api/messages", MessagesHandler, args),
    ]
