"""Payments left for a person (`payments.review`): the review queue, an operator's verdict from the
provider's statement (the money given back, or settled with the provider's receipt), once, with
its history, receipts and audit line; and every verdict that must be refused (a payment still
being worked on by recovery or by a provider job, a final one, an unknown one, a success without
a receipt). A deposit credited without its M-Pesa receipt, refunded with the one an operator reads
on the statement. Then `sauti payment review`, `decide` and `refund` as an operator types them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from payments import outbox
from payments.accounts import AccountKind
from payments.commands import Channel, Refund, SendToPhone, SendToWallet, Withdraw
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.refunds import NotRefundable
from payments.review import NotDecidable, OperatorVerdict, UnknownPayment, flagged
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

ROOT = Path(__file__).resolve().parents[2]
KES = Currency.KES
S = PaymentStatus


world, ledger_stays_consistent = module_world()


async def wallet_of(world: PaymentsWorld, user_id: int) -> Money:
    return await world.balance(AccountKind.CUSTOMER_WALLET, KES, user_id)


async def timed_out_in_the_queue(world: PaymentsWorld, key: str) -> tuple[Payment, int]:
    """A withdrawal whose B2C timed out in Daraja's queue (flagged; nothing paid at M-Pesa), and the
    payer's user id."""
    user = await world.user(suffix="905")
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw(key, user.id, Money.of(100, KES), Channel.USSD))
    for _ in range(300):
        await world.worker.drain()
        if (await world.payment(payment.public_id)).provider_refs.get("needs_review"):
            return await world.payment(payment.public_id), user.id
        await asyncio.sleep(0.02)
    raise AssertionError("the queue time-out never came")


async def test_a_queue_timeout_given_back_by_an_operator_returns_the_money_once(world: PaymentsWorld):
    payment, payer = await timed_out_in_the_queue(world, "review-queue")
    assert payment.status is S.PROCESSING
    assert await wallet_of(world, payer) == Money.of(899, KES)  # 100 and its fee held in clearing
    queue = {item.public_id: item for item in await flagged(world.engine)}
    assert queue[payment.public_id].reason == "B2C queue timeout"
    assert queue[payment.public_id].reference == payment.reference

    decided = await world.payments.decide(OperatorVerdict(
        payment.reference.lower(), False, "not on the M-Pesa statement of the day", "alice"))
    assert decided.status is S.FAILED and decided.error_code == "not_carried_out"
    assert await wallet_of(world, payer) == Money.of(1_000, KES)
    assert payment.public_id not in {item.public_id for item in await flagged(world.engine)}
    _, events = await world.payments.history(payment.public_id)
    assert (events[-1].to_status, events[-1].cause) == (S.FAILED, "operator:alice")
    assert events[-1].details["reason"] == "not on the M-Pesa statement of the day"
    audit = await world.rows("SELECT actor, details FROM audit_log WHERE action = 'payment.decide' AND subject = :s",
                             s=payment.public_id)
    assert [(a.actor, a.details["succeeded"]) for a in audit] == [("alice", False)]
    # The payer is told (an SMS receipt of the failure).
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"sms.receipt:{payment.public_id}:payer:failed") == 1

    # Again, or the other way: refused, nothing moves.
    for succeeded, receipt in ((False, None), (True, "SB71XYZ")):
        with pytest.raises(NotDecidable, match="failed already"):
            await world.payments.decide(OperatorVerdict(payment.public_id, succeeded, "again", "bob", receipt))
    assert await wallet_of(world, payer) == Money.of(1_000, KES)


async def test_a_payout_the_statement_shows_paid_is_settled_with_its_receipt(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    # A B2C whose Result never comes (suffix 900): M-Pesa paid it. Flagged as recovery flags what it
    # cannot vouch for.
    payment = await world.payments.handle(SendToPhone("review-paid", user.id, Money.of(200, KES), Channel.API,
                                                      recipient_phone="+254711222900"))
    for _ in range(300):
        await world.worker.drain()
        if (await world.payment(payment.public_id)).status is S.PROCESSING:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(NotDecidable, match="not flagged for review"):  # recovery is still on it
        await world.payments.decide(OperatorVerdict(payment.public_id, False, "impatient", "carol"))
    await world.payments.resolver.flag(payment.public_id, "M-Pesa has no record of this request; check the statement")
    for _ in range(300):  # M-Pesa books it once the request left its queue
        lines = [e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]
        if lines:
            break
        await asyncio.sleep(0.02)
    (line,) = lines

    someone_elses = (await world.settle((await world.payments.handle(Withdraw(
        "review-someone", user.id, Money.of(20, KES), Channel.USSD))).public_id)).provider_refs["receipt"]
    with pytest.raises(NotDecidable, match=f"receipt {someone_elses} is payment pay_"):
        await world.payments.decide(OperatorVerdict(payment.public_id, True, "paid", "carol", someone_elses))
    decided = await world.payments.decide(OperatorVerdict(payment.public_id, True, "paid on the statement", "carol",
                                                          receipt=line.transaction_id))
    assert decided.status is S.SUCCEEDED and decided.provider_refs["receipt"] == line.transaction_id
    assert await wallet_of(world, user.id) == Money.of(1_000, KES) - decided.total - Money.of(21, KES)
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"sms.receipt:{payment.public_id}:payer:succeeded") == 1


async def test_no_verdict_while_a_provider_job_may_still_reach_the_provider(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    # The B2C job is queued, not run (no drain): it would pay M-Pesa after the money came back.
    payment = await world.payments.handle(Withdraw("review-job", user.id, Money.of(100, KES), Channel.USSD))
    await world.payments.resolver.flag(payment.public_id, "looked odd")
    job_id = await world.scalar("SELECT id FROM outbox_jobs WHERE dedupe_key = :k", k=f"mpesa.b2c:{payment.public_id}")
    with pytest.raises(NotDecidable, match=rf"mpesa.b2c job {job_id} is pending .*\(sauti outbox park {job_id}\)"):
        await world.payments.decide(OperatorVerdict(payment.public_id, False, "never sent", "dave"))
    assert (await world.payment(payment.public_id)).status is S.PENDING

    assert await outbox.park(world.engine, job_id, "operator: decided by hand")
    decided = await world.payments.decide(OperatorVerdict(payment.public_id, False, "never sent", "dave"))
    assert decided.status is S.FAILED
    assert await wallet_of(world, user.id) == Money.of(1_000, KES)
    # Retried after all, the job finds the payment decided and sends nothing.
    assert await outbox.retry_parked(world.engine, job_id)
    await world.worker.drain()
    assert not [e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]


async def test_no_verdict_while_a_provider_job_is_running_and_no_parking_it_either(world: PaymentsWorld):
    """Parking the running job, then giving the money back, refunded the payer while the B2C in
    flight paid the recipient too. Both are refused until the attempt ends; then its result decides."""
    user = await world.user(suffix="904")  # Daraja's answer is slow: the B2C request is in flight a while
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw("review-in-flight", user.id, Money.of(100, KES), Channel.USSD))
    job_id = await world.scalar("SELECT id FROM outbox_jobs WHERE dedupe_key = :k", k=f"mpesa.b2c:{payment.public_id}")
    running = asyncio.create_task(world.worker.drain())
    try:
        for _ in range(200):
            if await world.scalar("SELECT status FROM outbox_jobs WHERE id = :i", i=job_id) == "running":
                break
            await asyncio.sleep(0.01)
        await world.payments.resolver.flag(payment.public_id, "looked odd")
        with pytest.raises(outbox.JobRunning, match=f"job {job_id} is running"):
            await outbox.park(world.engine, job_id, "operator: decided by hand")
        with pytest.raises(NotDecidable, match=rf"mpesa.b2c job {job_id} is running, .*wait for this attempt to end"):
            await world.payments.decide(OperatorVerdict(payment.public_id, False, "not on the statement", "dave"))
        assert not running.done(), "the request answered before the checks: nothing was in flight"
    finally:
        await running
    settled = await world.settle(payment.public_id)
    assert settled.status is S.SUCCEEDED
    assert len([e for e in world.sandboxes.daraja.books.entries() if e.reference == payment.public_id]) == 1
    assert await wallet_of(world, user.id) == Money.of(1_000, KES) - settled.total  # paid once, not given back


async def test_verdicts_that_make_no_sense_are_refused(world: PaymentsWorld):
    with pytest.raises(UnknownPayment):
        await world.payments.decide(OperatorVerdict("K7Q2M9BXA4", False, "typo", "erin"))
    with pytest.raises(InvalidRequest, match="receipt"):
        OperatorVerdict("pay_x", True, "paid", "erin")
    for reason in ("", " ", "x" * 501):
        with pytest.raises(InvalidRequest, match="say why"):
            OperatorVerdict("pay_x", False, reason, "erin")
    with pytest.raises(InvalidRequest, match="who decides"):
        OperatorVerdict("pay_x", False, "why", " ")
    user = await world.user()
    await world.fund(user, Money.of(100, KES))
    done = await world.payments.handle(SendToPhone("review-p2p", user.id, Money.of(10, KES), Channel.API,
                                                   recipient_phone=(await world.user()).phone))
    with pytest.raises(NotDecidable, match="succeeded already"):
        await world.payments.decide(OperatorVerdict(done.public_id, False, "why", "erin"))


def sauti(url: str, *args: str) -> subprocess.CompletedProcess:
    """`sauti` as an operator runs it, on the world's database (the providers in sandbox mode, which
    `decide` does not need to reach)."""
    env = {**os.environ, "DATABASE_URL": url, "SAUTI__PROVIDERS__MODE": "sandbox",
           "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "payment", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_the_operator_commands(world: PaymentsWorld):
    payment, payer = await timed_out_in_the_queue(world, "review-cli")
    url = world.engine.url.render_as_string(hide_password=False)

    listed = await asyncio.to_thread(sauti, url, "review")
    assert listed.returncode == 0, listed.stderr
    assert "wait for review" in listed.stdout
    line = next(line for line in listed.stdout.splitlines() if payment.public_id in line)
    assert payment.reference in line and "withdraw KES 100" in line and "B2C queue timeout" in line

    unsure = await asyncio.to_thread(sauti, url, "decide", payment.reference, "--reason", "checked")
    assert unsure.returncode != 0 and "--succeeded (with --receipt) or --failed" in unsure.stderr
    no_receipt = await asyncio.to_thread(sauti, url, "decide", payment.reference, "--succeeded", "--reason", "paid")
    assert no_receipt.returncode == 1 and "needs its receipt" in no_receipt.stderr
    assert "Traceback" not in no_receipt.stderr

    decided = await asyncio.to_thread(sauti, url, "decide", payment.reference, "--failed", "--reason",
                                      "not on the statement", "--by", "frank")
    assert decided.returncode == 0, decided.stderr
    assert f"{payment.reference}  {payment.public_id}: failed (decided by frank)." in decided.stdout
    assert await wallet_of(world, payer) == Money.of(1_000, KES)

    again = await asyncio.to_thread(sauti, url, "decide", payment.reference, "--failed", "--reason", "again")
    assert again.returncode == 1 and "failed already" in again.stderr and "Traceback" not in again.stderr
    listed = await asyncio.to_thread(sauti, url, "review")
    assert payment.public_id not in listed.stdout


async def test_a_deposit_credited_without_its_receipt_is_refunded_with_the_one_on_the_statement(
        world: PaymentsWorld):
    # M-Pesa never calls back: recovery's STK query credits it.
    user, deposit = await world.deposit_credited_without_receipt(Money.of(300, KES), "review-stk")
    (line,) = [e for e in world.sandboxes.daraja.books.entries() if e.reference == deposit.provider_ref]

    with pytest.raises(NotRefundable, match=r"no M-Pesa receipt .* --receipt"):
        await world.payments.handle(Refund("r-stk", deposit.public_id, "customer asked"))
    other = (await timed_out_in_the_queue(world, "review-other"))[0]
    with pytest.raises(InvalidRequest, match="only for an M-Pesa deposit"):
        await world.payments.handle(Refund("r-other", other.public_id, "why", receipt=line.transaction_id))
    paid = await world.user()
    await world.fund(paid, Money.of(1_000, KES))
    withdrawal = await world.settle((await world.payments.handle(Withdraw(
        "review-paid-out", paid.id, Money.of(50, KES), Channel.USSD))).public_id)
    taken = withdrawal.provider_refs["receipt"]
    with pytest.raises(NotRefundable, match=f"receipt {taken} is payment {withdrawal.public_id}'s"):
        await world.payments.handle(Refund("r-stk", deposit.public_id, "customer asked", receipt=taken.lower()))

    refund = await world.payments.handle(Refund("r-stk", deposit.public_id, "customer asked",
                                                receipt=line.transaction_id.lower()))
    assert refund.provider_refs["reverses_receipt"] == line.transaction_id
    assert (await world.settle(refund.public_id)).status is S.SUCCEEDED
    assert (await world.payment(deposit.public_id)).status is S.REVERSED
    assert await wallet_of(world, user.id) == Money.of(0, KES)
    assert world.sandboxes.daraja.books.find(line.transaction_id).status == "reversed"


async def test_an_operator_refunds_from_the_command_line(world: PaymentsWorld):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))
    sent = await world.payments.handle(SendToWallet("review-cli-p2p", payer.id, Money.of(40, KES), Channel.APP,
                                                    recipient_user_id=payee.id))
    url = world.engine.url.render_as_string(hide_password=False)
    for _ in range(2):  # the same refund again: nothing more moves
        done = await asyncio.to_thread(sauti, url, "refund", sent.reference, "--reason", "sent by mistake",
                                       "--by", "grace")
        assert done.returncode == 0, done.stderr
        assert "refund succeeded (done)" in done.stdout
    assert await wallet_of(world, payer.id) == Money.of(100, KES)
    assert await wallet_of(world, payee.id) == Money.of(0, KES)
    assert await world.scalar("SELECT count(*) FROM payments WHERE refund_of = :id", id=sent.id) == 1
    refused = await asyncio.to_thread(sauti, url, "refund", "K7Q2M9BXA4", "--reason", "typo")
    assert refused.returncode == 1 and "no payment has the reference" in refused.stderr
    assert "Traceback" not in refused.stderr
