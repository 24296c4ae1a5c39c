"""Bill payments (paybill + account number), till purchases (Buy Goods) and pochi payments end to end:
the command debits amount + fee into M-Pesa clearing and enqueues the job; the worker sends a Daraja
B2B (or, for a pochi, a B2C) to the sandbox over HTTP; the sandbox's Result reaches our receiver and
settles clearing to the provider, or gives the payer everything back. B2B has no idempotency id at
Daraja, so a request that may have reached M-Pesa is never sent twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import BuyGoods, Channel, PayBill, PayPochi
from payments.errors import AmountOutOfRange, IdempotencyConflict, InvalidRequest
from payments.money import Currency, Money
from payments.provider_jobs import B2B_IN_FLIGHT
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    # Daraja picks a B2B's ids, so its Result is matched by the ConversationID of the answer we
    # record: Results come a little after that answer, as on Daraja (one that beats it is recovered
    # by status query, tested in test_payments_recovery_mpesa).
    async with payments_world(await new_database(), sandbox={"callback_delay_s": 0.25}) as running:
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


def sandbox_entries(world: PaymentsWorld, party: str) -> list:
    return [e for e in world.sandboxes.daraja.books.entries() if e.party == party]


async def test_a_bill_is_paid_by_b2b_with_its_account_number_end_to_end(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    payment = await world.payments.handle(PayBill("bill-1", user.id, Money.of(300, KES), Channel.VOICE,
                                                  paybill="888880", account_number="ACC12345",
                                                  transcript="pay 300 to paybill 888880 account ACC12345"))

    # Committed together: the row with the merchant's numbers, the debit into clearing, the B2B job.
    assert payment.status is S.PENDING and payment.kind == "pay_bill" and payment.provider == "mpesa"
    assert (payment.paybill, payment.account_number, payment.till) == ("888880", "ACC12345", None)
    assert payment.fee == Money.of(3, KES)
    assert await world.wallet(user) == Money.of(697, KES)
    # The fee waits in clearing with the amount: it is earned only once M-Pesa paid.
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") - clearing_before == Money.of(303, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == fees_before
    assert await world.scalar("SELECT kind FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"mpesa.b2b:{payment.public_id}") == "mpesa.b2b"

    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_ref and done.provider_ref.startswith("AG_")
    assert done.provider_refs["receipt"] and done.provider_refs["originator_conversation_id"]
    assert await world.wallet(user) == Money.of(697, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(300, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(3, KES)
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [(e.to_status, e.cause) for e in events] == [
        (S.CREATED, "command:voice"), (S.PENDING, "debited_to_clearing"), (S.PROCESSING, "b2b_accepted"),
        (S.SUCCEEDED, "b2b_result")]
    assert ("b2b/result", "settled") in world.callbacks.outcomes
    # M-Pesa paid that paybill, that account reference, once.
    [paid] = [e for e in sandbox_entries(world, "888880") if e.transaction_id == done.provider_refs["receipt"]]
    assert (paid.kind, paid.amount_minor, paid.client_reference) == ("b2b", -30_000, "ACC12345")
    await world.worker.drain()


async def test_goods_are_bought_at_a_till(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(500, KES))

    payment = await world.payments.handle(BuyGoods("till-1", user.id, Money.of(120, KES), Channel.USSD,
                                                   till="5123456"))
    assert payment.kind == "buy_goods_till" and payment.till == "5123456" and payment.paybill is None
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(500 - 120 - 2, KES)  # 1 % fee, rounded up to a shilling
    [paid] = [e for e in sandbox_entries(world, "5123456") if e.transaction_id == done.provider_refs["receipt"]]
    assert paid.amount_minor == -12_000
    # The till's statement line carries the tail of our id (a till has no account number).
    assert paid.client_reference == payment.public_id[-12:]


async def test_a_pochi_is_paid_by_b2c_even_when_the_number_has_a_sauti_wallet(world: PaymentsWorld):
    user = await world.user()
    merchant = await world.user(name="Mama Mboga")  # has a Sauti wallet, yet a pochi is paid on M-Pesa
    await world.fund(user, Money.of(500, KES))

    payment = await world.payments.handle(PayPochi("pochi-1", user.id, Money.of(200, KES), Channel.USSD,
                                                   phone="0" + merchant.phone[4:]))
    assert payment.kind == "buy_goods_pochi" and payment.recipient_phone == merchant.phone
    assert payment.recipient_user_id is None and payment.status is S.PENDING
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.wallet(merchant) == Money.zero(KES)
    assert await world.wallet(user) == Money.of(298, KES)
    paid = [e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]
    assert [(e.kind, e.party) for e in paid] == [("b2c", merchant.phone.removeprefix("+"))]


async def test_merchant_payments_refuse_what_m_pesa_cannot_pay(world: PaymentsWorld):
    kes_user, xof_user = await world.user(), await world.user(XOF)
    await world.fund(xof_user, Money.of(10_000, XOF))
    await world.fund(kes_user, Money.of(10_000, KES))

    with pytest.raises(InvalidRequest, match="KES, not XOF"):
        await world.payments.handle(PayBill("xof-bill", xof_user.id, Money.of(1000, XOF), Channel.USSD,
                                            paybill="888880", account_number="1"))
    with pytest.raises(InvalidRequest, match="KES, not XOF"):
        await world.payments.handle(BuyGoods("xof-till", xof_user.id, Money.of(1000, XOF), Channel.USSD,
                                             till="5123456"))
    with pytest.raises(InvalidRequest, match="cents"):
        await world.payments.handle(PayBill("cents", kes_user.id, Money.of("10.50", KES), Channel.USSD,
                                            paybill="888880", account_number="1"))
    with pytest.raises(AmountOutOfRange):
        await world.payments.handle(PayBill("absurd", kes_user.id, Money.of(5_000_000, KES), Channel.USSD,
                                            paybill="888880", account_number="1"))
    for bad in ({"paybill": "12", "account_number": "1"}, {"paybill": "88888a", "account_number": "1"},
                {"paybill": "888880", "account_number": ""}, {"paybill": "888880", "account_number": "X" * 14},
                # Letters and digits only, as M-Pesa takes them.
                {"paybill": "888880", "account_number": "€" * 13}, {"paybill": "888880", "account_number": "[" * 13},
                {"paybill": "888880", "account_number": "ACC-1"}, {"paybill": "888880", "account_number": "A 1"}):
        with pytest.raises(InvalidRequest):
            PayBill("bad", kes_user.id, Money.of(10, KES), Channel.USSD, **bad)
    with pytest.raises(InvalidRequest):
        BuyGoods("bad", kes_user.id, Money.of(10, KES), Channel.USSD, till="12345678")
    with pytest.raises(InvalidRequest):
        await world.payments.handle(PayPochi("pochi-sn", kes_user.id, Money.of(10, KES), Channel.USSD,
                                             phone="+221771234567"))
    # Nothing was recorded, nothing moved.
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id IN (:a, :b)",
                              a=kes_user.id, b=xof_user.id) == 0
    assert await world.wallet(kes_user) == Money.of(10_000, KES)


async def test_the_same_key_is_the_same_bill_payment_and_another_bill_is_a_conflict(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    first = await world.payments.handle(PayBill("bill-key", user.id, Money.of(100, KES), Channel.USSD,
                                                paybill="888880", account_number="A1"))
    again = await world.payments.handle(PayBill("bill-key", user.id, Money.of(100, KES), Channel.VOICE,
                                                paybill="888880", account_number="A1"))
    assert again.public_id == first.public_id
    with pytest.raises(IdempotencyConflict):
        await world.payments.handle(PayBill("bill-key", user.id, Money.of(100, KES), Channel.USSD,
                                            paybill="888880", account_number="A2"))
    await world.settle(first.public_id)
    assert await world.wallet(user) == Money.of(899, KES)


async def test_a_bill_payment_m_pesa_declines_gives_back_amount_and_fee(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")

    # Paybills ending 001: ResultCode 1 (our utility account "cannot cover it"); 201: initiator refused.
    broke = await world.payments.handle(PayBill("bill-broke", user.id, Money.of(400, KES), Channel.USSD,
                                                paybill="888001", account_number="X"))
    refused = await world.payments.handle(BuyGoods("till-pin", user.id, Money.of(100, KES), Channel.USSD,
                                                   till="555201"))
    assert await world.wallet(user) == Money.of(1000 - 404 - 101, KES)
    broke, refused = await world.settle(broke.public_id), await world.settle(refused.public_id)

    assert (broke.status, broke.error_code) == (S.FAILED, "insufficient_funds")
    assert (refused.status, refused.error_code) == (S.FAILED, "wrong_pin")
    assert broke.error_message and refused.error_message
    assert await world.wallet(user) == Money.of(1000, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == fees_before
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert ("b2b/result", "unwound") in world.callbacks.outcomes
    assert sandbox_entries(world, "888001") == [] and sandbox_entries(world, "555201") == []


async def test_a_b2b_result_delivered_twice_settles_once(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    before = len(world.callbacks.outcomes)

    payment = await world.payments.handle(PayBill("bill-dup", user.id, Money.of(100, KES), Channel.USSD,
                                                  paybill="888902", account_number="D"))
    done = await world.settle(payment.public_id)
    await world.until_callback("b2b/result", "duplicate", after=before)

    assert done.status is S.SUCCEEDED
    assert sorted(o for w, o in world.callbacks.outcomes[before:] if w == "b2b/result") == ["duplicate", "settled"]
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(100, KES)
    assert await world.scalar("SELECT count(*) FROM provider_events WHERE event_key = :k AND kind = 'b2b_result'",
                              k=done.provider_ref) == 1
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 2


async def test_a_late_contrary_b2b_result_changes_nothing(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(BuyGoods("till-late", user.id, Money.of(100, KES), Channel.USSD,
                                                   till="5123456"))
    done = await world.settle(payment.public_id)
    before = len(world.callbacks.outcomes)

    # A failure Result for the same ConversationID, POSTed to our receiver afterwards (forged or late).
    late = {"Result": {"ResultType": 0, "ResultCode": 2001, "ResultDesc": "The initiator information is invalid.",
                       "OriginatorConversationID": done.provider_refs["originator_conversation_id"],
                       "ConversationID": done.provider_ref}}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/b2b/result", json=late) as resp:
        assert resp.status == 200
    # One for a ConversationID we never had.
    stray = {"Result": {**late["Result"], "ConversationID": "AG_20990101_nothing", "ResultCode": 0}}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/b2b/result", json=stray) as resp:
        assert resp.status == 200

    assert [o for w, o in world.callbacks.outcomes[before:]] == ["duplicate", "unknown"]
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(899, KES)


async def test_a_b2b_request_refused_in_transit_is_retried_and_pays_once(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    # The next request for this paybill gets HTTP 500: Daraja answered, so nothing was queued there.
    world.sandboxes.daraja.outcomes.set_next(Outcome.HTTP_500, msisdn="888770")

    payment = await world.payments.handle(PayBill("bill-retry", user.id, Money.of(200, KES), Channel.USSD,
                                                  paybill="888770", account_number="R"))
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_refs[B2B_IN_FLIGHT] is True  # marked before each send that reached M-Pesa
    assert await world.scalar("SELECT retry_count FROM payments WHERE public_id = :p", p=payment.public_id) == 1
    assert len(sandbox_entries(world, "888770")) == 1


async def test_a_b2b_that_m_pesa_never_takes_is_unwound_once_its_job_gives_up(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))

    # Paybill ending 500: every request gets HTTP 500; the job retries with backoff and is parked.
    payment = await world.payments.handle(PayBill("bill-500", user.id, Money.of(300, KES), Channel.USSD,
                                                  paybill="888500", account_number="Z"))
    for _ in range(200):
        await world.worker.drain()
        if await world.scalar("SELECT status FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"mpesa.b2b:{payment.public_id}") == "parked":
            break
        await asyncio.sleep(0.05)
    assert (await world.payment(payment.public_id)).status is S.PENDING

    report = await world.payments.recover_stuck(timedelta(0))

    assert report.resolved >= 1
    done = await world.payment(payment.public_id)
    assert (done.status, done.error_code) == (S.FAILED, "provider_unavailable")
    assert await world.wallet(user) == Money.of(1000, KES)
    assert sandbox_entries(world, "888500") == []
    await world.worker.drain()


async def test_a_b2b_whose_earlier_attempt_may_have_reached_m_pesa_is_never_resent(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(PayBill("bill-crash", user.id, Money.of(100, KES), Channel.USSD,
                                                  paybill="888660", account_number="C"))
    # A worker marked the request in flight, then died before recording Daraja's answer.
    async with world.engine.begin() as conn:
        locked = await store.get_payment(conn, payment.public_id, lock=True)
        await store.note(conn, locked, {B2B_IN_FLIGHT: True})

    await world.worker.drain()

    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PENDING and "not resent" in flagged.provider_refs["needs_review"]
    assert await world.scalar("SELECT status FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"mpesa.b2b:{payment.public_id}") == "parked"
    assert sandbox_entries(world, "888660") == []
    assert await world.wallet(user) == Money.of(899, KES)  # in clearing until a person decides
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.needs_review >= 1
    assert (await world.payment(payment.public_id)).status is S.PENDING


async def test_a_b2b_queue_timeout_is_flagged_and_keeps_the_money_in_clearing(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    before = len(world.callbacks.outcomes)

    world.sandboxes.daraja.outcomes.set_next(Outcome.QUEUE_TIMEOUT, msisdn="888606")
    payment = await world.payments.handle(PayBill("bill-queue", user.id, Money.of(100, KES), Channel.USSD,
                                                  paybill="888606", account_number="Q"))
    await world.until_callback("b2b/timeout", "needs_review", after=before)

    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PROCESSING
    assert "queue timeout" in flagged.provider_refs["needs_review"]
    assert await world.wallet(user) == Money.of(899, KES)
    assert sandbox_entries(world, "888606") == []
