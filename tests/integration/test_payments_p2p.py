"""Wallet to wallet payments through the orchestrator, on a real PostgreSQL: one transaction moves
amount and fee, records the payment and its events, and enqueues the SMS receipts; idempotency keys
replay or conflict; a wallet that cannot cover it fails the payment and moves nothing."""

from __future__ import annotations

import asyncio

import pytest

from payments import outbox
from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, SendToPhone, SendToWallet
from payments.errors import IdempotencyConflict, RecipientCurrencyMismatch
from payments.fees import LimitExceeded
from payments.money import Currency, Money
from payments.payment_settings import JOB_SMS
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world
from tests.statements import statements

KES, XOF = Currency.KES, Currency.XOF


world, ledger_stays_consistent = module_world()


async def test_p2p_moves_amount_and_fee_in_one_transfer_and_sends_both_receipts(world: PaymentsWorld):
    payer = await world.user(name="Amina")
    payee = await world.user(name="Baraka")
    await world.fund(payer, Money.of(1000, KES))
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    payment = await world.payments.handle(SendToWallet(
        "p2p-1", payer.id, Money.of(500, KES), Channel.USSD, recipient_user_id=payee.id))

    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.fee == Money.of(5, KES)  # basic plan: 1 %
    assert payment.debit_transfer_id == payment.settle_transfer_id is not None
    assert await world.wallet(payer) == Money.of(495, KES)
    assert await world.wallet(payee) == Money.of(500, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(5, KES)
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [(e.from_status, e.to_status) for e in events] == [
        (None, PaymentStatus.CREATED), (PaymentStatus.CREATED, PaymentStatus.SUCCEEDED)]
    # The receipts were enqueued in the payment's transaction; the worker sends them.
    assert await world.worker.drain() == 2
    sent = {m.to: m.message for m in world.sandboxes.africastalking.messages}
    assert "received KES 500 from Amina" in sent[payee.phone]
    assert "succeeded" in sent[payer.phone]


async def test_p2p_that_the_wallet_cannot_cover_fails_and_moves_nothing(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))

    payment = await world.payments.handle(SendToWallet(
        "p2p-broke", payer.id, Money.of(100, KES), Channel.VOICE, recipient_user_id=payee.id,
        transcript="tuma mia moja"))

    assert payment.status is PaymentStatus.FAILED  # 100 + 1 fee > 100
    assert payment.error_code == "insufficient_funds"
    assert "KES 100 available" in (payment.error_message or "")
    assert payment.debit_transfer_id is None
    assert (payment.channel, payment.transcript) == ("voice", "tuma mia moja")
    assert await world.wallet(payer) == Money.of(100, KES)
    assert await world.wallet(payee) == Money.zero(KES)
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE payload->>'payment' = :p",
                              p=payment.public_id) == 0
    # The contact and the receipts are written before the money: refused, it undoes them too.
    assert await world.scalar("SELECT count(*) FROM contacts WHERE user_id = :u", u=payer.id) == 0


async def test_the_transfer_comes_last_so_its_locks_are_held_for_the_fewest_round_trips(world: PaymentsWorld):
    """The transfer locks both wallets and a fee revenue shard, which every payment in the currency
    wants, until the commit: only the savepoint's release and the move to succeeded come after it."""
    payer, payee = await world.user(name="Amina"), await world.user(name="Baraka")
    await world.fund(payer, Money.of(1000, KES))
    with statements(world.engine) as seen:
        payment = await world.payments.handle(SendToPhone("p2p-last", payer.id, Money.of(100, KES), Channel.USSD,
                                                          recipient_phone=payee.phone))
    assert payment.status is PaymentStatus.SUCCEEDED
    ours = [sql for sql, _ in seen if "outbox_jobs" not in sql or "INSERT" in sql]
    after = ours[next(n for n, sql in enumerate(ours) if "ledger_apply" in sql) + 1:]
    assert [sql.split()[0] for sql in after] == ["RELEASE", "WITH"] and "UPDATE payments" in after[1], after
    assert any("INSERT INTO outbox_jobs" in sql for sql in ours[:len(ours) - len(after)])
    assert any("contacts" in sql for sql in ours[:len(ours) - len(after)])


async def test_same_key_same_request_is_the_same_payment_and_another_request_conflicts(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    send = SendToWallet("p2p-twice", payer.id, Money.of(200, KES), Channel.USSD, recipient_user_id=payee.id)

    first = await world.payments.handle(send)
    # The same request again, by phone number and from another channel: the same payment.
    again = await world.payments.handle(SendToWallet(
        "p2p-twice", payer.id, Money.of(200, KES), Channel.APP, recipient_phone=payee.phone))
    assert again.public_id == first.public_id
    assert await world.wallet(payee) == Money.of(200, KES)

    with pytest.raises(IdempotencyConflict):
        await world.payments.handle(SendToWallet(
            "p2p-twice", payer.id, Money.of(300, KES), Channel.USSD, recipient_user_id=payee.id))
    assert await world.wallet(payer) == Money.of(798, KES)


async def test_sending_to_a_phone_with_a_wallet_stays_inside_sauti(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user(name="Chebet")
    await world.fund(payer, Money.of(1000, KES))

    quote = await world.payments.quote(payer.id, Money.of(300, KES), recipient_phone=payee.phone)
    assert (quote.recipient_name, quote.fee, quote.total) == ("Chebet", Money.of(3, KES), Money.of(303, KES))

    payment = await world.payments.handle(SendToPhone(
        "to-phone", payer.id, Money.of(300, KES), Channel.USSD, recipient_phone=payee.phone))
    assert payment.status is PaymentStatus.SUCCEEDED
    assert payment.provider is None and payment.recipient_user_id == payee.id
    assert await world.wallet(payee) == Money.of(300, KES)
    await world.worker.drain()


async def test_one_key_sent_concurrently_makes_one_payment(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    send = SendToWallet("p2p-race", payer.id, Money.of(100, KES), Channel.USSD, recipient_user_id=payee.id)

    results = await asyncio.gather(*(world.payments.handle(send) for _ in range(10)))

    assert len({p.public_id for p in results}) == 1
    assert all(p.status is PaymentStatus.SUCCEEDED for p in results)
    assert await world.wallet(payee) == Money.of(100, KES)
    assert await world.wallet(payer) == Money.of(899, KES)
    await world.worker.drain()


async def test_a_receipt_naming_no_payment_is_parked_not_retried(world: PaymentsWorld):
    async with world.engine.begin() as conn:
        job_id = await outbox.enqueue(conn, JOB_SMS, {"payment": "pay_nosuchpayment", "to": "payer"},
                                      dedupe_key="sms:pay_nosuchpayment")
    await world.worker.drain()
    job = await outbox.get_job(world.engine, job_id)
    assert job is not None and job.status == "parked" and job.attempts == 1
    assert "names no known payment" in (job.last_error or "")


async def test_concurrent_payments_of_one_payer_keep_to_the_daily_limit(world: PaymentsWorld):
    """Each payment reads the day's total before it adds to it: concurrent ones of one payer take
    turns (the payer's row is locked first), so together they cannot pass the daily limit."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(300_000, KES))
    sends = [SendToWallet(f"burst-{n}", payer.id, Money.of(30_000, KES), Channel.API, recipient_user_id=payee.id)
             for n in range(6)]

    outcomes = await asyncio.gather(*(world.payments.handle(cmd) for cmd in sends), return_exceptions=True)

    paid = [o for o in outcomes if not isinstance(o, BaseException) and o.status is PaymentStatus.SUCCEEDED]
    refused = [o for o in outcomes if isinstance(o, LimitExceeded)]
    assert (len(paid), len(refused)) == (2, 4), outcomes  # 60,000 of the 70,000 a day; 90,000 is past it
    assert await world.wallet(payee) == Money.of(60_000, KES)


async def test_a_replay_is_answered_even_when_its_amount_would_now_pass_the_daily_limit(world: PaymentsWorld):
    """The key and the day's totals are read together; a known key answers with its payment before
    any limit is checked, a new one is priced against what was sent today."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100_000, KES))
    first = SendToWallet("p2p-daily", payer.id, Money.of(60_000, KES), Channel.USSD, recipient_user_id=payee.id)
    paid = await world.payments.handle(first)
    assert paid.status is PaymentStatus.SUCCEEDED
    assert (await world.payments.handle(first)).public_id == paid.public_id  # 120,000 today were it new
    with pytest.raises(LimitExceeded, match="daily limit"):
        await world.payments.handle(SendToWallet("p2p-daily-2", payer.id, Money.of(20_000, KES), Channel.USSD,
                                                 recipient_user_id=payee.id))
    assert await world.wallet(payee) == Money.of(60_000, KES)


async def test_a_wallet_payment_in_a_currency_the_recipient_s_wallet_does_not_hold_is_refused(world: PaymentsWorld):
    """A wallet holds its number's currency: KES to a Senegalese user (or XOF to a Kenyan) would open
    a wallet its owner's menus never show. Refused, by the quote and by every wallet command, with
    nothing recorded and no wallet opened."""
    kenyan, senegalese = await world.user(name="Amina"), await world.user(XOF, name="Awa")
    await world.fund(kenyan, Money.of(1000, KES))
    await world.fund(senegalese, Money.of(10_000, XOF))

    with pytest.raises(RecipientCurrencyMismatch, match="holds XOF: it cannot receive KES"):
        await world.payments.quote(kenyan.id, Money.of(500, KES), recipient_phone=senegalese.phone)
    with pytest.raises(RecipientCurrencyMismatch):
        await world.payments.quote(kenyan.id, Money.of(500, KES), recipient_user_id=senegalese.id)
    refused = [SendToWallet("kes-to-sn", kenyan.id, Money.of(500, KES), Channel.API, recipient_user_id=senegalese.id),
               SendToWallet("kes-to-sn-phone", kenyan.id, Money.of(500, KES), Channel.VOICE,
                            recipient_phone=senegalese.phone),
               SendToPhone("kes-to-sn-send", kenyan.id, Money.of(500, KES), Channel.USSD,
                           recipient_phone=senegalese.phone),
               SendToWallet("xof-to-ke", senegalese.id, Money.of(500, XOF), Channel.USSD, recipient_user_id=kenyan.id)]
    for command in refused:
        with pytest.raises(RecipientCurrencyMismatch) as caught:
            await world.payments.handle(command)
        assert caught.value.code == "recipient_currency_mismatch"

    assert await world.wallet(kenyan) == Money.of(1000, KES)
    assert await world.wallet(senegalese, XOF) == Money.of(10_000, XOF)
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id IN (:a, :b)",
                              a=kenyan.id, b=senegalese.id) == 0
    # No wallet in the other currency was opened for either.
    assert await world.scalar("SELECT count(*) FROM accounts WHERE owner_user_id IN (:a, :b)",
                              a=kenyan.id, b=senegalese.id) == 2
