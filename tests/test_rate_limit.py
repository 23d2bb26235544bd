"""The send rate shared by every worker, against the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid

from storage import redis_store
from storage.rate_limit import SharedRateLimit


async def test_two_limiters_share_one_rate_and_large_requests_wait_across_windows(backing):
    redis = redis_store.connect(backing.redis_url)
    try:
        name = f"test-{uuid.uuid4().hex}"
        first, second = SharedRateLimit(redis, 50, name), SharedRateLimit(redis, 50, name)  # 5 per 0.1 s window

        async def take(limit: SharedRateLimit, n: int) -> None:
            for _ in range(4):
                await limit.acquire(n)

        started = time.time()
        await asyncio.gather(take(first, 3), take(second, 3))  # 24 messages at 50/s
        elapsed = time.time() - started
        # 24 messages at 5 per window: the last are granted 4 windows after the
        # first window, which may have been nearly over (0.4 s - 0.1 s).
        assert elapsed >= 0.28, elapsed
        # A request larger than a window's budget still goes through, over several windows.
        started = time.time()
        await first.acquire(12)
        assert time.time() - started >= 0.09  # at least 2 more windows, the first perhaps nearly over
    finally:
        await redis.aclose()
