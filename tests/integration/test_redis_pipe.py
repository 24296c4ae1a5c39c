"""`dialogs.redis_pipe` against a real Redis: replies reach the right callers under concurrency, an
error or a cancelled caller never shifts the replies of others, scripts fall back to EVAL, a killed
connection or a Redis that stops answering fails only what was in flight and the next command
gets a fresh connection. Keys live under a random prefix, removed afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from dialogs.redis_pipe import RedisError, RedisPipe, RedisUnavailable, Script
from tests.ussd.ussd_world import REDIS_URL, forget_prefix, redis_available, redis_skip_reason

pytestmark = pytest.mark.skipif(not redis_available(), reason=redis_skip_reason())


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    prefix = f"sauti-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    await forget_prefix(REDIS_URL, prefix)


@pytest.fixture
async def pipe() -> AsyncIterator[RedisPipe]:
    pipe = RedisPipe(REDIS_URL, timeout_s=2.0)
    yield pipe
    await pipe.close()


async def test_concurrent_commands_each_get_their_own_reply(pipe, prefix):
    await asyncio.gather(*(pipe.execute("SET", f"{prefix}{n}", f"value {n}", "PX", 60_000) for n in range(500)))
    replies = await asyncio.gather(*(pipe.execute("GET", f"{prefix}{n}") for n in range(500)))
    assert replies == [f"value {n}".encode() for n in range(500)]
    assert await pipe.execute("MGET", f"{prefix}7", f"{prefix}missing") == [b"value 7", None]
    counts = await asyncio.gather(*(pipe.execute("INCR", f"{prefix}count") for _ in range(300)))
    assert sorted(counts) == list(range(1, 301))


async def test_an_error_reply_fails_its_caller_only(pipe, prefix):
    await pipe.execute("SET", f"{prefix}text", "not a number")
    results = await asyncio.gather(pipe.execute("GET", f"{prefix}text"), pipe.execute("INCR", f"{prefix}text"),
                                   pipe.execute("ECHO", "after"), return_exceptions=True)
    assert results[0] == b"not a number" and results[2] == b"after"
    assert isinstance(results[1], RedisError) and "not an integer" in str(results[1])


async def test_a_script_unknown_to_redis_is_sent_whole_then_by_sha(pipe, prefix):
    # A script body no other test sends, so Redis cannot already hold it.
    script = Script(f"return redis.call('SET', KEYS[1], ARGV[1]) and '{uuid.uuid4().hex}'")
    first = await pipe.run_script(script, [f"{prefix}s"], ["one"])
    assert await pipe.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await pipe.run_script(script, [f"{prefix}s"], ["two"]) == first
    assert await pipe.execute("GET", f"{prefix}s") == b"two"


async def test_a_cancelled_caller_does_not_shift_the_replies_of_others(pipe, prefix):
    await pipe.execute("SET", f"{prefix}k", "v")
    slow = asyncio.create_task(pipe.execute("BLPOP", f"{prefix}empty-list", "0.2"))
    await asyncio.sleep(0.05)
    slow.cancel()
    # Queued behind the BLPOP on the same connection: answered after it, each with its own reply.
    assert await asyncio.gather(pipe.execute("GET", f"{prefix}k"), pipe.execute("ECHO", "x")) == [b"v", b"x"]
    assert slow.cancelled()


async def test_a_killed_connection_is_replaced_on_the_next_command(pipe, prefix):
    await pipe.execute("SET", f"{prefix}k", "v")
    first = await pipe.execute("CLIENT", "ID")
    # Redis closes our connection (a restart, an idle timeout, an operator's CLIENT KILL).
    other = RedisPipe(REDIS_URL)
    try:
        assert await other.execute("CLIENT", "KILL", "ID", first) == 1
    finally:
        await other.close()
    await asyncio.sleep(0.05)
    assert await pipe.execute("GET", f"{prefix}k") == b"v"
    assert await pipe.execute("CLIENT", "ID") != first


async def test_a_redis_that_stops_answering_fails_what_is_in_flight_then_recovers(prefix):
    pipe = RedisPipe(REDIS_URL, timeout_s=0.3)
    try:
        await pipe.execute("SET", f"{prefix}k", "v")
        started = time.monotonic()
        stuck = [pipe.execute("BLPOP", f"{prefix}empty-list", "2"), pipe.execute("GET", f"{prefix}k")]
        results = await asyncio.gather(*stuck, return_exceptions=True)
        assert all(isinstance(r, RedisUnavailable) for r in results), results
        assert time.monotonic() - started < 1.5  # the timeout, not the BLPOP's 2 s
        assert await pipe.execute("GET", f"{prefix}k") == b"v"
    finally:
        await pipe.close()


async def test_a_database_in_the_url_is_selected(prefix):
    pipe = RedisPipe(REDIS_URL.rsplit("/", 1)[0] + "/1" if REDIS_URL.count("/") > 2 else REDIS_URL + "/1")
    try:
        await pipe.execute("SET", f"{prefix}db1", "x", "PX", 60_000)
        assert (await pipe.execute("CLIENT", "INFO")).split(b" db=")[1].startswith(b"1 ")
    finally:
        await pipe.execute("DEL", f"{prefix}db1")
        await pipe.close()


async def test_no_redis_is_a_clear_error_and_a_closed_client_says_so():
    nowhere = RedisPipe("redis://127.0.0.1:1/0", timeout_s=0.5)
    with pytest.raises(RedisUnavailable, match=r"cannot reach Redis at 127\.0\.0\.1:1/0"):
        await nowhere.execute("PING")
    await nowhere.close()
    with pytest.raises(RedisUnavailable, match="closed"):
        await nowhere.execute("PING")
