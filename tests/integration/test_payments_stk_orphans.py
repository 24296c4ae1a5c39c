"""STK pushes nobody recorded: a worker that dies after Daraja took a push but before it recorded the
push's CheckoutRequestID runs the job again, which pushes again. If the payer approves both, M-Pesa
took their money twice, and the first push's callback names no payment. It is kept, confirmed by an
STK query and credited once, keyed by its M-Pesa receipt, to the wallet of the number that paid (or
parked in suspense); a failure is recorded and ignored; a push credited that way is never credited
again by a payment that turns out to own it. All over real HTTP to the Daraja sandbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from payments import outbox
from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, Refund
from payments.money import Currency, Money
from payments.payment_settings import CALLBACK_STK, JOB_STK_ORPHAN, STK_ORPHAN_EVENT
from payments.payment_store import Payment
from payments.resolution import Verdict
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world, stk_callback

KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    # No grace: the orphan job may run as soon as the callback is kept (the gateway waits twice the
    # outbox lease, so that a push job still running can record its push first).
    async with payments_world(await new_database(), stk_orphan_grace_s=0) as running:
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


async def push_as_the_job_would(world: PaymentsWorld, phone: str, amount: Money) -> str:
    """The STK job's provider call, made with the job's own arguments; returns the push's id. Nothing
    records it: the worker "dies" right after."""
    settings = world.payments.settings
    accepted = await world.payments.providers.daraja.stk_push(
        phone=phone, amount=amount, account_reference=settings.stk_account_reference,
        description=settings.stk_description, callback_url=settings.callback_base_url + CALLBACK_STK)
    return accepted.checkout_request_id


async def orphan(world: PaymentsWorld, checkout_id: str, outcome: str, *, within_s: float = 8.0) -> dict[str, Any]:
    """Run outbox jobs until the push's kept callback says ``outcome``; returns its record."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        await world.worker.drain()
        async with world.engine.connect() as conn:
            event = await store.provider_event(conn, "mpesa", checkout_id, STK_ORPHAN_EVENT)
        if event is not None and event.get("outcome") == outcome:
            return event
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the push's callback is {event} after {within_s}s, not {outcome}")
        await asyncio.sleep(0.03)


async def deliver(world: PaymentsWorld, body: dict) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + CALLBACK_STK, json=body) as resp:
        assert resp.status == 200


async def deposits_of(world: PaymentsWorld, user_id: int) -> list[Payment]:
    async with world.engine.connect() as conn:
        ids = (await conn.exec_driver_sql(
            "SELECT public_id FROM payments WHERE payer_user_id = $1 AND kind = 'deposit' ORDER BY id",
            (user_id,))).scalars().all()
    return [await world.payment(public_id) for public_id in ids]


async def test_a_push_whose_id_was_never_recorded_is_credited_once_and_so_is_the_one_that_was(world: PaymentsWorld):
    user = await world.user()
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")
    payment = await world.payments.handle(Deposit("orphan-1", user.id, Money.of(200, KES), Channel.USSD))

    # The job reaches Daraja and the worker dies before recording the push; the job runs again.
    lost = await push_as_the_job_would(world, payment.recipient_phone or "", payment.amount)
    done = await world.settle(payment.public_id)
    assert done.status is S.SUCCEEDED and done.provider_ref != lost

    # The first push's callback named no payment: kept, confirmed by query, credited to the payer.
    kept = await orphan(world, lost, "credited")
    assert ("stk", "orphan") in world.callbacks.outcomes
    credited = await world.payment(kept["payment"])
    assert (credited.kind, credited.status, credited.payer_user_id) == ("deposit", S.SUCCEEDED, user.id)
    assert credited.amount == Money.of(200, KES) and credited.channel == "api"
    assert credited.provider_ref == kept["receipt"] and credited.provider_ref != done.provider_refs["receipt"]
    assert credited.provider_refs["source"] == "stk_orphan"
    assert credited.provider_refs["checkout_request_id"] == lost
    # Both pushes were paid, so both are credited: the payer can be refunded one like any deposit.
    assert await world.wallet(user) == Money.of(400, KES)
    assert collection_before - await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") == \
        Money.of(400, KES)

    # Exactly once: the callback again, and the job again, move nothing.
    await deliver(world, stk_callback(lost, amount=Money.of(200, KES), receipt=kept["receipt"], phone=user.phone))
    assert world.callbacks.outcomes[-1] == ("stk", "duplicate")
    assert await world.payments.orphans.credit(lost) == "done"
    assert [p.public_id for p in await deposits_of(world, user.id)] == [payment.public_id, credited.public_id]
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=credited.public_id) == 1
    assert await world.wallet(user) == Money.of(400, KES)

    refund = await world.settle((await world.payments.handle(
        Refund("rf-orphan", credited.public_id, "charged twice"))).public_id)
    assert refund.status is S.SUCCEEDED and await world.wallet(user) == Money.of(200, KES)
    await world.worker.drain()


async def test_a_push_credited_as_an_orphan_is_never_credited_again_by_its_payment(world: PaymentsWorld):
    user = await world.user()
    payment = await world.payments.handle(Deposit("orphan-2", user.id, Money.of(150, KES), Channel.USSD))
    # The worker dies after the push; its job is not run again (parked, as after its last attempt).
    job_id = await world.scalar("SELECT id FROM outbox_jobs WHERE dedupe_key = :k",
                                k=f"mpesa.stk_push:{payment.public_id}")
    assert await outbox.park(world.engine, job_id, "test: the worker died")
    lost = await push_as_the_job_would(world, payment.recipient_phone or "", payment.amount)
    await orphan(world, lost, "credited")
    assert await world.wallet(user) == Money.of(150, KES)

    # The dead worker's record of its push lands after all, and recovery asks M-Pesa about it: the
    # push succeeded, but its money was credited already. Flagged for a person, never credited twice.
    await world.payments.resolver.accepted(payment.public_id, lost, {"checkout_request_id": lost}, "stk_accepted")
    await world.payments.recover_stuck(timedelta(0))

    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PROCESSING and "credited as" in flagged.provider_refs["needs_review"]
    assert await world.wallet(user) == Money.of(150, KES)
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 0


async def test_a_failed_push_nobody_recorded_is_recorded_and_ignored(world: PaymentsWorld):
    user = await world.user(suffix="032")  # the payer cancels on the phone
    before = len(world.callbacks.outcomes)

    lost = await push_as_the_job_would(world, user.phone, Money.of(100, KES))

    assert await world.until_callback("stk", after=before) == "ignored"
    kept = await orphan(world, lost, "ignored")
    assert kept["result_code"] == 1032
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"{JOB_STK_ORPHAN}:{lost}") == 0
    assert await world.wallet(user) == Money.zero(KES)


async def test_a_push_paid_from_a_number_without_a_wallet_is_parked_in_suspense(world: PaymentsWorld):
    stranger = f"+2547{uuid.uuid4().int % 10**5:05d}123"  # no Sauti wallet
    suspense_before = await world.balance(AccountKind.SUSPENSE, KES, "mpesa")

    lost = await push_as_the_job_would(world, stranger, Money.of(300, KES))

    kept = await orphan(world, lost, "suspense")
    assert kept["needs_review"] and kept["phone"] == stranger
    assert await world.balance(AccountKind.SUSPENSE, KES, "mpesa") - suspense_before == Money.of(300, KES)
    assert await world.scalar("SELECT kind FROM transfers WHERE idempotency_key = :k",
                              k=f"suspense:{kept['receipt']}") == "stk_orphan.suspense"
    assert await world.payments.orphans.credit(lost) == "done"  # parked once


async def test_a_forged_success_m_pesa_denies_credits_nothing(world: PaymentsWorld):
    user = await world.user()
    # The payer will cancel, in a moment; a forger claims the push was paid before that.
    world.sandboxes.daraja.outcomes.set_next(Outcome.USER_CANCELLED, msisdn=user.phone, delay_s=0.3)
    lost = await push_as_the_job_would(world, user.phone, Money.of(500, KES))
    await deliver(world, stk_callback(lost, amount=Money.of(500, KES), receipt="FORGED0001", phone=user.phone))
    assert world.callbacks.outcomes[-1] == ("stk", "orphan")
    for _ in range(200):  # the real callback (a cancellation) comes, and is a duplicate of the kept one
        if ("stk", "duplicate") in world.callbacks.outcomes[-1:]:
            break
        await asyncio.sleep(0.02)

    kept = await orphan(world, lost, "refuted")

    assert kept["query_result_code"] == 1032
    assert await world.wallet(user) == Money.zero(KES)
    assert await deposits_of(world, user.id) == []


async def test_a_success_for_a_push_m_pesa_never_made_is_flagged_and_credits_nothing(world: PaymentsWorld):
    user = await world.user()
    await deliver(world, stk_callback("ws_CO_NEVER_MADE_1", amount=Money.of(900, KES), receipt="FORGED0002",
                                      phone=user.phone))

    kept = await orphan(world, "ws_CO_NEVER_MADE_1", "unconfirmed")

    assert "Invalid CheckoutRequestID" in kept["needs_review"]
    assert await world.wallet(user) == Money.zero(KES)
    async with world.engine.connect() as conn:
        status = (await conn.exec_driver_sql("SELECT status FROM outbox_jobs WHERE dedupe_key = $1",
                                             (f"{JOB_STK_ORPHAN}:ws_CO_NEVER_MADE_1",))).scalar_one()
    assert status == "done"  # answered for good: not retried



async def test_a_push_whose_receipt_is_parked_in_suspense_is_flagged_not_booked_again(world: PaymentsWorld):
    """A receipt already parked in suspense (by a paybill confirmation naming no wallet) that comes
    again in a push's callback (forged or replayed: one M-Pesa transaction is one or the other) is
    booked by neither path a second time: a person looks."""
    receipt, user = f"PRK{uuid.uuid4().hex[:7].upper()}", await world.user()
    body = {"TransactionType": "Pay Bill", "TransID": receipt, "TransTime": "20991231235959", "TransAmount": "300.00",
            "BusinessShortCode": world.sandboxes.settings.daraja_shortcode, "BillRefNumber": "nobody",
            "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "", "MSISDN": "254700000000",
            "FirstName": "A", "MiddleName": "", "LastName": "B"}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/c2b/confirmation", json=body) as resp:
        assert resp.status == 200
    suspense = await world.balance(AccountKind.SUSPENSE, KES, "mpesa")

    lost = await push_as_the_job_would(world, user.phone, Money.of(300, KES))
    await deliver(world, stk_callback(lost, amount=Money.of(300, KES), receipt=receipt, phone=user.phone))
    kept = await orphan(world, lost, "receipt_booked")

    assert kept["needs_review"] and await world.wallet(user) == Money.zero(KES)
    assert await world.balance(AccountKind.SUSPENSE, KES, "mpesa") == suspense



async def test_a_push_whose_receipt_another_payment_holds_is_flagged_not_credited(world: PaymentsWorld):
    """A receipt another payment holds (booked by hand from the statement, or, here, another push's)
    that M-Pesa's answer gives again for a push (a forged or replayed callback that its query
    confirmed) is credited once: this payment is flagged for a person, and nothing moves."""
    first_user = await world.user()
    first = await world.payments.handle(Deposit(f"held-{uuid.uuid4().hex}", first_user.id, Money.of(300, KES),
                                                Channel.USSD))
    receipt = (await world.settle(first.public_id)).provider_refs["receipt"]
    user = await world.user(suffix="900")  # the push goes through; its callback never comes
    payment = await world.payments.handle(Deposit(f"held-{uuid.uuid4().hex}", user.id, Money.of(300, KES),
                                                  Channel.USSD))
    await world.worker.drain()
    assert (await world.payment(payment.public_id)).provider_ref is not None  # the push was made

    _, changed = await world.payments.resolver.apply(payment.public_id, Verdict(
        True, "stk_callback_confirmed", refs={"receipt": receipt}))

    flagged = await world.payment(payment.public_id)
    assert not changed and flagged.status is not S.SUCCEEDED and await world.wallet(user) == Money.zero(KES)
    assert receipt in flagged.provider_refs.get("needs_review", ""), flagged.provider_refs
