"""Hot accounts and fees: fee revenue, provider collection and provider settlement are split into
shards when the orchestrator first uses them (clearing never is); credits spread over the shards,
and so do the debits of the accounts that may go negative; balances sum the shards, consolidation
sweeps them back (negative ones too) and `ledger check` holds throughout. A payout's fee waits in
clearing and is earned only when the provider paid; a refund that gives an earned fee back takes it
from wherever fee revenue holds it. Real PostgreSQL, real HTTP to the sandboxes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from payments import errors as pe
from payments import payment_store as store
from payments.accounts import AccountKind, account_by_code, account_code, balance, get_account, shard_account
from payments.commands import Channel, Deposit, PaymentKind, Refund, SendToWallet, Withdraw
from payments.ledger import Ledger, LedgerLimits, TransferBatcher
from payments.money import Currency, Money
from payments.postings import Leg, TransferRequest
from payments.resolution import Verdict
from payments.settlement import AccountBook
from payments.states import PaymentStatus
from tests.integration.ledger_helpers import new_wallet, system_account
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:  # hot_account_shards: 8, the default
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


async def parent(world: PaymentsWorld, kind: AccountKind, owner: str):
    async with world.engine.connect() as conn:
        return await account_by_code(conn, account_code(kind, KES, owner))


async def one_of_each(world: PaymentsWorld, tag: str) -> None:
    """A p2p payment (a fee), a deposit (collection), a withdrawal (clearing, settlement, a fee)."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(2000, KES))
    await world.payments.handle(SendToWallet(f"{tag}-p2p", payer.id, Money.of(500, KES), Channel.USSD,
                                             recipient_user_id=payee.id))
    await world.settle((await world.payments.handle(Deposit(f"{tag}-dep", payee.id, Money.of(300, KES),
                                                            Channel.USSD))).public_id)
    await world.settle((await world.payments.handle(Withdraw(f"{tag}-wd", payer.id, Money.of(400, KES),
                                                             Channel.USSD))).public_id)


async def test_hot_accounts_are_sharded_on_first_use_and_their_writes_land_on_the_shards(world: PaymentsWorld):
    await one_of_each(world, "first")
    fees = await parent(world, AccountKind.FEE_REVENUE, "sauti")
    collection = await parent(world, AccountKind.PROVIDER_COLLECTION, "mpesa")
    settlement = await parent(world, AccountKind.PROVIDER_SETTLEMENT, "mpesa")
    clearing = await parent(world, AccountKind.PROVIDER_CLEARING, "mpesa")
    assert (len(fees.shards), len(collection.shards), len(settlement.shards)) == (8, 8, 8)
    assert clearing.shards == ()  # debited and never negative: never sharded

    totals = {a.id: await world.balance(a.kind, KES, a.code.split(":")[1]) for a in (fees, collection, settlement)}
    await one_of_each(world, "second")

    # The parent rows are no longer written: credits (fees, settlement) and the debits of accounts
    # that may go negative (collection) land on the shards, and balances sum them.
    for account in (fees, collection, settlement):
        assert (await parent(world, account.kind, account.code.split(":")[1])).balance == account.balance
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - totals[fees.id] == Money.of(9, KES)
    assert totals[collection.id] - await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") == \
        Money.of(2300, KES)  # the test's funding and the deposit
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - totals[settlement.id] == \
        Money.of(400, KES)
    async with world.engine.connect() as conn:
        negative = (await conn.exec_driver_sql(
            "SELECT count(*) FROM accounts WHERE shard_of = $1 AND balance < 0", (collection.id,))).scalar_one()
    assert negative >= 1


async def test_consolidation_sweeps_every_shard_back_negative_ones_included(world: PaymentsWorld):
    await one_of_each(world, "sweep")
    for kind, owner in ((AccountKind.PROVIDER_COLLECTION, "mpesa"), (AccountKind.FEE_REVENUE, "sauti"),
                        (AccountKind.PROVIDER_SETTLEMENT, "mpesa")):
        account = await parent(world, kind, owner)
        total = await world.balance(kind, KES, owner)

        swept = await world.ledger.consolidate_shards(account.id)

        assert swept
        async with world.engine.connect() as conn:
            assert (await get_account(conn, account.id)).balance == total.minor
            assert [(await get_account(conn, shard)).balance for shard in account.shards] == [0] * len(account.shards)
        assert await world.balance(kind, KES, owner) == total
        assert await world.ledger.consolidate_shards(account.id) == []  # nothing left to sweep


async def test_a_payout_fee_waits_in_clearing_and_comes_back_from_it_when_the_payout_fails(world: PaymentsWorld):
    user = await world.user(suffix="001")  # M-Pesa refuses the B2C: insufficient funds on its side
    await world.fund(user, Money.of(1000, KES))
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")

    payment = await world.payments.handle(Withdraw("fee-wait", user.id, Money.of(500, KES), Channel.USSD))
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") - clearing_before == Money.of(505, KES)
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED
    assert await world.wallet(user) == Money.of(1000, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == fees_before  # never touched
    legs = await world.scalar("SELECT count(*) FROM postings WHERE transfer_id = :t", t=done.settle_transfer_id)
    assert legs == 2  # clearing → wallet, nothing from fee revenue


async def test_refunds_give_an_earned_fee_back_from_wherever_fee_revenue_holds_it(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(3000, KES))
    paid = await world.payments.handle(SendToWallet("fee-back-p2p", payer.id, Money.of(1000, KES), Channel.USSD,
                                                    recipient_user_id=payee.id))
    payout = await world.settle((await world.payments.handle(
        Withdraw("fee-back-wd", payer.id, Money.of(1000, KES), Channel.USSD))).public_id)
    assert await world.wallet(payer) == Money.of(3000 - 2 * 1010, KES)
    # The shards that took the two fees are swept into the parent before the refunds come.
    fees = await parent(world, AccountKind.FEE_REVENUE, "sauti")
    await world.ledger.consolidate_shards(fees.id)
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    reversed_p2p = await world.payments.handle(Refund("rf-fee-p2p", paid.public_id, "wrong person"))
    returned = await world.payments.handle(Refund("rf-fee-wd", payout.public_id, "M-Pesa reversed it"))

    assert (reversed_p2p.status, returned.status) == (S.SUCCEEDED, S.SUCCEEDED)
    assert await world.wallet(payer) == Money.of(3000, KES) and await world.wallet(payee) == Money.zero(KES)
    assert fees_before - await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == Money.of(20, KES)
    await world.worker.drain()


async def test_a_payout_debited_before_fees_waited_in_clearing_settles_and_unwinds_as_it_was_debited(
        world: PaymentsWorld):
    """A payout in flight when fees moved to clearing: its debit credited fee revenue at once."""
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    accounts = world.payments.accounts
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")

    async def old_style_payout(key: str) -> str:
        async with world.engine.begin() as conn:
            payment = await store.insert_payment(conn, store.NewPayment(
                payer_user_id=user.id, idempotency_key=key, request_hash=key, kind=PaymentKind.WITHDRAW.value,
                channel="ussd", amount=Money.of(200, KES), fee=Money.of(2, KES), provider="mpesa",
                recipient_phone=user.phone), cause="test")
            assert payment is not None
            legs = (Leg(await accounts.wallet(conn, user.id, KES), -20_200, KES),
                    Leg(await accounts.clearing(conn, "mpesa", KES), 20_000, KES),
                    Leg(await accounts.fees(conn, KES), 200, KES))
            debit = await world.ledger.transfer(TransferRequest(f"debit:{payment.public_id}", legs,
                                                                kind="withdraw.debit"), conn=conn)
            await store.transition(conn, payment, S.PENDING, cause="debited_to_clearing",
                                   debit_transfer_id=debit.transfer_id)
            return payment.public_id

    settled, unwound = await old_style_payout("old-1"), await old_style_payout("old-2")
    await world.payments.resolver.apply(settled, Verdict(True, "test"))
    await world.payments.resolver.apply(unwound, Verdict(False, "test", "provider_declined", "declined"))

    assert (await world.payment(settled)).status is S.SUCCEEDED
    assert (await world.payment(unwound)).status is S.FAILED
    assert await world.wallet(user) == Money.of(1000 - 202, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(200, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(2, KES)


async def test_the_shard_count_is_a_setting_and_an_account_keeps_the_shards_it_has(world: PaymentsWorld):
    owner = f"hot-{uuid.uuid4().hex[:8]}"
    async with world.engine.connect() as conn:
        unsharded = await AccountBook(world.engine, fee_owner=owner, hot_account_shards=1).fees(conn, KES)
        assert (await get_account(conn, unsharded)).shards == ()
        four = await AccountBook(world.engine, fee_owner=owner, hot_account_shards=4).fees(conn, KES)
        assert four == unsharded and len((await get_account(conn, four)).shards) == 4
        # Another process configured otherwise: the account keeps its four shards, no error.
        assert await AccountBook(world.engine, fee_owner=owner, hot_account_shards=8).fees(conn, KES) == four
        assert len((await get_account(conn, four)).shards) == 4


# -- the ledger's routing of debits, on accounts of their own ----------------------------------------


async def test_debits_of_a_sharded_account_that_may_go_negative_spread_over_its_shards(engine):
    collection = await system_account(engine, AccountKind.PROVIDER_COLLECTION, owner=f"c-{uuid.uuid4().hex[:6]}")
    async with engine.begin() as conn:
        sharded = await shard_account(conn, collection, 4)
    wallets = [await new_wallet(engine) for _ in range(6)]
    for ledger in (Ledger(engine, LedgerLimits.from_major(999_999)),  # own connections: random shards
                   Ledger(engine, LedgerLimits.from_major(999_999), batcher=TransferBatcher(engine, max_batch=8))):
        results = await asyncio.gather(*(ledger.transfer(TransferRequest(
            f"in-{uuid.uuid4()}", (Leg(collection, -1000, KES), Leg(wallet, 1000, KES)))) for wallet in wallets))
        debited = {p.account_id for r in results for p in r.postings if p.amount < 0}
        assert debited <= set(sharded.shards)
    async with engine.connect() as conn:
        assert (await get_account(conn, collection)).balance == 0
        assert await balance(conn, collection) == Money(-12_000, KES)

    await Ledger(engine, LedgerLimits.from_major(999_999)).consolidate_shards(collection)
    async with engine.connect() as conn:
        assert (await get_account(conn, collection)).balance == -12_000
        assert await balance(conn, collection) == Money(-12_000, KES)


async def test_a_sharded_account_that_may_not_go_negative_is_debited_only_where_its_legs_say(engine):
    fees = await system_account(engine, AccountKind.FEE_REVENUE, owner=f"f-{uuid.uuid4().hex[:6]}")
    async with engine.begin() as conn:
        sharded = await shard_account(conn, fees, 2)
    ledger = Ledger(engine, LedgerLimits.from_major(999_999))
    payer, payee = await new_wallet(engine), await new_wallet(engine)
    funding = await system_account(engine, AccountKind.PROVIDER_COLLECTION, owner=f"c-{uuid.uuid4().hex[:6]}")
    await ledger.transfer(TransferRequest(f"fund-{uuid.uuid4()}", (Leg(funding, -500, KES), Leg(payer, 500, KES))))
    paid = await ledger.transfer(TransferRequest(f"fee-{uuid.uuid4()}", (
        Leg(payer, -500, KES), Leg(payee, 400, KES), Leg(fees, 100, KES))))
    (shard,) = [p.account_id for p in paid.postings if p.amount == 100]
    assert shard in sharded.shards

    # A debit of the parent is not moved to a shard (that shard might not hold it): the parent has nothing.
    with pytest.raises(pe.InsufficientFunds):
        await ledger.transfer(TransferRequest(f"back-{uuid.uuid4()}", (Leg(fees, -100, KES), Leg(payer, 100, KES))))
    # A leg naming the shard exactly takes it from there.
    await ledger.transfer(TransferRequest(f"back-{uuid.uuid4()}", (
        Leg(shard, -100, KES, exact=True), Leg(payer, 100, KES))))
    async with engine.connect() as conn:
        assert await balance(conn, fees) == Money.zero(KES)


class CountingBook(AccountBook):
    """An account book that counts the accounts it opens apart (`_prepare`)."""

    opened: int = 0

    async def _prepare(self, kind, currency, owner):
        self.opened += 1
        return await super()._prepare(kind, currency, owner)


async def test_own_accounts_are_opened_before_any_payment_so_a_burst_never_waits_for_a_connection(
        world: PaymentsWorld):
    owner = f"hot-{uuid.uuid4().hex[:8]}"
    providers = {KES: f"mpesa-{owner}", Currency.XOF: f"wave-{owner}"}
    # A pool of two, and more first payments at once than it holds: each holds a connection while
    # it asks for Sauti's accounts, so opening one then (a connection of its own) would wait forever.
    small = create_async_engine(world.engine.url, pool_size=2, max_overflow=0, pool_timeout=5)
    try:
        book = CountingBook(small, fee_owner=owner, hot_account_shards=4)
        await book.open_own(providers)
        opened = book.opened
        assert opened == 2 * 5  # fees, clearing, settlement, collection and suspense per currency

        async def first_payment() -> None:
            async with small.begin() as conn:
                for currency, provider in providers.items():
                    await book.fees(conn, currency)
                    await book.clearing(conn, provider, currency)
                    await book.settlement(conn, provider, currency)
                    await book.collection(conn, provider, currency)
                await asyncio.sleep(0.01)

        await asyncio.wait_for(asyncio.gather(*(first_payment() for _ in range(8))), timeout=20)
        assert book.opened == opened
        async with small.connect() as conn:
            wave = providers[Currency.XOF]
            for code, shards in ((account_code(AccountKind.FEE_REVENUE, KES, owner), 4),
                                 (account_code(AccountKind.PROVIDER_COLLECTION, Currency.XOF, wave), 4),
                                 (account_code(AccountKind.PROVIDER_CLEARING, KES, providers[KES]), 0)):
                assert len((await account_by_code(conn, code)).shards) == shards
    finally:
        await small.dispose()


async def test_a_burst_of_first_uses_opens_an_account_once(world: PaymentsWorld):
    book = CountingBook(world.engine, fee_owner=f"hot-{uuid.uuid4().hex[:8]}", hot_account_shards=4)

    async def first_use() -> int:
        async with world.engine.begin() as conn:
            return await book.fees(conn, KES)

    ids = await asyncio.gather(*(first_use() for _ in range(6)))
    assert len(set(ids)) == 1 and book.opened == 1
