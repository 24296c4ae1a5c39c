"""Payouts end to end: the command debits the wallet into provider clearing and enqueues the
provider job; the worker sends it to the sandbox over HTTP; the sandbox's result (a Daraja B2C
callback to our receiver, or Wave's answer) settles clearing to the provider, or gives the payer back
amount and fee. Duplicate results move nothing twice."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import aiohttp

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, SendToPhone, Withdraw
from payments.money import Currency, Money
from payments.providers.daraja_callbacks import DarajaResult, parse_result
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


world, ledger_stays_consistent = module_world()


async def test_withdraw_by_b2c_settles_clearing_to_the_provider_end_to_end(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    payment = await world.payments.handle(Withdraw("wd-1", user.id, Money.of(300, KES), Channel.USSD))

    # Committed together: the debit of amount and fee into clearing, the pending state and the B2C job.
    assert payment.status is S.PENDING and payment.provider == "mpesa"
    assert await world.wallet(user) == Money.of(697, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") - clearing_before == Money.of(303, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == fees_before  # not earned yet
    assert await world.scalar("SELECT kind FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"mpesa.b2c:{payment.public_id}") == "mpesa.b2c"

    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_ref and done.provider_ref.startswith("AG_")
    assert done.provider_refs["receipt"]
    assert await world.wallet(user) == Money.of(697, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(300, KES)
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(3, KES)
    # Settled in one transfer: amount to settlement, fee to fee revenue, both out of clearing.
    assert await world.scalar("SELECT count(*) FROM postings WHERE transfer_id = :t",
                              t=done.settle_transfer_id) == 3
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [e.to_status for e in events] == [S.CREATED, S.PENDING, S.PROCESSING, S.SUCCEEDED]
    assert [e.cause for e in events][-1] == "b2c_result"
    assert ("b2c_result", "settled") in world.callbacks.outcomes
    # The sandbox paid the number we asked it to, once.
    paid = [e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]
    assert len(paid) == 1


async def test_b2c_that_fails_gives_the_payer_back_amount_and_fee(world: PaymentsWorld):
    user = await world.user(suffix="001")  # the sandbox answers ResultCode 1 for this number
    await world.fund(user, Money.of(1000, KES))
    clearing_before = await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")
    fees_before = await world.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    payment = await world.payments.handle(Withdraw("wd-broke", user.id, Money.of(400, KES), Channel.APP))
    assert await world.wallet(user) == Money.of(596, KES)
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED
    assert done.error_code == "insufficient_funds"
    assert done.error_message
    assert await world.wallet(user) == Money.of(1000, KES)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await world.balance(AccountKind.FEE_REVENUE, KES, "sauti") == fees_before
    assert done.settle_transfer_id is not None  # the unwind transfer
    assert ("b2c_result", "unwound") in world.callbacks.outcomes


async def test_a_b2c_result_delivered_twice_settles_once(world: PaymentsWorld):
    user = await world.user(suffix="902")  # the sandbox POSTs the result twice
    await world.fund(user, Money.of(1000, KES))
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    outcomes_before = len(world.callbacks.outcomes)

    payment = await world.payments.handle(Withdraw("wd-dup", user.id, Money.of(100, KES), Channel.USSD))
    await world.settle(payment.public_id)
    for _ in range(100):  # the second delivery follows the first
        if len(world.callbacks.outcomes) - outcomes_before >= 2:
            break
        await world.worker.drain()
        await asyncio.sleep(0.02)

    assert sorted(o for _, o in world.callbacks.outcomes[outcomes_before:]) == ["duplicate", "settled"]
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(100, KES)
    assert await world.scalar("SELECT count(*) FROM provider_events WHERE event_key = :k",
                              k=payment.public_id) == 1
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :k", k=payment.public_id) == 2


def b2c_result(public_id: str, amount: int | None = None) -> DarajaResult:
    """A successful B2C Result naming ``public_id``, as Daraja would POST it (with the amount paid)."""
    parameters = [{"Key": "TransactionReceipt", "Value": "RKT000X1"}]
    if amount is not None:
        parameters.append({"Key": "TransactionAmount", "Value": amount})
    return parse_result(json.dumps({"Result": {
        "ResultType": 0, "ResultCode": 0, "ResultDesc": "ok", "OriginatorConversationID": public_id,
        "ConversationID": "AG_20261201_test", "TransactionID": "RKT000X1",
        "ResultParameters": {"ResultParameter": parameters}}}))


async def test_a_b2c_result_settles_only_an_mpesa_b2c_payout_of_its_amount(world: PaymentsWorld):
    """Our public id names any payment: a B2C Result naming a deposit credits nothing (a deposit is
    credited on an STK callback confirmed by a query), and one for another amount is flagged."""
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    deposit = await world.payments.handle(Deposit("dep-b2c", user.id, Money.of(5000, KES), Channel.USSD))
    assert await world.payments.on_b2c_result(b2c_result(deposit.public_id, 5000)) == "unknown"
    assert (await world.payment(deposit.public_id)).status is not S.SUCCEEDED
    assert await world.wallet(user) == Money.of(1000, KES)

    payout = await world.payments.handle(Withdraw("wd-b2c-amount", user.id, Money.of(100, KES), Channel.USSD))
    assert await world.payments.on_b2c_result(b2c_result(payout.public_id, 900)) == "amount_mismatch"
    flagged = await world.payment(payout.public_id)
    assert flagged.status is not S.SUCCEEDED and flagged.provider_refs.get("needs_review"), flagged
    assert await world.payments.on_b2c_result(b2c_result(payout.public_id, 100)) == "settled"


async def test_send_to_a_senegalese_number_without_a_wallet_is_a_wave_payout(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(20_000, XOF))

    payment = await world.payments.handle(SendToPhone(
        "wave-1", user.id, Money.of(5000, XOF), Channel.VOICE, recipient_phone="+221 77 555 12 34",
        transcript="envoie cinq mille francs"))
    assert payment.status is S.PENDING and payment.provider == "wave"
    assert payment.fee == Money.of(50, XOF)

    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_ref is not None
    assert await world.wallet(user, XOF) == Money.of(14_950, XOF)
    assert await world.balance(AccountKind.PROVIDER_CLEARING, XOF, "wave") == Money.zero(XOF)
    payout = await world.payments.providers.wave.get_payout(done.provider_ref)
    assert payout.client_reference == payment.public_id and payout.receive_amount == Money.of(5000, XOF)


async def test_a_wave_payout_the_recipient_cannot_take_is_unwound(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(10_000, XOF))

    payment = await world.payments.handle(SendToPhone(
        "wave-limit", user.id, Money.of(3000, XOF), Channel.USSD, recipient_phone="+221775550002"))
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED
    assert done.error_code == "recipient-limit-exceeded"
    assert await world.wallet(user, XOF) == Money.of(10_000, XOF)


async def test_a_lost_wave_answer_is_recovered_with_the_same_idempotency_key(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(10_000, XOF))

    # Suffix 500: Wave makes the payout, then the answer is lost (HTTP 500). The job fails; recovery
    # finds the payout by our reference and settles it; the retried job then has nothing to do.
    payment = await world.payments.handle(SendToPhone(
        "wave-lost", user.id, Money.of(1000, XOF), Channel.USSD, recipient_phone="+221775550500"))
    await world.worker.run_once()
    assert (await world.payment(payment.public_id)).status is S.PENDING

    report = await world.payments.recover_stuck(timedelta(0))

    assert report.resolved >= 1
    done = await world.payment(payment.public_id)
    assert done.status is S.SUCCEEDED and done.provider_ref is not None
    await world.settle(payment.public_id)
    assert len(await world.payments.providers.wave.search_payouts(payment.public_id)) == 1


async def test_a_b2c_result_that_arrives_before_the_acceptance_still_settles(world: PaymentsWorld):
    user = await world.user(suffix="903")  # the sandbox POSTs the result before answering the request
    await world.fund(user, Money.of(1000, KES))

    payment = await world.payments.handle(Withdraw("wd-early", user.id, Money.of(100, KES), Channel.USSD))
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert done.provider_ref is not None  # the late acceptance still recorded the ConversationID
    async with world.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    assert [e.to_status for e in events] == [S.CREATED, S.PENDING, S.SUCCEEDED]


async def test_a_b2c_queue_timeout_is_flagged_for_review_and_keeps_the_money_in_clearing(world: PaymentsWorld):
    user = await world.user(suffix="905")  # Daraja POSTs to QueueTimeOutURL instead of ResultURL
    await world.fund(user, Money.of(1000, KES))

    payment = await world.payments.handle(Withdraw("wd-queue", user.id, Money.of(100, KES), Channel.USSD))
    for _ in range(200):
        await world.worker.drain()
        if ("b2c_timeout", "needs_review") in world.callbacks.outcomes:
            break
        await asyncio.sleep(0.02)

    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PROCESSING  # unknown outcome: never resent, never unwound by guess
    assert "queue timeout" in flagged.provider_refs["needs_review"]
    assert await world.wallet(user) == Money.of(899, KES)
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.needs_review >= 1
    assert (await world.payment(payment.public_id)).status is S.PROCESSING


async def test_a_wave_payout_whose_job_gave_up_is_unwound_by_recovery(world: PaymentsWorld):
    user = await world.user(XOF)
    await world.fund(user, Money.of(10_000, XOF))

    # Suffix 429: Wave rate-limits every attempt; the job retries with backoff and is parked.
    payment = await world.payments.handle(SendToPhone(
        "wave-429", user.id, Money.of(2000, XOF), Channel.USSD, recipient_phone="+221775550429"))
    for _ in range(200):
        await world.worker.drain()
        if await world.scalar("SELECT status FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"wave.payout:{payment.public_id}") == "parked":
            break
        await asyncio.sleep(0.05)
    assert (await world.payment(payment.public_id)).status is S.PENDING

    await world.payments.recover_stuck(timedelta(0))

    done = await world.payment(payment.public_id)
    assert done.status is S.FAILED and done.error_code == "provider_unavailable"
    assert await world.wallet(user, XOF) == Money.of(10_000, XOF)
    await world.worker.drain()


async def test_a_b2c_request_that_fails_in_transit_is_retried_by_the_worker(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    # The next request for this number gets HTTP 500 (nothing paid); the job retries after a backoff.
    world.sandboxes.daraja.outcomes.set_next(Outcome.HTTP_500, msisdn=user.phone)

    payment = await world.payments.handle(Withdraw("wd-retry", user.id, Money.of(200, KES), Channel.USSD))
    done = await world.settle(payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await world.scalar("SELECT retry_count FROM payments WHERE public_id = :p", p=payment.public_id) == 1
    assert len([e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]) == 1


async def test_a_b2c_request_m_pesa_refuses_outright_fails_and_gives_the_money_back(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    # Daraja answers 400.002.02 (a field it did not accept): asking again would be refused again.
    world.sandboxes.daraja.outcomes.set_next(Outcome.BAD_REQUEST, msisdn=user.phone)

    payment = await world.payments.handle(Withdraw("wd-refused", user.id, Money.of(200, KES), Channel.USSD))
    done = await world.settle(payment.public_id)

    assert done.status is S.FAILED and done.error_code == "provider_refused", done
    assert "Invalid Request" in (done.error_message or "")
    assert await world.wallet(user) == Money.of(1000, KES)
    assert not [e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]
    assert await world.scalar("SELECT retry_count FROM payments WHERE public_id = :p", p=payment.public_id) == 0


async def test_a_late_contrary_b2c_result_changes_nothing(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(Withdraw("wd-late", user.id, Money.of(100, KES), Channel.USSD))
    done = await world.settle(payment.public_id)
    assert done.status is S.SUCCEEDED
    settled = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")

    # A failure Result for the same OriginatorConversationID, POSTed to our receiver afterwards.
    late = {"Result": {"ResultType": 0, "ResultCode": 2001, "ResultDesc": "The initiator information is invalid.",
                       "OriginatorConversationID": payment.public_id, "ConversationID": "AG_late"}}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/b2c/result", json=late) as resp:
        assert resp.status == 200

    assert world.callbacks.outcomes[-1] == ("b2c_result", "duplicate")
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(899, KES)
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") == settled
