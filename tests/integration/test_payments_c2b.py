"""C2B end to end: a customer pays our paybill from the M-Pesa menu (the sandbox's simulate), with a
Sauti wallet's phone number as the account number. Validation accepts known active wallets and
rejects anything else with the contract's codes; the confirmation is booked once per TransID,
confirmed by a transaction status query before the wallet is credited; money for no wallet is parked
in suspense, never lost; a confirmation M-Pesa cannot vouch for credits nothing. A payment whose
confirmation never came is booked by an operator from the statement (`sauti mpesa book-c2b`), and
credited only once M-Pesa confirms what was typed."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, Refund
from payments.errors import InvalidRequest
from payments.identities import User
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.payment_store import find_by_provider_ref
from payments.providers.daraja_callbacks import parse_c2b_payment
from payments.review import OperatorVerdict
from payments.sandbox.books import BookEntry
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, local, payments_world
from tests.numbers import unique_digits

ROOT = Path(__file__).resolve().parents[2]
KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def world(new_database) -> AsyncIterator[PaymentsWorld]:
    async with payments_world(await new_database()) as running:
        registered = await running.payments.register_c2b_urls()
        assert registered.originator_conversation_id
        yield running


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(world: PaymentsWorld) -> AsyncIterator[None]:
    yield
    await world.assert_ledger_ok()



async def pay_paybill(world: PaymentsWorld, payer_phone: str, amount: int, account: str) -> int:
    """The customer pays our paybill from the M-Pesa menu; returns where our callback log stood."""
    before = len(world.callbacks.outcomes)
    await world.payments.providers.daraja.simulate_c2b(phone=payer_phone, amount=Money.of(amount, KES),
                                                       bill_ref_number=account)
    return before


async def post_confirmation(world: PaymentsWorld, **fields: str) -> None:
    """A confirmation POSTed to our URL as Daraja would (or as a forger could: Daraja signs nothing)."""
    body = {"TransactionType": "Pay Bill", "TransID": "SBX0000000", "TransTime": "20991231235959",
            "TransAmount": "100.00", "BusinessShortCode": world.sandboxes.settings.daraja_shortcode,
            "BillRefNumber": "", "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
            "MSISDN": "254700000000", "FirstName": "A", "MiddleName": "", "LastName": "B", **fields}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/c2b/confirmation", json=body) as resp:
        assert resp.status == 200


async def test_a_paybill_payment_naming_a_wallet_is_confirmed_then_credited(world: PaymentsWorld):
    owner = await world.user(name="Wanjiku")
    payer = await world.user()
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")

    before = await pay_paybill(world, payer.phone, 700, local(owner.phone))

    assert await world.until_callback("c2b/validation", after=before) == "0"
    assert await world.until_callback("c2b/confirmation", after=before) == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    trans_id = next(e.transaction_id for e in world.sandboxes.daraja.books.entries()
                    if e.kind == "c2b" and e.client_reference == local(owner.phone))
    async with world.engine.connect() as conn:
        payment = await find_by_provider_ref(conn, "mpesa", trans_id)
    assert payment is not None
    assert (payment.kind, payment.channel, payment.status) == ("deposit", "api", S.SUCCEEDED)
    assert (payment.payer_user_id, payment.amount, payment.fee) == (owner.id, Money.of(700, KES), Money.zero(KES))
    assert payment.recipient_phone == payer.phone  # the number the money came from
    assert payment.provider_refs["receipt"] == trans_id and payment.provider_refs["source"] == "c2b"
    _, events = await world.payments.history(payment.public_id)
    assert [(e.to_status, e.cause) for e in events] == [
        (S.CREATED, "c2b_confirmation"), (S.PROCESSING, "c2b_confirmation"), (S.SUCCEEDED, "status_query")]
    assert await world.wallet(owner) == Money.of(700, KES)
    assert await world.wallet(payer) == Money.zero(KES)
    assert collection_before - await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") == Money.of(700, KES)
    await world.worker.drain()


@pytest.mark.parametrize("account", ["254{digits}", "+254 {digits}", "{digits}"])
async def test_the_account_number_is_the_wallets_phone_in_any_local_form(world: PaymentsWorld, account: str):
    owner = await world.user()
    digits = owner.phone.removeprefix("+254")
    before = await pay_paybill(world, owner.phone, 50, account.format(digits=digits))
    assert await world.until_callback("c2b/validation", after=before) == "0"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(owner) == Money.of(50, KES)


@pytest.mark.parametrize(("account", "code"), [
    ("0799999999", "C2B00012"),  # a valid number with no Sauti wallet
    ("INVOICE-77", "C2B00012"),  # not a phone number at all
    ("+221771234567", "C2B00012"),  # a wallet abroad: our paybill takes shillings for Kenyan wallets
])
async def test_an_account_number_naming_no_wallet_is_rejected_and_nothing_is_taken(world: PaymentsWorld,
                                                                                    account: str, code: str):
    payer = await world.user()
    entries_before = len(world.sandboxes.daraja.books.entries())
    before = await pay_paybill(world, payer.phone, 100, account)

    assert await world.until_callback("c2b/validation", after=before) == code
    await world.worker.drain()
    assert [w for w, _ in world.callbacks.outcomes[before:]] == ["c2b/validation"]
    assert len(world.sandboxes.daraja.books.entries()) == entries_before  # M-Pesa took nothing


async def test_a_closed_wallet_and_an_amount_over_the_limit_are_rejected(world: PaymentsWorld):
    closed, owner, payer = await world.user(), await world.user(), await world.user()
    async with world.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET status = 'closed' WHERE id = :u"), {"u": closed.id})

    before = await pay_paybill(world, payer.phone, 100, local(closed.phone))
    assert await world.until_callback("c2b/validation", after=before) == "C2B00012"
    before = await pay_paybill(world, payer.phone, 80_000, local(owner.phone))  # over a tier-0 day
    assert await world.until_callback("c2b/validation", after=before) == "C2B00013"
    assert await world.wallet(closed) == Money.zero(KES) and await world.wallet(owner) == Money.zero(KES)


async def test_a_confirmation_delivered_twice_credits_once(world: PaymentsWorld):
    owner = await world.user()
    payer = await world.user(suffix="902")  # the sandbox POSTs the confirmation twice

    before = await pay_paybill(world, payer.phone, 300, local(owner.phone))
    assert await world.until_callback("c2b/confirmation", "duplicate", after=before) == "duplicate"
    assert await world.until_callback("status/result", after=before) == "succeeded"

    assert sorted(o for w, o in world.callbacks.outcomes[before:] if w == "c2b/confirmation") == [
        "confirming", "duplicate"]
    assert await world.wallet(owner) == Money.of(300, KES)
    assert await world.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=owner.id) == 1


async def test_money_for_no_wallet_after_validation_failed_to_answer_is_parked_in_suspense(world: PaymentsWorld):
    payer = await world.user()
    base = world.payments.settings.callback_base_url
    daraja = world.payments.providers.daraja
    suspense_before = await world.balance(AccountKind.SUSPENSE, KES, "mpesa")
    # Our validation URL does not answer (404): Daraja lets the payment through (ResponseType Completed).
    await daraja.register_c2b_urls(confirmation_url=base + "/c2b/confirmation",
                                   validation_url=base + "/c2b/not-answering")
    try:
        before = await pay_paybill(world, payer.phone, 450, "WRONG-ACCOUNT")
        assert await world.until_callback("c2b/confirmation", after=before) == "suspense"
    finally:
        await world.payments.register_c2b_urls()

    trans_id = next(e.transaction_id for e in world.sandboxes.daraja.books.entries()
                    if e.client_reference == "WRONG-ACCOUNT")
    assert await world.balance(AccountKind.SUSPENSE, KES, "mpesa") - suspense_before == Money.of(450, KES)
    assert await world.scalar("SELECT payload->>'outcome' FROM provider_events WHERE kind = 'c2b_confirmation' "
                              "AND event_key = :t", t=trans_id) == "suspense"
    assert await world.scalar("SELECT count(*) FROM transfers WHERE reference = :t", t=trans_id) == 1
    # The same confirmation again parks nothing more.
    await post_confirmation(world, TransID=trans_id, TransAmount="450.00", BillRefNumber="WRONG-ACCOUNT")
    assert world.callbacks.outcomes[-1] == ("c2b/confirmation", "duplicate")
    assert await world.balance(AccountKind.SUSPENSE, KES, "mpesa") - suspense_before == Money.of(450, KES)


async def test_control_characters_in_a_delivery_are_dropped_and_the_payment_booked(world: PaymentsWorld):
    """M-Pesa cannot be asked again: an account number that came with a NUL (which PostgreSQL cannot
    store, in text or in jsonb) is booked without it, not refused with a 500."""
    owner = await world.user(name="Wanjiku")
    payer = await world.user()

    before = await pay_paybill(world, payer.phone, 300, local(owner.phone) + "\u0000\u001b")

    assert await world.until_callback("c2b/validation", after=before) == "0"
    assert await world.until_callback("c2b/confirmation", after=before) == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(owner) == Money.of(300, KES)


async def test_a_confirmation_m_pesa_cannot_vouch_for_credits_nothing(world: PaymentsWorld):
    owner = await world.user()
    before = len(world.callbacks.outcomes)

    await post_confirmation(world, TransID="FORGED0001", TransAmount="5000.00", BillRefNumber=local(owner.phone))

    assert world.callbacks.outcomes[before] == ("c2b/confirmation", "confirming")
    assert await world.until_callback("status/result", after=before) == "failed"
    (payment,) = await world.rows("SELECT status, error_code, provider_ref FROM payments "
                                  "WHERE provider_refs->>'receipt' = 'FORGED0001'")
    # Failed, and its receipt freed: it credited nothing and holds nothing.
    assert (payment.status, payment.error_code, payment.provider_ref) == ("failed", "not_found", None)
    assert await world.wallet(owner) == Money.zero(KES)


async def test_a_c2b_deposit_can_be_reversed_like_any_m_pesa_deposit(world: PaymentsWorld):
    owner = await world.user()
    before = await pay_paybill(world, owner.phone, 260, local(owner.phone))
    assert await world.until_callback("status/result", after=before) == "succeeded"
    deposit_id = await world.scalar("SELECT public_id FROM payments WHERE payer_user_id = :u", u=owner.id)

    refund = await world.payments.handle(Refund("rf-c2b", deposit_id, "paid the wrong paybill"))
    done = await world.settle(refund.public_id)

    assert done.status is S.SUCCEEDED
    deposit = await world.payment(deposit_id)
    assert deposit.status is S.REVERSED
    assert world.sandboxes.daraja.books.find(deposit.provider_ref).status == "reversed"
    assert await world.wallet(owner) == Money.zero(KES)
    await world.worker.drain()


async def test_without_confirmation_by_query_a_c2b_payment_is_credited_at_once(world: PaymentsWorld):
    trusting = Payments(world.engine, world.ledger, providers=world.payments.providers,
                        settings=dataclasses.replace(world.payments.settings, confirm_stk_with_query=False))
    owner = await world.user()
    paid = parse_c2b_payment({
        "TransactionType": "Pay Bill", "TransID": "SBXTRUST01", "TransTime": "20991231235959",
        "TransAmount": "120.00", "BusinessShortCode": "174379", "BillRefNumber": local(owner.phone),
        "MSISDN": "254700000000", "FirstName": "A"})

    assert await trusting.on_c2b_confirmation(paid) == "credited"
    assert await trusting.on_c2b_confirmation(paid) == "duplicate"
    assert await world.wallet(owner) == Money.of(120, KES)
    await world.worker.drain()


# -- a confirmation that never came, booked by an operator from the statement ---------------------


def statement_line(world: PaymentsWorld, account: str) -> BookEntry:
    (line,) = [e for e in world.sandboxes.daraja.books.entries() if e.kind == "c2b" and e.client_reference == account]
    return line


def typed(line: BookEntry, **changes: object) -> dict[str, object]:
    """What an operator types from a statement line into `sauti mpesa book-c2b`."""
    return {"receipt": line.transaction_id, "amount": Money(line.amount_minor, KES),
            "account": line.client_reference, "phone": line.party, **changes}


async def paid_without_confirmation(world: PaymentsWorld, amount: int) -> tuple[User, BookEntry]:
    """A customer pays a wallet's number (suffix 900: M-Pesa takes the money, validated by us, and
    never sends the confirmation)."""
    owner = await world.user()
    before = await pay_paybill(world, f"+254722{unique_digits(3)}900", amount, local(owner.phone))
    assert await world.until_callback("c2b/validation", after=before) == "0"
    for _ in range(200):
        if [e for e in world.sandboxes.daraja.books.entries() if e.client_reference == local(owner.phone)]:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # a confirmation would have come by now
    line = statement_line(world, local(owner.phone))
    async with world.engine.connect() as conn:
        assert await find_by_provider_ref(conn, "mpesa", line.transaction_id) is None
    return owner, line


async def test_a_payment_whose_confirmation_never_came_is_booked_from_the_statement(world: PaymentsWorld):
    owner, line = await paid_without_confirmation(world, 190)
    before = len(world.callbacks.outcomes)

    booked = await world.payments.book_missed_c2b(**typed(line), booked_by="hawa", reason="on the statement")

    assert booked == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(owner) == Money.of(190, KES)
    async with world.engine.connect() as conn:
        payment = await find_by_provider_ref(conn, "mpesa", line.transaction_id)
    assert payment is not None and payment.status is S.SUCCEEDED and payment.payer_user_id == owner.id
    audit = await world.rows("SELECT actor, details FROM audit_log WHERE action = 'c2b.book' AND subject = :s",
                             s=line.transaction_id)
    assert [(a.actor, a.details["reason"]) for a in audit] == [("hawa", "on the statement")]
    # Booked again (or the confirmation arriving late): nothing more.
    assert await world.payments.book_missed_c2b(**typed(line), booked_by="hawa", reason="again") == "duplicate"
    await post_confirmation(world, TransID=line.transaction_id, TransAmount="190.00",
                            BillRefNumber=local(owner.phone))
    assert await world.wallet(owner) == Money.of(190, KES)
    await world.worker.drain()


async def test_a_push_s_receipt_booked_by_hand_is_not_credited_again(world: PaymentsWorld):
    """An STK push's deposit holds its receipt among its references (not as its provider reference,
    which is the push's id): a booking by hand of that receipt finds it, and books nothing."""
    owner = await world.user()
    deposit = await world.payments.handle(Deposit(f"push-{unique_digits(6)}", owner.id, Money.of(500, KES),
                                                  Channel.USSD))
    receipt = (await world.settle(deposit.public_id)).provider_refs["receipt"]

    booked = await world.payments.book_missed_c2b(receipt=receipt, amount=Money.of(500, KES),
                                                  account=local(owner.phone), phone=owner.phone, booked_by="ida",
                                                  reason="on the statement")

    assert booked == "duplicate"
    await world.worker.drain()
    assert await world.wallet(owner) == Money.of(500, KES)
    assert await world.scalar("SELECT count(*) FROM payments WHERE provider_refs->>'receipt' = :r", r=receipt) == 1


async def test_what_an_operator_mistypes_is_checked_by_m_pesa(world: PaymentsWorld):
    owner, line = await paid_without_confirmation(world, 240)
    # A receipt that is on no statement: M-Pesa knows no such transaction; nothing is credited.
    before = len(world.callbacks.outcomes)
    assert await world.payments.book_missed_c2b(**typed(line, receipt="SBXTYPO001"), booked_by="ida",
                                                reason="typo") == "confirming"
    assert await world.until_callback("status/result", after=before) == "failed"
    # Another amount than the statement's: failed, nothing credited, and the receipt free again.
    before = len(world.callbacks.outcomes)
    await world.payments.book_missed_c2b(**typed(line, amount=Money.of(2_400, KES)), booked_by="ida", reason="typo")
    assert await world.until_callback("status/result", after=before) == "failed"
    (mistyped,) = await world.rows("SELECT status, error_code, error_message, provider_ref FROM payments "
                                   "WHERE provider_refs->>'receipt' = :r", r=line.transaction_id)
    assert (mistyped.status, mistyped.error_code, mistyped.provider_ref) == ("failed", "amount_mismatch", None)
    assert "M-Pesa reports KES 240" in mistyped.error_message
    assert await world.wallet(owner) == Money.zero(KES)
    # Typed again as the statement says: credited once.
    before = len(world.callbacks.outcomes)
    assert await world.payments.book_missed_c2b(**typed(line), booked_by="ida", reason="again") == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(owner) == Money.of(240, KES)

    for wrong, message in ((typed(line, account="0799999999"), "names no Kenyan wallet"),
                           (typed(line, receipt="SBXCENTS01", amount=Money(24_050, KES)), "whole shillings"),
                           (typed(line, receipt="SBXZERO001", amount=Money.zero(KES)), "whole shillings")):
        with pytest.raises(InvalidRequest, match=message):
            await world.payments.book_missed_c2b(**wrong, booked_by="ida", reason="typo")
    await world.worker.drain()


async def test_sauti_mpesa_book_c2b(world: PaymentsWorld):
    owner, line = await paid_without_confirmation(world, 330)
    url = world.engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url, "SAUTI__PROVIDERS__MODE": "sandbox",
           "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false"}

    def book(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "mpesa", "book-c2b", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    refused = await asyncio.to_thread(book, "NOT-A-RECEIPT", "--amount", "330", "--account", "0700", "--phone", "x")
    assert refused.returncode == 1 and "letters and digits" in refused.stderr and "Traceback" not in refused.stderr
    done = await asyncio.to_thread(book, line.transaction_id.lower(), "--amount", "330", "--account",
                                   line.client_reference, "--phone", line.party, "--by", "juma")
    assert done.returncode == 0, done.stderr
    assert f"{line.transaction_id} booked as payment " in done.stdout and "(processing)" in done.stdout
    for _ in range(300):  # this world's worker asks M-Pesa
        await world.worker.drain()
        if await world.wallet(owner) == Money.of(330, KES):
            break
        await asyncio.sleep(0.02)
    assert await world.wallet(owner) == Money.of(330, KES)
    again = await asyncio.to_thread(book, line.transaction_id, "--amount", "330", "--account",
                                    line.client_reference, "--phone", line.party)
    assert again.returncode == 0 and "was booked already: payment " in again.stdout


async def test_a_confirmation_whose_amount_m_pesa_disputes_is_given_back_then_booked_as_the_statement_says(
        world: PaymentsWorld):
    owner, line = await paid_without_confirmation(world, 420)
    before = len(world.callbacks.outcomes)
    # A confirmation for that receipt arrives after all, with another amount than M-Pesa's.
    await post_confirmation(world, TransID=line.transaction_id, TransAmount="4200.00",
                            BillRefNumber=local(owner.phone))
    assert await world.until_callback("status/result", after=before) == "needs_review"
    async with world.engine.connect() as conn:
        flagged = await find_by_provider_ref(conn, "mpesa", line.transaction_id)
    assert flagged is not None and flagged.status is S.PROCESSING
    assert "M-Pesa reports KES 420" in flagged.provider_refs["needs_review"]

    # The operator reads the statement: not as confirmed. Failed, nothing credited, receipt freed ...
    await world.payments.decide(OperatorVerdict(flagged.public_id, False, "statement says 420", "juma"))
    assert await world.wallet(owner) == Money.zero(KES)
    # ... and booked as the statement says.
    before = len(world.callbacks.outcomes)
    assert await world.payments.book_missed_c2b(**typed(line), booked_by="juma", reason="420 on the statement") \
        == "confirming"
    assert await world.until_callback("status/result", after=before) == "succeeded"
    assert await world.wallet(owner) == Money.of(420, KES)
    await world.worker.drain()
