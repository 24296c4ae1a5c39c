"""Deposits by M-Pesa STK push end to end: the command enqueues the push; the worker sends it to the
sandbox; the sandbox's callback reaches our receiver, is confirmed by an STK query and credits the
wallet from provider collection, once, however many times it is delivered. Cancelled pushes fail
with a clear error; a callback that never comes is recovered by the query."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import pytest

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, PaymentKind, SendToWallet
from payments.errors import IdempotencyConflict, InvalidRequest
from payments.fees import LimitExceeded
from payments.money import Currency, Money
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


world, ledger_stays_consistent = module_world()


async def test_stk_deposit_is_confirmed_by_query_then_credited(world: PaymentsWorld):
    user = await world.user()
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")

    payment = await world.payments.handle(Deposit("dep-1", user.id, Money.of(250, KES), Channel.USSD))
    assert payment.status is S.CREATED and payment.fee == Money.zero(KES)
    assert payment.recipient_phone == user.phone  # pulled from the user's own number

    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_ref and done.provider_ref.startswith("ws_CO_")
    assert done.provider_refs["receipt"]
    assert await world.wallet(user) == Money.of(250, KES)
    assert await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") - collection_before == -Money.of(250, KES)
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [(e.to_status, e.cause) for e in events] == [
        (S.CREATED, "command:ussd"), (S.PROCESSING, "stk_accepted"), (S.SUCCEEDED, "stk_callback_confirmed")]
    assert ("stk", "credited") in world.callbacks.outcomes

    # The same command again is the same deposit (no second push); another amount is a conflict.
    again = await world.payments.handle(Deposit("dep-1", user.id, Money.of(250, KES), Channel.APP))
    assert again.public_id == payment.public_id
    with pytest.raises(IdempotencyConflict):
        await world.payments.handle(Deposit("dep-1", user.id, Money.of(260, KES), Channel.USSD))


async def test_a_cancelled_stk_push_fails_with_a_clear_error_and_credits_nothing(world: PaymentsWorld):
    user = await world.user(suffix="032")  # the payer cancels on the phone

    payment = await world.payments.handle(Deposit("dep-cancel", user.id, Money.of(100, KES), Channel.VOICE))
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED
    assert done.error_code == "cancelled_by_user"
    assert "cancelled" in (done.error_message or "")
    assert done.settle_transfer_id is None
    assert await world.wallet(user) == Money.zero(KES)
    assert ("stk", "failed") in world.callbacks.outcomes


async def test_a_stk_push_m_pesa_refuses_outright_fails_at_once_and_credits_nothing(world: PaymentsWorld):
    user = await world.user()
    world.sandboxes.daraja.outcomes.set_next(Outcome.BAD_REQUEST, msisdn=user.phone)  # 400.002.02

    payment = await world.payments.handle(Deposit("dep-refused", user.id, Money.of(100, KES), Channel.USSD))
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED and done.error_code == "provider_refused", done
    assert "Invalid Request" in (done.error_message or "")
    assert await world.wallet(user) == Money.zero(KES)
    assert "checkout_request_id" not in done.provider_refs


async def test_a_stk_callback_delivered_twice_credits_once(world: PaymentsWorld):
    user = await world.user(suffix="902")  # the sandbox POSTs the callback twice
    before = len(world.callbacks.outcomes)

    payment = await world.payments.handle(Deposit("dep-dup", user.id, Money.of(300, KES), Channel.USSD))
    await world.settle(payment.public_id)
    for _ in range(100):
        if len(world.callbacks.outcomes) - before >= 2:
            break
        await asyncio.sleep(0.02)

    assert sorted(o for what, o in world.callbacks.outcomes[before:] if what == "stk") == ["credited", "duplicate"]
    assert await world.wallet(user) == Money.of(300, KES)
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 1


async def test_a_deposit_whose_callback_never_comes_is_recovered_by_query(world: PaymentsWorld):
    user = await world.user(suffix="900")  # the payer pays; the callback is never sent

    payment = await world.payments.handle(Deposit("dep-lost", user.id, Money.of(150, KES), Channel.USSD))
    await world.worker.drain()
    await asyncio.sleep(0.2)  # past the sandbox's callback delay: the payer has paid
    assert (await world.payment(payment.public_id)).status is S.PROCESSING

    report = await world.payments.recover_stuck(timedelta(0))

    assert report.resolved >= 1
    done = await world.payment(payment.public_id)
    assert done.status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(150, KES)
    await world.worker.drain()


async def test_a_stk_callback_that_beats_the_acceptance_waits_for_it_and_credits_once(world: PaymentsWorld):
    user = await world.user(suffix="903")  # the callback arrives before the push is even accepted
    before = len(world.callbacks.outcomes)

    payment = await world.payments.handle(Deposit("dep-early", user.id, Money.of(120, KES), Channel.USSD))
    await world.worker.drain()
    # The callback looked again for a moment, found the push once its job recorded it, and applied.
    await world.until_callback("stk", "credited", after=before)
    done = await world.settle(payment.public_id)
    assert done.status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(120, KES)
    async with world.engine.connect() as conn:
        assert await store.provider_event(conn, "mpesa", done.provider_ref or "", "stk_orphan") is None
    await world.payments.recover_stuck(timedelta(0))  # nothing left to do
    assert await world.wallet(user) == Money.of(120, KES)
    await world.worker.drain()


async def test_deposits_refuse_what_m_pesa_cannot_move(world: PaymentsWorld):
    user = await world.user()
    with pytest.raises(InvalidRequest):
        await world.payments.handle(Deposit("dep-cents", user.id, Money.of("10.50", KES), Channel.USSD))


async def answer_in_wave(world: PaymentsWorld, session_id: str, answer: str = "approve") -> None:
    """The payer taps "pay" (or "decline") in the Wave app: the sandbox's payer side."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{world.sandboxes.urls.wave}/_sandbox/checkout/sessions/{session_id}/{answer}") as resp:
        assert resp.status == 200, await resp.text()


async def test_a_wave_checkout_deposit_is_credited_by_the_signed_webhook(world: PaymentsWorld):
    user = await world.user(XOF)

    payment = await world.payments.handle(Deposit("dep-wave", user.id, Money.of(4000, XOF), Channel.USSD))
    assert payment.provider == "wave"
    await world.worker.drain()
    opened = await world.payment(payment.public_id)
    assert opened.status is S.PROCESSING and opened.provider_ref
    # The payer got the link by SMS.
    texts = [m.message for m in world.sandboxes.africastalking.messages if m.to == user.phone]
    assert any(opened.provider_refs["wave_launch_url"] in t for t in texts)

    await answer_in_wave(world, opened.provider_ref)
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(user, XOF) == Money.of(4000, XOF)
    assert ("wave", "credited") in world.callbacks.outcomes


async def test_a_declined_wave_checkout_fails_the_deposit_once_its_link_has_expired(world: PaymentsWorld):
    user = await world.user(XOF)

    payment = await world.payments.handle(Deposit("dep-wave-no", user.id, Money.of(1000, XOF), Channel.USSD))
    await world.worker.drain()
    opened = await world.payment(payment.public_id)
    before = len(world.callbacks.outcomes)
    await answer_in_wave(world, opened.provider_ref or "", "decline")
    # The session stays open after a failed attempt (the payer may pay with the same link): no verdict yet.
    await world.until_callback("wave", "declined", after=before)
    assert (await world.payment(payment.public_id)).status is S.PROCESSING
    assert world.payments.providers.wave is not None
    await world.payments.providers.wave.expire_checkout_session(opened.provider_ref or "")
    await world.payments.recover_stuck(timedelta(0))
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED and done.error_code == "payment-failure"
    assert await world.wallet(user, XOF) == Money.zero(XOF)


async def test_a_deposit_quote_agrees_with_the_command_after_a_day_s_spending(world: PaymentsWorld):
    """Deposits are limited per transaction only (what one may spend is limited, not what comes in):
    the quote shown first (USSD, ``POST /v1/quotes``) must not refuse what the command takes, after
    the day's limit was spent."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(80_000, KES))
    sent = await world.payments.handle(SendToWallet("spend-the-day", payer.id, Money.of(70_000, KES), Channel.USSD,
                                                    recipient_user_id=payee.id))
    assert sent.status is S.SUCCEEDED
    with pytest.raises(LimitExceeded, match="daily limit"):  # spending: refused
        await world.payments.quote(payer.id, Money.of(1000, KES), recipient_user_id=payee.id)

    quote = await world.payments.quote(payer.id, Money.of(1000, KES), kind=PaymentKind.DEPOSIT)
    assert (quote.fee, quote.total) == (Money.zero(KES), Money.of(1000, KES))
    deposit = await world.payments.handle(Deposit("dep-after-spending", payer.id, Money.of(1000, KES), Channel.USSD))
    assert deposit.status is not S.FAILED
    # Per transaction, as the command checks it: over the tier's daily cap in one deposit is refused by both.
    with pytest.raises(LimitExceeded):
        await world.payments.quote(payer.id, Money.of(70_001, KES), kind=PaymentKind.DEPOSIT)
    with pytest.raises(LimitExceeded):
        await world.payments.handle(Deposit("dep-too-big", payer.id, Money.of(70_001, KES), Channel.USSD))
    await world.settle(deposit.public_id)


async def test_a_deposit_quote_is_no_payment_of_the_monthly_allowance(world: PaymentsWorld):
    """The basic plan allows 50 payments a month; deposits are not among them (the command takes
    them), so the quote does not refuse one once the 50 are used."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    for n in range(50):
        paid = await world.payments.handle(SendToWallet(f"month-{n}", payer.id, Money.of(1, KES), Channel.API,
                                                        recipient_user_id=payee.id))
        assert paid.status is S.SUCCEEDED
    with pytest.raises(LimitExceeded, match="50 payments a month"):
        await world.payments.quote(payer.id, Money.of(1, KES), recipient_user_id=payee.id)

    quote = await world.payments.quote(payer.id, Money.of(500, KES), kind=PaymentKind.DEPOSIT)
    assert quote.fee == Money.zero(KES)
    deposit = await world.payments.handle(Deposit("dep-month", payer.id, Money.of(500, KES), Channel.USSD))
    assert deposit.status is not S.FAILED
    await world.settle(deposit.public_id)


async def test_quotes_price_a_cash_in_as_recorded_and_refuse_a_refund(world: PaymentsWorld):
    """A cash-in is recorded with no fee (the agent's float pays the wallet) and limited per
    transaction, as a deposit; a refund gives a whole payment back and has no price of its own."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(80_000, KES))
    await world.payments.handle(SendToWallet("spend-before-cash-in", payer.id, Money.of(70_000, KES), Channel.USSD,
                                             recipient_user_id=payee.id))
    quote = await world.payments.quote(payer.id, Money.of(1000, KES), kind=PaymentKind.CASH_IN)
    assert (quote.fee, quote.total) == (Money.zero(KES), Money.of(1000, KES))
    with pytest.raises(InvalidRequest, match="no price of its own"):
        await world.payments.quote(payer.id, Money.of(1000, KES), kind=PaymentKind.REFUND)
