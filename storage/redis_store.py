"""Redis access through redis-py's asyncio client.

All keys of the product start with :data:`PREFIX`, so one Redis can be shared
with other software. Timeouts are short so a dead Redis costs a chat reply
about a second, not WeChat's whole 5-second budget.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging

import redis
import redis.asyncio as aioredis
from redis.maint_notifications import MaintNotificationsConfig

log = logging.getLogger(__name__)

PREFIX = "wb:"

class RedisRefusing(redis.ConnectionError):
    """Redis answered, but cannot serve commands now: its disk is full
    (``MISCONF``), it is out of memory (``OOM``), a read-only replica, busy
    with a script … For the product, as unavailable as a Redis that is down."""


#: Errors that mean "Redis could not be reached or did not answer".
RedisUnavailable = (redis.ConnectionError, redis.TimeoutError, OSError)

#: Error replies that say the server cannot serve now, not that the command was wrong:
#: those redis-py gives a class, and the prefixes of those it leaves ResponseError.
_REFUSING_CLASSES = (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError,
                     redis.exceptions.ExecAbortError, redis.exceptions.MasterDownError,
                     redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError)
_REFUSING = frozenset(("MISCONF", "OOM", "READONLY", "MASTERDOWN", "NOREPLICAS", "BUSY", "CLUSTERDOWN", "TRYAGAIN",
                       "LOADING", "EXECABORT"))  # the reply's first word: BUSYGROUP is no BUSY


def as_unavailable(exc: BaseException) -> BaseException:
    """``exc``, or :class:`RedisRefusing` when it is an error reply of a server
    that cannot serve now (one place for every way a command is sent)."""
    if isinstance(exc, _REFUSING_CLASSES) or (isinstance(exc, redis.ResponseError) and str(exc).split(" ", 1)[0] in _REFUSING):
        refusing = RedisRefusing(str(exc))
        refusing.__cause__ = exc
        return refusing
    return exc


#: Within :func:`one_wait_per_message`: whether Redis has failed this message already.
_failed: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar("redis_failed", default=None)


@contextlib.contextmanager
def one_wait_per_message(failed: bool = False):
    """Within this block (one inbound message), once a Redis command has
    failed, the following ones fail at once: each would wait out its own
    timeout, and a reply must come within 3 s. ``failed``: it failed already."""
    token = _failed.set([failed])
    try:
        yield
    finally:
        _failed.reset(token)


class _Client(aioredis.Redis):
    """redis-py's client, aware of :func:`one_wait_per_message`."""

    async def execute_command(self, *args, **options):
        failed = _failed.get()
        if failed is not None and failed[0]:
            raise redis.ConnectionError("Redis did not answer earlier in this message")
        try:
            return await super().execute_command(*args, **options)
        except RedisUnavailable:
            if failed is not None:
                failed[0] = True
            raise
        except redis.ResponseError as exc:
            converted = as_unavailable(exc)
            if converted is exc:
                raise
            if failed is not None:
                failed[0] = True
            raise converted from exc

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> "aioredis.client.Pipeline":
        return _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class _Pipeline(aioredis.client.Pipeline):
    """redis-py's pipeline, its refusals (a full disk's MISCONF) as :class:`RedisRefusing`."""

    async def execute(self, raise_on_error: bool = True):
        try:
            return await super().execute(raise_on_error)
        except redis.ResponseError as exc:
            converted = as_unavailable(exc)
            if converted is exc:
                raise
            raise converted from exc


async def keeping_problems(client: aioredis.Redis) -> list[str]:
    """How the server's settings would lose data the service keeps there (an
    evicting policy, no persistence); [] when fine or not readable (managed
    services often refuse CONFIG)."""
    try:
        found = await client.config_get("maxmemory-policy")
        found.update(await client.config_get("appendonly"))
        found.update(await client.config_get("save"))
    except (redis.ResponseError, *RedisUnavailable):
        return []
    problems = []
    policy = found.get("maxmemory-policy")
    if policy and policy != "noeviction":
        problems.append(f"maxmemory-policy 为 {policy}，内存满时会删除键")
    if found.get("appendonly") == "no" and not (found.get("save") or "").strip():
        problems.append("既没有开启 AOF（appendonly no），也没有 RDB 快照（save 为空），重启后数据全部丢失")
    return problems


def connect(url: str) -> aioredis.Redis:
    """An asyncio client for ``url``; connects on first use.

    Maintenance notifications (a Redis Enterprise/Cloud feature) off: left at
    redis-py's "auto", the pool skipped its check of a pooled connection
    before handing it out, so after a Redis restart every idle connection
    failed its next command once ("Connection closed by server"), and a user's
    first messages after the outage were answered as if Redis were still down.
    """
    return _Client.from_url(
        url,
        decode_responses=True,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        health_check_interval=15,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def connect_sync(url: str) -> redis.Redis:
    """A blocking client, for code that already runs in a worker thread (wechatpy)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),  # as connect()
    )


def key(*parts: str) -> str:
    """A namespaced key: ``key("dialog", openid)`` is ``wb:dialog:<openid>``."""
    return PREFIX + ":".join(parts)


async def ping(client: aioredis.Redis) -> bool:
    """True when the server takes a write (a key of its own, expiring): one
    that answers PING but refuses writes (a full disk) serves the product no
    better than one that is down."""
    try:
        return bool(await client.set(key("health"), "1", ex=60))
    except (redis.RedisError, OSError) as exc:
        log.warning("Redis ping failed: %s", exc)
        return False
