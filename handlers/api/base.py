"""What every API handler shares: bearer authentication, rate limits, JSON
bodies, and one error mapping (``{"error": {"code", "message"}}``)."""

from __future__ import annotations

import logging
from typing import Any

import redis

from bot import api_texts
from bot.errors import BotError
from bot.mini_sessions import ApiUser, RateLimited
from bot.validation import Invalid
from handlers.base import BaseHandler, budget_requests, http_status, json_object
from service.runtime import Runtime
from storage.mongo import MongoUnavailable
from storage.redis_store import RedisUnavailable

log = logging.getLogger(__name__)

#: What "the storage is down" is, for a 503.
_UNAVAILABLE = (*MongoUnavailable, *RedisUnavailable, redis.RedisError)

#: Request bodies larger than this are refused (413) before parsing.
MAX_BODY = 16 * 1024
#: Seconds a request's handler method (and, apart, its authentication) may
#: spend on MongoDB calls, counted from its start: with the database down or
#: frozen, a 503 within this, not after each call's own timeouts (a log-in took
#: 16-20 s). Above the 4 s a request may wait for the user's lock
#: (:func:`bot.serial.one_at_a_time`), which the clock counts too.
MONGO_BUDGET = 5.0
#: The same for a read (GET), which waits for no lock: a 503 within about 3 s
#: with the database frozen, as chat answers (a read's own queries take
#: milliseconds). The export, which reads everything held about a user, keeps
#: :data:`MONGO_BUDGET`.
READ_BUDGET = 2.5


def _budget(handler: "ApiHandler") -> float:
    return handler.read_budget if handler.request.method in ("GET", "HEAD") else MONGO_BUDGET


#: A list's page size unless ``?limit=`` says otherwise, and the largest allowed.
DEFAULT_PAGE = 50
MAX_PAGE = 100


class BadRequest(BotError):
    kind = "bad_request"
    code = "bad_request"


class TooLarge(BotError):
    kind = "too_large"  # 413, as /wechat answers
    code = "body_too_large"


async def _head(self, *args: Any, **kwargs: Any) -> None:
    """What GET would answer, headers only (Tornado leaves a HEAD's body out)."""
    await self.get(*args, **kwargs)


class ApiHandler(BaseHandler):
    """Base of the ``/api/v1`` handlers.

    ``public`` handlers need no token and are limited per client address;
    the others set ``self.user`` from ``Authorization: Bearer <token>`` and
    are limited per user (:class:`bot.mini_sessions.Limits`).
    """

    def __init_subclass__(cls, **kwargs) -> None:
        # Every entry point of a request within one MongoDB budget (see MONGO_BUDGET, READ_BUDGET).
        super().__init_subclass__(**kwargs)
        budget_requests(cls, _budget)
        if "get" in cls.__dict__ and "head" not in cls.__dict__:
            cls.head = _head  # RFC 9110: a resource that answers GET answers HEAD

    public = False
    #: The MongoDB budget of a GET (see READ_BUDGET).
    read_budget = READ_BUDGET
    #: Its POST, PUT and DELETE store what the user submits: a 503 then says it
    #: may not have been saved and that submitting again is safe (not a log-in).
    submits = True
    #: The per-address counter of a public endpoint: log-ins count apart from
    #: reading the agreement (one user paging through it must not lock out
    #: everyone behind the same carrier NAT).
    address_bucket = "addr"
    user: ApiUser

    def initialize(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.services = runtime.services

    async def prepare(self) -> None:
        self.set_header("Cache-Control", "no-store")
        mini = self.runtime.mini
        if self.public:
            try:
                await mini.check_rate(f"{self.address_bucket}:{self.request.remote_ip}", self.address_limit())
            except RedisUnavailable:
                # Reading the agreement beats refusing it: no limit while Redis is down.
                log.warning("rate limit unavailable (Redis down) for %s", self.request.path)
            return
        self.user = await mini.authenticate(self.bearer())
        await mini.check_rate(f"user:{self.user.openid}", mini.limits.per_user)

    def address_limit(self) -> int:
        return self.runtime.mini.limits.per_user * 5

    def bearer(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def json_body(self) -> dict:
        """The body as a JSON object; :class:`BadRequest` (400) otherwise."""
        if len(self.request.body) > MAX_BODY:
            raise TooLarge(f"请求体过大（最多 {MAX_BODY // 1024} KiB）")
        body, problem = json_object(self.request.body or b"null")
        if problem == "bad_text":
            raise BadRequest(api_texts.BAD_TEXT, code="bad_text")
        if body is None:
            raise BadRequest(api_texts.BAD_JSON, code="bad_json")
        return body

    def page_args(self) -> tuple[int, int]:
        """``(limit, offset)`` of a list's page: ``?limit=`` 1 to
        :data:`MAX_PAGE` (default :data:`DEFAULT_PAGE`), ``?offset=`` from 0."""
        values = []
        for name, default, low, high in (("limit", DEFAULT_PAGE, 1, MAX_PAGE), ("offset", 0, 0, 10**9)):
            raw = self.get_query_argument(name, "").strip()
            if not raw:
                values.append(default)
                continue
            if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
                raise Invalid(api_texts.PAGE_ARG.format(name=name, low=low, high=high), name)
            values.append(int(raw))
        return values[0], values[1]

    # -- errors -------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, BotError):
            self.set_status(http_status(exc))
            error: dict = {"code": exc.code, "message": exc.message}
            if isinstance(exc, Invalid) and exc.field:
                error["field"] = exc.field
                error["errors"] = getattr(exc, "errors", None) or [{"field": exc.field, "message": exc.message}]
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(exc.retry_after))
            elif exc.kind == "unavailable":  # WeChat unavailable at log-in: as storage's 503s say
                self.set_header("Retry-After", "5")
            if exc.kind == "unauthenticated":
                self.set_header("WWW-Authenticate", 'Bearer realm="wetoop"')
            self.set_header("Cache-Control", "no-store")
            self.write_json({"error": error})
            return
        if isinstance(exc, _UNAVAILABLE):
            self.set_status(503)
            self.set_header("Retry-After", "5")
            writes = self.request.method in ("POST", "PUT", "PATCH", "DELETE") and self.submits
            message = api_texts.STORAGE_UNAVAILABLE_WRITE if writes else api_texts.STORAGE_UNAVAILABLE
            self.write_json({"error": {"code": "service_unavailable", "message": message}})
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        # Refusals are answers, not faults: no traceback in the log for them;
        # an outage is one line (it is logged for every request while it lasts).
        if isinstance(value, BotError):
            log.debug("%s %s: %s", self.request.method, self.request.path, value.code)
            return
        if isinstance(value, _UNAVAILABLE):
            log.warning("%s %s: storage unavailable (%s)", self.request.method, self.request.path, type(value).__name__)
            return
        super().log_exception(typ, value, tb)


budget_requests(ApiHandler, _budget)
