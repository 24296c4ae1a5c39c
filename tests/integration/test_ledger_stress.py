"""Concurrent stress on a real PostgreSQL: 50 tasks run 2,000 random operations among 20 wallets
(transfers with and without fees, overdraft attempts, holds posted and voided, retried keys). After
it, every invariant holds, no wallet is negative, and money is conserved."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import text

from payments import errors as pe
from payments.accounts import AccountKind
from payments.ledger import Ledger, LedgerLimits, TransferBatcher
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.postings import HoldRequest, TransferRequest, payment_legs
from tests.integration.ledger_helpers import fund, new_wallet, system_account

TASKS, OPERATIONS, WALLETS = 50, 2_000, 20
KES = Currency.KES


@pytest.mark.slow
@pytest.mark.parametrize("batched", [True, False], ids=["group-commit", "commit-per-op"])
async def test_concurrent_random_operations_keep_every_invariant(engine, batched):
    ledger = Ledger(engine, LedgerLimits.from_major(999_999),
                    batcher=TransferBatcher(engine, max_batch=32, pipelines=3) if batched else None)
    wallets = [await new_wallet(engine) for _ in range(WALLETS)]
    fees = await system_account(engine, AccountKind.FEE_REVENUE, owner=f"stress-{uuid.uuid4().hex[:6]}")
    for wallet in wallets:
        await fund(ledger, engine, wallet, Money.of(1_000, KES))
    funded = WALLETS * Money.of(1_000, KES).minor

    rng = random.Random(20261123)
    plan = [rng.random() for _ in range(OPERATIONS)]
    outcomes = {"ok": 0, "insufficient": 0, "held": 0, "posted": 0, "voided": 0, "replayed": 0}
    queue: asyncio.Queue[float] = asyncio.Queue()
    for p in plan:
        queue.put_nowait(p)

    async def one(choice: float, task_rng: random.Random) -> None:
        src, dst = task_rng.sample(wallets, 2)
        # Amounts up to KES 600 against balances of ~KES 1,000: plenty of overdraft attempts.
        amount = Money(task_rng.randint(1, 60_000), KES)
        try:
            if choice < 0.55:
                fee = Money(task_rng.randint(0, 500), KES) if choice < 0.3 else None
                k = f"stress-{uuid.uuid4()}"
                request = TransferRequest(k, payment_legs(src, dst, amount, fee=fee, fee_account=fees))
                await ledger.transfer(request)
                outcomes["ok"] += 1
                if task_rng.random() < 0.1:  # a client retry with the same key changes nothing
                    assert (await ledger.transfer(request)).replayed
                    outcomes["replayed"] += 1
            else:
                hold = await ledger.hold(HoldRequest(f"stress-hold-{uuid.uuid4()}", payment_legs(src, dst, amount)))
                outcomes["held"] += 1
                await asyncio.sleep(0)
                if choice < 0.8:
                    await ledger.post_hold(hold.hold_id)
                    outcomes["posted"] += 1
                else:
                    await ledger.void_hold(hold.hold_id)
                    outcomes["voided"] += 1
        except pe.InsufficientFunds:
            outcomes["insufficient"] += 1

    async def worker(seed: int) -> None:
        task_rng = random.Random(seed)
        while not queue.empty():
            await one(queue.get_nowait(), task_rng)

    await asyncio.gather(*(worker(seed) for seed in range(TASKS)))

    assert outcomes["insufficient"] > 50, outcomes  # overdrafts were really attempted …
    assert outcomes["ok"] > 300 and outcomes["posted"] > 100 and outcomes["voided"] > 50, outcomes
    async with engine.connect() as conn:
        report = await check_ledger(engine)
        assert report.ok, report.render()
        rows = (await conn.execute(text("SELECT balance, held FROM accounts WHERE id = ANY(:ids)"),
                                   {"ids": [*wallets, fees]})).all()
        fee_total = (await conn.execute(text("SELECT balance FROM accounts WHERE id = :f"), {"f": fees})).scalar_one()
    assert all(balance >= 0 and held == 0 for balance, held in rows)  # … and none went through
    assert sum(balance for balance, _ in rows) == funded  # wallets + fees = what was deposited
    assert fee_total >= 0
