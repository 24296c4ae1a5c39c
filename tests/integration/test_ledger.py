"""The wallet ledger on a real PostgreSQL: transfers, fees, idempotency, holds, reversals,
statements, and the database's own refusal to overdraw or rewrite history."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from db.engine import create_engine
from payments import errors as pe
from payments.accounts import AccountKind, balance, get_account, history, shard_account, statement
from payments.ledger import Ledger, LedgerLimits, TransferBatcher
from payments.ledger_check import check_ledger
from payments.money import Currency, Money, UnknownCurrency
from payments.postings import HoldRequest, Leg, ReverseRequest, TransferRequest, payment_legs
from tests.integration.ledger_helpers import fund, new_wallet, system_account

KES = Currency.KES


@pytest.fixture(scope="module")
def ledger(engine) -> Ledger:
    return Ledger(engine, LedgerLimits.from_major(999_999), batcher=TransferBatcher(engine))


def key() -> str:
    return f"test-{uuid.uuid4()}"


async def bal(engine, account_id: int) -> int:
    async with engine.connect() as conn:
        return (await balance(conn, account_id)).minor


async def test_transfer_with_fee_is_one_balanced_three_leg_transfer(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    fees = await system_account(engine, AccountKind.FEE_REVENUE)
    await fund(ledger, engine, alice, Money.of(1000, KES))
    fees_before = await bal(engine, fees)

    result = await ledger.transfer(TransferRequest(key(), payment_legs(
        alice, bob, Money.of(300, KES), fee=Money.of(3, KES), fee_account=fees), kind="p2p"))

    assert not result.replayed
    assert len(result.postings) == 3
    assert sum(p.amount for p in result.postings) == 0
    assert result.balance_after(alice) == 69_700 == await bal(engine, alice)
    assert result.balance_after(bob) == 30_000 == await bal(engine, bob)
    assert await bal(engine, fees) == fees_before + 300


async def test_same_key_same_request_replays_and_different_request_conflicts(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(100, KES))
    k = key()
    first = await ledger.transfer(TransferRequest(k, payment_legs(alice, bob, Money.of(10, KES))))
    again = await ledger.transfer(TransferRequest(k, payment_legs(alice, bob, Money.of(10, KES))))
    assert again.replayed and again.transfer_id == first.transfer_id
    assert again.postings == first.postings
    assert await bal(engine, alice) == 9_000

    with pytest.raises(pe.IdempotencyConflict) as conflict:
        await ledger.transfer(TransferRequest(k, payment_legs(alice, bob, Money.of(11, KES))))
    assert conflict.value.existing_id == first.transfer_id
    assert await bal(engine, alice) == 9_000


@pytest.mark.parametrize("batched", [True, False])
async def test_one_key_sent_concurrently_20_times_yields_one_transfer(engine, batched):
    ledger = Ledger(engine, LedgerLimits.from_major(999_999),
                    batcher=TransferBatcher(engine, max_batch=4) if batched else None)
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(100, KES))
    k = key()
    request = TransferRequest(k, payment_legs(alice, bob, Money.of(7, KES)))
    results = await asyncio.gather(*(ledger.transfer(request) for _ in range(20)))
    assert len({r.transfer_id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await bal(engine, alice) == 9_300
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM transfers WHERE idempotency_key = :k"),
                                    {"k": k})).scalar_one()
    assert count == 1


async def test_overdraft_is_refused_and_nothing_is_written(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(50, KES))
    k = key()
    with pytest.raises(pe.InsufficientFunds) as err:
        await ledger.transfer(TransferRequest(k, payment_legs(alice, bob, Money.of(51, KES))))
    assert err.value.account_id == alice and err.value.available == 5_000 and err.value.needed == 5_100
    assert await bal(engine, alice) == 5_000 and await bal(engine, bob) == 0
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM transfers WHERE idempotency_key = :k"),
                                   {"k": k})).scalar_one() == 0


async def test_the_database_itself_refuses_a_negative_wallet(engine, ledger):
    alice = await new_wallet(engine)
    with pytest.raises(DBAPIError, match="accounts_no_overdraft"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE accounts SET balance = -1 WHERE id = :a"), {"a": alice})
    with pytest.raises(DBAPIError, match="accounts_owned_kinds_never_negative"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE accounts SET may_go_negative = true WHERE id = :a"), {"a": alice})


async def test_postings_and_transfers_are_append_only(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(5, KES))
    result = await ledger.transfer(TransferRequest(key(), payment_legs(alice, bob, Money.of(5, KES))))
    for statement_sql in ("UPDATE postings SET amount = 1 WHERE transfer_id = :t",
                          "DELETE FROM postings WHERE transfer_id = :t",
                          "UPDATE transfers SET kind = 'x' WHERE id = :t",
                          "DELETE FROM transfers WHERE id = :t"):
        with pytest.raises(DBAPIError, match="never changed or removed"):
            async with engine.begin() as conn:
                await conn.execute(text(statement_sql), {"t": result.transfer_id})


async def test_bad_requests_are_refused_before_anything_is_written(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    xof_wallet = await new_wallet(engine, Currency.XOF)
    await fund(ledger, engine, alice, Money.of(10, KES))
    with pytest.raises(pe.UnbalancedTransfer):
        TransferRequest(key(), (Leg(alice, -100, KES), Leg(bob, 99, KES)))
    with pytest.raises(pe.AmountOutOfRange):
        TransferRequest(key(), (Leg(alice, 0, KES), Leg(bob, 0, KES)))
    with pytest.raises(pe.AmountOutOfRange):
        payment_legs(alice, bob, Money(-5, KES))
    with pytest.raises(pe.AmountOutOfRange):  # the seeds cap one transaction at 999,999
        await ledger.transfer(TransferRequest(key(), payment_legs(alice, bob, Money.of(1_000_000, KES))))
    with pytest.raises(UnknownCurrency):
        Money.of(5, "USD")
    with pytest.raises(pe.UnknownAccount):
        await ledger.transfer(TransferRequest(key(), payment_legs(alice, 999_999_999, Money.of(1, KES))))
    with pytest.raises(pe.CurrencyMismatch):
        await ledger.transfer(TransferRequest(key(), payment_legs(alice, xof_wallet, Money.of(1, KES))))
    with pytest.raises(pe.InvalidRequest):
        TransferRequest("", payment_legs(alice, bob, Money.of(1, KES)))
    assert await bal(engine, alice) == 1_000 and await bal(engine, bob) == 0


async def test_a_hold_reserves_funds_and_is_posted_exactly_once(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(100, KES))
    hold = await ledger.hold(HoldRequest(key(), payment_legs(alice, bob, Money.of(80, KES))))
    assert hold.status == "pending"
    async with engine.connect() as conn:
        account = await get_account(conn, alice)
    assert account.balance == 10_000 and account.available.minor == 2_000

    # The reserved money cannot be spent twice.
    with pytest.raises(pe.InsufficientFunds):
        await ledger.transfer(TransferRequest(key(), payment_legs(alice, bob, Money.of(21, KES))))

    posted = await ledger.post_hold(hold.hold_id)
    assert posted.status == "posted" and posted.transfer is not None
    assert await bal(engine, alice) == 2_000 and await bal(engine, bob) == 8_000
    with pytest.raises(pe.HoldNotPending) as twice:
        await ledger.post_hold(hold.hold_id)
    assert twice.value.status == "posted" and twice.value.transfer_id == posted.transfer.transfer_id
    with pytest.raises(pe.HoldNotPending):
        await ledger.void_hold(hold.hold_id)
    assert await bal(engine, alice) == 2_000


async def test_a_voided_hold_releases_funds_and_cannot_be_posted(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(100, KES))
    hold = await ledger.hold(HoldRequest(key(), payment_legs(alice, bob, Money.of(100, KES))))
    voided = await ledger.void_hold(hold.hold_id)
    assert voided.status == "voided"
    with pytest.raises(pe.HoldNotPending) as after_void:
        await ledger.post_hold(hold.hold_id)
    assert after_void.value.status == "voided"
    async with engine.connect() as conn:
        account = await get_account(conn, alice)
    assert account.balance == 10_000 and account.held == 0
    assert await bal(engine, bob) == 0


async def test_concurrent_post_and_void_of_one_hold_resolve_it_once(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(10, KES))
    hold = await ledger.hold(HoldRequest(key(), payment_legs(alice, bob, Money.of(10, KES))))
    outcomes = await asyncio.gather(*(ledger.post_hold(hold.hold_id) if i % 2 else ledger.void_hold(hold.hold_id)
                                      for i in range(10)), return_exceptions=True)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, pe.HoldNotPending) for o in outcomes if isinstance(o, Exception))


async def test_expired_holds_are_voided(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(10, KES))
    await ledger.hold(HoldRequest(key(), payment_legs(alice, bob, Money.of(10, KES)),
                                  expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert await ledger.void_expired_holds() >= 1
    async with engine.connect() as conn:
        assert (await get_account(conn, alice)).held == 0


async def test_a_reversal_is_a_new_mirrored_transfer_and_happens_once(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    fees = await system_account(engine, AccountKind.FEE_REVENUE)
    await fund(ledger, engine, alice, Money.of(100, KES))
    original = await ledger.transfer(TransferRequest(key(), payment_legs(
        alice, bob, Money.of(50, KES), fee=Money.of(1, KES), fee_account=fees)))
    k = key()
    reversal = await ledger.reverse(ReverseRequest(k, original.transfer_id))
    assert {(p.account_id, p.amount) for p in reversal.postings} == \
        {(p.account_id, -p.amount) for p in original.postings}
    assert await bal(engine, alice) == 10_000 and await bal(engine, bob) == 0
    assert (await ledger.reverse(ReverseRequest(k, original.transfer_id))).replayed
    with pytest.raises(pe.AlreadyReversed):
        await ledger.reverse(ReverseRequest(key(), original.transfer_id))
    with pytest.raises(pe.UnknownTransfer):
        await ledger.reverse(ReverseRequest(key(), 987_654_321))


async def test_a_reversal_cannot_overdraw_a_recipient_who_spent_the_money(engine, ledger):
    alice, bob, carol = await new_wallet(engine), await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(10, KES))
    original = await ledger.transfer(TransferRequest(key(), payment_legs(alice, bob, Money.of(10, KES))))
    await ledger.transfer(TransferRequest(key(), payment_legs(bob, carol, Money.of(10, KES))))
    with pytest.raises(pe.InsufficientFunds):
        await ledger.reverse(ReverseRequest(key(), original.transfer_id))


async def test_statement_shows_counterparty_and_reference_newest_first(engine, ledger):
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    fees = await system_account(engine, AccountKind.FEE_REVENUE)
    await fund(ledger, engine, alice, Money.of(100, KES))
    for amount in (10, 20, 30):
        await ledger.transfer(TransferRequest(key(), payment_legs(
            alice, bob, Money.of(amount, KES), fee=Money.of(1, KES), fee_account=fees), kind="p2p",
            reference=f"ref-{amount}"))
    async with engine.connect() as conn:
        lines = await statement(conn, alice, limit=5)
        bob_phone = (await conn.execute(text(
            "SELECT u.phone FROM users u JOIN accounts a ON a.owner_user_id = u.id WHERE a.id = :a"),
            {"a": bob})).scalar_one()
        everything = [line async for line in history(conn, alice, page_size=2)]
    assert [line.reference for line in lines[:3]] == ["ref-30", "ref-20", "ref-10"]
    assert lines[0].amount == Money.of(-31, KES)
    assert lines[0].balance_after == Money.of(100 - 11 - 21 - 31, KES)
    assert lines[0].counterparty_phone == bob_phone  # the recipient, not the fee account
    assert lines[-1].kind == "deposit"
    assert len(everything) == 4


async def test_ledger_check_passes_on_a_healthy_ledger(engine):
    report = await check_ledger(engine)
    assert report.ok, report.render()
    assert report.postings > 0


async def test_a_sharded_hot_account_spreads_credits_and_consolidates(engine):
    fees = await system_account(engine, AccountKind.FEE_REVENUE, owner=f"sharded-{uuid.uuid4().hex[:6]}")
    async with engine.begin() as conn:
        parent = await shard_account(conn, fees, 4)
        assert len(parent.shards) == 4
        assert (await shard_account(conn, fees, 4)).shards == parent.shards  # idempotent
        with pytest.raises(pe.InvalidRequest):
            await shard_account(conn, fees, 3)
    wallet = await new_wallet(engine)
    async with engine.begin() as conn:
        with pytest.raises(pe.InvalidRequest):  # people's wallets are never sharded
            await shard_account(conn, wallet, 4)

    # Many connections at once (no batcher): credits land on the shards, never on the parent row.
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    payers = [await new_wallet(engine) for _ in range(6)]
    for payer in payers:
        await fund(ledger, engine, payer, Money.of(100, KES))
    payee = await new_wallet(engine)
    await asyncio.gather(*(ledger.transfer(TransferRequest(key(), payment_legs(
        payer, payee, Money.of(10, KES), fee=Money.of(1, KES), fee_account=fees)))
        for payer in payers for _ in range(5)))
    async with engine.connect() as conn:
        total = await balance(conn, fees)
        parent_row = await get_account(conn, fees)
    assert total == Money.of(30, KES)
    assert parent_row.balance == 0

    swept = await ledger.consolidate_shards(fees)
    assert swept and all(not r.replayed for r in swept)
    async with engine.connect() as conn:
        assert (await get_account(conn, fees)).balance == 3_000
        assert await balance(conn, fees) == Money.of(30, KES)
        report = await check_ledger(engine)
    assert report.ok, report.render()


async def test_batched_credits_to_a_sharded_account_land_on_one_shard_per_pipeline(engine):
    fees = await system_account(engine, AccountKind.FEE_REVENUE, owner=f"batched-{uuid.uuid4().hex[:6]}")
    async with engine.begin() as conn:
        parent = await shard_account(conn, fees, 4)
    ledger = Ledger(engine, LedgerLimits.from_major(999_999), batcher=TransferBatcher(engine, max_batch=8))
    payers = [await new_wallet(engine) for _ in range(8)]
    for payer in payers:
        await fund(ledger, engine, payer, Money.of(100, KES))
    payee = await new_wallet(engine)
    results = await asyncio.gather(*(ledger.transfer(TransferRequest(key(), payment_legs(
        payer, payee, Money.of(10, KES), fee=Money.of(1, KES), fee_account=fees))) for payer in payers))
    credited = {p.account_id for r in results for p in r.postings if p.amount == 100}
    assert credited <= set(parent.shards) and fees not in credited
    async with engine.connect() as conn:
        assert await balance(conn, fees) == Money.of(8, KES)
        assert (await get_account(conn, fees)).balance == 0
    assert (await check_ledger(engine)).ok


def _unbalanced_op(source: int, destination: int) -> dict:
    """A transfer op that `TransferRequest` would refuse (its legs do not sum to zero), sent to the
    batcher directly, as only a bug could: the database must refuse it without failing its batch."""
    return {"op": "transfer", "key": key(), "hash": "unbalanced", "kind": "p2p", "ref": None, "meta": {},
            "legs": [{"a": source, "m": -500, "c": "KES"}, {"a": destination, "m": 400, "c": "KES"}]}


async def test_a_batch_that_fails_as_a_whole_is_applied_op_by_op_so_only_the_faulty_op_fails(engine):
    batcher = TransferBatcher(engine, max_batch=8)
    wallets = [await new_wallet(engine) for _ in range(8)]
    for payer in wallets[::2]:
        await fund(Ledger(engine, LedgerLimits.from_major(999_999)), engine, payer, Money.of(100, KES))
    good = [TransferRequest(key(), payment_legs(wallets[i], wallets[i + 1], Money.of(10, KES))).as_op()
            for i in (0, 2, 4)]
    # Submitted in one tick, so they form one batch, which the malformed op fails as a whole.
    outcomes = await asyncio.gather(*(batcher.submit(op) for op in [*good, _unbalanced_op(wallets[6], wallets[7])]),
                                    return_exceptions=True)
    assert [o["s"] for o in outcomes[:3]] == ["ok", "ok", "ok"]
    assert isinstance(outcomes[3], asyncpg.PostgresError) and "do not balance" in str(outcomes[3])
    for payer, payee in zip(wallets[0:6:2], wallets[1:6:2], strict=True):
        assert (await bal(engine, payer), await bal(engine, payee)) == (9_000, 1_000)
    assert (await bal(engine, wallets[6]), await bal(engine, wallets[7])) == (10_000, 0)


async def test_a_lost_database_connection_fails_no_transfer_and_is_not_used_again(engine, database_url):
    # One connection in the pool: the batcher must get a fresh one after the server drops it.
    own = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        ledger = Ledger(own, LedgerLimits.from_major(999_999), batcher=TransferBatcher(own))
        alice, bob = await new_wallet(engine), await new_wallet(engine)
        await fund(ledger, engine, alice, Money.of(100, KES))
        async with own.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
        await asyncio.sleep(0.2)  # the pooled connection learns that it was closed

        results = await asyncio.gather(*(ledger.transfer(TransferRequest(key(), payment_legs(
            alice, bob, Money.of(10, KES)))) for _ in range(3)))
        assert [r.balance_after(alice) for r in results] == [9_000, 8_000, 7_000]
        assert await bal(engine, bob) == 3_000
        again = await ledger.transfer(TransferRequest(key(), payment_legs(alice, bob, Money.of(10, KES))))
        assert again.balance_after(alice) == 6_000
    finally:
        await own.dispose()
    assert (await check_ledger(engine)).ok
