"""A WeChat API emulator: a Tornado app speaking WeChat's JSON and error codes.

Point a client at it by replacing ``https://api.weixin.qq.com`` with the
emulator's base URL. All memory lives in the `EmulatorState` given to
`make_app`; tests may build one and inspect it.

WeChat endpoints (errors are HTTP 200 ``{"errcode": N, "errmsg": "..."}``):

* ``GET /cgi-bin/token`` and ``POST /cgi-bin/stable_token``. A new token from
  either endpoint invalidates the previous one *of that endpoint* for the appid
  at once (no grace period); the two kinds are independent, as on WeChat.
  Missing appid/secret answer 41002/41004.
* ``/cgi-bin/message/custom/send``, ``/cgi-bin/message/template/send``,
  ``/cgi-bin/message/mass/send``, ``/cgi-bin/menu/create``, ``/cgi-bin/menu/get``,
  ``/cgi-bin/menu/delete``, ``/cgi-bin/user/info``, ``/cgi-bin/user/info/batchget``: all need ``?access_token=``
  (41001 missing, 40001 unknown or replaced, 42001 expired). Code choices
  beyond WeChat's documentation are in `emulator.validate`.
* ``GET /sns/jscode2session`` (mini-program login, no access token). A valid
  ``js_code`` is 1..128 letters, digits and ``-``, otherwise 40029 (also when
  missing or when it starts with ``-``); each code works once, then 40163. The
  user is the text before the first ``-`` (the whole code if none), so
  ``alice-1`` and ``alice-2`` are the same person:
  ``openid = "o" + urlsafe_b64(sha256(b"mp:" + user))[:27]`` and
  ``unionid = "u" + urlsafe_b64(sha256(b"union:" + user))[:27]`` (see
  `EmulatorState.miniprogram_openid_for_user` and
  `EmulatorState.unionid_for_user`).

Other rules: a body that is not a JSON object answers 47001 (44002 if empty);
the wrong HTTP method on an endpoint 43001/43002; an unknown path anywhere HTTP
404 with ``{"errcode": 404, ...}``, so a call the emulator does not implement
is never mistaken for a WeChat business error. With ``rate_limit`` set, a
message send beyond N accepted in the last second answers 45009; each send call
(a mass send too) counts once, and refused sends are not kept.

Control API, JSON, for tests and the demo (bad input: HTTP 400):

* ``GET /_emulator/messages[?touser=]`` (a template message with the
  ``msgid`` its sender got), ``DELETE /_emulator/messages``
* ``GET /_emulator/users``, ``POST /_emulator/users``
  ``{"openid", "subscribed"?, "unionid"?, "nickname"?}`` (upsert)
* ``POST /_emulator/tokens/expire``, ``POST /_emulator/tokens/invalidate``
* ``GET /_emulator/stats``: token requests, calls by path, error codes answered by code
* ``POST /_emulator/faults`` ``{"path", "errcode"?, "delay"?: seconds, "times"?: 1, "errmsg"?}``:
  the next calls to ``path`` answer that error (or, with ``delay`` alone,
  answer normally) after ``delay`` seconds, after the access-token check and
  before any other; ``DELETE /_emulator/faults``
* ``POST /_emulator/reset``
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import tornado.httpserver
import tornado.web

from emulator.errors import ApiError
from emulator.state import EmulatorState
from emulator.validate import is_openid

__all__ = ["EmulatorState", "make_app", "serve"]


class _JSONHandler(tornado.web.RequestHandler):
    def initialize(self, state: EmulatorState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")

    def write_json(self, value: Any) -> None:
        # ensure_ascii=False so Chinese text goes back exactly as it came in.
        self.finish(json.dumps(value, ensure_ascii=False))

    def json_body(self) -> dict:
        """The body as a JSON object, or ApiError 44002 (empty) / 47001."""
        if not self.request.body.strip():
            raise ApiError(44002)
        try:
            body = json.loads(self.request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(47001) from None
        if not isinstance(body, dict):
            raise ApiError(47001)
        return body

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, ApiError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ApiError):
            self.state.errors[str(error.errcode)] += 1
            self.set_status(200)  # WeChat reports business errors with HTTP 200
            self.write_json(error.to_json())
        else:
            self.write_json({"errcode": status_code, "errmsg": self._reason.lower()})


class _ApiHandler(_JSONHandler):
    """A WeChat endpoint: counts the call, checks the token, applies faults."""

    needs_token = True

    async def prepare(self) -> None:
        path = self.request.path
        self.state.calls[path] += 1
        if self.needs_token:
            self.state.check_token(self.get_query_argument("access_token", None))
        fault = self.state.take_fault(path)
        if fault is not None:
            error, delay = fault
            if delay:
                await asyncio.sleep(delay)
            if error is not None:
                raise error

    # Subclasses override the method they serve; the other gets WeChat's answer.
    def get(self) -> None:
        raise ApiError(43002)

    def post(self) -> None:
        raise ApiError(43001)


class _TokenHandler(_ApiHandler):
    needs_token = False

    def get(self) -> None:
        if self.get_query_argument("grant_type", None) != "client_credential":
            raise ApiError(40002)
        appid = self.get_query_argument("appid", None)
        self.state.check_credentials(appid, self.get_query_argument("secret", None))
        self.write_json(self.state.issue_token(appid))


class _StableTokenHandler(_ApiHandler):
    needs_token = False

    def post(self) -> None:
        body = self.json_body()
        if body.get("grant_type") != "client_credential":
            raise ApiError(40002)
        self.state.check_credentials(body.get("appid"), body.get("secret"))
        force_refresh = body.get("force_refresh", False)
        if not isinstance(force_refresh, bool):
            raise ApiError(47001)
        self.write_json(self.state.stable_token(body["appid"], force_refresh=force_refresh))


class _CustomSendHandler(_ApiHandler):
    def post(self) -> None:
        self.write_json(self.state.send_custom(self.json_body()))


class _TemplateSendHandler(_ApiHandler):
    def post(self) -> None:
        self.write_json(self.state.send_template(self.json_body()))


class _MassSendHandler(_ApiHandler):
    def post(self) -> None:
        self.write_json(self.state.send_mass(self.json_body()))


class _MenuCreateHandler(_ApiHandler):
    def post(self) -> None:
        self.state.create_menu(self.json_body())
        self.write_json({"errcode": 0, "errmsg": "ok"})


class _MenuGetHandler(_ApiHandler):
    def get(self) -> None:
        if self.state.menu is None:
            raise ApiError(46003)
        self.write_json({"menu": self.state.menu})


class _MenuDeleteHandler(_ApiHandler):
    def get(self) -> None:
        self.state.menu = None
        self.write_json({"errcode": 0, "errmsg": "ok"})


class _UserInfoHandler(_ApiHandler):
    def get(self) -> None:
        self.write_json(self.state.user_info(self.get_query_argument("openid", None)))


class _UserInfoBatchHandler(_ApiHandler):
    def post(self) -> None:
        self.write_json(self.state.user_info_batch(self.json_body()))


class _JsCodeHandler(_ApiHandler):
    needs_token = False

    def get(self) -> None:
        arg = self.get_query_argument
        self.write_json(self.state.code_to_session(
            arg("appid", None), arg("secret", None), arg("js_code", None), arg("grant_type", None)
        ))


class _NotFoundHandler(_JSONHandler):
    def prepare(self) -> None:
        path = self.request.path
        if path.startswith(("/cgi-bin/", "/sns/")):
            self.state.calls[path] += 1
        self.set_status(404)
        self.write_json({"errcode": 404, "errmsg": f"no such api in the emulator: {path}"})


# -- control API ---------------------------------------------------------------


class _ControlHandler(_JSONHandler):
    def control_body(self) -> dict:
        try:
            return self.json_body()
        except ApiError:
            raise tornado.web.HTTPError(400, reason="body must be a JSON object") from None

    def ok(self) -> None:
        self.write_json({"ok": True})


def _bad(reason: str) -> tornado.web.HTTPError:
    return tornado.web.HTTPError(400, reason=reason)


class _MessagesControl(_ControlHandler):
    def get(self) -> None:
        self.write_json(self.state.messages_for(self.get_query_argument("touser", None)))

    def delete(self) -> None:
        self.state.messages.clear()
        self.ok()


class _UsersControl(_ControlHandler):
    def get(self) -> None:
        self.write_json(list(self.state.users.values()))

    def post(self) -> None:
        body = self.control_body()
        if not is_openid(body.get("openid")):
            raise _bad("openid must be 1..64 letters, digits, '-' or '_'")
        subscribed = body.get("subscribed")
        if subscribed is not None and not isinstance(subscribed, bool):
            raise _bad("subscribed must be a boolean")
        for field in ("unionid", "nickname"):
            if body.get(field) is not None and not isinstance(body[field], str):
                raise _bad(f"{field} must be a string")
        self.write_json(self.state.set_user(
            body["openid"], subscribed=subscribed,
            unionid=body.get("unionid"), nickname=body.get("nickname"),
        ))


class _ExpireControl(_ControlHandler):
    def post(self) -> None:
        self.state.expire_tokens()
        self.ok()


class _InvalidateControl(_ControlHandler):
    def post(self) -> None:
        self.state.invalidate_tokens()
        self.ok()


class _StatsControl(_ControlHandler):
    def get(self) -> None:
        self.write_json(self.state.stats())


class _FaultsControl(_ControlHandler):
    def post(self) -> None:
        body = self.control_body()
        path, errcode = body.get("path"), body.get("errcode")
        times, errmsg, delay = body.get("times", 1), body.get("errmsg"), body.get("delay", 0)
        if not isinstance(path, str) or not path.startswith("/"):
            raise _bad("path must start with '/'")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 60:
            raise _bad("delay must be a number of seconds from 0 to 60")
        if errcode is None and not delay:
            raise _bad("give errcode, delay or both")
        if errcode is not None and (not isinstance(errcode, int) or isinstance(errcode, bool)):
            raise _bad("errcode must be an integer")
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise _bad("times must be a positive integer")
        if errmsg is not None and not isinstance(errmsg, str):
            raise _bad("errmsg must be a string")
        self.state.add_fault(path, errcode, times=times, errmsg=errmsg, delay=float(delay))
        self.ok()

    def delete(self) -> None:
        self.state.clear_faults()
        self.ok()


class _IndexControl(_ControlHandler):
    """``/``: what this server is and what it serves (the demo's banner shows its address)."""

    def get(self) -> None:
        self.write_json({
            "service": "wetoop-bot WeChat API emulator",
            "endpoints": [pattern for pattern, _handler in _ROUTES if pattern != "/"],
        })


class _ResetControl(_ControlHandler):
    def post(self) -> None:
        self.state.reset()
        self.ok()


_ROUTES = [
    (r"/", _IndexControl),
    (r"/cgi-bin/token", _TokenHandler),
    (r"/cgi-bin/stable_token", _StableTokenHandler),
    (r"/cgi-bin/message/custom/send", _CustomSendHandler),
    (r"/cgi-bin/message/template/send", _TemplateSendHandler),
    (r"/cgi-bin/message/mass/send", _MassSendHandler),
    (r"/cgi-bin/menu/create", _MenuCreateHandler),
    (r"/cgi-bin/menu/get", _MenuGetHandler),
    (r"/cgi-bin/menu/delete", _MenuDeleteHandler),
    (r"/cgi-bin/user/info", _UserInfoHandler),
    (r"/cgi-bin/user/info/batchget", _UserInfoBatchHandler),
    (r"/sns/jscode2session", _JsCodeHandler),
    (r"/_emulator/messages", _MessagesControl),
    (r"/_emulator/users", _UsersControl),
    (r"/_emulator/tokens/expire", _ExpireControl),
    (r"/_emulator/tokens/invalidate", _InvalidateControl),
    (r"/_emulator/stats", _StatsControl),
    (r"/_emulator/faults", _FaultsControl),
    (r"/_emulator/reset", _ResetControl),
]


def make_app(state: EmulatorState) -> tornado.web.Application:
    """Builds the emulator application serving ``state``."""
    args = {"state": state}
    return tornado.web.Application(
        [(pattern, handler, args) for pattern, handler in _ROUTES],
        default_handler_class=_NotFoundHandler,
        default_handler_args=args,
    )


async def serve(host: str, port: int, state: EmulatorState) -> tornado.httpserver.HTTPServer:
    """Starts serving ``state`` on ``host:port`` and returns the server.

    Returns as soon as the socket listens; stop with ``server.stop()``. The
    port it listens on (the one the system chose for ``port`` 0) is the
    server's ``bound_port``.
    """
    import tornado.netutil

    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(make_app(state))
    server.add_sockets(sockets)
    server.bound_port = sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return server
