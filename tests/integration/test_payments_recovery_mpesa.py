"""Recovery of M-Pesa payouts whose Result never came (or came before we could match it): the sweep
enqueues a Daraja transaction status query, named by our OriginatorConversationID (B2C) or the one
Daraja gave the request (B2B); the sandbox answers by callback, and "Completed" settles the payout.
What M-Pesa cannot vouch for is flagged for a person, never guessed, and nothing is ever resent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from payments import outbox
from payments.accounts import AccountKind
from payments.commands import BuyGoods, Channel, PayBill, Withdraw
from payments.identities import User
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database(), sandbox={"callback_delay_s": 0.15}) as running:
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


async def recover(world: PaymentsWorld, public_id: str, outcome: str | None = None) -> str:
    """One recovery sweep, then the status query it sent and the Result that answers it."""
    before = len(world.callbacks.outcomes)
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.queried >= 1
    return await world.until_callback("status/result", outcome, after=before)


def paid_by(world: PaymentsWorld, reference: str) -> list:
    return [e for e in world.sandboxes.daraja.books.entries() if e.reference == reference]


async def test_a_b2c_whose_result_never_came_is_settled_by_a_status_query(world: PaymentsWorld):
    user = await world.user(suffix="900")  # the payout is made; its Result is never sent
    await world.fund(user, Money.of(1000, KES))
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")

    payment = await world.payments.handle(Withdraw("wd-lost", user.id, Money.of(300, KES), Channel.USSD))
    await world.worker.drain()
    await asyncio.sleep(0.3)  # past the sandbox's delay: M-Pesa has paid
    assert (await world.payment(payment.public_id)).status is S.PROCESSING

    assert await recover(world, payment.public_id) == "succeeded"

    done, events = await world.payments.history(payment.public_id)
    assert done.status is S.SUCCEEDED and events[-1].cause == "status_query"
    [paid] = paid_by(world, payment.public_id)
    assert done.provider_refs["receipt"] == paid.transaction_id
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(300, KES)
    assert await world.wallet(user) == Money.of(697, KES)
    # Asked by our OriginatorConversationID, recorded against the payment; paid once.
    assert await world.scalar("SELECT count(*) FROM provider_events WHERE kind = 'status_query' AND payment_id = "
                              "(SELECT id FROM payments WHERE public_id = :p)", p=payment.public_id) == 1
    await world.worker.drain()


async def test_a_b2b_whose_result_never_came_is_settled_by_the_id_daraja_gave_it(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))

    payment = await world.payments.handle(PayBill("bill-lost", user.id, Money.of(250, KES), Channel.USSD,
                                                  paybill="888900", account_number="L"))
    await world.worker.drain()
    await asyncio.sleep(0.3)
    accepted = await world.payment(payment.public_id)
    assert accepted.status is S.PROCESSING

    assert await recover(world, payment.public_id) == "succeeded"

    done = await world.payment(payment.public_id)
    assert done.status is S.SUCCEEDED
    [paid] = paid_by(world, accepted.provider_refs["originator_conversation_id"])
    assert paid.party == "888900" and done.provider_refs["receipt"] == paid.transaction_id
    await world.worker.drain()


async def test_a_b2b_result_that_beats_its_answer_is_applied_once_the_answer_is_recorded(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    before = len(world.callbacks.outcomes)

    # Till ending 903: Daraja POSTs the Result before answering the request. The Result waits a
    # moment for the answer (its ConversationID) to be recorded, then settles the payment.
    payment = await world.payments.handle(BuyGoods("till-early", user.id, Money.of(100, KES), Channel.USSD,
                                                   till="555903"))
    await world.until_callback("b2b/result", "settled", after=before)

    done = await world.payment(payment.public_id)
    assert done.status is S.SUCCEEDED
    assert await world.wallet(user) == Money.of(899, KES)
    await world.worker.drain()


async def test_a_b2c_m_pesa_has_no_record_of_is_flagged_and_its_money_kept_in_clearing(world: PaymentsWorld):
    user = await world.user(suffix="500")  # every request for this number gets HTTP 500: never accepted
    await world.fund(user, Money.of(1000, KES))

    payment = await world.payments.handle(Withdraw("wd-never", user.id, Money.of(200, KES), Channel.USSD))
    for _ in range(200):
        await world.worker.drain()
        if await world.scalar("SELECT status FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"mpesa.b2c:{payment.public_id}") == "parked":
            break
        await asyncio.sleep(0.05)
    assert (await world.payment(payment.public_id)).status is S.PENDING

    assert await recover(world, payment.public_id) == "needs_review"

    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PENDING and "no record" in flagged.provider_refs["needs_review"]
    assert await world.wallet(user) == Money.of(798, KES)
    # A flagged payment is left to a person: the next sweep asks nothing more.
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.needs_review >= 1 and report.queried == 0


async def test_a_status_result_delivered_twice_settles_once(world: PaymentsWorld):
    _, payment = await unanswered_payout(world, "wd-twice", 100)
    settled_before = await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")
    before = len(world.callbacks.outcomes)

    # The status query's own Result is POSTed twice (a global override: the query names no phone).
    world.sandboxes.daraja.outcomes.set_next(Outcome.DUPLICATE_CALLBACK)
    await world.payments.recover_stuck(timedelta(0))
    await world.until_callback("status/result", "duplicate", after=before)

    assert sorted(o for w, o in world.callbacks.outcomes[before:] if w == "status/result") == ["duplicate", "succeeded"]
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert await world.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(100, KES)
    await world.worker.drain()


async def test_a_status_result_for_a_query_we_never_sent_changes_nothing(world: PaymentsWorld):
    before = len(world.callbacks.outcomes)
    forged = {"Result": {"ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed.",
                         "OriginatorConversationID": "x", "ConversationID": "AG_20990101_forged",
                         "ResultParameters": {"ResultParameter": [
                             {"Key": "TransactionStatus", "Value": "Completed"}, {"Key": "Amount", "Value": 100}]}}}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/status/result", json=forged) as resp:
        assert resp.status == 200
    assert world.callbacks.outcomes[before:] == [("status/result", "unknown")]


async def test_a_failed_status_query_leaves_the_payout_open_for_the_next_sweep(world: PaymentsWorld):
    _, payment = await unanswered_payout(world, "wd-ask-again", 150)

    # The status query is refused by M-Pesa (initiator invalid): nothing is decided, nothing flagged.
    world.sandboxes.daraja.outcomes.set_next(Outcome.WRONG_PIN)
    assert await recover(world, payment.public_id) == "open"
    still = await world.payment(payment.public_id)
    assert still.status is S.PROCESSING and "needs_review" not in still.provider_refs

    # The next sweep asks again (a new query: the first one touched the payment) and settles it.
    assert await recover(world, payment.public_id) == "succeeded"
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert len(paid_by(world, payment.public_id)) == 1
    await world.worker.drain()


async def test_a_status_query_m_pesa_refuses_outright_flags_the_payout_for_a_person(world: PaymentsWorld):
    user, payment = await unanswered_payout(world, "wd-query-refused", 150)

    # Daraja refuses the query itself (400.002.02): asked again, it would refuse again, and the
    # payout would wait for ever. A person reads the statement and decides instead.
    world.sandboxes.daraja.outcomes.set_next(Outcome.BAD_REQUEST)
    assert (await world.payments.recover_stuck(timedelta(0))).queried >= 1
    await world.worker.drain()

    still = await world.payment(payment.public_id)
    assert still.status is S.PROCESSING
    assert still.provider_refs["needs_review"] == "M-Pesa refused the status query: Bad Request - Invalid Request"
    assert await world.scalar(
        "SELECT status FROM outbox_jobs WHERE payload ->> 'payment' = :p AND kind = 'mpesa.status_query' "
        "ORDER BY id DESC LIMIT 1", p=payment.public_id) == "parked"
    assert await world.wallet(user) == Money.of(848, KES)  # out: 150 and its fee, nothing decided yet
    assert len(paid_by(world, payment.public_id)) == 1


async def unanswered_payout(world: PaymentsWorld, key: str, amount: int) -> tuple[User, Payment]:
    """A withdrawal M-Pesa paid but never sent the Result of (a number ending 900), from a wallet of
    KES 1,000, once its B2C went out."""
    user = await world.user(suffix="900")
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(Withdraw(key, user.id, Money.of(amount, KES), Channel.USSD))
    await world.worker.drain()
    await asyncio.sleep(0.3)
    return user, payment


async def newest_status_query(world: PaymentsWorld, public_id: str) -> tuple[int, str]:
    """The payment's newest status query job: its id and status."""
    async with world.engine.connect() as conn:
        job = await outbox.latest_job_of_payment(conn, public_id, "mpesa.status_query")
    assert job is not None
    return job.id, job.status


async def test_a_status_query_that_fails_until_it_gives_up_flags_the_payout_for_a_person(world: PaymentsWorld):
    user, payment = await unanswered_payout(world, "wd-query-outage", 150)

    # Daraja's status API answers HTTP 500 for longer than the query job's attempts. Parked, it
    # touched nothing: no later sweep asked again, and nobody was told.
    world.sandboxes.daraja.outcomes.set_next(Outcome.HTTP_500, times=50)
    try:
        assert (await world.payments.recover_stuck(timedelta(0))).queried >= 1
        for _ in range(200):
            await world.worker.drain()
            job_id, status = await newest_status_query(world, payment.public_id)
            if status == "parked":
                break
            await asyncio.sleep(0.05)
        assert status == "parked"
    finally:
        world.sandboxes.daraja.outcomes.clear()
    flagged = await world.payment(payment.public_id)
    assert flagged.status is S.PROCESSING
    assert f"the status query kept failing (DarajaServerError); check the statement, or run job {job_id} again" \
        in flagged.provider_refs["needs_review"]
    assert await world.wallet(user) == Money.of(848, KES)  # held in clearing until it is known

    # Daraja is back: the job run again, as the flag says, settles the payout.
    before = len(world.callbacks.outcomes)
    assert await outbox.retry_parked(world.engine, job_id)
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert len(paid_by(world, payment.public_id)) == 1
    await world.worker.drain()


async def test_a_status_query_parked_without_an_answer_is_asked_again_by_a_later_sweep(world: PaymentsWorld):
    _, payment = await unanswered_payout(world, "wd-query-lost", 150)
    assert (await world.payments.recover_stuck(timedelta(0))).queried >= 1
    job_id, status = await newest_status_query(world, payment.public_id)
    assert status == "pending"

    # Its worker dies on the job's last attempt, before reaching Daraja: the lease sweep parks it,
    # and the payment is as it was (same last change, so the same dedupe key on every sweep).
    (claimed,) = await outbox.claim(world.engine, "dying-worker", limit=1, lease_s=0.05, default_max_attempts=1)
    assert claimed.id == job_id
    await asyncio.sleep(0.1)
    assert await outbox.requeue_expired_leases(world.engine, default_max_attempts=1) == (0, 1)
    assert (await newest_status_query(world, payment.public_id)) == (job_id, "parked")

    assert await recover(world, payment.public_id) == "succeeded"  # a fresh query, under a key of its own
    assert (await newest_status_query(world, payment.public_id))[0] != job_id
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED
    assert len(paid_by(world, payment.public_id)) == 1
    await world.worker.drain()
