"""The session stores' read for a hop (`load_for_hop`: the session and the number's resume pointer
together) in both stores, and what a hop costs in Redis round trips (real Redis, a random key
prefix removed afterwards): one read and one compare-and-set save, however the hop goes."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from dialogs.assembly import sauti_journeys
from dialogs.engine import Caller, Hop, UssdEngine
from dialogs.session import SessionState
from dialogs.session_store import MemorySessionStore, RedisSessionStore
from tests.ussd.ussd_world import REDIS_URL, forget_prefix, redis_available, redis_skip_reason, store_params

PHONE = "+254712345678"


@pytest.fixture(params=store_params())
async def store(request) -> AsyncIterator:
    prefix = f"sauti-test:{uuid.uuid4().hex[:10]}:"
    if request.param == "memory":
        made = MemorySessionStore(session_ttl_s=60, resume_window_s=30)
    else:
        made = RedisSessionStore(REDIS_URL, session_ttl_s=60, resume_window_s=30, key_prefix=prefix)
    yield made
    await made.close()
    if request.param == "redis":
        await forget_prefix(REDIS_URL, prefix)


def state(session_id: str = "ATUid_1", **changes) -> SessionState:
    return SessionState(session_id=session_id, phone=PHONE, language="fr", screen="home", **changes)


async def test_the_read_for_a_hop_brings_the_session_and_the_resume_pointer(store):
    assert await store.load_for_hop("ATUid_1", PHONE) == (None, None)
    saved = state(values={"name": "Awa Ndiaye", "lines": ["é", "ç"]}, trail=["home"], text_len=3, hops=2)
    assert await store.save(saved, expected_version=0, resume="point")
    loaded, pointer = await store.load_for_hop("ATUid_1", PHONE)
    assert loaded == saved and loaded.version == 1 and pointer == "ATUid_1"
    # Another number on the same session id sees the session but not this number's pointer.
    assert await store.load_for_hop("ATUid_1", "+221771234567") == (saved, None)
    assert await store.save(loaded, expected_version=1, resume="clear")
    assert (await store.load_for_hop("ATUid_1", PHONE))[1] is None


class Directory:
    async def find(self, phone: str) -> Caller | None:
        return Caller(7, "en", frozenset({"customer"}))

    def language_for(self, phone: str) -> str:
        return "en"

    def values_for(self, phone: str) -> dict:
        return {"currency": "KES", "provider": "M-Pesa", "pin_length": "4", "me": "0712 345678"}


@pytest.mark.skipif(not redis_available(), reason=redis_skip_reason())
async def test_a_hop_is_two_redis_commands_and_twins_still_save_once():
    prefix = f"sauti-test:{uuid.uuid4().hex[:10]}:"
    store = RedisSessionStore(REDIS_URL, session_ttl_s=60, resume_window_s=30, key_prefix=prefix)
    sent: Counter[str] = Counter()
    execute = store.redis.execute

    async def counted(*args):
        sent[str(args[0])] += 1
        return await execute(*args)

    store.redis.execute = counted  # the real client, counted
    engine = UssdEngine(sauti_journeys(None), store, Directory())
    try:
        assert (await engine.hop(Hop("s1", PHONE, ""))).screen == "home"
        assert sent == Counter(MGET=1, EVALSHA=1)
        sent.clear()
        assert (await engine.hop(Hop("s1", PHONE, "6"))).screen == "acct.menu"
        assert sent == Counter(MGET=1, EVALSHA=1)
        # Twin copies of one hop, at once: both answer the same screen; the loser reads once more.
        sent.clear()
        twins = await asyncio.gather(*(engine.hop(Hop("s1", PHONE, "6*0")) for _ in range(2)))
        assert twins[0] == twins[1] and twins[0].screen == "home"
        assert sent["EVALSHA"] == 2 and sent["MGET"] in (2, 3)
        saved = await store.load("s1")
        assert (saved.hops, saved.version) == (3, 3)  # dial, "6", and one of the twins: the other lost
    finally:
        await store.close()
        await forget_prefix(REDIS_URL, prefix)
