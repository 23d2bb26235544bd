"""`EmulatorState`: everything the emulator remembers, and the rules applied to it.

The HTTP layer (`emulator.app`) only parses requests and renders answers; the
checks and bookkeeping live here so a test can also drive them directly.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import hashlib
import inspect
import itertools
import logging
import re
import secrets
import time
from typing import Any, Callable

from emulator import validate
from emulator.errors import ApiError

log = logging.getLogger(__name__)

_JS_CODE_RE = re.compile(r"[A-Za-z0-9-]{1,128}")
#: Users ``user/info/batchget`` answers for at most, as WeChat documents.
USER_BATCH = 100

Listener = Callable[[dict], Any]


def _derive(prefix: str, salt: bytes, user: str) -> str:
    digest = hashlib.sha256(salt + user.encode("utf-8")).digest()
    return prefix + base64.urlsafe_b64encode(digest).decode("ascii")[:27]


@dataclasses.dataclass
class _Token:
    appid: str
    stable: bool
    expires_at: float


class EmulatorState:
    """All memory of one emulator: tokens, users, messages, menu, faults, stats.

    ``appid``/``secret`` (official account) and ``miniprogram_appid``/
    ``miniprogram_secret`` are checked only when given; otherwise any value is
    accepted. ``rate_limit`` is the number of message sends accepted per second
    (sliding window), unlimited when None. ``token_ttl`` is the lifetime of
    issued access tokens in seconds.

    Public attributes may be read by tests: ``messages`` (kept messages, oldest
    first), ``users`` (openid -> user record set through `set_user`), ``menu``
    (last created menu or None). ``clock`` (default `time.time`) may be replaced
    to move time.
    """

    def __init__(
        self,
        *,
        appid: str | None = None,
        secret: str | None = None,
        miniprogram_appid: str | None = None,
        miniprogram_secret: str | None = None,
        rate_limit: float | None = None,
        token_ttl: int = 7200,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.miniprogram_appid = miniprogram_appid
        self.miniprogram_secret = miniprogram_secret
        self.rate_limit = rate_limit
        self.token_ttl = token_ttl
        self.clock: Callable[[], float] = time.time
        self._started = self.clock()
        self._listeners: list[Listener] = []
        self._tasks: set[asyncio.Future] = set()
        # Ids stay unique over resets so a live listener never sees one reused, and
        # grow over restarts too (they start at the time in microseconds): the
        # simulator page asks for messages after the last id it saw, which a new
        # emulator numbering from 1 would hide until it caught up.
        self._message_ids = itertools.count(int(time.time() * 1_000_000))
        self._send_ids = itertools.count(1000001)
        self.reset()

    def reset(self) -> None:
        """Forgets messages, users, tokens, menu, faults, stats and used codes.

        Configuration and listeners are kept.
        """
        self.messages: list[dict] = []
        self.users: dict[str, dict] = {}
        self.menu: dict | None = None
        self._tokens: dict[str, _Token] = {}
        self._current: dict[tuple[str, bool], str] = {}
        self._faults: dict[str, collections.deque] = {}
        self._used_codes: set[str] = set()
        self._accepted: collections.deque[float] = collections.deque()
        self.token_requests = 0
        self.tokens_issued = 0
        self.calls: collections.Counter[str] = collections.Counter()
        #: WeChat error codes answered, by code (a benchmark's count of 45009).
        self.errors: collections.Counter[str] = collections.Counter()

    # -- credentials and access tokens -------------------------------------

    def check_credentials(self, appid: Any, secret: Any, *, miniprogram: bool = False) -> None:
        """Raises 41002/41004 when missing, 40013/40125 when not the configured ones."""
        want_appid, want_secret = (
            (self.miniprogram_appid, self.miniprogram_secret)
            if miniprogram else (self.appid, self.secret)
        )
        if not isinstance(appid, str) or not appid:
            raise ApiError(41002)
        if not isinstance(secret, str) or not secret:
            raise ApiError(41004)
        if want_appid is not None and appid != want_appid:
            raise ApiError(40013)
        if want_secret is not None and secret != want_secret:
            raise ApiError(40125)

    def issue_token(self, appid: str, *, stable: bool = False) -> dict:
        """Issues a token for ``appid``, invalidating the previous one of its kind.

        Plain (``/cgi-bin/token``) and stable tokens are separate kinds, as on
        WeChat, where neither endpoint invalidates the other's tokens.
        """
        old = self._current.pop((appid, stable), None)
        if old is not None:
            # Forgetting it is enough: an unknown token answers 40001.
            self._tokens.pop(old, None)
        token = secrets.token_urlsafe(96)
        self._tokens[token] = _Token(appid, stable, self.clock() + self.token_ttl)
        self._current[(appid, stable)] = token
        self.tokens_issued += 1
        self.token_requests += 1
        return {"access_token": token, "expires_in": self.token_ttl}

    def stable_token(self, appid: str, *, force_refresh: bool = False) -> dict:
        """Returns the current stable token of ``appid`` if still valid, else a new one."""
        token = self._current.get((appid, True))
        if token is not None and not force_refresh:
            remaining = self._tokens[token].expires_at - self.clock()
            if remaining > 0:
                self.token_requests += 1
                return {"access_token": token, "expires_in": int(remaining)}
        return self.issue_token(appid, stable=True)

    def check_token(self, token: str | None) -> None:
        """Raises 41001 (missing), 40001 (unknown or replaced) or 42001 (expired)."""
        if not token:
            raise ApiError(41001)
        record = self._tokens.get(token)
        if record is None:
            raise ApiError(40001)
        if self.clock() >= record.expires_at:
            raise ApiError(42001)

    def expire_tokens(self) -> None:
        """Makes every live token expired: its next use answers 42001."""
        for record in self._tokens.values():
            record.expires_at = float("-inf")

    def invalidate_tokens(self) -> None:
        """Makes every token invalid: its next use answers 40001."""
        self._tokens.clear()
        self._current.clear()

    # -- users ---------------------------------------------------------------

    def set_user(
        self,
        openid: str,
        *,
        subscribed: bool | None = None,
        unionid: str | None = None,
        nickname: str | None = None,
    ) -> dict:
        """Creates or updates a user; arguments left None keep their value."""
        validate.check_openid(openid)
        user = self.users.setdefault(openid, {
            "openid": openid,
            "subscribed": True,
            "unionid": None,
            "nickname": "",
            "subscribe_time": int(self.clock()),
        })
        if subscribed is not None:
            user["subscribed"] = bool(subscribed)
        if unionid is not None:
            user["unionid"] = unionid
        if nickname is not None:
            user["nickname"] = nickname
        return user

    def is_subscribed(self, openid: str) -> bool:
        """True unless the user was explicitly set unsubscribed."""
        user = self.users.get(openid)
        return user is None or user["subscribed"]

    def user_info(self, openid: Any) -> dict:
        """The ``user/info`` answer for ``openid``."""
        validate.check_openid(openid)
        user = self.users.get(openid)
        unionid = user and user["unionid"]
        if user is not None and not user["subscribed"]:
            info = {"subscribe": 0, "openid": openid}
        else:
            info = {
                "subscribe": 1,
                "openid": openid,
                "nickname": user["nickname"] if user else "",
                "sex": 0,
                "language": "zh_CN",
                "city": "",
                "province": "",
                "country": "",
                "headimgurl": "",
                "subscribe_time": user["subscribe_time"] if user else int(self._started),
                "remark": "",
                "groupid": 0,
                "tagid_list": [],
                "subscribe_scene": "ADD_SCENE_QR_CODE",
                "qr_scene": 0,
                "qr_scene_str": "",
            }
        if unionid:
            info["unionid"] = unionid
        return info

    def user_info_batch(self, body: Any) -> dict:
        """The ``user/info/batchget`` answer: at most :data:`USER_BATCH` users a
        request, each as ``user/info`` gives it; one openid that is not valid
        refuses the whole request (40003), as ``user/info`` refuses it."""
        users = body.get("user_list") if isinstance(body, dict) else None
        if (not isinstance(users, list) or not 0 < len(users) <= USER_BATCH
                or not all(isinstance(u, dict) for u in users)):
            raise ApiError(47001)  # WeChat's code for the over-long list is not documented
        return {"user_info_list": [self.user_info(u.get("openid")) for u in users]}

    # -- mini-program login ----------------------------------------------------

    @staticmethod
    def unionid_for_user(user: str) -> str:
        """The unionid `code_to_session` returns for the user part ``user``."""
        return _derive("u", b"union:", user)

    @staticmethod
    def miniprogram_openid_for_user(user: str) -> str:
        """The mini-program openid `code_to_session` returns for ``user``."""
        return _derive("o", b"mp:", user)

    def code_to_session(self, appid: Any, secret: Any, js_code: Any, grant_type: Any) -> dict:
        """The ``sns/jscode2session`` answer; see the package docstring for the code rule."""
        self.check_credentials(appid, secret, miniprogram=True)
        if grant_type != "authorization_code":
            raise ApiError(40002)
        if not isinstance(js_code, str) or not _JS_CODE_RE.fullmatch(js_code):
            raise ApiError(40029)
        user = js_code.split("-", 1)[0]
        if not user:
            raise ApiError(40029)
        if js_code in self._used_codes:
            raise ApiError(40163)
        self._used_codes.add(js_code)
        return {
            "openid": self.miniprogram_openid_for_user(user),
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
            "unionid": self.unionid_for_user(user),
        }

    # -- messages -------------------------------------------------------------

    def send_custom(self, body: dict) -> dict:
        """Checks and keeps a customer-service message."""
        self._check_rate()
        validate.check_custom_message(body)
        self._require_subscribed(body["touser"])
        self._accept()
        self._keep("custom", body["touser"], body["msgtype"], body)
        return {"errcode": 0, "errmsg": "ok"}

    def send_template(self, body: dict) -> dict:
        """Checks and keeps a template message."""
        self._check_rate()
        validate.check_template_message(body)
        self._require_subscribed(body["touser"])
        self._accept()
        msgid = next(self._send_ids)
        # Kept with its msgid: a test or an operator sends TEMPLATESENDJOBFINISH for it.
        self._keep("template", body["touser"], "template", body, msgid=msgid)
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def send_mass(self, body: dict) -> dict:
        """Checks a mass send and keeps one message per subscribed recipient.

        Unsubscribed recipients do not fail the job (WeChat skips them on
        delivery), they just receive nothing. A job counts once for the rate limit.
        """
        self._check_rate()
        validate.check_mass_message(body)
        self._accept()
        for openid in dict.fromkeys(body["touser"]):
            if self.is_subscribed(openid):
                self._keep("mass", openid, body["msgtype"], {**body, "touser": openid})
        return {
            "errcode": 0,
            "errmsg": "send job submission success",
            "msg_id": next(self._send_ids),
            "msg_data_id": next(self._send_ids),
        }

    def messages_for(self, touser: str | None = None) -> list[dict]:
        """Kept messages, oldest first, only those to ``touser`` if given."""
        if touser is None:
            return list(self.messages)
        return [m for m in self.messages if m["touser"] == touser]

    def _require_subscribed(self, openid: str) -> None:
        if not self.is_subscribed(openid):
            raise ApiError(43004)

    def _check_rate(self) -> None:
        if self.rate_limit is None:
            return
        horizon = self.clock() - 1.0
        while self._accepted and self._accepted[0] <= horizon:
            self._accepted.popleft()
        if len(self._accepted) >= self.rate_limit:
            raise ApiError(45009)

    def _accept(self) -> None:
        if self.rate_limit is not None:
            self._accepted.append(self.clock())

    def _keep(self, kind: str, touser: str, msgtype: str, body: dict, **extra) -> None:
        message = {
            "id": next(self._message_ids),
            "kind": kind,
            "touser": touser,
            "msgtype": msgtype,
            "body": body,
            "time": self.clock(),
            **extra,
        }
        self.messages.append(message)
        self._notify(message)

    # -- listeners --------------------------------------------------------------

    def subscribe(self, callback: Listener) -> None:
        """Calls ``callback(message)`` for each message kept from now on.

        The message dict is shared with `messages` and must not be modified. A
        callback may be a coroutine function; it then runs as a task on the
        current event loop.
        """
        self._listeners.append(callback)

    def unsubscribe(self, callback: Listener) -> None:
        """Stops calling ``callback``; unknown callbacks are ignored."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, message: dict) -> None:
        for callback in list(self._listeners):
            try:
                result = callback(message)
            except Exception:
                # A broken listener must not turn an accepted send into an error.
                log.exception("emulator listener %r failed", callback)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)  # keep a reference until done
                task.add_done_callback(self._tasks.discard)

    # -- menu -------------------------------------------------------------------

    def create_menu(self, body: dict) -> None:
        """Checks and stores a menu (replacing the previous one)."""
        validate.check_menu(body)
        self.menu = {"button": copy.deepcopy(body["button"])}

    # -- faults and stats ---------------------------------------------------------

    def add_fault(
        self, path: str, errcode: int | None, *, times: int = 1, errmsg: str | None = None, delay: float = 0.0
    ) -> None:
        """Makes the next ``times`` calls to ``path`` answer ``errcode`` (``None``:
        answer normally), after ``delay`` seconds (a slow WeChat).

        Faults on one path queue up: each is used ``times`` times, in order.
        """
        self._faults.setdefault(path, collections.deque()).append(
            [None if errcode is None else ApiError(errcode, errmsg), times, delay]
        )

    def take_fault(self, path: str) -> tuple[ApiError | None, float] | None:
        """Consumes one use of the next fault on ``path``, if any: its error
        (``None``: none) and its delay."""
        queue = self._faults.get(path)
        if not queue:
            return None
        entry = queue[0]
        entry[1] -= 1
        if entry[1] <= 0:
            queue.popleft()
        return entry[0], entry[2]

    def clear_faults(self) -> None:
        self._faults.clear()

    def stats(self) -> dict:
        """``{"token_requests", "tokens_issued", "calls": {path: count},
        "errors": {errcode: count}}``."""
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "calls": dict(self.calls),
            "errors": dict(self.errors),
        }
