"""`sauti ledger check` catches corrupted account rows: a parent's shard list naming an account that
is not its shard, and a sign rule (may go negative) that is not its kind's. Each test corrupts a
database of its own, behind the ledger's back, as only a bug or a hand-made change could."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from db.engine import create_engine
from payments.accounts import AccountKind, balance, shard_account
from payments.ledger import Ledger, LedgerLimits
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.postings import Leg, TransferRequest, payment_legs
from tests.integration.ledger_helpers import fund, new_wallet, system_account

KES = Currency.KES


@pytest.fixture
async def own_engine(new_database):
    engine = create_engine(await new_database(), pool_size=2)
    yield engine
    await engine.dispose()


async def failing(engine) -> dict[str, tuple]:
    report = await check_ledger(engine)
    return {r.check.name: r.examples for r in report.results if not r.ok}


async def test_a_shard_list_naming_an_account_that_is_not_its_shard_fails_the_check(own_engine):
    engine = own_engine
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    fees = await system_account(engine, AccountKind.FEE_REVENUE)
    async with engine.begin() as conn:
        await shard_account(conn, fees, 2)
    ledger.forget_shards()
    alice, bob = await new_wallet(engine), await new_wallet(engine)
    await fund(ledger, engine, alice, Money.of(100, KES))
    await ledger.transfer(TransferRequest(f"t-{uuid.uuid4()}", payment_legs(
        alice, bob, Money.of(10, KES), fee=Money.of(1, KES), fee_account=fees)))
    assert await failing(engine) == {}

    # Bob's wallet slipped into the fee account's shard list: the fee balance now counts his money.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET shards = shards || CAST(:b AS bigint) WHERE id = :f"),
                           {"b": bob, "f": fees})
        assert await balance(conn, fees) == Money.of(11, KES)

    assert set(await failing(engine)) == {"shard_lists_name_only_their_shards"}
    assert (await failing(engine))["shard_lists_name_only_their_shards"] == ((fees, bob, None),)


async def test_an_account_whose_sign_rule_is_not_its_kinds_fails_the_check(own_engine):
    engine = own_engine
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    clearing = await system_account(engine, AccountKind.PROVIDER_CLEARING, owner="mpesa")
    wallet = await new_wallet(engine)
    assert await failing(engine) == {}

    # Provider clearing must never go negative; flagged otherwise, an ordinary transfer overdraws it.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET may_go_negative = true WHERE id = :c"), {"c": clearing})
    await ledger.transfer(TransferRequest(f"t-{uuid.uuid4()}", (Leg(clearing, -500, KES), Leg(wallet, 500, KES))))

    assert set(await failing(engine)) == {"sign_rule_follows_kind"}
    assert (await failing(engine))["sign_rule_follows_kind"] == ((clearing, "provider_clearing", True),)


async def test_a_kind_that_may_go_negative_flagged_otherwise_fails_the_check(own_engine):
    engine = own_engine
    suspense = await system_account(engine, AccountKind.SUSPENSE)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET may_go_negative = false WHERE id = :s"), {"s": suspense})
    assert (await failing(engine))["sign_rule_follows_kind"] == ((suspense, "suspense", False),)
