"""The lock order of a refund and its original (`payments.resolution`, `payments.refunds`): every
transaction that locks both takes the original's row first. A refund's provider verdict
(`Resolver.apply`) used to lock the refund and then the original, the reverse of `Refunds.refund`;
a transaction holding the original and reaching for the refund then deadlocked with it. These tests
race the two on the real PostgreSQL, many rounds, and check that both always finish and the ledger
balances."""

from __future__ import annotations

import asyncio
import random

from sqlalchemy import text

from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, Refund
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.refunds import NotRefundable
from payments.resolution import Verdict
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES = Currency.KES
S = PaymentStatus


world, ledger_stays_consistent = module_world(sandbox={"callback_delay_s": 0.05})


async def deposits(world: PaymentsWorld, tag: str, count: int) -> list[Payment]:
    """``count`` succeeded M-Pesa deposits (of 100 to 100 + count - 1), each to a wallet of its own."""
    made = []
    for i in range(count):
        user = await world.user()
        made.append(await world.payments.handle(Deposit(f"{tag}-{i}", user.id, Money.of(100 + i, KES),
                                                        Channel.USSD)))
    settled = [await world.settle(p.public_id) for p in made]
    assert all(p.status is S.SUCCEEDED for p in settled)
    return settled


async def pending_refund(world: PaymentsWorld, deposit: Payment, key: str) -> Payment:
    """A refund of the deposit whose reversal M-Pesa has not been asked for yet (its job waits):
    the wallet's money is in clearing, a verdict is what it waits for."""
    refund = await world.payments.handle(Refund(key, deposit.public_id, "customer asked"))
    assert refund.status is S.PENDING
    return refund


async def waiting_on_a_lock(world: PaymentsWorld) -> int:
    return await world.scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND wait_event_type = 'Lock'")


async def test_a_verdict_on_a_refund_waits_for_its_original_before_holding_the_refund(world: PaymentsWorld):
    [deposit] = await deposits(world, "order", 1)
    refund = await pending_refund(world, deposit, "order-rf")

    async with world.engine.connect() as holder:
        # A transaction in the refund's own order: the original first (as `Refunds.refund` does)...
        await holder.execute(text("SET LOCAL lock_timeout = '10s'"))
        await holder.execute(text("SELECT id FROM payments WHERE id = :i FOR UPDATE"), {"i": deposit.id})
        verdict = asyncio.create_task(world.payments.resolver.apply(
            refund.public_id, Verdict(False, "test_verdict", "provider_declined", "M-Pesa declined it.")))
        for _ in range(200):
            if await waiting_on_a_lock(world):
                break
            await asyncio.sleep(0.02)
        assert await waiting_on_a_lock(world) == 1
        # ... then the refund. The verdict waits for the original without holding the refund, so this
        # gets it at once; before, each held what the other waited for, and PostgreSQL aborted one.
        await holder.execute(text("SELECT id FROM payments WHERE id = :i FOR UPDATE"), {"i": refund.id})
        await holder.commit()

    applied, changed = await asyncio.wait_for(verdict, timeout=10)
    assert changed and applied is not None and applied.status is S.FAILED
    # The unwind: the wallet's money came back from clearing.
    assert await world.balance(AccountKind.CUSTOMER_WALLET, KES, deposit.payer_user_id) == deposit.amount
    assert (await world.payment(deposit.public_id)).status is S.SUCCEEDED


async def test_a_verdict_and_a_second_refund_raced_many_times_always_both_finish(world: PaymentsWorld):
    """Two tasks per round, on one original: the provider's verdict on its pending refund (a failure
    on even rounds, a success on odd ones) and a new refund of it, started in either order."""
    rounds = 24
    originals = await deposits(world, "race", rounds)
    refunds = [await pending_refund(world, d, f"race-rf-{i}") for i, d in enumerate(originals)]

    async def verdict(i: int) -> Payment | None:
        await asyncio.sleep(random.random() * 0.004)
        succeeded = i % 2 == 1
        outcome = Verdict(True, "test_verdict", refs={"receipt": f"RACE{i:06d}"}) if succeeded else \
            Verdict(False, "test_verdict", "provider_declined", "M-Pesa declined it.")
        applied, _ = await world.payments.resolver.apply(refunds[i].public_id, outcome)
        return applied

    async def again(i: int) -> Payment | None:
        await asyncio.sleep(random.random() * 0.004)
        try:
            return await world.payments.handle(Refund(f"race-again-{i}", originals[i].public_id, "asked again"))
        except NotRefundable:
            return None

    for i in range(rounds):
        first, second = await asyncio.wait_for(asyncio.gather(verdict(i), again(i)), timeout=30)
        assert first is not None and first.status in (S.FAILED, S.SUCCEEDED)
        original = await world.payment(originals[i].public_id)
        if first.status is S.SUCCEEDED:
            # The deposit went back: nothing more to refund, whichever came first.
            assert original.status is S.REVERSED and second is None
        elif second is not None:
            # The verdict came first and gave the money back to the wallet: the new refund took it.
            assert second.status is S.PENDING and original.status is S.SUCCEEDED
        assert await world.scalar("SELECT count(*) FROM payments WHERE refund_of = :i AND status <> 'failed'",
                                  i=originals[i].id) <= 1
    # Whatever the new refunds asked M-Pesa for ends too.
    await world.worker.drain()
