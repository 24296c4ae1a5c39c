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
from payments.commands import Channel, Deposit
from payments.errors import IdempotencyConflict, InvalidRequest
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


async def test_a_declined_wave_checkout_fails_the_deposit(world: PaymentsWorld):
    user = await world.user(XOF)

    payment = await world.payments.handle(Deposit("dep-wave-no", user.id, Money.of(1000, XOF), Channel.USSD))
    await world.worker.drain()
    opened = await world.payment(payment.public_id)
    await answer_in_wave(world, opened.provider_ref or "", "decline")
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED and done.error_code == "payment-failure"
    assert await world.wallet(user, XOF) == Money.zero(XOF)
