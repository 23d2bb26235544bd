"""The send rate shared by every worker, against the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from storage import redis_store
from storage.rate_limit import SharedRateLimit


@pytest.fixture
async def redis(backing):
    client = redis_store.connect(backing.redis_url)
    yield client
    await client.aclose()


def fresh_name() -> str:
    """A schedule of the test's own."""
    return f"test-{uuid.uuid4().hex}"


async def test_two_limiters_share_one_rate(redis):
    name = fresh_name()
    first, second = SharedRateLimit(redis, 50, name), SharedRateLimit(redis, 50, name)  # 20 ms a message

    async def take(limit: SharedRateLimit, n: int) -> None:
        for _ in range(4):
            await limit.acquire(n)

    started = time.time()
    await asyncio.gather(take(first, 3), take(second, 3))  # 24 messages, 8 reservations of 3
    elapsed = time.time() - started
    # The last reservation starts 7 x 60 ms after the first; 100 ms of
    # messages may go at once.
    assert 0.3 <= elapsed < 1.0, elapsed


async def test_limiters_given_different_rates_go_at_the_lowest(redis):
    # A worker started without the demo's NOTICE_RATE=10 sent at its own 100 a second.
    name = fresh_name()
    slow, fast = SharedRateLimit(redis, 10, name), SharedRateLimit(redis, 1000, name)
    await slow.acquire(1)
    started = time.time()
    for _ in range(12):
        await fast.acquire(1)
    elapsed = time.time() - started
    # At 10 a second (100 ms of burst), 12 take about a second; at 1,000 a second, 12 ms.
    assert elapsed >= 0.8, elapsed


async def test_a_small_caller_is_not_passed_over_by_a_greedy_one(redis):
    name = fresh_name()
    greedy, modest = SharedRateLimit(redis, 50, name), SharedRateLimit(redis, 50, name)  # 20 ms a message
    stop = asyncio.Event()

    async def hog() -> None:
        while not stop.is_set():
            await greedy.acquire(10)  # 200 ms of the schedule at a time

    tasks = [asyncio.create_task(hog()) for _ in range(3)]
    await asyncio.sleep(0.05)
    waits = []
    for _ in range(4):
        started = time.time()
        await modest.acquire(1)
        waits.append(time.time() - started)
    stop.set()
    await asyncio.gather(*tasks)
    # Each single message waits at most for the three reservations made
    # before it (200 ms each) and for the oldest of the second to leave it.
    assert max(waits) < 1.0, waits


async def test_no_second_holds_more_than_the_rate(redis):
    # WeChat counts the messages of each second: pacing with a burst allowance
    # alone lets a sender that fell behind catch up right after a full second
    # (and the first burst comes on top of the first second's share).
    name = fresh_name()
    limit = SharedRateLimit(redis, 40, name)  # 25 ms a message, bursts of 4
    starts: list[float] = []

    async def send_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await limit.acquire(1)
            starts.append(time.monotonic())

    await send_for(1.2)
    await asyncio.sleep(0.15)  # fell behind: pacing allows a burst now
    await send_for(1.0)
    # Any second (less a few ms for the event loop's timer) holds at most 40.
    busiest = max(sum(1 for s in starts if first <= s < first + 0.99) for first in starts)
    assert 30 <= busiest <= 40, busiest


async def test_the_seconds_count_is_rebuilt_when_its_sum_is_lost(redis):
    # Evicted (a maxmemory policy), the sum read as 0 while the second was full.
    name = fresh_name()
    limit = SharedRateLimit(redis, 100, name)  # 10 ms a message, bursts of 10
    started = time.monotonic()
    for _ in range(10):
        await limit.acquire(10)  # the second's 100, by 0.8 s
    await redis.delete(redis_store.key("rate", name, "sent", "total"))
    await limit.acquire(10)  # must wait for the first 10 to leave the second
    assert time.monotonic() - started >= 1.0
