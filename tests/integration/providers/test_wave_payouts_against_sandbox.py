"""Wave payouts, balance, statement and authentication between our client and the Wave sandbox."""

from __future__ import annotations

import uuid

import pytest

from payments.money import Money
from payments.providers.errors import ProviderTimeout
from payments.providers.wave import (
    PayoutStatus,
    WaveAuthError,
    WaveClient,
    WaveIdempotencyMismatch,
    WaveInsufficientFunds,
    WaveNotFound,
    WaveRateLimited,
    WaveReversalRefused,
    WaveServerError,
    WaveSettings,
)
from payments.sandbox.settings import SandboxSettings
from payments.sandbox.wave_server import WAVE, create_wave_sandbox

XOF_5000 = Money.of("5000", "XOF")


def key() -> str:
    return str(uuid.uuid4())


async def test_a_payout_succeeds_and_costs_amount_plus_fee(wave, sandboxes):
    before = await wave.get_balance()
    payout = await wave.create_payout(
        idempotency_key=key(), receive_amount=XOF_5000, mobile="77 123 45 67", name="Awa", client_reference="w-1"
    )
    assert payout.status is PayoutStatus.SUCCEEDED
    assert payout.receive_amount == XOF_5000
    assert payout.fee == Money.of("50", "XOF")  # 1 %
    assert payout.mobile == "+221771234567"
    assert await wave.get_balance() == before - XOF_5000 - payout.fee
    assert await wave.get_payout(payout.id) == payout


async def test_the_same_key_and_body_give_back_the_same_payout_once(wave, sandboxes):
    k = key()
    before = await wave.get_balance()
    first = await wave.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771234568")
    again = await wave.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771234568")
    assert again == first
    assert await wave.get_balance() == before - XOF_5000 - first.fee  # paid once


async def test_the_same_key_with_another_body_is_an_idempotency_mismatch(wave):
    k = key()
    await wave.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771234569")
    with pytest.raises(WaveIdempotencyMismatch) as caught:
        await wave.create_payout(idempotency_key=k, receive_amount=Money.of("6000", "XOF"), mobile="+221771234569")
    assert caught.value.code == "idempotency-mismatch"
    assert caught.value.http_status == 409
    assert not caught.value.retryable


async def test_the_control_api_can_force_an_idempotency_mismatch(wave, http, sandboxes, control):
    await control(http, sandboxes.urls.wave, "idempotency_mismatch")
    with pytest.raises(WaveIdempotencyMismatch):
        await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234570")


async def test_insufficient_funds_raises_and_pays_nothing(wave):
    before = await wave.get_balance()
    with pytest.raises(WaveInsufficientFunds) as caught:
        await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234001")
    assert caught.value.code == "insufficient-funds"
    assert await wave.get_balance() == before


async def test_a_payout_larger_than_the_wallet_is_insufficient_funds(wave):
    too_much = (await wave.get_balance()) + Money.of("1", "XOF")
    with pytest.raises(WaveInsufficientFunds):
        await wave.create_payout(idempotency_key=key(), receive_amount=too_much, mobile="+221771234571")


@pytest.mark.parametrize(
    ("suffix", "code"), [("002", "recipient-limit-exceeded"), ("003", "recipient-account-blocked")]
)
async def test_recipient_failures_come_back_as_failed_payouts(wave, suffix, code):
    before = await wave.get_balance()
    payout = await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile=f"+221771234{suffix}")
    assert payout.status is PayoutStatus.FAILED
    assert payout.error is not None and payout.error.code == code
    assert await wave.get_balance() == before


async def test_a_lost_answer_is_recovered_by_retrying_with_the_same_key(wave, sandboxes):
    k = key()
    before = await wave.get_balance()
    with pytest.raises(WaveServerError) as caught:
        await wave.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771234500", client_reference=k)
    assert caught.value.retryable
    payout = await wave.create_payout(
        idempotency_key=k, receive_amount=XOF_5000, mobile="+221771234500", client_reference=k
    )
    assert payout.status is PayoutStatus.SUCCEEDED
    assert [p.id for p in await wave.search_payouts(k)] == [payout.id]
    assert await wave.get_balance() == before - XOF_5000 - payout.fee


async def test_rate_limiting_is_retryable(wave):
    with pytest.raises(WaveRateLimited) as caught:
        await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234429")
    assert caught.value.retryable and caught.value.http_status == 429


async def test_a_slow_answer_times_out(sandboxes):
    settings = WaveSettings(api_key=sandboxes.settings.wave_api_key, base_url=sandboxes.urls.wave, timeout_s=0.3)
    async with WaveClient(settings) as impatient:
        with pytest.raises(ProviderTimeout):
            await impatient.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234904")


async def test_a_retry_while_the_first_request_is_still_served_pays_once(wave, sandboxes):
    # Our client gave up on a slow answer (the outbox job's timeout) and the job sent it again with
    # the same key while Wave was still serving the first: one payout, the same one to both.
    settings = WaveSettings(api_key=sandboxes.settings.wave_api_key, base_url=sandboxes.urls.wave, timeout_s=0.3)
    k, reference = key(), f"slow-{uuid.uuid4()}"
    async with WaveClient(settings) as impatient:
        with pytest.raises(ProviderTimeout):
            await impatient.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771235904",
                                          client_reference=reference)
    again = await wave.create_payout(idempotency_key=k, receive_amount=XOF_5000, mobile="+221771235904",
                                     client_reference=reference)
    assert [p.id for p in await wave.search_payouts(reference)] == [again.id]
    assert len([e for e in sandboxes.wave.books.entries() if e.client_reference == reference]) == 1  # paid once


async def test_search_finds_payouts_by_client_reference(wave):
    reference = f"batch-{uuid.uuid4()}"
    made = {
        (
            await wave.create_payout(
                idempotency_key=key(), receive_amount=XOF_5000, mobile=m, client_reference=reference
            )
        ).id
        for m in ("+221771234572", "+221771234573")
    }
    assert {p.id for p in await wave.search_payouts(reference)} == made
    assert await wave.search_payouts("no-such-reference") == ()


async def test_a_reversal_returns_the_money_and_is_idempotent(wave):
    payout = await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234574")
    before = await wave.get_balance()
    await wave.reverse_payout(payout.id)
    await wave.reverse_payout(payout.id)
    assert (await wave.get_payout(payout.id)).status is PayoutStatus.REVERSED
    assert await wave.get_balance() == before + XOF_5000 + payout.fee


async def test_a_reversal_after_the_time_limit_is_refused(serve):
    settings = SandboxSettings.for_tests(wave_payout_reversal_window_s=0)
    async with serve(create_wave_sandbox(settings)) as url:
        async with WaveClient(WaveSettings(api_key=settings.wave_api_key, base_url=url)) as client:
            payout = await client.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234575")
            with pytest.raises(WaveReversalRefused) as caught:
                await client.reverse_payout(payout.id)
    assert caught.value.code == "payout-reversal-time-limit-exceeded"


async def test_an_unknown_payout_is_not_found(wave):
    with pytest.raises(WaveNotFound):
        await wave.get_payout("pt-nosuchpayout")


async def test_the_statement_pages_through_every_transaction(wave, sandboxes):
    for mobile in ("+221771234576", "+221771234577", "+221771234578", "+221771234579"):
        await wave.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile=mobile)
    first = await wave.list_transactions()
    assert len(first.items) == 3 and first.has_next_page  # the test sandbox's page size
    listed = [t async for t in wave.iter_transactions()]
    booked = sandboxes.wave.books.entries()
    assert [t.transaction_id for t in listed] == [e.transaction_id for e in booked]
    last = listed[-1]
    assert last.balance == await wave.get_balance()
    assert last.amount == -XOF_5000 and last.fee == Money.of("50", "XOF")


async def test_a_wrong_api_key_is_refused_with_waves_code(sandboxes):
    async with WaveClient(WaveSettings(api_key="wave_sn_prod_wrong", base_url=sandboxes.urls.wave)) as client:
        with pytest.raises(WaveAuthError) as caught:
            await client.get_balance()
    assert caught.value.code == "no-matching-api-key"
    assert caught.value.http_status == 401


async def test_signed_requests_pass_and_wrongly_signed_ones_are_refused(serve):
    settings = SandboxSettings.for_tests(wave_request_signing_secret="wave_sn_AKS_signing")
    app = create_wave_sandbox(settings)
    async with serve(app) as url:
        signed = WaveSettings(api_key=settings.wave_api_key, base_url=url, signing_secret="wave_sn_AKS_signing")
        async with WaveClient(signed) as client:
            assert (await client.get_balance()).currency.value == "XOF"  # a GET: signed over ""
            payout = await client.create_payout(idempotency_key=key(), receive_amount=XOF_5000, mobile="+221771234580")
            assert payout.status is PayoutStatus.SUCCEEDED
        for wrong_secret in ("wave_sn_AKS_other", None):
            wrong = WaveSettings(api_key=settings.wave_api_key, base_url=url, signing_secret=wrong_secret)
            async with WaveClient(wrong) as client:
                with pytest.raises(WaveAuthError):
                    await client.get_balance()
    assert len(app[WAVE].books.entries()) == 1
