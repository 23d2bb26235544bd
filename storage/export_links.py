"""One-time download links for a user's data export, in Redis.

A link serves the document as it was when the user asked for it (the bot
suggests exporting before 注销账户: what erasure removes must still be in the
link). The link is kept under the token's SHA-256, like sessions, and the
snapshot encrypted with a key from the token and the deployment's secret
(:mod:`service.server_secret`): Redis holds the chat's replies, link
included, for WeChat's retries, so the token alone must not open it. A new
link of a user replaces their previous one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.redis_store import key

#: Marks a stored snapshot; a value without it is an openid (links made before snapshots).
_SNAPSHOT = "s1:"


class ExportLinks:
    def __init__(self, redis: aioredis.Redis, secret: str) -> None:
        self._redis = redis
        self._secret = secret.encode()

    async def create(self, token: str, openid: str, document: dict, ttl: int) -> None:
        """Keep ``document`` for ``token`` for ``ttl`` seconds, in place of ``openid``'s previous link."""
        nonce = os.urandom(12)
        sealed = AESGCM(self._cipher_key(token)).encrypt(nonce, json.dumps(document, ensure_ascii=False).encode(), None)
        link = _key(token)
        await self._redis.set(link, _SNAPSHOT + base64.b64encode(nonce + sealed).decode(), ex=ttl)
        previous = await self._redis.set(key("export_of", openid), link, ex=ttl, get=True)
        if previous and previous != link:
            await self._redis.delete(previous)

    async def take(self, token: str) -> dict | str | None:
        """The document behind ``token`` (or, for a link from before snapshots,
        its openid), removing it so it works only once."""
        value = await self._redis.get(_key(token))
        if value is None:
            return None
        opened = None
        if value.startswith(_SNAPSHOT):
            raw = base64.b64decode(value[len(_SNAPSHOT):])
            try:
                opened = json.loads(AESGCM(self._cipher_key(token)).decrypt(raw[:12], raw[12:], None))
            except InvalidTag:
                # Sealed under another secret (COOKIE_SECRET changed, or a host
                # with its own): as if expired here, and left for the host that
                # can open it (taken first, it was lost to the user there too).
                return None
        if not await self._redis.delete(_key(token)):
            return None  # taken by another request meanwhile: once only
        return value if opened is None else opened

    def _cipher_key(self, token: str) -> bytes:
        return hmac.new(self._secret, b"wetoop-export-snapshot:" + token.encode(), hashlib.sha256).digest()


def _key(token: str) -> str:
    return key("export", hashlib.sha256(token.encode()).hexdigest())
