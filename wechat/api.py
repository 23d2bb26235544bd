"""The asyncio face of the WeChat API client.

Callers say ``await wx.message.send_text(openid, text)``: the same methods as
wechatpy's client domains (``message``, ``menu``, ``user``, ``wxa``), each
call run in a thread pool so the event loop never blocks. Failures raise
:class:`WeChatAPIError` with WeChat's error code.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from wechat.client import SharedTokenClient, describe_error


class WeChatAPIError(Exception):
    """A WeChat API call failed; ``code`` is WeChat's errcode (-2: network)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _AsyncDomain:
    """One wechatpy API domain whose methods return awaitables."""

    def __init__(self, sync_domain: Any, run: Callable) -> None:
        self._sync = sync_domain
        self._run = run

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)
        if not callable(method):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._run(functools.partial(method, *args, **kwargs))

        return call


class WeChatAPI:
    """Async access to the official account's API (one per process)."""

    def __init__(self, client: SharedTokenClient, max_workers: int = 16) -> None:
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="wechat-api")
        self.message = _AsyncDomain(client.message, self._run)
        self.menu = _AsyncDomain(client.menu, self._run)
        self.user = _AsyncDomain(client.user, self._run)
        self.wxa = _AsyncDomain(client.wxa, self._run)

    async def _run(self, fn: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one typed error
            code, message = describe_error(exc)
            raise WeChatAPIError(code, message) from exc

    async def access_token(self) -> str:
        """The shared token (fetched if none is stored)."""
        return await self._run(lambda: self.client.access_token)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
