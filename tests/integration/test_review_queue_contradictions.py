"""What the review queue shows besides payments waiting for a verdict (`payments.review.flagged`),
over real HTTP against the sandboxes: a final payment a provider's late word contradicts (M-Pesa
paid a B2C after the operator gave its money back), listed by the library, the operator API, its
payment search and `sauti payment review`, refused a verdict and closed by a person once settled;
and an STK push nobody recorded that M-Pesa could not confirm, listed too, asked about again by
recovery once its job gave up (and credited then), or closed by a person. Every read of the queue
goes through an index."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from db.sql import sql
from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Withdraw
from payments.money import Currency, Money
from payments.payment_records import PaymentFilter, search_payments
from payments.payment_settings import CALLBACK_STK, JOB_STK_ORPHAN, STK_ORPHAN_EVENT
from payments.payment_store import Payment
from payments.resolution import Verdict
from payments.review import STK_ORPHAN, NotDecidable, OperatorVerdict, UnknownPayment, close_flag, flagged
from payments.review_flags import review_reason
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.ops_helpers import (
    call,
    ops_client,
    plans_without_seq_scans,
    sign_in,
    sign_out,
    statements_run,
)
from tests.integration.payments_helpers import PaymentsWorld, module_world

ROOT = Path(__file__).resolve().parents[2]
KES = Currency.KES
S = PaymentStatus


world, ledger_stays_consistent = module_world(stk_orphan_grace_s=0)


client, ops_key = ops_client()


async def given_back_then_paid(world: PaymentsWorld, key: str) -> tuple[Payment, Money, str]:
    """A B2C that timed out in Daraja's queue (the sandbox's numbers ending 905), given back by an
    operator; then M-Pesa's late Result says it paid the recipient after all. The payment, the
    payer's wallet after the verdict, and what the Result did."""
    user = await world.user(suffix="905")
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw(key, user.id, Money.of(100, KES), Channel.USSD))
    for _ in range(300):
        await world.worker.drain()
        if (await world.payment(payment.public_id)).provider_refs.get("needs_review"):
            break
        await asyncio.sleep(0.02)
    decided = await world.payments.decide(OperatorVerdict(payment.public_id, False, "not on the statement yet", "op"))
    assert decided.status is S.FAILED
    wallet = await world.balance(AccountKind.CUSTOMER_WALLET, KES, user.id)
    assert wallet == Money.of(1_000, KES)
    result = {"Result": {"ResultType": 0, "ResultCode": 0,
                         "ResultDesc": "The service request is processed successfully.",
                         "OriginatorConversationID": payment.public_id, "ConversationID": f"AG_20261201_{key}",
                         "TransactionID": "NLJ41HAY6Q", "ResultParameters": {"ResultParameter": [
                             {"Key": "TransactionAmount", "Value": 100},
                             {"Key": "TransactionReceipt", "Value": "NLJ41HAY6Q"}]}}}
    before = len(world.callbacks.outcomes)
    async with aiohttp.ClientSession() as http, http.post(world.payments.settings.callback_base_url + "/b2c/result",
                                                          data=json.dumps(result)) as resp:
        assert resp.status == 200
    did = next(did for what, did in world.callbacks.outcomes[before:] if what == "b2c_result")
    return await world.payment(payment.public_id), await world.balance(AccountKind.CUSTOMER_WALLET, KES,
                                                                        user.id), did


async def test_a_late_payout_success_after_the_money_was_given_back_waits_for_a_person(world, client, ops_key):
    payment, wallet, did = await given_back_then_paid(world, "late-b2c")
    # Nothing moves (no automatic claw-back): the payer holds the payout and the money given back.
    assert did == "needs_review" and payment.status is S.FAILED and wallet == Money.of(1_000, KES)
    reason = "provider said succeeded while failed (b2c_result, receipt NLJ41HAY6Q)"
    assert payment.provider_refs["contradiction"] == reason and review_reason(payment) == reason

    item = next(item for item in await flagged(world.engine) if item.public_id == payment.public_id)
    assert (item.final, item.status, item.reason, item.reference) == (True, "failed", reason, payment.reference)
    status, queue = await call(client, "GET", "/v1/ops/review", ops_key)
    listed = next(p for p in queue["payments"] if p["public_id"] == payment.public_id)
    assert status == 200 and (listed["final"], listed["subject"], listed["reason"]) == (True, "payment", reason)
    status, found = await call(client, "GET", "/v1/ops/payments?review=true", ops_key)
    assert {p["public_id"]: p["needs_review"] for p in found["payments"]}[payment.public_id] == reason
    status, record = await call(client, "GET", f"/v1/ops/payments/{payment.reference}", ops_key)
    assert record["needs_review"] == reason
    # The dashboard says so, and offers no verdict form (it would be refused): what to do instead.
    await sign_in(client, ops_key)
    try:
        async with client.get(f"/ops/payments/{payment.public_id}") as answer:
            page = await answer.text()
    finally:
        await sign_out(client)
    assert "NLJ41HAY6Q" in page and "close-flag" in page and "Record the verdict" not in page

    # No verdict moves its money again: the refusal says what to do instead.
    with pytest.raises(NotDecidable, match="close-flag"):
        await world.payments.decide(OperatorVerdict(payment.public_id, True, "paid on the statement", "op",
                                                    "NLJ41HAY6Q"))
    # Settled by hand (README, Operators), then closed: out of every list, kept, audited, once.
    closed = await close_flag(world.engine, payment.reference.lower(), "payee sent it back by M-Pesa", "carol")
    assert closed.reason == reason
    assert payment.public_id not in {item.public_id for item in await flagged(world.engine)}
    status, found = await call(client, "GET", "/v1/ops/payments?review=true", ops_key)
    assert payment.public_id not in {p["public_id"] for p in found["payments"]}
    kept = (await world.payment(payment.public_id)).provider_refs
    assert "contradiction" not in kept and kept["contradiction_closed"]["flag"] == reason
    assert review_reason(await world.payment(payment.public_id)) is None
    with pytest.raises(NotDecidable, match="nothing to close"):
        await close_flag(world.engine, payment.public_id, "again", "carol")
    audit = await world.rows("SELECT actor, details FROM audit_log WHERE action = 'review.close' AND subject = :s",
                             s=payment.public_id)
    assert [(a.actor, a.details["flag"]) for a in audit] == [("carol", reason)]


async def test_a_payout_m_pesa_confirms_twice_is_not_flagged(world: PaymentsWorld):
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    payment = await world.payments.handle(Withdraw("paid-once", user.id, Money.of(100, KES), Channel.USSD))
    done = await world.settle(payment.public_id)
    assert done.status is S.SUCCEEDED
    # A success again, through another door (a status query's answer): no news, nobody told.
    _, changed = await world.payments.resolver.apply(payment.public_id, Verdict(True, "status_query"))
    assert not changed and "contradiction" not in (await world.payment(payment.public_id)).provider_refs
    assert payment.public_id not in {item.public_id for item in await flagged(world.engine)}


async def test_flags_written_on_final_payments_before_the_queue_listed_them_come_to_it(world: PaymentsWorld):
    """Migration 0021 copies the flags the earlier code wrote on final payments (as needs_review,
    where no list looked) to the queue's key."""
    payment, _, _ = await given_back_then_paid(world, "late-b2c-old")
    written = payment.provider_refs["contradiction"]
    async with world.engine.begin() as conn:  # as the earlier code left it
        await conn.execute(sql("UPDATE payments SET provider_refs = (provider_refs - 'contradiction') "
                               "|| jsonb_build_object('needs_review', CAST(:r AS text)) WHERE id = :id"),
                           {"r": written, "id": payment.id})
    assert payment.public_id not in {item.public_id for item in await flagged(world.engine)}
    migration = _migration("0021_review_queue.py")
    async with world.engine.begin() as conn:
        await conn.exec_driver_sql(migration.EARLIER_FLAGS)
    assert payment.public_id in {item.public_id for item in await flagged(world.engine)}
    await close_flag(world.engine, payment.public_id, "settled by hand", "carol")


def _migration(name: str) -> Any:
    spec = importlib.util.spec_from_file_location("migration", ROOT / "db" / "migrations" / "versions" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def unrecorded_push(world: PaymentsWorld, phone: str, amount: Money) -> str:
    """An STK push as its job makes it, which nothing records (the worker "dies" after)."""
    settings = world.payments.settings
    accepted = await world.payments.providers.daraja.stk_push(
        phone=phone, amount=amount, account_reference=settings.stk_account_reference,
        description=settings.stk_description, callback_url=settings.callback_base_url + CALLBACK_STK)
    return accepted.checkout_request_id


async def orphan_job_status(world: PaymentsWorld, checkout: str) -> str | None:
    rows = await world.rows("SELECT status FROM outbox_jobs WHERE dedupe_key = :k", k=f"{JOB_STK_ORPHAN}:{checkout}")
    return rows[0].status if rows else None


async def test_an_unconfirmed_push_nobody_recorded_is_listed_and_asked_about_again(world: PaymentsWorld):
    user = await world.user()
    checkout = await unrecorded_push(world, user.phone, Money.of(700, KES))
    # Daraja's STK query is down (HTTP 500 to every request that names no number) until the job gives up.
    world.sandboxes.daraja.outcomes.set_next(Outcome.HTTP_500, times=50)
    try:
        for _ in range(300):
            await world.worker.drain()
            if await orphan_job_status(world, checkout) == "parked":
                break
            await asyncio.sleep(0.05)
        assert await orphan_job_status(world, checkout) == "parked"
        item = next(item for item in await flagged(world.engine) if item.public_id == checkout)
        assert (item.subject, item.status, item.amount, item.reason) == (
            STK_ORPHAN, "pending", Money.of(700, KES), "M-Pesa never answered about this push")
        assert not item.final and item.reference == checkout
    finally:
        world.sandboxes.daraja.outcomes.clear()

    # Daraja is back: the next recovery round asks again (once for that parked job), and credits it.
    report = await world.payments.recover_stuck(timedelta(0))
    assert report.orphans_retried == 1
    assert (await world.payments.recover_stuck(timedelta(0))).orphans_retried == 0
    for _ in range(300):
        await world.worker.drain()
        if await world.wallet(user) == Money.of(700, KES):
            break
        await asyncio.sleep(0.03)
    assert await world.wallet(user) == Money.of(700, KES)
    async with world.engine.connect() as conn:
        event = await store.provider_event(conn, "mpesa", checkout, STK_ORPHAN_EVENT)
    assert event is not None and event["outcome"] == "credited" and "needs_review" not in event
    assert checkout not in {item.public_id for item in await flagged(world.engine)}
    assert (await world.payments.recover_stuck(timedelta(0))).orphans_retried == 0


async def test_a_push_m_pesa_refuses_to_confirm_is_listed_until_a_person_closes_it(world: PaymentsWorld):
    user = await world.user()
    checkout = "ws_CO_NEVER_MADE_REVIEW"
    forged = {"Body": {"stkCallback": {
        "MerchantRequestID": "1-1-1", "CheckoutRequestID": checkout, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.", "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": 900}, {"Name": "MpesaReceiptNumber", "Value": "FORGED0REV"},
            {"Name": "PhoneNumber", "Value": int(user.phone.removeprefix("+"))}]}}}}
    async with aiohttp.ClientSession() as http, http.post(world.payments.settings.callback_base_url + CALLBACK_STK,
                                                          json=forged) as resp:
        assert resp.status == 200
    for _ in range(300):
        await world.worker.drain()
        if checkout in {item.public_id for item in await flagged(world.engine)}:
            break
        await asyncio.sleep(0.03)
    item = next(item for item in await flagged(world.engine) if item.public_id == checkout)
    assert item.status == "unconfirmed" and item.reason.startswith("STK query refused")
    assert (await world.payments.recover_stuck(timedelta(0))).orphans_retried == 0  # answered for good

    closed = await close_flag(world.engine, checkout, "not on the statement: forged", "dave")
    assert closed.subject == STK_ORPHAN and closed.amount == Money.of(900, KES)
    assert checkout not in {item.public_id for item in await flagged(world.engine)}
    async with world.engine.connect() as conn:
        event = await store.provider_event(conn, "mpesa", checkout, STK_ORPHAN_EVENT)
    assert event is not None and event["review_closed"]["closed_by"] == "dave" and "needs_review" not in event
    with pytest.raises(UnknownPayment):
        await close_flag(world.engine, checkout, "again", "dave")
    assert await world.wallet(user) == Money.zero(KES)


async def test_a_push_parked_in_suspense_is_the_suspense_list_s_not_the_queue_s(world: PaymentsWorld):
    stranger = "+254799000123"  # no Sauti wallet: the push's money is parked in suspense
    checkout = await unrecorded_push(world, stranger, Money.of(300, KES))
    for _ in range(300):
        await world.worker.drain()
        async with world.engine.connect() as conn:
            event = await store.provider_event(conn, "mpesa", checkout, STK_ORPHAN_EVENT)
        if event is not None and event.get("outcome") == "suspense":
            break
        await asyncio.sleep(0.03)
    assert event is not None and event["outcome"] == "suspense" and event["needs_review"]
    assert checkout not in {item.public_id for item in await flagged(world.engine)}
    with pytest.raises(NotDecidable, match="sauti suspense credit"):
        await close_flag(world.engine, checkout, "closing it here", "dave")


async def test_the_queue_is_read_through_indexes(world: PaymentsWorld):
    with statements_run(world.engine) as statements:
        await flagged(world.engine)
        async with world.engine.connect() as conn:
            await search_payments(conn, PaymentFilter(needs_review=True), limit=50)
    assert len(statements) == 2
    plans = dict(await plans_without_seq_scans(world.engine, statements))
    queue = next(plan for statement, plan in plans.items() if "provider_events" in statement)
    assert "payments_contradicted" in queue and "provider_events_orphans_flagged" in queue, queue


def sauti(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "SAUTI__PROVIDERS__MODE": "sandbox",
           "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "payment", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_the_operator_commands_list_and_close_a_contradicted_payment(world: PaymentsWorld):
    payment, _, _ = await given_back_then_paid(world, "late-b2c-cli")
    url = world.engine.url.render_as_string(hide_password=False)
    listed = await asyncio.to_thread(sauti, url, "review")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if payment.public_id in line)
    assert "failed" in line and "NLJ41HAY6Q" in line and "then close-flag" in line

    closed = await asyncio.to_thread(sauti, url, "close-flag", payment.reference, "--reason", "recovered",
                                     "--by", "erin")
    assert closed.returncode == 0, closed.stderr
    assert f"{payment.reference}  {payment.public_id}: flag closed by erin" in closed.stdout
    again = await asyncio.to_thread(sauti, url, "close-flag", payment.reference, "--reason", "again")
    assert again.returncode == 1 and "nothing to close" in again.stderr and "Traceback" not in again.stderr
    listed = await asyncio.to_thread(sauti, url, "review")
    assert payment.public_id not in listed.stdout
