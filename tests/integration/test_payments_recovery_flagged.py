"""Recovery and the payments flagged for a person: they are left out of its rounds, not examined and
passed over. They are the oldest open payments; taken first, a batch's worth of them waiting for a
person kept every other stuck payment from ever being asked about. A database of this module's own:
the batch is small, and no other test's open payments may take its places."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from payments.commands import Channel, Withdraw
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.integration.ops_helpers import plans_without_seq_scans, statements_run
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES = Currency.KES
S = PaymentStatus

world, ledger_stays_consistent = module_world()


async def test_payments_waiting_for_a_person_do_not_keep_recovery_from_the_others(world: PaymentsWorld):
    flagged = []
    for n in range(2):
        user = await world.user(suffix="905")  # the B2C times out in Daraja's queue: flagged for a person
        await world.fund(user, Money.of(1000, KES))
        flagged.append((await world.payments.handle(
            Withdraw(f"wd-flagged-{n}", user.id, Money.of(100, KES), Channel.USSD))).public_id)
    for _ in range(300):
        await world.worker.drain()
        if all(["needs_review" in (await world.payment(p)).provider_refs for p in flagged]):
            break
        await asyncio.sleep(0.02)
    assert all(["needs_review" in (await world.payment(p)).provider_refs for p in flagged])
    stuck_user = await world.user(suffix="900")  # paid at M-Pesa; its Result never sent
    await world.fund(stuck_user, Money.of(1000, KES))
    stuck = await world.payments.handle(Withdraw("wd-stuck", stuck_user.id, Money.of(100, KES), Channel.USSD))
    await world.worker.drain()
    await asyncio.sleep(0.3)
    assert (await world.payment(stuck.public_id)).status is S.PROCESSING

    # A batch of two (in production, recovery_batch: 200), as many as the flagged ones, older.
    before = len(world.callbacks.outcomes)
    with statements_run(world.engine) as statements:
        report = await world.payments.recover_stuck(timedelta(0), limit=2)
    assert (report.examined, report.queried, report.needs_review) == (1, 1, 2)
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert (await world.payment(stuck.public_id)).status is S.SUCCEEDED
    for public_id in flagged:  # left to the person
        assert (await world.payment(public_id)).status is S.PROCESSING
    await world.worker.drain()

    # Both of recovery's reads of the payments table still go through its index of open payments.
    reads = [(s, p) for s, p in statements if "FROM payments WHERE status IN" in s]
    assert len(reads) == 2, statements
    for _, plan in await plans_without_seq_scans(world.engine, reads):
        assert "payments_open" in plan, plan
