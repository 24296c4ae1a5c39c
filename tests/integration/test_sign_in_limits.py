"""Failed device sign-ins counted per client, in-process and in Redis (shared by every gateway
process): a client at the limit waits for its window's end, other clients are not affected, and the
count starts again after the window."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from dialogs.redis_pipe import RedisPipe
from gateway.sign_in_limits import MemorySignInLimiter, RedisSignInLimiter, SignInLimiter
from tests.ussd.ussd_world import REDIS_URL, forget_prefix, store_params

WINDOW_S = 0.6


@pytest.fixture(params=store_params())
async def limiter(request) -> AsyncIterator[SignInLimiter]:
    if request.param == "memory":
        yield MemorySignInLimiter(3, WINDOW_S)
        return
    prefix = f"sauti-test:signin:{uuid.uuid4().hex[:8]}:"
    shared = RedisSignInLimiter(RedisPipe(REDIS_URL), 3, WINDOW_S, key_prefix=prefix)
    try:
        yield shared
    finally:
        await shared.close()
        await forget_prefix(REDIS_URL, prefix)


async def test_a_client_past_the_limit_waits_until_its_window_ends(limiter: SignInLimiter):
    for _ in range(3):
        assert await limiter.attempt("203.0.113.7") is None  # 3 of 3: each may still try
    wait = await limiter.attempt("203.0.113.7")  # a fourth: refused
    assert wait is not None and 0 < wait <= WINDOW_S
    assert await limiter.attempt("198.51.100.9") is None  # another client is not affected
    await asyncio.sleep(WINDOW_S + 0.1)
    assert await limiter.attempt("203.0.113.7") is None  # a new window: one try is far from the limit


async def test_a_try_that_signs_in_is_taken_back(limiter: SignInLimiter):
    for _ in range(3):
        assert await limiter.attempt("203.0.113.9") is None
        await limiter.succeeded("203.0.113.9")
    assert await limiter.attempt("203.0.113.9") is None


async def test_tries_at_the_same_moment_are_counted_one_by_one(limiter: SignInLimiter):
    waits = await asyncio.gather(*(limiter.attempt("203.0.113.10") for _ in range(10)))
    assert sum(wait is None for wait in waits) == 3


@pytest.mark.parametrize("limiter", store_params()[1:], indirect=True)  # Redis only
async def test_every_gateway_process_sees_the_same_counts_in_redis(limiter: SignInLimiter):
    assert isinstance(limiter, RedisSignInLimiter)
    other_process = RedisSignInLimiter(RedisPipe(REDIS_URL), 3, WINDOW_S, key_prefix=limiter.prefix)
    try:
        await limiter.attempt("203.0.113.8")
        await other_process.attempt("203.0.113.8")
        await asyncio.gather(limiter.attempt("203.0.113.8"), other_process.attempt("203.0.113.8"))
        assert await other_process.attempt("203.0.113.8") is not None
        assert await limiter.attempt("203.0.113.8") is not None
    finally:
        await other_process.close()


async def test_the_in_process_counts_forget_ended_windows_when_full():
    now = [0.0]
    memory = MemorySignInLimiter(2, 10, clock=lambda: now[0], max_clients=3)
    for n in range(3):
        await memory.attempt(f"10.0.0.{n}")
    now[0] = 11.0
    await memory.attempt("10.0.0.9")
    assert len(memory) == 1
