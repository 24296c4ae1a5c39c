"""A paybill payment booked by hand (`sauti mpesa book-c2b`) is never an STK push's money credited
a second time. Recovery credits a push whose callback never came by STK query, which names no
receipt: the push's line on the statement then matches no payment by id (reconciliation pairs it
with the push only as a probable match), and M-Pesa's status query would find its receipt paid to
our paybill, for its amount, and credit it again. So a booking by hand is refused while an STK
deposit for that amount, from that number or into that wallet, holds no receipt (credited, or
waiting for M-Pesa's answer), naming it; an operator who found that deposit's own line under another
receipt says so (``not_pushes``, ``--not-push``) and the booking goes on, audited. All over real HTTP
to the Daraja sandbox, and the CLI as operators run it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from payments.commands import Channel, Deposit
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.provider_statements import MpesaCsvUpload
from payments.providers.daraja_credentials import NAIROBI
from payments.reconcile import reconcile
from payments.sandbox.books import BookEntry
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, local, payments_world

ROOT = Path(__file__).resolve().parents[2]
KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:
        await running.payments.register_c2b_urls()  # for the customer who pays the paybill too
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()



async def line_of(world: PaymentsWorld, reference: str | None = None, *, account: str | None = None) -> BookEntry:
    """The statement line of a push (by its CheckoutRequestID) or of a paybill payment (by account)."""
    for _ in range(300):
        lines = [e for e in world.sandboxes.daraja.books.entries()
                 if (reference is not None and e.reference == reference)
                 or (account is not None and e.kind == "c2b" and e.client_reference == account)]
        if lines:
            (line,) = lines
            return line
        await asyncio.sleep(0.02)
    raise AssertionError("no such line on the statement")


async def book(world: PaymentsWorld, line: BookEntry, account: str, **more: object) -> str:
    """What an operator types from the statement line into `sauti mpesa book-c2b`."""
    return await world.payments.book_missed_c2b(
        receipt=line.transaction_id, amount=Money(line.amount_minor, KES), account=account, phone=line.party,
        booked_by="ops", reason="on the statement, no payment carries it", **more)


async def holders(world: PaymentsWorld, receipt: str) -> int:
    return await world.scalar("SELECT count(*) FROM payments WHERE provider_ref = :r "
                              "OR provider_refs->>'receipt' = :r", r=receipt)


async def test_a_push_credited_without_its_receipt_is_not_credited_again_by_a_booking_by_hand(world: PaymentsWorld):
    user, deposit = await world.deposit_credited_without_receipt(Money.of(300, KES), "push-by-hand-1")
    line = await line_of(world, deposit.provider_ref)
    # What the operator reads in reconciliation: the line matches no payment by id, and is only
    # "probably" the deposit's (same amount and number).
    when = f"{line.at.astimezone(NAIROBI):%Y-%m-%d %H:%M:%S}"
    csv = ("Receipt No.,Completion Time,Paid In,Withdrawn,Reason Type,Other Party Info,A/C No.\n"
           f"{line.transaction_id},{when},300.00,,Pay Bill Online,{line.party} - Customer,Sauti\n")
    report = await reconcile(world.engine, [MpesaCsvUpload(csv)], line.at - timedelta(minutes=1),
                             line.at + timedelta(minutes=1), grace=timedelta(0))
    assert [f.public_id for f in report.probable_matches] == [deposit.public_id]

    with pytest.raises(InvalidRequest) as refused:
        await book(world, line, local(user.phone))
    said = str(refused.value)
    assert f"{line.transaction_id} may be the M-Pesa receipt of deposit {deposit.reference}" in said, said
    assert deposit.provider_ref in said and f"--not-push {deposit.reference}" in said and "nothing booked" in said
    # Into another wallet (the account typed is someone else's), from the push's number: refused too.
    other = await world.user()
    with pytest.raises(InvalidRequest, match=deposit.reference):
        await book(world, line, local(other.phone))

    await world.worker.drain()
    assert await world.wallet(user) == Money.of(300, KES)
    assert await world.wallet(other) == Money.zero(KES)
    assert await holders(world, line.transaction_id) == 0
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'c2b.book' AND subject = :s",
                              s=line.transaction_id) == 0


async def test_a_push_still_waiting_for_m_pesa_s_answer_is_not_booked_by_hand_either(world: PaymentsWorld):
    """The other order: its line is booked by hand before recovery's STK query credits the push."""
    user = await world.user(suffix="900")  # M-Pesa takes the money and never calls back
    deposit = await world.payments.handle(Deposit("push-by-hand-2", user.id, Money.of(250, KES), Channel.USSD))
    for _ in range(300):
        await world.worker.drain()
        deposit = await world.payment(deposit.public_id)
        if deposit.status is S.PROCESSING:
            break
        await asyncio.sleep(0.02)
    line = await line_of(world, deposit.provider_ref)

    with pytest.raises(InvalidRequest, match=f"deposit {deposit.reference} .*still waiting for M-Pesa's answer"):
        await book(world, line, local(user.phone))

    for _ in range(300):
        await world.payments.recover_stuck(timedelta(0))
        if (await world.payment(deposit.public_id)).status is S.SUCCEEDED:
            break
        await asyncio.sleep(0.05)
    await world.worker.drain()
    assert await world.wallet(user) == Money.of(250, KES)
    assert await holders(world, line.transaction_id) == 0


async def test_an_operator_who_found_the_push_s_own_line_books_another_payment_of_the_same_amount(
        world: PaymentsWorld):
    """The payer also paid the paybill, the same amount, and that confirmation never came either:
    two lines, the push's (its CheckoutRequestID on it) and the paybill payment's."""
    user, deposit = await world.deposit_credited_without_receipt(Money.of(350, KES), "push-by-hand-3")
    push_line = await line_of(world, deposit.provider_ref)
    await world.payments.providers.daraja.simulate_c2b(phone=user.phone, amount=Money.of(350, KES),
                                                       bill_ref_number=local(user.phone))
    paybill_line = await line_of(world, account=local(user.phone))
    assert paybill_line.transaction_id != push_line.transaction_id

    with pytest.raises(InvalidRequest, match=f"--not-push {deposit.reference}"):
        await book(world, paybill_line, local(user.phone))
    with pytest.raises(InvalidRequest, match="no payment 'pay_nosuchpayment'"):
        await book(world, paybill_line, local(user.phone), not_pushes=["pay_nosuchpayment"])

    before = len(world.callbacks.outcomes)
    assert await book(world, paybill_line, local(user.phone), not_pushes=[deposit.reference]) == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(user) == Money.of(700, KES)
    (audit,) = await world.rows("SELECT actor, details FROM audit_log WHERE action = 'c2b.book' AND subject = :s",
                                s=paybill_line.transaction_id)
    assert (audit.actor, audit.details["not_pushes"]) == ("ops", [deposit.public_id])
    # The push's own line is still refused: the deposit holds no receipt yet.
    with pytest.raises(InvalidRequest, match=deposit.reference):
        await book(world, push_line, local(user.phone))
    await world.worker.drain()
    assert await world.wallet(user) == Money.of(700, KES)


async def test_sauti_mpesa_book_c2b_says_which_deposit_and_how_to_go_on(world: PaymentsWorld):
    user, deposit = await world.deposit_credited_without_receipt(Money.of(320, KES), "push-by-hand-4")
    await world.payments.providers.daraja.simulate_c2b(phone=user.phone, amount=Money.of(320, KES),
                                                       bill_ref_number=local(user.phone))
    line = await line_of(world, account=local(user.phone))  # the paybill payment's line, not the push's
    env = {**os.environ, "DATABASE_URL": world.engine.url.render_as_string(hide_password=False),
           "SAUTI__PROVIDERS__MODE": "sandbox", "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false"}

    def book_c2b(*more: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "mpesa", "book-c2b", line.transaction_id,
                               "--amount", "320", "--account", local(user.phone), "--phone", line.party, "--by", "ops",
                               *more], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    refused = await asyncio.to_thread(book_c2b)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert f"may be the M-Pesa receipt of deposit {deposit.reference}" in refused.stderr, refused.stderr
    assert f"--not-push {deposit.reference}" in refused.stderr
    assert await holders(world, line.transaction_id) == 0

    done = await asyncio.to_thread(book_c2b, "--not-push", deposit.reference)
    assert done.returncode == 0 and f"{line.transaction_id} booked as payment" in done.stdout, done.stderr
    for _ in range(300):  # this world's worker asks M-Pesa
        await world.worker.drain()
        if await world.wallet(user) == Money.of(640, KES):
            break
        await asyncio.sleep(0.02)
    assert await world.wallet(user) == Money.of(640, KES)
