"""Both USSD session stores, the in-process one and Redis (real Redis, a random key prefix removed
afterwards): save and load, compare-and-set between twin hops, expiry, and the resume pointer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from dialogs.session import SessionState
from dialogs.session_store import MemorySessionStore, RedisSessionStore
from tests.ussd.ussd_world import REDIS_URL, forget_prefix, store_params


@pytest.fixture(params=store_params())
async def make_store(request) -> AsyncIterator:
    made = []
    prefix = f"sauti-test:{uuid.uuid4().hex[:10]}:"

    def make(ttl: float = 60, window: float = 30):
        if request.param == "memory":
            store = MemorySessionStore(session_ttl_s=ttl, resume_window_s=window)
        else:
            store = RedisSessionStore(REDIS_URL, session_ttl_s=ttl, resume_window_s=window, key_prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    if request.param == "redis":
        await forget_prefix(REDIS_URL, prefix)


def state(session_id: str = "ATUid_1", **changes) -> SessionState:
    return SessionState(session_id=session_id, phone="+254712345678", language="sw", screen="home", **changes)


async def test_save_then_load_gives_the_same_state(make_store):
    store = make_store()
    saved = state(values={"typed_amount": "500", "lines": ["a", "b"]}, trail=["home"], text_len=5, hops=3)
    assert await store.save(saved, expected_version=0)
    loaded = await store.load("ATUid_1")
    assert loaded == saved and loaded.version == 1
    assert await store.load("nobody") is None


async def test_a_twin_hop_that_saves_second_loses(make_store):
    store = make_store()
    assert await store.save(state(), expected_version=0)
    first, second = await store.load("ATUid_1"), await store.load("ATUid_1")
    first.screen, second.screen = "send.to", "acct.menu"
    results = await asyncio.gather(store.save(first, expected_version=1), store.save(second, expected_version=1))
    assert sorted(results) == [False, True]
    assert (await store.load("ATUid_1")).screen == ("send.to" if results[0] else "acct.menu")
    assert not await store.save(state(), expected_version=0)  # a "new" session that already exists


async def test_sessions_and_resume_pointers_expire(make_store):
    store = make_store(ttl=0.3, window=0.2)
    assert await store.save(state(), expected_version=0)
    await store.set_resume("+254712345678", "ATUid_1")
    assert await store.resume_candidate("+254712345678") == "ATUid_1"
    await asyncio.sleep(0.45)
    assert await store.load("ATUid_1") is None
    assert await store.resume_candidate("+254712345678") is None
    assert await store.save(state(), expected_version=0)  # expired: a new session may take the id


async def test_the_resume_pointer_is_cleared_only_by_its_own_session(make_store):
    store = make_store()
    await store.set_resume("+254712345678", "ATUid_2")
    await store.clear_resume("+254712345678", "ATUid_1")  # an older session ending
    assert await store.resume_candidate("+254712345678") == "ATUid_2"
    await store.clear_resume("+254712345678", "ATUid_2")
    assert await store.resume_candidate("+254712345678") is None


async def test_saving_points_and_clears_the_resume_pointer_in_the_same_step(make_store):
    store = make_store()
    mid = state("ATUid_3")
    assert await store.save(mid, expected_version=0, resume="point")
    assert await store.resume_candidate("+254712345678") == "ATUid_3"
    other = state("ATUid_4")
    assert await store.save(other, expected_version=0, resume="clear")  # not its pointer: kept
    assert await store.resume_candidate("+254712345678") == "ATUid_3"
    mid.ended = True
    assert await store.save(mid, expected_version=1, resume="clear")
    assert await store.resume_candidate("+254712345678") is None
    assert not await store.save(mid, expected_version=1, resume="point")  # a lost race changes nothing
    assert await store.resume_candidate("+254712345678") is None
