"""Refunds and reversals end to end: an M-Pesa deposit is reversed through Daraja (its money waits in
clearing until the Result), a Wave deposit refunded and a Wave payout reversed through Wave, an
M-Pesa payout whose money came back is credited to its payer, and a wallet payment is reversed in the
ledger. Money that is no longer there is never taken back: the refund is refused and nothing changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, Refund, SendToPhone, SendToWallet, Withdraw
from payments.errors import IdempotencyConflict, InvalidRequest
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.refunds import NotRefundable, UnknownPayment
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database(), sandbox={"callback_delay_s": 0.15}) as running:
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


async def stk_deposit(world: PaymentsWorld, key: str, amount: int, suffix: str = "123") -> tuple:
    user = await world.user(suffix=suffix)
    payment = await world.payments.handle(Deposit(key, user.id, Money.of(amount, KES), Channel.USSD))
    done = await world.settle(payment.public_id)
    assert done.status is S.SUCCEEDED
    return user, done


async def events(world: PaymentsWorld, payment: Payment) -> list[tuple[PaymentStatus, str]]:
    async with world.engine.connect() as conn:
        return [(e.to_status, e.cause) for e in await store.events_of(conn, payment.id)]


async def test_an_m_pesa_deposit_is_reversed_through_daraja(world: PaymentsWorld):
    user, deposit = await stk_deposit(world, "dep-rev", 250)
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")

    refund = await world.payments.handle(Refund("rf-1", deposit.public_id, "paid twice by mistake",
                                                requested_by="operator:amina"))

    # At once: the wallet's money waits in clearing (it cannot be spent meanwhile), the reversal job.
    assert refund.status is S.PENDING and refund.kind == "refund" and refund.refund_of == deposit.id
    assert (refund.amount, refund.fee, refund.payer_user_id) == (Money.of(250, KES), Money.zero(KES), user.id)
    assert refund.provider_refs["reason"] == "paid twice by mistake"
    assert await world.wallet(user) == Money.zero(KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") - clearing_before == Money.of(250, KES)
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'refund' AND subject = :p",
                              p=deposit.public_id) == 1

    done = await world.settle(refund.public_id)

    assert done.status is S.SUCCEEDED and done.provider_ref.startswith("AG_")
    original = await world.payment(deposit.public_id)
    assert original.status is S.REVERSED
    assert (await events(world, original))[-1] == (S.REVERSED, f"refund:{refund.public_id}")
    assert await events(world, done) == [(S.CREATED, "refund:operator:amina"), (S.PENDING, "debited_to_clearing"),
                                         (S.PROCESSING, "reversal_accepted"), (S.SUCCEEDED, "reversal_result")]
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") - collection_before == Money.of(250, KES)
    # M-Pesa reversed the deposit's receipt, once.
    books = world.sandboxes.daraja.books
    assert books.find(deposit.provider_refs["receipt"]).status == "reversed"
    assert books.find(done.provider_refs["receipt"]).reverses == deposit.provider_refs["receipt"]
    assert ("reversal/result", "reversed") in world.callbacks.outcomes

    # The same command again is the same refund; nothing more can be refunded.
    again = await world.payments.handle(Refund("rf-1", deposit.public_id, "again", requested_by="operator:amina"))
    assert again.public_id == refund.public_id
    with pytest.raises(NotRefundable, match="already reversed"):
        await world.payments.handle(Refund("rf-1b", deposit.public_id, "again"))
    with pytest.raises(NotRefundable, match="refund cannot itself"):
        await world.payments.handle(Refund("rf-1c", refund.public_id, "refund the refund"))
    await world.worker.drain()


async def test_a_deposit_already_spent_is_not_reversed_and_nothing_changes(world: PaymentsWorld):
    user, deposit = await stk_deposit(world, "dep-spent", 300)
    friend = await world.user()
    await world.payments.handle(SendToWallet("spend", user.id, Money.of(200, KES), Channel.USSD,
                                             recipient_user_id=friend.id))
    left = await world.wallet(user)

    refund = await world.payments.handle(Refund("rf-spent", deposit.public_id, "customer asked"))

    assert refund.status is S.FAILED and refund.error_code == "insufficient_funds"
    assert "no longer holds" in refund.error_message
    assert await world.wallet(user) == left
    assert (await world.payment(deposit.public_id)).status is S.SUCCEEDED
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = 'mpesa.reversal' "
                              "AND payload->>'payment' = :p", p=refund.public_id) == 0
    # A failed refund does not block a later one.
    await world.fund(user, Money.of(300, KES))
    later = await world.payments.handle(Refund("rf-spent-2", deposit.public_id, "customer asked again"))
    assert later.status is S.PENDING
    assert (await world.settle(later.public_id)).status is S.SUCCEEDED
    await world.worker.drain()


async def test_refunds_refuse_what_cannot_be_refunded(world: PaymentsWorld):
    user = await world.user(suffix="032")  # cancels the STK push: a failed deposit
    failed = await world.payments.handle(Deposit("dep-failed", user.id, Money.of(100, KES), Channel.USSD))
    await world.settle(failed.public_id)

    with pytest.raises(NotRefundable, match="only a succeeded payment"):
        await world.payments.handle(Refund("rf-failed", failed.public_id, "why not"))
    with pytest.raises(UnknownPayment):
        await world.payments.handle(Refund("rf-none", "pay_00000000000000000000000000", "no such"))
    for bad in ({"reason": ""}, {"reason": "x" * 501}, {"idempotency_key": ""}, {"requested_by": " "}):
        with pytest.raises(InvalidRequest):
            Refund(**{"idempotency_key": "k", "payment_id": failed.public_id, "reason": "r", **bad})

    # One payer, two deposits: a key names one refund; a second refund of one payment is refused.
    payer, deposit = await stk_deposit(world, "dep-two-keys", 100)
    other = await world.settle((await world.payments.handle(
        Deposit("dep-two-keys-2", payer.id, Money.of(50, KES), Channel.USSD))).public_id)
    first = await world.payments.handle(Refund("rf-a", deposit.public_id, "one"))
    with pytest.raises(NotRefundable, match="already being refunded"):
        await world.payments.handle(Refund("rf-b", deposit.public_id, "two"))
    with pytest.raises(IdempotencyConflict):
        await world.payments.handle(Refund("rf-a", other.public_id, "same key, another payment"))
    await world.settle(first.public_id)
    await world.worker.drain()


async def test_a_reversal_m_pesa_refuses_gives_the_wallet_its_money_back(world: PaymentsWorld):
    user, deposit = await stk_deposit(world, "dep-refused", 400)

    refund = await world.payments.handle(Refund("rf-refused", deposit.public_id, "customer asked"))
    assert await world.wallet(user) == Money.zero(KES)
    world.sandboxes.daraja.outcomes.set_next(Outcome.WRONG_PIN)  # the reversal names no phone: global
    done = await world.settle(refund.public_id)

    assert (done.status, done.error_code) == (S.FAILED, "wrong_pin")
    assert done.settle_transfer_id is not None  # the unwind
    assert await world.wallet(user) == Money.of(400, KES)
    assert (await world.payment(deposit.public_id)).status is S.SUCCEEDED
    assert world.sandboxes.daraja.books.find(deposit.provider_refs["receipt"]).status == "completed"
    await world.worker.drain()


async def test_a_reversal_result_delivered_twice_moves_money_once(world: PaymentsWorld):
    _, deposit = await stk_deposit(world, "dep-dup-rev", 150)
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")
    before = len(world.callbacks.outcomes)

    refund = await world.payments.handle(Refund("rf-dup", deposit.public_id, "customer asked"))
    world.sandboxes.daraja.outcomes.set_next(Outcome.DUPLICATE_CALLBACK)
    await world.settle(refund.public_id)
    await world.until_callback("reversal/result", "duplicate", after=before)

    assert await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") - collection_before == Money.of(150, KES)
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=refund.public_id) == 2
    await world.worker.drain()


async def test_a_reversal_whose_result_never_came_is_settled_by_status_query(world: PaymentsWorld):
    user, deposit = await stk_deposit(world, "dep-lost-rev", 180)

    refund = await world.payments.handle(Refund("rf-lost", deposit.public_id, "customer asked"))
    world.sandboxes.daraja.outcomes.set_next(Outcome.NO_CALLBACK)
    await world.worker.drain()
    await asyncio.sleep(0.3)
    assert (await world.payment(refund.public_id)).status is S.PROCESSING

    before = len(world.callbacks.outcomes)
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.queried >= 1
    assert await world.until_callback("status/result", after=before) == "succeeded"

    assert (await world.payment(refund.public_id)).status is S.SUCCEEDED
    assert (await world.payment(deposit.public_id)).status is S.REVERSED
    assert await world.wallet(user) == Money.zero(KES)
    await world.worker.drain()


async def test_an_m_pesa_payout_whose_money_came_back_credits_the_payer(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    payout = await world.settle((await world.payments.handle(
        Withdraw("wd-back", user.id, Money.of(300, KES), Channel.USSD))).public_id)
    assert payout.status is S.SUCCEEDED and await world.wallet(user) == Money.of(697, KES)
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    refund = await world.payments.handle(Refund("rf-payout", payout.public_id, "M-Pesa reversed it (ticket 81)"))

    assert refund.status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(1000, KES)  # amount and fee
    assert settled_before - await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") == Money.of(300, KES)
    assert fees_before - await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == Money.of(3, KES)
    assert (await world.payment(payout.public_id)).status is S.REVERSED
    await world.worker.drain()


async def test_a_wallet_payment_is_reversed_while_the_recipient_still_holds_it(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    paid = await world.payments.handle(SendToPhone("p2p-back", payer.id, Money.of(400, KES), Channel.USSD,
                                                   recipient_phone=payee.phone))
    assert paid.status is S.SUCCEEDED and paid.provider is None

    refund = await world.payments.handle(Refund("rf-p2p", paid.public_id, "sent to the wrong person"))

    assert refund.status is S.SUCCEEDED and refund.recipient_user_id == payee.id
    assert await world.wallet(payer) == Money.of(1000, KES)
    assert await world.wallet(payee) == Money.zero(KES)
    assert (await world.payment(paid.public_id)).status is S.REVERSED
    # The payee gives the amount back and the fee comes out of fee revenue, wherever it lies now.
    assert await world.scalar("SELECT metadata->>'undoes' FROM transfers WHERE id = :t",
                              t=refund.settle_transfer_id) == str(paid.settle_transfer_id)

    # Spent already: refused, nothing moves.
    other = await world.payments.handle(SendToWallet("p2p-spent", payer.id, Money.of(100, KES), Channel.USSD,
                                                     recipient_user_id=payee.id))
    await world.payments.handle(SendToWallet("p2p-onward", payee.id, Money.of(60, KES), Channel.USSD,
                                             recipient_user_id=payer.id))
    refused = await world.payments.handle(Refund("rf-p2p-2", other.public_id, "wrong person"))
    assert refused.status is S.FAILED and "recipient no longer holds" in refused.error_message
    assert (await world.payment(other.public_id)).status is S.SUCCEEDED
    assert await world.wallet(payee) == Money.of(39, KES)  # 100 in, 60 + 1 fee out
    await world.worker.drain()


async def pay_in_wave(world: PaymentsWorld, session_id: str) -> None:
    """The payer taps "pay" in the Wave app (the sandbox's payer side)."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{world.sandboxes.urls.wave}/_sandbox/checkout/sessions/{session_id}/approve") as resp:
        assert resp.status == 200, await resp.text()


async def test_a_wave_deposit_is_refunded_through_its_checkout(world: PaymentsWorld):
    user = await world.user(XOF)
    deposit = await world.payments.handle(Deposit("dep-wave-rf", user.id, Money.of(4000, XOF), Channel.USSD))
    await world.worker.drain()
    await pay_in_wave(world, (await world.payment(deposit.public_id)).provider_ref or "")
    deposit = await world.settle(deposit.public_id)
    assert await world.wallet(user, XOF) == Money.of(4000, XOF)

    refund = await world.payments.handle(Refund("rf-wave", deposit.public_id, "order cancelled"))
    assert refund.status is S.PENDING and refund.provider == "wave"
    done = await world.settle(refund.public_id)

    assert done.status is S.SUCCEEDED
    assert (await world.payment(deposit.public_id)).status is S.REFUNDED
    assert await world.wallet(user, XOF) == Money.zero(XOF)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, XOF, "wave") == Money.zero(XOF)
    books = world.sandboxes.wave.books.entries()
    assert len([e for e in books if e.kind == "refund" and e.reference == deposit.provider_ref]) == 1
    await world.worker.drain()


async def test_a_wave_payout_is_reversed_and_its_payer_credited(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(10_000, XOF))
    payout = await world.settle((await world.payments.handle(SendToPhone(
        "wave-out", user.id, Money.of(5000, XOF), Channel.USSD, recipient_phone="+221775551234"))).public_id)
    assert payout.status is S.SUCCEEDED and await world.wallet(user, XOF) == Money.of(4950, XOF)

    refund = await world.payments.handle(Refund("rf-wave-out", payout.public_id, "wrong number"))
    assert refund.status is S.PENDING and await world.wallet(user, XOF) == Money.of(4950, XOF)  # nothing yet
    done = await world.settle(refund.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(user, XOF) == Money.of(10_000, XOF)
    assert (await world.payment(payout.public_id)).status is S.REVERSED
    assert (await world.payments.providers.wave.get_payout(payout.provider_ref)).status.value == "reversed"
    await world.worker.drain()


async def test_a_wave_payout_too_old_to_reverse_is_refused_and_nothing_moves(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(10_000, XOF))
    payout = await world.settle((await world.payments.handle(SendToPhone(
        "wave-old", user.id, Money.of(2000, XOF), Channel.USSD, recipient_phone="+221775554321"))).public_id)
    # Four days pass at Wave (its reversal window is three).
    world.sandboxes.wave._payouts[payout.provider_ref].timestamp = datetime.now(UTC) - timedelta(days=4)

    refund = await world.payments.handle(Refund("rf-wave-old", payout.public_id, "wrong number"))
    done = await world.settle(refund.public_id)

    assert (done.status, done.error_code) == (S.FAILED, "payout-reversal-time-limit-exceeded")
    assert await world.wallet(user, XOF) == Money.of(7980, XOF)
    assert (await world.payment(payout.public_id)).status is S.SUCCEEDED
    await world.worker.drain()
