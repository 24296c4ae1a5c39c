"""OAuth between our Daraja client and the sandbox: bad credentials, caching, refresh on expiry."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from payments.money import Money
from payments.providers.daraja import DarajaAuthenticationFailed, DarajaClient, DarajaInvalidToken
from payments.sandbox.daraja_server import DARAJA, create_daraja_sandbox
from payments.sandbox.settings import SandboxSettings


async def stk(client: DarajaClient, receiver, phone: str = "+254712345678") -> None:
    await client.stk_push(
        phone=phone,
        amount=Money.of("10", "KES"),
        account_reference="A1",
        description="Test",
        callback_url=receiver.url("/stk"),
    )


async def test_bad_consumer_credentials_are_refused(daraja_settings, receiver):
    wrong = dataclasses.replace(daraja_settings, consumer_secret="not-the-secret")
    async with DarajaClient(wrong) as client:
        with pytest.raises(DarajaAuthenticationFailed) as caught:
            await stk(client, receiver)
    assert caught.value.code == "400.008.01"
    assert caught.value.http_status == 400


async def test_the_token_is_fetched_once_and_reused(daraja, receiver, sandboxes):
    before = sandboxes.daraja.tokens_issued
    await stk(daraja, receiver)
    await stk(daraja, receiver)
    await daraja.stk_query((await _checkout(daraja, receiver)).checkout_request_id)
    assert sandboxes.daraja.tokens_issued == before + 1


async def test_concurrent_calls_share_one_token_fetch(daraja, receiver, sandboxes):
    before = sandboxes.daraja.tokens_issued
    await asyncio.gather(*(stk(daraja, receiver) for _ in range(5)))
    assert sandboxes.daraja.tokens_issued == before + 1


async def test_a_token_revoked_early_is_replaced_once_and_the_call_succeeds(daraja, receiver, sandboxes, http):
    await stk(daraja, receiver)
    issued, refused = sandboxes.daraja.tokens_issued, sandboxes.daraja.tokens_refused
    async with http.post(f"{sandboxes.urls.daraja}/_sandbox/tokens/expire") as resp:
        assert resp.status == 200
    await stk(daraja, receiver)  # 404.001.03, then a fresh token, then success
    assert sandboxes.daraja.tokens_refused == refused + 1
    assert sandboxes.daraja.tokens_issued == issued + 1


async def test_the_client_refreshes_before_the_announced_expiry(daraja_settings, receiver, sandboxes):
    fake_now = [1000.0]
    async with DarajaClient(daraja_settings, clock=lambda: fake_now[0]) as client:
        await stk(client, receiver)
        issued, refused = sandboxes.daraja.tokens_issued, sandboxes.daraja.tokens_refused
        fake_now[0] += 3599 - daraja_settings.token_refresh_margin_s + 1  # inside the refresh margin
        await stk(client, receiver)
    assert sandboxes.daraja.tokens_issued == issued + 1
    assert sandboxes.daraja.tokens_refused == refused  # refreshed before Daraja had to refuse


async def test_sandbox_tokens_really_expire_and_the_client_recovers(daraja_settings_factory, serve, receiver):
    settings = SandboxSettings.for_tests(daraja_token_ttl_s=1)  # announced 1 s, lives 2 s
    app = create_daraja_sandbox(settings)
    sandbox = app[DARAJA]
    async with serve(app) as url:
        client_settings = daraja_settings_factory(settings, url, sandbox.keys.certificate_pem, token_refresh_margin_s=0)
        frozen = [0.0]  # a client clock that never moves: it trusts its token until Daraja refuses it
        async with DarajaClient(client_settings, clock=lambda: frozen[0]) as client:
            token = await client.access_token()
            await stk(client, receiver)
            await asyncio.sleep(2.1)
            await stk(client, receiver)
            assert await client.access_token() != token
    assert sandbox.tokens_refused == 1
    assert sandbox.tokens_issued == 2


async def test_a_token_still_refused_after_refresh_raises(daraja_settings, receiver, sandboxes):
    # Refusing every token: the client retries once, then gives up with the typed error.
    class AlwaysExpired(DarajaClient):
        async def access_token(self) -> str:
            await super().access_token()
            return "not-a-token"

    async with AlwaysExpired(daraja_settings) as client:
        with pytest.raises(DarajaInvalidToken) as caught:
            await stk(client, receiver)
    assert caught.value.code == "404.001.03"


async def _checkout(client: DarajaClient, receiver):
    return await client.stk_push(
        phone="+254712345678",
        amount=Money.of("10", "KES"),
        account_reference="A1",
        description="Test",
        callback_url=receiver.url("/stk"),
    )
