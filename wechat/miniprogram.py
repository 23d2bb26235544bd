"""The mini-program's own WeChat client: login (``sns/jscode2session``).

The mini-program has its own AppID and secret, distinct from the official
account's. ``jscode2session`` needs no access token, so this client never
fetches one. :class:`MiniProgramClient` blocks (wechatpy, requests);
:class:`MiniProgramAPI` is its asyncio face, each call run in a small thread
pool so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

from wechatpy import WeChatClient

from wechat.api import WeChatAPIError
from wechat.client import REAL_API, describe_error


class MiniProgramClient(WeChatClient):
    """wechatpy's client for the mini-program's AppID, aimed at ``api_base``.

    Only the token-free ``sns/`` endpoints are used; asking one of them never
    triggers an access-token request.
    """

    def __init__(self, appid: str, secret: str, api_base: str, timeout: float = 5.0) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base.rstrip("/") + "/"

    def _request(self, method, url_or_endpoint, **kwargs):
        base = kwargs.pop("api_base_url", None) or self.API_BASE_URL
        if not url_or_endpoint.startswith(("http://", "https://")):
            url_or_endpoint = base + url_or_endpoint
        if url_or_endpoint.startswith(REAL_API):
            url_or_endpoint = self.api_base + url_or_endpoint[len(REAL_API):]
        params = kwargs.get("params")
        if isinstance(params, dict) and "/sns/" in url_or_endpoint:
            # wechatpy adds ?access_token= to dict params; a list of pairs it leaves alone.
            kwargs["params"] = list(params.items())
        return super()._request(method, url_or_endpoint, **kwargs)


@dataclasses.dataclass(frozen=True)
class CodeSession:
    """What ``jscode2session`` answers; ``session_key`` must never leave the server."""

    openid: str
    session_key: str
    unionid: str | None


class MiniProgramAPI:
    """Async access to the mini-program's WeChat API (one per process)."""

    def __init__(self, client: MiniProgramClient, max_workers: int = 4) -> None:
        self.client = client
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="wechat-mp")

    @property
    def appid(self) -> str:
        return self.client.appid

    async def code_to_session(self, js_code: str) -> CodeSession:
        """Exchange a ``wx.login()`` code; raises :class:`WeChatAPIError` with WeChat's code."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self.client.wxa.code_to_session, js_code)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one typed error
            code, message = describe_error(exc)
            raise WeChatAPIError(code, message) from exc
        if not isinstance(result, dict) or not result.get("openid") or not result.get("session_key"):
            # Its keys only: the answer may hold a session_key.
            keys = sorted(result) if isinstance(result, dict) else type(result).__name__
            raise WeChatAPIError(-3, f"unexpected jscode2session answer: {keys}")
        return CodeSession(result["openid"], result["session_key"], result.get("unionid") or None)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
