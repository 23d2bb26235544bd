"""wechatpy's API calls sent without a thread: wechatpy builds, aiohttp sends.

wechatpy's client blocks (requests), so :mod:`wechat.api` runs its calls in a
thread pool. That is fine for the occasional call, but a broadcast makes
thousands a second, and a thread hop plus requests' own work per message
used most of a core. For the calls listed in :data:`ASYNC_CALLS`, wechatpy's
own API class still builds the request (endpoint, parameters, JSON body),
which is caught before requests would send it; one shared aiohttp session
(keep-alive connections) sends it, and wechatpy's result handling turns the
answer into the same ``WeChatClientException`` a blocking call would raise.
The access token is the shared one of :class:`wechat.client.SharedTokenClient`
(refreshed in a thread, as it is rare).
"""

from __future__ import annotations

import asyncio
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from wechatpy.exceptions import WeChatClientException

from wechat.client import STALE_TOKEN_CODES, SharedTokenClient

if TYPE_CHECKING:
    import aiohttp

#: ``domain -> method names`` sent through aiohttp. Each makes exactly one
#: JSON request and returns wechatpy's result unchanged (checked in wechatpy
#: 1.8's ``client/api/message.py``); anything else runs in a thread.
ASYNC_CALLS = {"message": frozenset({"send_text", "send_template", "send_mass_text"})}
#: Connections kept open to the API host (aiohttp queues requests beyond it).
CONNECTIONS = 64


class _Prepared(Exception):
    """Raised by :class:`_Recorder` in place of sending: the request wechatpy built."""

    def __init__(self, method: str, url_or_endpoint: str, kwargs: dict) -> None:
        super().__init__(method, url_or_endpoint)
        self.method = method
        self.url_or_endpoint = url_or_endpoint
        self.kwargs = kwargs


class _Recorder:
    """Stands in for the client inside a wechatpy API class and records its request."""

    def __init__(self, client: SharedTokenClient) -> None:
        self._client = client

    def get(self, url: str, **kwargs: Any) -> Any:
        raise _Prepared("GET", url, kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        raise _Prepared("POST", url, kwargs)

    def __getattr__(self, name: str) -> Any:  # appid, secret … for the API class
        return getattr(self._client, name)


class _Answer:
    """What wechatpy's ``_handle_result`` reads of a response."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.request = None


class AsyncTransport:
    """Sends the calls of :data:`ASYNC_CALLS` on the event loop; one per process."""

    def __init__(self, client: SharedTokenClient, run_blocking) -> None:
        self.client = client
        self._run_blocking = run_blocking  # runs a blocking function in the API's threads
        self._domains = {name: type(getattr(client, name))(_Recorder(client)) for name in ASYNC_CALLS}
        self._session: aiohttp.ClientSession | None = None
        self._timeout: aiohttp.ClientTimeout | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._proxy = _proxy_for(client.api_base)

    def handles(self, domain: str, method: str) -> bool:
        return method in ASYNC_CALLS.get(domain, ())

    async def call(self, domain: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Build the request with wechatpy, send it, and return wechatpy's result."""
        try:
            getattr(self._domains[domain], method)(*args, **kwargs)
        except _Prepared as prepared:
            request = prepared
        else:  # pragma: no cover - every listed method makes a request
            raise RuntimeError(f"{domain}.{method} made no request")
        url = self.client.resolve_url(request.url_or_endpoint, request.kwargs)
        token = self.client.cached_token() or await self._run_blocking(lambda: self.client.access_token)
        try:
            return await self._send(request, url, token)
        except WeChatClientException as exc:
            if exc.errcode not in STALE_TOKEN_CODES:
                raise
            fresh = await self._run_blocking(lambda: self.client.refresh_token(stale=token))
            return await self._send(request, url, fresh)

    async def _send(self, request: _Prepared, url: str, token: str) -> Any:
        kwargs = request.kwargs
        params = dict(kwargs.get("params") or {})
        params["access_token"] = token
        data = kwargs.get("data")
        if isinstance(data, dict):
            data = self.client.encode_body(data)
        session = self._open()
        async with session.request(
            request.method,
            url + "?" + urllib.parse.urlencode(params),
            data=data,
            proxy=self._proxy,
            timeout=self._timeout,
        ) as response:
            content = await response.read()
            if response.status >= 400:
                raise WeChatClientException(None, f"HTTP {response.status}", client=self.client)
        return self.client._handle_result(_Answer(content), request.method, url, kwargs.get("result_processor"))

    def ready(self) -> None:
        """Open the session now rather than at the first send."""
        self._open()

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop, as aiohttp requires.
        # aiohttp is imported here, not at the top: it costs a quarter of a
        # second that every CLI command (which sends nothing) would pay; a
        # sending process pays it once, at its first send.
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._timeout = aiohttp.ClientTimeout(total=self.client.timeout)
            connector = aiohttp.TCPConnector(limit=CONNECTIONS, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("Content-Type",))
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _proxy_for(base: str) -> str | None:
    """The proxy for the API host, read once from the environment (as the blocking client does)."""
    parts = urllib.parse.urlsplit(base)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)
