"""Where spoken commands wait for their PIN: in-process, and in Redis (the store any gateway process
can take a confirmation from). The same behaviour from both: a command comes back as it was saved,
a copy (changing it changes nothing until it is saved again), with a TTL in Redis so Redis forgets
it; a phone call's own state is kept, read and dropped."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from dialogs.redis_pipe import RedisPipe
from dialogs.voice_store import (
    CONFIRMING,
    GRACE_S,
    MemoryVoiceCommandStore,
    PendingCommand,
    RedisVoiceCommandStore,
    VoiceCommandStore,
)
from tests.ussd.ussd_world import REDIS_URL, forget_prefix, store_params


@pytest.fixture(params=store_params())
async def store(request) -> AsyncIterator[VoiceCommandStore]:
    if request.param == "memory":
        yield MemoryVoiceCommandStore()
        return
    prefix = f"sauti-test:voice:{uuid.uuid4().hex[:8]}:"
    redis_store = RedisVoiceCommandStore(RedisPipe(REDIS_URL), key_prefix=prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await forget_prefix(REDIS_URL, prefix)


def command(**changes) -> PendingCommand:
    now = time.time()
    fields = {"id": uuid.uuid4().hex[:16], "user_id": 7, "phone": "+254712345678", "language": "sw",
              "channel": "app", "created_at": now, "expires_at": now + 300}
    return PendingCommand(**{**fields, **changes})


async def test_a_command_comes_back_as_it_was_saved(store: VoiceCommandStore):
    saved = command(status=CONFIRMING, intent="send_money", kind="send", values={"typed_amount": "1000"},
                    transcripts=["tuma elfu moja kwa Mama"], confidence=0.71, text="Tuma shilingi 1,000 kwa Mama?")
    await store.save(saved)
    loaded = await store.load(saved.id)
    assert loaded == saved and loaded is not saved
    loaded.values["typed_amount"] = "9999"
    assert (await store.load(saved.id)).values["typed_amount"] == "1000"
    assert await store.load("no-such-command") is None


@pytest.mark.parametrize("store", store_params()[1:], indirect=True)  # Redis only: memory sweeps (below)
async def test_redis_forgets_a_command_a_while_after_it_expires(store: VoiceCommandStore):
    assert isinstance(store, RedisVoiceCommandStore)
    saved = command(expires_at=time.time() + 60)
    await store.save(saved)
    ttl_ms = await store.redis.execute("PTTL", store._key(saved.id))
    assert (60 + GRACE_S - 5) * 1000 < ttl_ms <= (60 + GRACE_S) * 1000


async def test_the_in_process_store_sweeps_long_expired_commands():
    store = MemoryVoiceCommandStore()
    old = command(expires_at=time.time() - GRACE_S - 1)
    await store.save(old)
    await store.save(command())
    assert await store.load(old.id) is None


async def test_a_call_s_state_is_kept_read_and_dropped(store: VoiceCommandStore):
    await store.save_call("ATVId_1", {"user_id": 7, "stage": "pin", "command": "abc"}, ttl_s=60)
    assert await store.load_call("ATVId_1") == {"user_id": 7, "stage": "pin", "command": "abc"}
    await store.drop_call("ATVId_1")
    assert await store.load_call("ATVId_1") is None
    assert await store.load_call("ATVId_never") is None
