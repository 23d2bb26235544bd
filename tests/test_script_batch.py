"""Script calls batched into pipelines (storage/script_batch.py), against the real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from storage import redis_store
from storage.embedded import free_port
from storage.script_batch import ScriptBatch

# Returns its own key and argument, so a caller handed another's result shows.
ECHO = """
if ARGV[1] == 'fail' then return redis.error_reply('asked to fail') end
redis.call('SET', KEYS[1], ARGV[1])
return {KEYS[1], ARGV[1]}
"""


def _client(url: str, name: str, timeout: float = 1.0) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, client_name=name, socket_timeout=timeout,
                                   socket_connect_timeout=timeout)


async def _connections(url: str, name: str) -> int:
    admin = redis_store.connect(url)
    try:
        return sum(1 for c in await admin.client_list() if c.get("name") == name)
    finally:
        await admin.aclose()


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_result(backing):
    name = f"batch-{uuid.uuid4().hex[:8]}"
    client = _client(backing.redis_url, name)
    try:
        echo = ScriptBatch(client).script(ECHO)
        keys = [f"wb:test:{name}:{i}" for i in range(50)]
        results = await asyncio.gather(*(echo(keys=[k], args=[str(i)]) for i, k in enumerate(keys)))
        assert results == [[k, str(i)] for i, k in enumerate(keys)]
        assert await client.get(keys[49]) == "49"
        # Fifty separate calls in flight take fifty pooled connections.
        assert await _connections(backing.redis_url, name) == 1
    finally:
        await client.aclose()


async def test_a_failing_call_fails_alone(backing):
    client = _client(backing.redis_url, f"batch-{uuid.uuid4().hex[:8]}")
    try:
        echo = ScriptBatch(client).script(ECHO)
        results = await asyncio.gather(
            echo(keys=["wb:test:a"], args=["1"]), echo(keys=["wb:test:b"], args=["fail"]),
            echo(keys=["wb:test:c"], args=["3"]), return_exceptions=True,
        )
        assert results[0] == ["wb:test:a", "1"] and results[2] == ["wb:test:c", "3"]
        assert isinstance(results[1], redis.ResponseError) and "asked to fail" in str(results[1])
    finally:
        await client.aclose()


@pytest.mark.parametrize("callers", [1, 5])
async def test_scripts_are_loaded_again_after_the_server_lost_them(backing, callers):
    client = _client(backing.redis_url, f"batch-{uuid.uuid4().hex[:8]}")
    try:
        echo = ScriptBatch(client).script(ECHO)
        await echo(keys=["wb:test:x"], args=["0"])
        await client.script_flush()
        results = await asyncio.gather(*(echo(keys=[f"wb:test:x{i}"], args=[str(i)]) for i in range(callers)))
        assert results == [[f"wb:test:x{i}", str(i)] for i in range(callers)]
    finally:
        await client.aclose()


@pytest.mark.parametrize("callers", [1, 5])
async def test_every_caller_hears_that_redis_is_unreachable(callers):
    client = _client(f"redis://127.0.0.1:{free_port()}/0", "batch-down")
    try:
        echo = ScriptBatch(client).script(ECHO)
        results = await asyncio.wait_for(
            asyncio.gather(*(echo(keys=["wb:test:y"], args=["1"]) for _ in range(callers)), return_exceptions=True), 10
        )
        assert len(results) == callers
        assert all(isinstance(r, redis_store.RedisUnavailable) for r in results), results
    finally:
        await client.aclose()


async def test_arguments_go_as_redis_py_sends_them(backing):
    client = _client(backing.redis_url, f"batch-{uuid.uuid4().hex[:8]}")
    try:
        echo = ScriptBatch(client).script(ECHO)
        sent = ["同意 ✓", b"raw", 42, -7, 1.5, ""]
        results = await asyncio.gather(*(echo(keys=[f"wb:test:arg{i}"], args=[a]) for i, a in enumerate(sent)))
        assert [r[1] for r in results] == ["同意 ✓", "raw", "42", "-7", "1.5", ""]
        for bad in (None, True, ["a"]):
            with pytest.raises(redis.DataError):
                await echo(keys=["wb:test:bad"], args=[bad])
        assert await echo(keys=["wb:test:after"], args=["ok"]) == ["wb:test:after", "ok"]
    finally:
        await client.aclose()


async def test_a_call_that_timed_out_leaves_no_reply_behind_for_the_next(backing):
    # The server answers a timed-out call later: read by the next call on the
    # same connection, it would hand every later caller its neighbour's reply.
    # (Closed, the connection takes the late call with it.)
    # Margins of 2.5 s each way: a CI machine that stalls a second must
    # neither fail the calls meant to succeed nor let the late one in time.
    client = _client(backing.redis_url, f"batch-{uuid.uuid4().hex[:8]}", timeout=2.5)
    admin = redis_store.connect(backing.redis_url)
    try:
        echo = ScriptBatch(client).script(ECHO)
        await echo(keys=["wb:test:warm"], args=["warm"])  # loaded
        await admin.execute_command("CLIENT", "PAUSE", 5000, "ALL")
        with pytest.raises(redis_store.RedisUnavailable):
            await echo(keys=["wb:test:late"], args=["late"])
        await asyncio.sleep(3.0)  # the pause ends; the late reply went to a connection now closed
        results = await asyncio.gather(*(echo(keys=[f"wb:test:n{i}"], args=[str(i)]) for i in range(3)))
        assert results == [[f"wb:test:n{i}", str(i)] for i in range(3)]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
        await client.aclose()
