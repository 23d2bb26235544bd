"""wechatpy's API client with its access token shared by every process.

The token lives in Redis. Only one process refreshes it at a time (a Redis
lock), and it asks ``/cgi-bin/stable_token``, which hands every caller the
same token instead of invalidating the one other processes hold. A call that
WeChat refuses for a stale token (40001, 42001, 40014) is retried once with
the token another process stored meanwhile, or with a fresh one.

Everything here blocks (wechatpy uses requests): it runs in worker threads,
never on the event loop; :mod:`wechat.api` is the asyncio face of it.
"""

from __future__ import annotations

import logging
import re
import sys
import urllib.request
import time

import redis
import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.utils import json as wechatpy_json

from storage.redis_store import key

log = logging.getLogger(__name__)

REAL_API = "https://api.weixin.qq.com/"
#: Refresh this long before WeChat's expiry, so no call uses a dying token.
EXPIRY_MARGIN = 300
#: Seconds a process reuses the token it last read from Redis without asking
#: again (a Redis round trip per API call would be most of a broadcast's cost).
#: A token refreshed meanwhile by another process is refused by WeChat once,
#: and the retry reads the new one.
LOCAL_TTL = 30.0
STALE_TOKEN_CODES = (40001, 40014, 42001)


class SharedTokenClient(WeChatClient):
    """A ``WeChatClient`` whose base URL is configurable and whose token is shared.

    ``api_base`` replaces ``https://api.weixin.qq.com`` in every URL wechatpy
    builds (the emulator in tests and the demo).
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        api_base: str,
        redis_client: redis.Redis,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/") + "/"
        self.API_BASE_URL = self.api_base + "cgi-bin/"
        self._redis = redis_client
        self._local: tuple[str, float] | None = None
        # requests reads ~/.netrc and the proxy variables on every call when
        # trust_env is on (a broadcast's largest avoidable cost); read the
        # proxies once instead.
        self._http.trust_env = False
        self._http.proxies.update(urllib.request.getproxies())

    # -- the shared token ---------------------------------------------------

    @property
    def token_key(self) -> str:
        return key("wechat", "access_token", self.appid)

    @property
    def access_token(self) -> str:
        cached = self.cached_token()
        if cached is not None:
            return cached
        token = self._redis.get(self.token_key)
        if not token:
            return self.refresh_token(stale=None)
        self._local = (token, time.monotonic())
        return token

    def fetch_access_token(self) -> dict:  # wechatpy's hook
        return {"access_token": self.refresh_token(stale=None)}

    def refresh_token(self, stale: str | None) -> str:
        """Return a valid token, fetching one under the shared lock if needed.

        ``stale`` is a token WeChat just refused: a stored token equal to it
        is not reused.
        """
        lock = self._redis.lock(key("wechat", "token_lock", self.appid), timeout=15, blocking_timeout=15)
        with lock:
            self._local = None
            token = self._redis.get(self.token_key)
            if token and token != stale:
                self._local = (token, time.monotonic())
                return token  # another process refreshed while we waited
            result = self._stable_token(force_refresh=False)
            if result["access_token"] == stale:
                result = self._stable_token(force_refresh=True)
            ttl = max(60, int(result.get("expires_in", 7200)) - EXPIRY_MARGIN)
            self._redis.set(self.token_key, result["access_token"], ex=ttl)
            self._redis.incr(key("wechat", "token_refreshes", self.appid))
            log.info("fetched a new access token (valid %d s)", ttl)
            self._local = (result["access_token"], time.monotonic())
            return result["access_token"]

    def _stable_token(self, force_refresh: bool) -> dict:
        res = self._http.post(
            self.api_base + "cgi-bin/stable_token",
            json={
                "grant_type": "client_credential",
                "appid": self.appid,
                "secret": self.secret,
                "force_refresh": force_refresh,
            },
            timeout=self.timeout,
        )
        res.raise_for_status()
        result = res.json()
        if result.get("errcode"):
            raise WeChatClientException(result["errcode"], result.get("errmsg", ""), client=self)
        return result

    def cached_token(self) -> str | None:
        """The token this process read less than :data:`LOCAL_TTL` ago, without I/O."""
        local = self._local
        if local is not None and time.monotonic() - local[1] < LOCAL_TTL:
            return local[0]
        return None

    # -- requests -----------------------------------------------------------

    def resolve_url(self, url_or_endpoint: str, kwargs: dict) -> str:
        """The full URL wechatpy would call, on ``api_base`` instead of WeChat's host."""
        if url_or_endpoint.startswith(("http://", "https://")):
            url = url_or_endpoint
        else:
            url = (kwargs.get("api_base_url") or self.API_BASE_URL) + url_or_endpoint
        if url.startswith(REAL_API):
            url = self.api_base + url[len(REAL_API):]
        return url

    @staticmethod
    def encode_body(data: dict) -> bytes:
        """A JSON body as wechatpy encodes it (Chinese left as UTF-8, not escaped)."""
        return wechatpy_json.dumps(data, ensure_ascii=False).encode("utf-8")

    def _request(self, method, url_or_endpoint, **kwargs):
        url_or_endpoint = self.resolve_url(url_or_endpoint, kwargs)
        kwargs.pop("api_base_url", None)
        params = kwargs.setdefault("params", {})
        if isinstance(params, dict) and "access_token" not in params:
            params["access_token"] = self.access_token
        used = params.get("access_token") if isinstance(params, dict) else None
        try:
            return super()._request(method, url_or_endpoint, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode not in STALE_TOKEN_CODES or not used:
                raise
            log.info("access token refused (%s); refreshing and retrying once", exc.errcode)
            kwargs["params"]["access_token"] = self.refresh_token(stale=used)
            return super()._request(method, url_or_endpoint, **kwargs)

    def token_refreshes(self) -> int:
        """How many times any process fetched a token (for health pages and tests)."""
        return int(self._redis.get(key("wechat", "token_refreshes", self.appid)) or 0)


#: The code of a call that was sent but got no answer in time.
NO_ANSWER = -4


#: Secrets that request URLs and answers carry (``?secret=…&js_code=…``,
#: ``access_token=…``, a ``session_key``): never in a message that is logged.
_SECRETS = re.compile(
    r"""(?i)\b(secret|appsecret|access_token|js_code|session_key|code)(=|['"]?\s*:\s*['"]?)([^&\s'",}]+)"""
)


def scrub(text: str) -> str:
    """``text`` with the values of secret parameters replaced by ``***``."""
    return _SECRETS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def describe_error(exc: Exception) -> tuple[int, str]:
    """WeChat's error code and message for an exception from a client call.

    Network failures have no WeChat code; they read as ``-2``, and a request
    sent that got no answer in time as ``-4`` (:data:`NO_ANSWER`: WeChat may
    have acted on it, so it is not safe to repeat). Messages are scrubbed of
    secrets (:func:`scrub`): a connection error names the URL, AppSecret and all.
    """
    if isinstance(exc, WeChatClientException) and exc.errcode is not None:
        return int(exc.errcode), scrub(str(exc.errmsg or ""))
    # aiohttp is imported by the first send (wechat.async_transport); a process
    # that has not imported it cannot have raised its errors.
    aiohttp = sys.modules.get("aiohttp")
    no_answer = (aiohttp.ServerDisconnectedError,) if aiohttp else ()
    network = (aiohttp.ClientError,) if aiohttp else ()
    if isinstance(exc, (TimeoutError, requests.ReadTimeout, *no_answer)):
        return NO_ANSWER, scrub(f"no answer: {exc!r}")
    if isinstance(exc, (requests.RequestException, *network, WeChatClientException, redis.RedisError, OSError)):
        return -2, scrub(f"network error: {exc}")
    return -3, scrub(repr(exc))
