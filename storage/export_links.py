"""One-time download links for a user's data export, in Redis.

A link serves the document as it was when the user asked for it (the bot
suggests exporting before 注销账户: what erasure removes must still be in the
link). That snapshot is kept encrypted with a key derived from the token, and
the link under the token's SHA-256, like sessions: whoever reads Redis (its
append-only file, a backup) can neither use the links in it nor read the
data, which is gone with the key when the link is used or expires.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.redis_store import key

#: Marks a stored snapshot; a value without it is an openid (links made before snapshots).
_SNAPSHOT = "s1:"


class ExportLinks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def create(self, token: str, document: dict, ttl: int) -> None:
        """Keep ``document`` for ``token`` for ``ttl`` seconds."""
        nonce = os.urandom(12)
        sealed = AESGCM(_cipher_key(token)).encrypt(nonce, json.dumps(document, ensure_ascii=False).encode(), None)
        await self._redis.set(_key(token), _SNAPSHOT + base64.b64encode(nonce + sealed).decode(), ex=ttl)

    async def take(self, token: str) -> dict | str | None:
        """The document behind ``token`` (or, for a link from before snapshots,
        its openid), removing it so it works only once."""
        value = await self._redis.getdel(_key(token))
        if value is None or not value.startswith(_SNAPSHOT):
            return value
        raw = base64.b64decode(value[len(_SNAPSHOT):])
        return json.loads(AESGCM(_cipher_key(token)).decrypt(raw[:12], raw[12:], None))


def _key(token: str) -> str:
    return key("export", hashlib.sha256(token.encode()).hexdigest())


def _cipher_key(token: str) -> bytes:
    # Another hash of the token than the Redis key's: the key name does not give it away.
    return hashlib.sha256(b"wetoop-export-snapshot:" + token.encode()).digest()
