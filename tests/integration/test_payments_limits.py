"""Limits as the payer lives them, and the ledger's bound beside them, through the orchestrator on a
real PostgreSQL and the provider sandboxes.

- "Today" (the daily limit) and "this month" (the fee plan's allowance, the plan screen's count)
  are the payer's calendar, by their number's country: a Kenyan's day begins at 21:00 UTC.
- A payment the quote accepts at the per-payment maximum is not refused after the PIN by the
  ledger's bound on one leg (a payout's amount + fee into clearing), and whatever was paid can be
  given back (a failed payout unwound, a returned payout credited, a wallet payment refunded: the
  payer credited amount + fee in one leg).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, PaymentKind, Refund, SendToPhone, SendToWallet, Withdraw
from payments.fees import LimitExceeded
from payments.identities import User
from payments.local_time import day_and_month_start
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus

world, ledger_stays_consistent = module_world()


async def _sent_at(world: PaymentsWorld, payer: User, payee: User, key: str, amount: Money, at: datetime) -> Payment:
    """A wallet payment, as if made at ``at``."""
    paid = await world.payments.handle(SendToWallet(key, payer.id, amount, Channel.USSD, recipient_user_id=payee.id))
    assert paid.status is S.SUCCEEDED
    await _write(world, "UPDATE payments SET created_at = :t WHERE id = :i", t=at, i=paid.id)
    return paid


async def _tier(world: PaymentsWorld, user: User, tier: int) -> None:
    await _write(world, "UPDATE users SET kyc_tier = :t WHERE id = :u", t=tier, u=user.id)


async def _fund(world: PaymentsWorld, user: User, amount: Money) -> None:
    """Deposits of at most the per-payment maximum each, as a customer would make them."""
    most = Money.of(999_999, amount.currency)
    while amount.minor > 0:
        part = most if amount > most else amount
        await world.fund(user, part)
        amount -= part


async def _write(world: PaymentsWorld, statement: str, **params: object) -> None:
    async with world.engine.begin() as conn:
        await conn.execute(text(statement), params)


# -- the payer's day and month -------------------------------------------------------------------


async def test_the_daily_limit_counts_the_payers_local_day(world: PaymentsWorld):
    """Tier 0 in Kenya: 70,000 a day. 70,000 sent a minute after midnight in Nairobi fills today;
    70,000 sent a minute before it was yesterday's. (Whatever the hour of the run, one of the two
    falls on the other side of UTC's midnight: a count by UTC day gets one of them wrong.)"""
    today_payer, yesterday_payer, payee = await world.user(), await world.user(), await world.user()
    await world.fund(today_payer, Money.of(150_000, KES))
    await world.fund(yesterday_payer, Money.of(150_000, KES))
    local_midnight, _ = day_and_month_start(today_payer.phone)
    assert local_midnight.utcoffset() == timedelta(hours=3)
    await _sent_at(world, today_payer, payee, "day-today-1", Money.of(70_000, KES),
                   local_midnight + timedelta(minutes=1))
    await _sent_at(world, yesterday_payer, payee, "day-yesterday-1", Money.of(70_000, KES),
                   local_midnight - timedelta(minutes=1))

    with pytest.raises(LimitExceeded, match="daily limit"):
        await world.payments.handle(SendToWallet("day-today-2", today_payer.id, Money.of(1, KES), Channel.USSD,
                                                 recipient_user_id=payee.id))
    with pytest.raises(LimitExceeded, match="daily limit"):
        await world.payments.quote(today_payer.id, Money.of(1, KES), kind=PaymentKind.P2P)
    again = await world.payments.handle(SendToWallet("day-yesterday-2", yesterday_payer.id, Money.of(70_000, KES),
                                                     Channel.USSD, recipient_user_id=payee.id))
    assert again.status is S.SUCCEEDED


async def test_the_plan_screen_counts_the_payers_local_month(world: PaymentsWorld):
    """"Payments used this month" (and the allowance behind it) begins at the payer's local midnight
    on the 1st: a payment a minute after it is this month's, one a minute before is last month's."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    _, month_start = day_and_month_start(payer.phone)
    await _sent_at(world, payer, payee, "month-in", Money.of(10, KES), month_start + timedelta(minutes=1))
    await _sent_at(world, payer, payee, "month-out", Money.of(10, KES), month_start - timedelta(minutes=1))

    _, counted = await world.payments.fee_plan(payer.id, KES)

    assert counted == 1


async def test_today_and_this_month_are_each_payers_own(world: PaymentsWorld):
    """At 21:30 UTC on 9 March it is already 10 March in Nairobi, still 9 March in Dakar (UTC): the
    same instants count differently for a Kenyan and a Senegalese payer."""
    now = datetime(2026, 3, 9, 21, 30, tzinfo=UTC)
    instants = {  # amount: when
        100: datetime(2026, 3, 9, 20, 50, tzinfo=UTC),   # 23:50 on 9 March in Nairobi
        200: datetime(2026, 3, 9, 21, 10, tzinfo=UTC),   # 00:10 on 10 March in Nairobi
        400: datetime(2026, 2, 28, 21, 30, tzinfo=UTC),  # 00:30 on 1 March in Nairobi; February in Dakar
        800: datetime(2026, 2, 28, 20, 30, tzinfo=UTC),  # 23:30 on 28 February in Nairobi
    }
    totals = {}
    for currency in (KES, XOF):
        payer, payee = await world.user(currency), await world.user(currency)
        await world.fund(payer, Money.of(10_000, currency))
        for amount, at in instants.items():
            await _sent_at(world, payer, payee, f"cal-{currency.value}-{amount}", Money.of(amount, currency), at)
        async with world.engine.connect() as conn:
            totals[currency] = await store.outgoing_totals(conn, payer.id, currency, payer_phone=payer.phone, now=now)

    assert totals[KES] == (Money.of(200, KES), 3)  # today: 10 March; this month: March, from 1 March 00:00
    assert totals[XOF] == (Money.of(300, XOF), 2)  # today: 9 March; this month: March


# -- the per-payment maximum and the ledger's bound ------------------------------------------------


async def test_a_payout_of_the_largest_amount_is_quoted_and_paid_fee_included(world: PaymentsWorld):
    """XOF 999,999 (the per-payment maximum) costs 1,009,999 with the basic plan's 1 %: the quote says
    so, and the payout's debit (amount + fee into clearing, one leg) is not refused after the PIN."""
    payer = await world.user(XOF)
    await _tier(world, payer, 2)
    await _fund(world, payer, Money.of(1_010_000, XOF))
    quoted = await world.payments.quote(payer.id, Money.of(999_999, XOF), kind=PaymentKind.WITHDRAW)
    assert quoted.total == Money.of(1_009_999, XOF)

    payment = await world.payments.handle(Withdraw("max-wd", payer.id, Money.of(999_999, XOF), Channel.USSD))
    assert payment.status is S.PENDING and payment.fee == quoted.fee
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(payer, XOF) == Money.of(1, XOF)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, XOF, "wave") == Money.zero(XOF)


async def test_a_failed_payout_of_the_largest_amount_gives_back_amount_and_fee(world: PaymentsWorld):
    payer = await world.user(XOF)
    await _tier(world, payer, 2)
    await _fund(world, payer, Money.of(1_010_000, XOF))

    payment = await world.payments.handle(SendToPhone("max-limit", payer.id, Money.of(999_999, XOF), Channel.USSD,
                                                      recipient_phone="+221775550002"))  # Wave refuses it
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED and done.error_code == "recipient-limit-exceeded"
    assert await world.wallet(payer, XOF) == Money.of(1_010_000, XOF)


async def test_a_payout_of_the_largest_amount_that_came_back_is_credited_fee_included(world: PaymentsWorld):
    payer = await world.user(XOF)
    await _tier(world, payer, 2)
    await _fund(world, payer, Money.of(1_010_000, XOF))
    payout = await world.settle((await world.payments.handle(SendToPhone(
        "max-out", payer.id, Money.of(999_999, XOF), Channel.USSD, recipient_phone="+221775551234"))).public_id)
    assert payout.status is S.SUCCEEDED

    refund = await world.payments.handle(Refund("max-out-back", payout.public_id, "wrong number"))
    done = await world.settle(refund.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(payer, XOF) == Money.of(1_010_000, XOF)
    assert (await world.payment(payout.public_id)).status is S.REVERSED


async def test_a_wallet_payment_of_the_largest_amount_can_be_refunded(world: PaymentsWorld):
    """The payee gives 999,999 back, fee revenue the 10,000 fee, and the payer is credited 1,009,999
    in one leg: refused by the ledger before, so a payment that went through could not be undone."""
    payer, payee = await world.user(), await world.user()
    await _tier(world, payer, 2)
    await _fund(world, payer, Money.of(1_010_000, KES))
    paid = await world.payments.handle(SendToWallet("max-p2p", payer.id, Money.of(999_999, KES), Channel.USSD,
                                                    recipient_user_id=payee.id))
    assert paid.status is S.SUCCEEDED and paid.fee == Money.of(10_000, KES)

    refund = await world.payments.handle(Refund("max-p2p-back", paid.public_id, "wrong number"))

    assert refund.status is S.SUCCEEDED
    assert await world.wallet(payer) == Money.of(1_010_000, KES)
    assert await world.wallet(payee) == Money.zero(KES)
