"""Fixtures of the USSD tests: a gateway per session store (module scope), phones to dial it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from tests.e2e.gateway_payments_world import Gateway, free_port, gateway_settings, running_gateway
from tests.ussd.ussd_world import REDIS_URL, Phone, forget_prefix, store_params


@pytest.fixture(scope="module", params=store_params())
async def gw(request, new_database) -> AsyncIterator[Gateway]:
    store = request.param
    prefix = f"sauti-test:{uuid.uuid4().hex[:10]}:"
    sections = {"ussd": {"redis_key_prefix": prefix}}
    if store == "redis":
        sections["redis"] = {"url": REDIS_URL}
    async with running_gateway(gateway_settings(await new_database(), free_port(), **sections)) as gateway:
        yield gateway
    if store == "redis":
        await forget_prefix(REDIS_URL, prefix)


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(gw: Gateway) -> AsyncIterator[None]:
    yield
    await gw.assert_ledger_ok()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def phone_for(gw: Gateway, http: aiohttp.ClientSession) -> Callable[[str], Phone]:
    def make(msisdn: str) -> Phone:
        return Phone(gw, msisdn, http)

    return make


