"""Recovery never stalls on one bad payment: an unexpected error while recovering one payment (here
a bill payment whose money is not in clearing, so giving it back fails) is logged with the
payment's id and counted as an error, and the round goes on to the others, every round."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from payments import outbox
from payments import payment_store as store
from payments.commands import Channel, Deposit, PaymentKind
from payments.money import Currency, Money
from payments.payment_settings import JOB_B2B
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:
        yield running


async def broken_bill_payment(world: PaymentsWorld) -> str:
    """A pending bill payment whose job gave up before reaching M-Pesa, whose money, though, never
    reached clearing (bad data): giving it back cannot work."""
    user = await world.user()
    async with world.engine.begin() as conn:
        payment = await store.insert_payment(conn, store.NewPayment(
            payer_user_id=user.id, idempotency_key="broken-bill", request_hash="x", kind=PaymentKind.PAY_BILL.value,
            channel=Channel.USSD.value, amount=Money.of(900_000, KES), fee=Money.zero(KES), provider="mpesa",
            paybill="888880", account_number="ACC1"), cause="test")
        assert payment is not None
        payment = await store.transition(conn, payment, S.PENDING, cause="test")
        job_id = await outbox.enqueue(conn, JOB_B2B, {"payment": payment.public_id},
                                      dedupe_key=f"{JOB_B2B}:{payment.public_id}")
    assert await outbox.park(world.engine, job_id, "test: the job gave up")
    return payment.public_id


async def test_one_payment_that_cannot_be_recovered_does_not_stop_the_others(world: PaymentsWorld, caplog):
    broken = await broken_bill_payment(world)
    user = await world.user(suffix="900")  # the payer pays; the callback never comes
    lost = await world.payments.handle(Deposit("lost-dep", user.id, Money.of(150, KES), Channel.USSD))
    await world.worker.drain()
    await asyncio.sleep(0.2)  # past the sandbox's callback delay
    assert (await world.payment(lost.public_id)).status is S.PROCESSING

    with caplog.at_level(logging.ERROR, logger="payments.provider_results"):
        report = await world.payments.recover_stuck(timedelta(0))

    # The broken one came first (the oldest), failed, and the round went on.
    assert (report.examined, report.errors, report.resolved) == (2, 1, 1)
    assert f"recovery of payment {broken} failed" in caplog.text
    assert (await world.payment(lost.public_id)).status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(150, KES)
    assert (await world.payment(broken)).status is S.PENDING  # nothing half-done

    # Every round: the bad one is tried again, counted again, and stops nothing.
    again = await world.payments.recover_stuck(timedelta(0))
    assert (again.examined, again.errors) == (1, 1)
    await world.assert_ledger_ok()
    await world.worker.drain()
