"""Reconciliation against the providers' own books: payments made through the sandboxes over real
HTTP all match; a transaction the provider made that we never recorded is missing on our side; one
we recorded that the provider never made is missing on theirs; the provider paying what we failed is
a status mismatch; and an M-Pesa statement CSV (as the portal exports it) reconciles by receipt,
through the library and through `sauti reconcile`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from payments.commands import Channel, Deposit, PayBill, Refund, SendToPhone, SendToWallet, Withdraw
from payments.money import Currency, Money
from payments.provider_statements import DarajaSandboxStatement, MpesaCsvStatement, WaveStatement
from payments.providers.daraja_credentials import NAIROBI
from payments.reconcile import reconcile
from payments.reconcile_report import ReconcileReport
from payments.resolution import Verdict
from payments.states import PaymentStatus
from tests.integration.ledger_helpers import random_kenyan_number
from tests.integration.ops_helpers import plans_without_seq_scans, statements_run
from tests.integration.payments_helpers import PaymentsWorld, payments_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus
ROOT = Path(__file__).resolve().parents[2]
GRACE = timedelta(seconds=5)


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    database_url = await new_database()
    async with payments_world(database_url) as running:
        running.database_url = database_url  # for `sauti reconcile` in a subprocess
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()


def statements(world: PaymentsWorld):
    return [DarajaSandboxStatement(world.sandboxes.urls.daraja), WaveStatement(world.payments.providers.wave)]


async def reconciled(world: PaymentsWorld, start: datetime, sources=None) -> ReconcileReport:
    """This test's period: from its start to now (each test makes its own payments and lines)."""
    end = datetime.now(UTC) + timedelta(seconds=1)
    return await reconcile(world.engine, sources or statements(world), start, end, grace=GRACE)


def ids(findings) -> set[str | None]:
    return {f.public_id for f in findings}


async def wave_deposit(world: PaymentsWorld, amount: int) -> str:
    user = await world.user(XOF)
    payment = await world.payments.handle(Deposit(f"d-{uuid.uuid4()}", user.id, Money.of(amount, XOF), Channel.APP))
    await world.worker.drain()
    session = (await world.payment(payment.public_id)).provider_ref
    async with aiohttp.ClientSession() as http, http.post(
            f"{world.sandboxes.urls.wave}/_sandbox/checkout/sessions/{session}/approve") as resp:
        assert resp.status == 200, await resp.text()
    return (await world.settle(payment.public_id)).public_id


async def test_payments_made_through_the_sandboxes_all_match(world: PaymentsWorld):
    start = datetime.now(UTC)
    kenyan, senegalese, friend = await world.user(), await world.user(XOF), await world.user()
    await world.fund(kenyan, Money.of(5000, KES))
    await world.fund(senegalese, Money.of(50_000, XOF))
    broke = await world.user(suffix="001")  # the sandbox refuses B2C to this number: nothing on its books
    await world.fund(broke, Money.of(500, KES))

    made = [
        await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", kenyan.id, Money.of(300, KES), Channel.USSD)),
        await world.payments.handle(Deposit(f"d-{uuid.uuid4()}", kenyan.id, Money.of(250, KES), Channel.USSD)),
        await world.payments.handle(SendToPhone(f"s-{uuid.uuid4()}", senegalese.id, Money.of(5000, XOF),
                                                Channel.VOICE, recipient_phone="+221775551234")),
        await world.payments.handle(PayBill(f"b-{uuid.uuid4()}", kenyan.id, Money.of(120, KES), Channel.USSD,
                                            paybill="888880", account_number="ACC1")),
    ]
    failed = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", broke.id, Money.of(100, KES), Channel.USSD))
    inside = await world.payments.handle(SendToWallet(f"p-{uuid.uuid4()}", kenyan.id, Money.of(10, KES),
                                                      Channel.USSD, recipient_user_id=friend.id))
    done = [(await world.settle(p.public_id)).public_id for p in made]
    done.append(await wave_deposit(world, 4000))
    assert (await world.settle(failed.public_id)).status is S.FAILED

    report = await reconciled(world, start)

    assert report.ok, report.render()
    assert ids(report.matched) == set(done)
    assert failed.public_id not in ids(report.matched) and inside.public_id not in ids(report.matched)
    by_id = {f.public_id: f for f in report.matched}
    assert by_id[done[0]].their_amount == -Money.of(300, KES)  # out of the provider account
    assert by_id[done[1]].their_amount == Money.of(250, KES)  # into it
    assert report.provider_fees.get("XOF", 0) > 0  # Wave charged its fee on the payout and the checkout
    assert "All matched." in report.render()


async def test_reconciliation_reads_payments_and_the_ledger_through_indexes(world: PaymentsWorld):
    """A period's payments, those the statement names, their refunds and their transfers: no read
    goes through a whole table (migration 0014; figures: `bench.ops`)."""
    start = datetime.now(UTC)
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    made = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", user.id, Money.of(300, KES), Channel.USSD))
    await world.settle(made.public_id)
    await wave_deposit(world, 3000)
    # A year of M-Pesa payouts before (failed ones: no money moved), so that the planner weighs the
    # table as a live one's and a read of every M-Pesa payment shows (on a few rows any plan is cheap).
    async with world.engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO payments (public_id, payer_user_id, idempotency_key, request_hash, kind, channel, amount, "
            "currency, status, provider, provider_refs, created_at, updated_at, finished_at) "
            "SELECT 'pay_old' || lpad(g::text, 23, '0'), :u, 'old-' || g, 'h', 'withdraw', 'ussd', 100, 'KES', "
            "'failed', 'mpesa', jsonb_build_object('receipt', 'OLD' || g), now() - interval '400 days', now(), now() "
            "FROM generate_series(1, 20000) g"), {"u": user.id})
    async with world.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE payments"))
    try:
        with statements_run(world.engine) as statements:
            assert (await reconciled(world, start)).ok
        period = [(s, p) for s, p in statements if "FROM payments" in s and "created_at >=" in s]
        assert len(period) == 2, statements  # M-Pesa's and Wave's
        [(_, plan)] = await plans_without_seq_scans(world.engine, [
            (s, p) for s, p in period if "mpesa" in str(p)])
        # Not every M-Pesa payment through (provider, …) with the period as a filter: the period is a condition.
        assert "Index Cond: ((provider = 'mpesa'::text) AND (created_at >= " in plan, plan
        await plans_without_seq_scans(world.engine, statements)
    finally:
        async with world.engine.begin() as conn:
            await conn.execute(text("DELETE FROM payments WHERE idempotency_key LIKE 'old-%'"))


async def test_a_transaction_we_never_recorded_is_missing_on_our_side(world: PaymentsWorld):
    start = datetime.now(UTC)
    daraja, wave = world.payments.providers.daraja, world.payments.providers.wave
    # A customer pays our paybill before the C2B routes exist: Daraja takes the money (validation
    # times out to Completed) and its confirmation finds nobody. Nothing of ours records it.
    nowhere = world.payments.settings.callback_base_url + "/not-yet"
    await daraja.register_c2b_urls(confirmation_url=f"{nowhere}/confirm", validation_url=f"{nowhere}/validate")
    payer = random_kenyan_number()
    await daraja.simulate_c2b(phone=payer, amount=Money.of(700, KES), bill_ref_number="unknown")
    # Someone pays out from the Wave business wallet by hand, outside Sauti.
    manual = await wave.create_payout(idempotency_key=str(uuid.uuid4()), receive_amount=Money.of(777, XOF),
                                      mobile="+221775554321", client_reference="paid-by-hand")
    for _ in range(200):  # the C2B settles in the sandbox shortly after the simulate call
        c2b = [e for e in world.sandboxes.daraja.books.entries(start) if e.kind == "c2b"]
        if c2b:
            break
        await asyncio.sleep(0.02)

    report = await reconciled(world, start)

    assert not report.ok
    missing = {f.transaction_ids[0]: f for f in report.missing_on_ours}
    assert set(missing) == {c2b[0].transaction_id, world.sandboxes.wave.books.entries(start)[-1].transaction_id}
    assert missing[c2b[0].transaction_id].their_amount == Money.of(700, KES)
    assert manual.receive_amount == -next(f.their_amount for t, f in missing.items() if t != c2b[0].transaction_id)
    assert "On the provider's statement, not in Sauti:" in report.render()


async def test_a_payment_the_provider_never_saw_is_missing_on_theirs(world: PaymentsWorld):
    start = datetime.now(UTC)
    user = await world.user()
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", user.id, Money.of(400, KES), Channel.USSD))
    # Before the B2C job runs, the payment is marked paid without M-Pesa ever seeing it (a forged or
    # mistaken result; an operator's wrong manual resolution). The ledger settles it consistently:
    # only the provider's statement can tell.
    await world.payments.resolver.apply(payment.public_id, Verdict(True, "manual_resolution"))
    await world.worker.drain()  # the job then finds nothing to send
    assert (await world.payment(payment.public_id)).status is S.SUCCEEDED

    report = await reconciled(world, start)

    assert ids(report.missing_on_theirs) == {payment.public_id}
    assert report.missing_on_theirs[0].our_amount == -Money.of(400, KES)
    assert not report.ledger_mismatches and not report.missing_on_ours
    assert not report.ok


async def test_the_provider_paying_what_we_failed_is_a_status_mismatch(world: PaymentsWorld):
    start = datetime.now(UTC)
    user = await world.user(suffix="900")  # the sandbox pays, and its result callback never comes
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", user.id, Money.of(200, KES), Channel.USSD))
    for _ in range(200):
        await world.worker.drain()
        if world.sandboxes.daraja.books.find_by_reference(payment.public_id):
            break
        await asyncio.sleep(0.02)
    # Someone decides it failed: the payer gets the money back, though M-Pesa paid the recipient.
    await world.payments.resolver.apply(payment.public_id, Verdict(False, "manual_resolution", "gave_up", "gave up"))

    report = await reconciled(world, start)

    assert ids(report.status_mismatches) == {payment.public_id}
    mismatch = report.status_mismatches[0]
    assert "Sauti failed it" in mismatch.detail and mismatch.their_amount == -Money.of(200, KES)
    assert mismatch.our_status == "failed" and not report.amount_mismatches


async def test_a_payment_still_in_flight_is_listed_but_is_no_discrepancy(world: PaymentsWorld):
    start = datetime.now(UTC)
    user = await world.user(suffix="905")  # Daraja queues the B2C out: nothing paid, outcome unknown
    await world.fund(user, Money.of(1000, KES))
    payment = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", user.id, Money.of(150, KES), Channel.USSD))
    await world.worker.drain()

    report = await reconciled(world, start)

    assert ids(report.open) == {payment.public_id} and report.ok


async def test_refunds_and_payments_to_our_paybill_reconcile(world: PaymentsWorld):
    start = datetime.now(UTC)
    kenyan, senegalese = await world.user(), await world.user(XOF)
    await world.fund(senegalese, Money.of(20_000, XOF))
    # Refunds are payments of their own: M-Pesa's reversal line and Wave's refund and payout-reversal
    # lines are theirs, and the payments they undo still match their own lines.
    stk = await world.settle((await world.payments.handle(Deposit(
        f"d-{uuid.uuid4()}", kenyan.id, Money.of(250, KES), Channel.USSD))).public_id)
    checkout = await wave_deposit(world, 3000)
    payout = await world.settle((await world.payments.handle(SendToPhone(
        f"s-{uuid.uuid4()}", senegalese.id, Money.of(2000, XOF), Channel.USSD,
        recipient_phone="+221775556789"))).public_id)
    refunds = [await world.settle((await world.payments.handle(Refund(f"r-{uuid.uuid4()}", public_id,
                                                                      "customer asked"))).public_id)
               for public_id in (stk.public_id, checkout, payout.public_id)]
    assert {r.status for r in refunds} == {S.SUCCEEDED}
    # Customers pay our paybill from their phone menu: to a wallet's number, and (validation not
    # answering, so M-Pesa completes it anyway) to no wallet at all.
    base = world.payments.settings.callback_base_url
    for bill_ref, validation in ((kenyan.phone, "validation"), ("nobody-here", "validation-down")):
        await world.payments.providers.daraja.register_c2b_urls(
            confirmation_url=f"{base}/c2b/confirmation", validation_url=f"{base}/c2b/{validation}")
        before = len(world.callbacks.outcomes)
        await world.payments.providers.daraja.simulate_c2b(phone=random_kenyan_number(),
                                                           amount=Money.of(300, KES), bill_ref_number=bill_ref)
        await world.until_callback("c2b/confirmation", after=before)
    c2b = await world.scalar("SELECT public_id FROM payments WHERE provider = 'mpesa' AND kind = 'deposit' "
                             "AND payer_user_id = :u AND idempotency_key LIKE 'c2b:%'", u=kenyan.id)
    assert (await world.settle(c2b)).status is S.SUCCEEDED

    report = await reconciled(world, start)

    assert ids(report.matched) == {stk.public_id, checkout, payout.public_id, c2b, *(r.public_id for r in refunds)}
    refund_of_stk = next(f for f in report.matched if f.public_id == refunds[0].public_id)
    assert refund_of_stk.their_amount == -Money.of(250, KES)  # the reversal took it back out
    refund_of_payout = next(f for f in report.matched if f.public_id == refunds[2].public_id)
    assert refund_of_payout.their_amount == Money.of(2000, XOF)  # Wave's reversal brought it back in
    assert [f.their_amount for f in report.parked_in_suspense] == [Money.of(300, KES)]
    assert not report.missing_on_ours and not report.missing_on_theirs and not report.status_mismatches
    assert not report.ok  # money in suspense waits for a person


async def test_a_payment_booked_by_hand_is_judged_with_its_line_not_in_the_period_it_was_booked(
        world: PaymentsWorld):
    """A paybill payment whose confirmation never came, booked from the statement (`sauti mpesa
    book-c2b`) in a later period than its line: matched in the line's period, and in its own period
    not "done in Sauti, not on the provider's statement" (as money credited from suspense)."""
    first = datetime.now(UTC)
    owner = await world.user()
    account = "0" + owner.phone.removeprefix("+254")
    await world.payments.register_c2b_urls()
    # Suffix 900: M-Pesa takes the money and never sends the confirmation.
    await world.payments.providers.daraja.simulate_c2b(phone=random_kenyan_number()[:-3] + "900",
                                                       amount=Money.of(190, KES), bill_ref_number=account)
    for _ in range(200):
        if lines := [e for e in world.sandboxes.daraja.books.entries() if e.client_reference == account]:
            break
        await asyncio.sleep(0.02)
    (line,) = lines
    await asyncio.sleep(1.5)  # past the grace: the line is the first period's alone
    second = datetime.now(UTC)
    before = len(world.callbacks.outcomes)
    assert await world.payments.book_missed_c2b(receipt=line.transaction_id, amount=Money(line.amount_minor, KES),
                                                account=account, phone=line.party, booked_by="hawa",
                                                reason="on the statement") == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    booked = await world.scalar("SELECT public_id FROM payments WHERE provider_ref = :r", r=line.transaction_id)
    grace = timedelta(seconds=1)
    sources = [DarajaSandboxStatement(world.sandboxes.urls.daraja)]

    theirs = await reconcile(world.engine, sources, first, second, grace=grace)
    assert ids(theirs.matched) == {booked} and theirs.ok, theirs.render()
    ours = await reconcile(world.engine, sources, second, datetime.now(UTC) + timedelta(seconds=1), grace=grace)
    assert not ours.missing_on_theirs and ours.ok, ours.render()


# -- the M-Pesa statement file ---------------------------------------------------------------------


def csv_time(moment: datetime) -> str:
    return f"{moment.astimezone(NAIROBI):%Y-%m-%d %H:%M:%S}"


async def next_whole_second() -> datetime:
    """A period start for statements whose times are whole seconds: the next second, waited for,
    so that it falls after whatever was done before it."""
    now = datetime.now(UTC)
    await asyncio.sleep(1 - now.microsecond / 1_000_000)
    return now.replace(microsecond=0) + timedelta(seconds=1)


async def test_an_m_pesa_statement_csv_reconciles_by_receipt(world: PaymentsWorld, tmp_path):
    start = await next_whole_second()
    user = await world.user()
    await world.fund(user, Money.of(5000, KES))
    paid = [await world.settle((await world.payments.handle(Withdraw(
        f"w-{uuid.uuid4()}", user.id, Money.of(amount, KES), Channel.USSD))).public_id) for amount in (100, 200, 300)]
    deposit = await world.settle((await world.payments.handle(Deposit(
        f"d-{uuid.uuid4()}", user.id, Money.of(250, KES), Channel.USSD))).public_id)
    # A payout whose result never came (no receipt on our side): only its amount, number and time match.
    silent = await world.user(suffix="900")
    await world.fund(silent, Money.of(500, KES))
    unconfirmed = await world.payments.handle(Withdraw(f"w-{uuid.uuid4()}", silent.id, Money.of(120, KES),
                                                       Channel.USSD))
    await world.worker.drain()
    now = csv_time(datetime.now(UTC))
    masked = silent.phone[1:5] + "*" * 5 + silent.phone[-3:]
    rows = [
        "Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,"
        "Balance Confirmed,Reason Type,Other Party Info,Linked Transaction ID,A/C No.",
        f"{paid[0].provider_refs['receipt']},{now},{now},Business Payment,Completed,,-100.00,1,true,"
        f"Business Payment to Customer,{user.phone[1:]} - Test,,",
        f"{paid[1].provider_refs['receipt']},{now},{now},Business Payment,Completed,,\"-1,200.00\",1,true,"
        f"Business Payment to Customer,{user.phone[1:]} - Test,,",  # the provider paid more than we asked
        f"{paid[2].provider_refs['receipt']},{now},{now},Business Payment,Completed,,300.00,1,true,"
        f"Business Payment to Customer,{user.phone[1:]} - Test,,",
        f"RVS{uuid.uuid4().hex[:7].upper()},{now},{now},Reversal of {paid[2].provider_refs['receipt']},Completed,"
        f"300.00,,1,true,Reversal,{user.phone[1:]} - Test,{paid[2].provider_refs['receipt']},",
        # What the payer typed is in Details: "RECHARGE" names no charge (the Reason Type says what it is).
        f"{deposit.provider_refs['receipt']},{now},{now},Pay Bill from {user.phone[1:]} - Test Acc. RECHARGE,"
        f"Completed,250.00,,1,true,Pay Bill Online,{user.phone[1:]} - Test,,RECHARGE",
        f"CHG{uuid.uuid4().hex[:7].upper()},{now},{now},B2C charges,Completed,,-15.00,1,true,"
        f"Business Payment Charge,,,",
        f"FLD{uuid.uuid4().hex[:7].upper()},{now},{now},Business Payment,Failed,,-999.00,1,true,,,,",
        f"UNC{uuid.uuid4().hex[:7].upper()},{now},{now},Business Payment,Completed,,-120.00,1,true,"
        f"Business Payment to Customer,{masked} - Silent,,",
    ]
    statement = tmp_path / "mpesa.csv"
    statement.write_text("Organisation Name:,Sauti\nTime Period:,today\n\n" + "\n".join(rows) + "\n")

    report = await reconciled(world, start, [MpesaCsvStatement(statement)])

    assert ids(report.matched) == {paid[0].public_id, deposit.public_id}
    assert ids(report.amount_mismatches) == {paid[1].public_id}
    assert report.amount_mismatches[0].their_amount == -Money.of(1200, KES)
    assert ids(report.status_mismatches) == {paid[2].public_id}  # reversed by M-Pesa, succeeded for us
    assert "reversed" in report.status_mismatches[0].detail
    assert ids(report.probable_matches) == {unconfirmed.public_id}
    assert not report.missing_on_ours and not report.missing_on_theirs
    assert report.provider_fees == {"KES": 1500}

    # The same through the command operators run, as JSON; discrepancies make it exit 1 ...
    cli = reconcile_cli(world, start, "--provider", "mpesa", "--mpesa-statement", str(statement), "--json",
                        "--grace-minutes", "1")
    assert cli.returncode == 1, cli.stderr
    counts = json.loads(cli.stdout)["counts"]
    assert (counts["matched"], counts["amount_mismatches"], counts["status_mismatches"],
            counts["probable_matches"]) == (2, 1, 1, 1)
    # ... and a statement that agrees makes it exit 0.
    again = await next_whole_second()
    one = await world.settle((await world.payments.handle(Withdraw(
        f"w-{uuid.uuid4()}", user.id, Money.of(50, KES), Channel.USSD))).public_id)
    agreeing = tmp_path / "agreeing.csv"
    agreeing.write_text("\n".join([rows[0], f"{one.provider_refs['receipt']},{csv_time(datetime.now(UTC))},,"
                                              "Business Payment,Completed,,-50.00,,,,,,"]) + "\n")
    cli = reconcile_cli(world, again, "--provider", "mpesa", "--mpesa-statement", str(agreeing))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "All matched." in cli.stdout and re.search(r"^  matched +1$", cli.stdout, re.M)


def reconcile_cli(world: PaymentsWorld, start: datetime, *args: str) -> subprocess.CompletedProcess:
    """`sauti reconcile` in a subprocess, on the test's database, from ``start`` to now."""
    env = {**os.environ, "DATABASE_URL": world.database_url}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "reconcile", "--from", start.isoformat(), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def test_the_reconcile_command_says_when_it_cannot_run(world: PaymentsWorld, tmp_path):
    start = datetime.now(UTC)
    no_wave = reconcile_cli(world, start, "--provider", "wave")
    assert no_wave.returncode == 2 and "Wave" in no_wave.stderr and "Traceback" not in no_wave.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("Receipt,When,Amount\nX,2026-01-01,5\n")
    unreadable = reconcile_cli(world, start, "--mpesa-statement", str(bad), "--provider", "mpesa")
    assert unreadable.returncode == 2 and "Receipt No." in unreadable.stderr
    backwards = reconcile_cli(world, start, "--to", (start - timedelta(days=1)).isoformat(), "--provider", "mpesa",
                              "--mpesa-statement", str(bad))
    assert backwards.returncode == 2 and "must end after it starts" in backwards.stderr
    nonsense = reconcile_cli(world, start, "--to", "yesterday")
    assert nonsense.returncode == 2 and "ISO 8601" in nonsense.stderr


async def test_a_long_statement_is_read_in_one_pass(world: PaymentsWorld, tmp_path):
    # More lines than one SQL statement may carry parameters (32767): ids travel as arrays.
    start = await next_whole_second()
    now = csv_time(start + timedelta(seconds=1))
    rows = ["Receipt No.,Completion Time,Paid In,Withdrawn"]
    rows += [f"BULK{n:08d},{now},10.00," for n in range(40_000)]
    statement = tmp_path / "month.csv"
    statement.write_text("\n".join(rows) + "\n")

    report = await reconcile(world.engine, [MpesaCsvStatement(statement)], start, start + timedelta(seconds=5),
                             grace=timedelta(0))

    assert len(report.missing_on_ours) == 40_000 and not report.matched
