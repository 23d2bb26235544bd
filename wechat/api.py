"""The asyncio face of the WeChat API client.

Callers say ``await wx.message.send_text(openid, text)``: the same methods as
wechatpy's client domains (``message``, ``menu``, ``user``, ``wxa``). The
message sends a broadcast makes go out on the event loop through
:mod:`wechat.async_transport`; every other call runs in a thread pool, so the
event loop never blocks. Failures raise :class:`WeChatAPIError` with
WeChat's error code.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from wechat.async_transport import AsyncTransport
from wechat.client import SharedTokenClient, describe_error


#: Busy, network (nothing sent), rate limit: worth another try. Not -4 (sent, no
#: answer in time: WeChat may have delivered it), which must not be sent twice.
RETRYABLE = (-1, -2, 45009)


class WeChatAPIError(Exception):
    """A WeChat API call failed; ``code`` is WeChat's errcode (-2: network,
    -4: sent but no answer in time)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


async def retrying(call: Callable[[], Awaitable[Any]], attempts: int, backoff: float) -> Any:
    """``await call()``, again after ``backoff``, 2 × ``backoff`` … seconds while it
    fails with a :attr:`~WeChatAPIError.retryable` error, at most ``attempts``
    times; the last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except WeChatAPIError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


class _AsyncDomain:
    """One wechatpy API domain whose methods return awaitables."""

    def __init__(self, name: str, sync_domain: Any, api: "WeChatAPI") -> None:
        self._name = name
        self._sync = sync_domain
        self._api = api

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)
        if not callable(method):
            raise AttributeError(name)
        api = self._api
        if api.transport.handles(self._name, name):
            domain = self._name

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await api._guard(api.transport.call(domain, name, *args, **kwargs))

        else:

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await api._run(functools.partial(method, *args, **kwargs))

        return call


class WeChatAPI:
    """Async access to the official account's API (one per process)."""

    def __init__(self, client: SharedTokenClient, max_workers: int = 16) -> None:
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="wechat-api")
        self.transport = AsyncTransport(client, self._in_thread)
        self.message = _AsyncDomain("message", client.message, self)
        self.menu = _AsyncDomain("menu", client.menu, self)
        self.user = _AsyncDomain("user", client.user, self)
        self.wxa = _AsyncDomain("wxa", client.wxa, self)

    async def _in_thread(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _run(self, fn: Callable[[], Any]) -> Any:
        return await self._guard(self._in_thread(fn))

    @staticmethod
    async def _guard(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes one typed error
            code, message = describe_error(exc)
            raise WeChatAPIError(code, message) from exc

    async def access_token(self) -> str:
        """The shared token (fetched if none is stored)."""
        return await self._run(lambda: self.client.access_token)

    async def ready(self) -> None:
        """Fetch what a send would otherwise fetch first (the token, if this
        process holds none; aiohttp and its session), so that a send can go
        the moment its turn in a rate limit comes: one that left a second
        late landed in the next second's count."""
        if self.client.cached_token() is None:
            await self.access_token()
        self.transport.ready()

    async def aclose(self) -> None:
        await self.transport.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)
