"""Sweeping a hot account's shards back into it (`Ledger.consolidate_shards`): whatever a shard holds,
and however many sweeps run at once, each shard's money moves to the parent exactly once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from payments import errors as pe
from payments.accounts import AccountKind, balance, get_account, shard_account
from payments.ledger import Ledger, LedgerLimits, TransferBatcher
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.postings import ABSOLUTE_MAX_MINOR, Leg, TransferRequest, payment_legs
from tests.integration.ledger_helpers import fund, new_wallet, system_account

KES = Currency.KES


def key() -> str:
    return f"consolidate-test-{uuid.uuid4()}"


async def balances(engine, ids) -> dict[int, int]:
    async with engine.connect() as conn:
        return {i: (await get_account(conn, i)).balance for i in ids}


async def sharded(engine, kind: AccountKind, count: int) -> tuple[int, tuple[int, ...]]:
    account = await system_account(engine, kind, owner=f"sweep-{uuid.uuid4().hex[:8]}")
    async with engine.begin() as conn:
        return account, (await shard_account(conn, account, count)).shards


async def test_a_shard_holding_more_than_one_transaction_may_move_is_swept_whole(engine):
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    fees, shards = await sharded(engine, AccountKind.FEE_REVENUE, 2)
    payee = await new_wallet(engine)
    # 1,200,000 KES of fees on each shard: more than any payment may move.
    for shard in shards:
        for _ in range(3):
            payer = await new_wallet(engine)
            await fund(ledger, engine, payer, Money.of(400_000, KES))
            await ledger.transfer(TransferRequest(key(), (Leg(payer, -40_000_000, KES),
                                                          Leg(shard, 40_000_000, KES, exact=True))))
    assert await balances(engine, shards) == {s: 120_000_000 for s in shards}

    swept = await ledger.consolidate_shards(fees)

    assert len(swept) == 2
    assert await balances(engine, [fees, *shards]) == {fees: 240_000_000, **{s: 0 for s in shards}}
    async with engine.connect() as conn:
        assert await balance(conn, fees) == Money.of(2_400_000, KES)
    assert await ledger.consolidate_shards(fees) == []  # nothing left to sweep
    with pytest.raises(pe.AmountOutOfRange):  # an ordinary transfer of as much is still refused
        await ledger.transfer(TransferRequest(key(), (Leg(fees, -240_000_000, KES, exact=True),
                                                      Leg(payee, 240_000_000, KES))))
    report = await check_ledger(engine)
    assert report.ok, report.render()


async def test_a_shard_beyond_one_legs_ceiling_is_swept_in_parts(engine):
    ledger = Ledger(engine, LedgerLimits.from_major(10**12))
    collection, shards = await sharded(engine, AccountKind.PROVIDER_COLLECTION, 2)
    world = await system_account(engine, AccountKind.PROVIDER_COLLECTION, owner=f"world-{uuid.uuid4().hex[:8]}")
    # A shard that may go negative, below what one leg can carry (two debits at the ceiling).
    for _ in range(2):
        await ledger.transfer(TransferRequest(key(), (Leg(shards[0], -ABSOLUTE_MAX_MINOR, KES, exact=True),
                                                      Leg(world, ABSOLUTE_MAX_MINOR, KES))))

    first = await ledger.consolidate_shards(collection)
    assert [p.amount for r in first for p in r.postings if p.account_id == shards[0]] == [ABSOLUTE_MAX_MINOR]
    second = await ledger.consolidate_shards(collection)
    assert [p.amount for r in second for p in r.postings if p.account_id == shards[0]] == [ABSOLUTE_MAX_MINOR]
    assert await balances(engine, [collection, *shards]) == {
        collection: -2 * ABSOLUTE_MAX_MINOR, **{s: 0 for s in shards}}


async def test_concurrent_sweeps_of_one_account_move_each_shards_money_once(engine):
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    batched = Ledger(engine, LedgerLimits.from_major(999_999), batcher=TransferBatcher(engine))
    collection, shards = await sharded(engine, AccountKind.PROVIDER_COLLECTION, 4)
    ledger.forget_shards()
    # Deposits debit the collection account's shards (it may go negative): each shard is below zero.
    for _ in range(8):
        await ledger.transfer(TransferRequest(key(), payment_legs(collection, await new_wallet(engine),
                                                                  Money.of(100, KES))))
    before = await balances(engine, [collection, *shards])
    assert sum(before.values()) == -80_000

    # Two sweeps at once, and one more through the batcher (two workers, or a retry of a timed-out sweep).
    await asyncio.gather(ledger.consolidate_shards(collection), ledger.consolidate_shards(collection),
                         batched.consolidate_shards(collection))

    after = await balances(engine, [collection, *shards])
    assert after == {collection: -80_000, **{s: 0 for s in shards}}
    report = await check_ledger(engine)
    assert report.ok, report.render()
