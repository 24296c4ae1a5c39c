"""Money parked in suspense and its release, end to end: customers pay our paybill (the Daraja
sandbox's C2B simulate, over real HTTP) with an account number that names no wallet, M-Pesa takes
the money (our validation did not answer), and it is parked; operators list it, credit it to the
wallet it was meant for (a deposit of its own, reconciled and refundable like any other) or record
it as reversed to its payer at M-Pesa, once, through the operator API, the dashboard and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from db.engine import create_engine
from db.migrate import downgrade, upgrade
from payments import suspense
from payments.accounts import AccountKind, open_account
from payments.api_keys import SUPPORT
from payments.commands import Channel, Refund, Withdraw
from payments.errors import InvalidRequest
from payments.ledger import Ledger, LedgerLimits
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs
from payments.provider_statements import DarajaSandboxStatement
from payments.reconcile import reconcile
from payments.refunds import NotRefundable
from payments.sandbox.books import BookEntry
from payments.states import PaymentStatus
from tests.integration.ledger_helpers import random_kenyan_number
from tests.integration.ops_helpers import (
    call,
    csrf_of,
    new_key,
    ops_client,
    plans_without_seq_scans,
    sign_in,
    sign_out,
    statements_run,
)
from tests.integration.payments_helpers import PaymentsWorld, local, module_world
from tests.numbers import unique_digits

ROOT = Path(__file__).resolve().parents[2]
KES = Currency.KES
S = PaymentStatus

world, ledger_stays_consistent = module_world()
client, ops_key = ops_client()


async def park(world: PaymentsWorld, amount: int, account: str = "0799-WRONG") -> tuple[str, str]:
    """A customer pays our paybill with ``account`` naming no wallet while our validation URL does
    not answer (so M-Pesa completes it): parked. Returns its receipt and the payer's number."""
    base = world.payments.settings.callback_base_url
    daraja = world.payments.providers.daraja
    payer = random_kenyan_number()
    await daraja.register_c2b_urls(confirmation_url=base + "/c2b/confirmation", validation_url=base + "/c2b/down")
    try:
        before = len(world.callbacks.outcomes)
        await daraja.simulate_c2b(phone=payer, amount=Money.of(amount, KES), bill_ref_number=account)
        assert await world.until_callback("c2b/confirmation", after=before) == "suspense"
    finally:
        await world.payments.register_c2b_urls()
    receipt = next(e.transaction_id for e in reversed(world.sandboxes.daraja.books.entries())
                   if e.client_reference == account and e.kind == "c2b")
    return receipt, payer


async def reverse_at_m_pesa(world: PaymentsWorld, receipt: str, amount: int) -> BookEntry:
    """What an operator does in the M-Pesa portal (here: Daraja's reversal, asked by hand, which no
    payment of ours expects); returns the reversal's entry in the sandbox's books."""
    base = world.payments.settings.callback_base_url
    await world.payments.providers.daraja.reverse(transaction_id=receipt, amount=Money.of(amount, KES),
                                                  result_url=base + "/reversal/result",
                                                  queue_timeout_url=base + "/reversal/timeout")
    for _ in range(200):
        reversal = next((e for e in world.sandboxes.daraja.books.entries() if e.reverses == receipt), None)
        if reversal is not None:
            return reversal
        await asyncio.sleep(0.02)
    raise AssertionError(f"M-Pesa never reversed {receipt}")


async def suspense_balance(world: PaymentsWorld) -> Money:
    return await world.balance(AccountKind.SUSPENSE, KES, "mpesa")


async def test_parked_money_is_listed_and_credited_once_to_the_wallet_it_was_meant_for(world, client, ops_key):
    owner = await world.user(name="Wanjiku")
    receipt, payer = await park(world, 450, account=local(owner.phone)[:-1] + "X")
    held_before = await suspense_balance(world)

    status, listed = await call(client, "GET", "/v1/ops/suspense", ops_key)
    assert status == 200 and listed["open"]["count"] >= 1
    mine = next(p for p in listed["parked"] if p["receipt"] == receipt)
    assert mine["amount_minor"] == 45_000 and mine["state"] == "open" and mine["source"] == "c2b"
    assert mine["account"] == local(owner.phone)[:-1] + "X" and mine["payer"] == payer.lstrip("+")

    status, done = await call(client, "POST", f"/v1/ops/suspense/{receipt.lower()}/credit", ops_key,
                              {"phone": local(owner.phone), "reason": "she called with the receipt"})
    assert status == 201, done
    # M-Pesa is asked first (Daraja signs nothing: the confirmation that parked it may be forged).
    assert done["parked"]["state"] == "confirming" and done["parked"]["released_by"].startswith("Alice (")
    assert done["payment"]["status"] == "processing" and await world.wallet(owner) == Money.zero(KES)
    assert receipt not in {p["receipt"] for p in (await call(client, "GET", "/v1/ops/suspense", ops_key))[1]["parked"]}
    assert (await world.settle(done["payment"]["public_id"])).status is S.SUCCEEDED
    status, deposit = await call(client, "GET", f"/v1/ops/payments/{done['payment']['public_id']}", ops_key)
    assert (deposit["kind"], deposit["status"], deposit["provider"]["receipt"]) == ("deposit", "succeeded", receipt)
    assert (await call(client, "GET", f"/v1/ops/suspense/{receipt}", ops_key))[1]["state"] == "credited"
    assert done["parked"]["payment"] == deposit["public_id"]
    assert await world.wallet(owner) == Money.of(450, KES)
    assert held_before - await suspense_balance(world) == Money.of(450, KES)
    # Its record shows the money's way: parked from collection, then released to the wallet.
    assert [t["kind"] for t in deposit["transfers"]] == ["c2b.suspense", "deposit.release"]
    assert [a["action"] for a in deposit["audit"]] == ["suspense.credit"]
    assert sorted(j["kind"] for j in deposit["jobs"]) == ["mpesa.status_query", "sms.receipt"]  # the owner hears of it

    # Once: the same request again gives the same deposit; a credit to anyone else, or a return, is
    # refused; nothing moves.
    status, again = await call(client, "POST", f"/v1/ops/suspense/{receipt}/credit", ops_key,
                               {"phone": owner.phone, "reason": "asked twice"})
    assert status == 200 and again["payment"]["public_id"] == deposit["public_id"]
    other = await world.user()
    for path, body in ((f"/v1/ops/suspense/{receipt}/credit", {"phone": other.phone, "reason": "again"}),
                       (f"/v1/ops/suspense/{receipt}/return", {"reason": "reversed"})):
        status, refused = await call(client, "POST", path, ops_key, body)
        assert (status, refused["error"]["code"]) == (409, "already_released"), refused
    assert await world.wallet(owner) == Money.of(450, KES) and await world.wallet(other) == Money.zero(KES)
    status, listed = await call(client, "GET", "/v1/ops/suspense", ops_key)
    assert receipt not in {p["receipt"] for p in listed["parked"]}
    status, everything = await call(client, "GET", "/v1/ops/suspense?state=all&limit=200", ops_key)
    assert next(p for p in everything["parked"] if p["receipt"] == receipt)["state"] == "credited"


async def test_money_credited_from_suspense_reconciles_as_a_deposit_and_refunds_as_one(world, client, ops_key):
    start = datetime.now(UTC)
    owner = await world.user()
    receipt, _ = await park(world, 300, account="nobody")
    status, done = await call(client, "POST", f"/v1/ops/suspense/{receipt}/credit", ops_key,
                              {"phone": owner.phone, "reason": "the customer mistyped the account"})
    assert status == 201
    public_id = done["payment"]["public_id"]
    assert (await world.settle(public_id)).status is S.SUCCEEDED

    report = await reconcile(world.engine, [DarajaSandboxStatement(world.sandboxes.urls.daraja)], start,
                             datetime.now(UTC) + timedelta(seconds=1), grace=timedelta(seconds=30))
    assert public_id in {f.public_id for f in report.matched}, report.render()
    assert not [f for f in report.parked_in_suspense + report.missing_on_ours + report.ledger_mismatches
                if receipt in f.transaction_ids or f.public_id == public_id]

    # Refunded like any M-Pesa deposit: a TransactionReversal of its receipt.
    refund = await world.payments.handle(Refund(f"r-{receipt}", public_id, "sent to the wrong wallet"))
    assert (await world.settle(refund.public_id)).status is S.SUCCEEDED
    assert await world.wallet(owner) == Money.zero(KES)
    assert (await world.payment(public_id)).status is S.REVERSED


async def test_parked_money_reversed_at_m_pesa_is_recorded_as_returned_on_the_dashboard(world, client, ops_key):
    start = datetime.now(UTC)
    receipt, _ = await park(world, 700, account="ACC-404")
    collection_before = await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa")
    held_before = await suspense_balance(world)
    # The operator reverses it in the M-Pesa portal (here: Daraja's reversal, asked by hand).
    reversal = await reverse_at_m_pesa(world, receipt, 700)

    page = await sign_in(client, ops_key)
    assert "in suspense" in page
    async with client.get("/ops/suspense") as answer:
        page = await answer.text()
    assert receipt in page and "Record as returned" in page and "ACC-404" in page
    form = {"csrf": csrf_of(page), "reason": "paid the wrong paybill", "reversal": reversal.transaction_id}
    # Not without the tick that says it was reversed at M-Pesa, nor without the form's token.
    async with client.post(f"/ops/suspense/{receipt}/return", data=form) as answer:
        assert answer.status == 400 and "reversed at M-Pesa" in await answer.text()
    async with client.post(f"/ops/suspense/{receipt}/return", data={**form, "csrf": "x", "reversed": "yes"}) \
            as answer:
        assert answer.status == 403
    assert await suspense_balance(world) == held_before
    async with client.post(f"/ops/suspense/{receipt}/return", data={**form, "reversed": "yes"},
                           allow_redirects=False) as answer:
        assert answer.status == 303
        location = answer.headers["Location"]
    async with client.get(location) as answer:
        page = await answer.text()
    assert "Recorded as returned to the payer." in page and reversal.transaction_id in page
    assert held_before - await suspense_balance(world) == Money.of(700, KES)
    assert await world.balance(AccountKind.PROVIDER_COLLECTION, KES, "mpesa") - collection_before == Money.of(700, KES)
    # A credit after it is refused, on the page that asked.
    async with client.post(f"/ops/suspense/{receipt}/credit",
                           data={"csrf": csrf_of(page), "phone": (await world.user()).phone, "reason": "x"}) as answer:
        assert answer.status == 409 and "returned to its payer already" in await answer.text()
    await sign_out(client)

    report = await reconcile(world.engine, [DarajaSandboxStatement(world.sandboxes.urls.daraja)], start,
                             datetime.now(UTC) + timedelta(seconds=1), grace=timedelta(seconds=30))
    returned = [f for f in report.matched if receipt in f.transaction_ids]
    assert len(returned) == 1 and reversal.transaction_id in returned[0].transaction_ids
    assert "returned to the payer" in returned[0].detail
    assert not [f for f in report.parked_in_suspense + report.missing_on_ours if receipt in f.transaction_ids
                or reversal.transaction_id in f.transaction_ids]
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE subject = :r AND action = 'suspense.return'",
                              r=receipt) == 1


async def test_money_m_pesa_never_took_is_never_credited_and_waits_again(world, client, ops_key):
    """A confirmation naming no wallet for a receipt M-Pesa never issued (Daraja signs nothing:
    anyone holding the callback URL could send one) is parked; crediting it asks M-Pesa first,
    which knows no such receipt: nothing is credited and the amount waits in suspense again."""
    forged, owner = f"FAKE{uuid.uuid4().hex[:6].upper()}", await world.user()
    assert await forge_confirmation(world, forged, 900, account="nobody-forged") == "suspense"
    held = await suspense_balance(world)
    status, done = await call(client, "POST", f"/v1/ops/suspense/{forged}/credit", ops_key,
                              {"phone": owner.phone, "reason": "a caller claims it"})
    assert status == 201
    failed = await world.settle(done["payment"]["public_id"])
    assert failed.status is S.FAILED and await world.wallet(owner) == Money.zero(KES)
    assert await suspense_balance(world) == held
    assert (await call(client, "GET", f"/v1/ops/suspense/{forged}", ops_key))[1]["state"] == "open"
    # It waits again: a person may look again, and records what the statement shows.
    status, returned = await call(client, "POST", f"/v1/ops/suspense/{forged}/return", ops_key,
                                  {"reason": "not on the M-Pesa statement: nothing came in"})
    assert status == 201 and returned["parked"]["state"] == "returned"


async def test_a_reversal_of_parked_money_is_never_left_out_of_a_reconciliation(world, client, ops_key):
    """The customer calls days later: the paybill line falls in one period, M-Pesa's reversal in a
    later one. That later period lists the reversal (record it) until the return is recorded, then
    matches it; the earlier one says the return is recorded but not reversed in it."""
    receipt, _ = await park(world, 330, account="nobody-later")
    await asyncio.sleep(1.1)
    later = datetime.now(UTC)
    await reverse_at_m_pesa(world, receipt, 330)
    statement = [DarajaSandboxStatement(world.sandboxes.urls.daraja)]

    def about(findings):
        return [f for f in findings if receipt in f.detail or receipt in f.transaction_ids]

    report = await reconcile(world.engine, statement, later, datetime.now(UTC) + timedelta(seconds=1),
                             grace=timedelta(0))
    [waiting] = about(report.parked_in_suspense)
    assert "record that with `sauti suspense return`" in waiting.detail and not about(report.matched)
    assert (await call(client, "POST", f"/v1/ops/suspense/{receipt}/return", ops_key,
                       {"reason": "reversed in the portal"}))[0] == 201
    report = await reconcile(world.engine, statement, later, datetime.now(UTC) + timedelta(seconds=1),
                             grace=timedelta(0))
    [settled] = about(report.matched)
    assert "returned to the payer" in settled.detail and not about(report.parked_in_suspense)
    earlier = await reconcile(world.engine, statement, later - timedelta(seconds=30), later, grace=timedelta(0))
    [unreversed] = about(earlier.parked_in_suspense)
    assert "recorded as returned" in unreversed.detail


async def forge_confirmation(world: PaymentsWorld, trans_id: str, amount: int, account: str = "nobody") -> str:
    """A C2B confirmation posted to our URL as a forger holding it could (Daraja signs nothing);
    returns what our callback did with it."""
    body = {"TransactionType": "Pay Bill", "TransID": trans_id, "TransTime": "20991231235959",
            "TransAmount": f"{amount}.00", "BusinessShortCode": world.sandboxes.settings.daraja_shortcode,
            "BillRefNumber": account, "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
            "MSISDN": "254700000000", "FirstName": "A", "MiddleName": "", "LastName": "B"}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/c2b/confirmation", json=body) as resp:
        assert resp.status == 200
    return world.callbacks.outcomes[-1][1]


async def test_another_payment_s_receipt_is_never_parked_nor_credited_again(world, client, ops_key):
    """A confirmation carrying the receipt of a payout of ours (forged or replayed) is not parked:
    that M-Pesa transaction is booked. Nor is money parked under a receipt a payment holds credited."""
    user = await world.user()
    await world.fund(user, Money.of(1_000, KES))
    paid = await world.settle((await world.payments.handle(Withdraw(
        f"w-{uuid.uuid4()}", user.id, Money.of(300, KES), Channel.USSD))).public_id)
    receipt, held = paid.provider_refs["receipt"], await suspense_balance(world)
    assert await forge_confirmation(world, receipt, 300) == "duplicate"
    assert await suspense_balance(world) == held
    assert (await call(client, "GET", f"/v1/ops/suspense/{receipt}", ops_key))[0] == 404


async def test_a_receipt_of_money_that_went_out_is_never_credited(world, client, ops_key):
    """A real M-Pesa receipt, but of money that left our paybill (here: a reversal, which no payment
    of ours holds), named by a forged confirmation: M-Pesa's status answer shows it credited someone
    else, so nothing is credited and the amount waits again."""
    receipt, _ = await park(world, 260, account="nobody-out")
    reversal = await reverse_at_m_pesa(world, receipt, 260)
    owner = await world.user()
    assert await forge_confirmation(world, reversal.transaction_id, 260) == "suspense"
    status, done = await call(client, "POST", f"/v1/ops/suspense/{reversal.transaction_id}/credit", ops_key,
                              {"phone": owner.phone, "reason": "a caller claims it"})
    assert status == 201
    failed = await world.settle(done["payment"]["public_id"])
    assert failed.status is S.FAILED and failed.error_code == "not_to_our_paybill"
    assert await world.wallet(owner) == Money.zero(KES)
    assert (await call(client, "GET", f"/v1/ops/suspense/{reversal.transaction_id}", ops_key))[1]["state"] == "open"


async def test_a_refused_credit_is_not_matched_and_a_late_one_is_not_missing(world, client, ops_key):
    """A credit M-Pesa refuses (the payment was reversed at M-Pesa meanwhile) gives the receipt up:
    reconciliation lists the parked line and its reversal for a person, not as the failed deposit's.
    A credit made days after the payment is judged with the payment's line, not as "missing"."""
    owner, start = await world.user(), datetime.now(UTC)
    reversed_, _ = await park(world, 610, account="nobody-rev")
    await reverse_at_m_pesa(world, reversed_, 610)
    status, done = await call(client, "POST", f"/v1/ops/suspense/{reversed_}/credit", ops_key,
                              {"phone": owner.phone, "reason": "claimed"})
    assert status == 201
    assert (await world.settle(done["payment"]["public_id"])).status is S.FAILED
    later_one, _ = await park(world, 75, account="nobody-late")
    await asyncio.sleep(1.1)
    later = datetime.now(UTC)
    status, late = await call(client, "POST", f"/v1/ops/suspense/{later_one}/credit", ops_key,
                              {"phone": owner.phone, "reason": "called days later"})
    assert (await world.settle(late["payment"]["public_id"])).status is S.SUCCEEDED
    statement = [DarajaSandboxStatement(world.sandboxes.urls.daraja)]

    report = await reconcile(world.engine, statement, start, later, grace=timedelta(0))
    assert done["payment"]["public_id"] not in {f.public_id for f in report.matched}
    waiting = [f for f in report.parked_in_suspense if reversed_ in f.transaction_ids]
    assert len(waiting) == 1, report.render()
    [waiting] = waiting
    assert "record that with `sauti suspense return`" in waiting.detail
    assert late["payment"]["public_id"] in {f.public_id for f in report.parked_in_suspense} | {
        f.public_id for f in report.matched}
    later_report = await reconcile(world.engine, statement, later, datetime.now(UTC) + timedelta(seconds=1),
                                   grace=timedelta(0))
    assert late["payment"]["public_id"] not in {f.public_id for f in later_report.missing_on_theirs}


async def test_receipts_differing_only_in_case_are_released_apart(world, client, ops_key):
    lower, upper = "case" + uuid.uuid4().hex[:6], None
    upper = lower.upper()
    assert await forge_confirmation(world, lower, 40) == "suspense"
    assert await forge_confirmation(world, upper, 50) == "suspense"
    status, done = await call(client, "POST", f"/v1/ops/suspense/{lower}/return", ops_key, {"reason": "void"})
    assert status == 201 and done["parked"]["receipt"] == lower and done["parked"]["amount_minor"] == 4000
    assert (await call(client, "GET", f"/v1/ops/suspense/{upper}", ops_key))[1]["state"] == "open"
    status, done = await call(client, "POST", f"/v1/ops/suspense/{upper}/return", ops_key, {"reason": "void"})
    assert status == 201 and done["parked"]["amount_minor"] == 5000


async def test_a_release_that_cannot_be_made_is_refused_and_moves_nothing(world, client, ops_key):
    receipt, _ = await park(world, 200, account="nobody-2")
    held = await suspense_balance(world)
    tier0 = await world.user()
    refusals = [
        ("/v1/ops/suspense/NOSUCH123/credit", {"phone": tier0.phone, "reason": "r"}, 404, "not_in_suspense"),
        ("/v1/ops/suspense/bad%00receipt/credit", {"phone": tier0.phone, "reason": "r"}, 404, "not_in_suspense"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": "+254700000001", "reason": "r"}, 400, "invalid_request"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": "+221775556789", "reason": "r"}, 400, "invalid_request"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": tier0.phone}, 400, "invalid_request"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": tier0.phone, "reason": "a\u0000b"}, 400, "invalid_request"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": tier0.phone, "reason": "\ud800"}, 400, "invalid_request"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": 254700, "reason": "r"}, 400, "invalid_phone"),
        (f"/v1/ops/suspense/{receipt}/credit", {"phone": tier0.phone, "reason": "r", "amount": 1}, 400,
         "unknown_field"),
        (f"/v1/ops/suspense/{receipt}/return", {"reason": "r", "reversal": "not a receipt!"}, 400,
         "invalid_request"),
    ]
    for path, body, status, code in refusals:
        got, refused = await call(client, "POST", path, ops_key, body)
        assert (got, refused["error"]["code"]) == (status, code), (path, body, refused)
    support = await new_key(world, role=SUPPORT, name="Helpdesk")
    got, refused = await call(client, "POST", f"/v1/ops/suspense/{receipt}/return", support, {"reason": "r"})
    assert (got, refused["error"]["code"]) == (403, "read_only_key")
    assert (await call(client, "GET", "/v1/ops/suspense", support))[0] == 200
    assert (await call(client, "GET", "/v1/ops/suspense?state=closed", ops_key))[0] == 400
    assert (await call(client, "GET", f"/v1/ops/suspense/{receipt}", ops_key))[1]["state"] == "open"
    assert await suspense_balance(world) == held

    # More than the wallet's tier may receive at once: refused by the limits, nothing moved.
    big, _ = await park(world, 140_000, account="nobody-3")
    got, refused = await call(client, "POST", f"/v1/ops/suspense/{big}/credit", ops_key,
                              {"phone": tier0.phone, "reason": "r"})
    assert got == 422, refused
    assert await world.wallet(tier0) == Money.zero(KES)


async def test_a_receipt_is_booked_once_whichever_way_it_comes(world):
    """A parked receipt is not booked by hand as well (`sauti mpesa book-c2b`: it would be credited
    twice); and a confirmation naming no wallet that comes after a booking by hand is a duplicate,
    not parked as well."""
    owner = await world.user()
    receipt, payer = await park(world, 250, account="nobody-5")
    with pytest.raises(InvalidRequest, match="parked in suspense"):
        await world.payments.book_missed_c2b(receipt=receipt, amount=Money.of(250, KES), account=local(owner.phone),
                                             phone=payer, booked_by="ida", reason="on the statement")
    assert await world.wallet(owner) == Money.zero(KES)

    # The other way round: the customer pays (suffix 900: M-Pesa never sends the confirmation), an
    # operator books it from the statement, then a confirmation comes naming no wallet.
    payer = f"+254722{unique_digits(3)}900"
    before = len(world.callbacks.outcomes)
    await world.payments.providers.daraja.simulate_c2b(phone=payer, amount=Money.of(260, KES),
                                                       bill_ref_number=local(owner.phone))
    assert await world.until_callback("c2b/validation", after=before) == "0"
    entry = None
    for _ in range(200):
        entry = next((e for e in world.sandboxes.daraja.books.entries() if e.client_reference == local(owner.phone)),
                     None)
        if entry is not None:
            break
        await asyncio.sleep(0.02)
    assert entry is not None
    assert await world.payments.book_missed_c2b(receipt=entry.transaction_id, amount=Money.of(260, KES),
                                                account=local(owner.phone), phone=payer, booked_by="ida",
                                                reason="on the statement") == "confirming"
    for _ in range(300):
        await world.worker.drain()
        if await world.wallet(owner) == Money.of(260, KES):
            break
        await asyncio.sleep(0.02)
    assert await world.wallet(owner) == Money.of(260, KES)
    held = await suspense_balance(world)
    body = {"TransactionType": "Pay Bill", "TransID": entry.transaction_id, "TransTime": "20991231235959",
            "TransAmount": "260.00", "BusinessShortCode": world.sandboxes.settings.daraja_shortcode,
            "BillRefNumber": "nobody-6", "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
            "MSISDN": payer.lstrip("+"), "FirstName": "A", "MiddleName": "", "LastName": "B"}
    async with aiohttp.ClientSession() as http, http.post(
            world.payments.settings.callback_base_url + "/c2b/confirmation", json=body) as resp:
        assert resp.status == 200
    assert world.callbacks.outcomes[-1] == ("c2b/confirmation", "duplicate")
    assert await suspense_balance(world) == held and await world.wallet(owner) == Money.of(260, KES)


async def test_concurrent_releases_of_one_receipt_release_it_once(world, client, ops_key):
    receipt, _ = await park(world, 120, account="nobody-4")
    held = await suspense_balance(world)
    a, b = await world.user(), await world.user()
    answers = await asyncio.gather(
        call(client, "POST", f"/v1/ops/suspense/{receipt}/credit", ops_key, {"phone": a.phone, "reason": "a"}),
        call(client, "POST", f"/v1/ops/suspense/{receipt}/credit", ops_key, {"phone": b.phone, "reason": "b"}),
        call(client, "POST", f"/v1/ops/suspense/{receipt}/credit", ops_key, {"phone": a.phone, "reason": "a"}),
        call(client, "POST", f"/v1/ops/suspense/{receipt}/return", ops_key, {"reason": "c"}))
    for status, body in answers:
        if status in (200, 201) and "payment" in body:
            await world.settle(body["payment"]["public_id"])
    statuses = [status for status, _ in answers]
    assert statuses.count(201) == 1 and set(statuses) <= {200, 201, 409}, answers
    assert all(body["error"]["code"] == "already_released" for status, body in answers if status == 409)
    winner = statuses.index(201)
    # The same request as the winner's (the first and third) is answered with its deposit; others refused.
    assert statuses.count(200) == (1 if winner in (0, 2) else 0), answers
    assert held - await suspense_balance(world) == Money.of(120, KES)
    assert await world.wallet(a) == (Money.of(120, KES) if winner in (0, 2) else Money.zero(KES))
    assert await world.wallet(b) == (Money.of(120, KES) if winner == 1 else Money.zero(KES))


async def test_the_suspense_list_reads_through_indexes(world):
    """What waits (from `suspense_waiting`), every parked amount (through the partial index
    transfers_parked), one of them, the count waiting and reconciliation's look-up: none reads the
    whole ledger (migration 0012)."""
    receipt, _ = await park(world, 60, account="explain")
    with statements_run(world.engine) as statements:
        async with world.engine.connect() as conn:
            assert receipt in {p.receipt for _, p in await suspense.parked_money(conn, open_only=True)}
            assert receipt in {p.receipt for _, p in await suspense.parked_money(conn, open_only=False)}
            assert (await suspense.parked(conn, receipt)).state == "open"
            assert (await suspense.open_total(conn))[0] >= 1
            assert (await suspense.parked_many(conn, [receipt]))[receipt].state == "open"
    assert len(statements) >= 5
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "LIKE 'suspense:%'" in statement and "ORDER BY t.id DESC" in statement:  # every parked amount
            assert "transfers_parked" in plan, plan


async def test_the_suspense_commands(world):
    """``sauti suspense list`` / ``credit`` / ``return`` as an operator types them."""
    owner = await world.user()
    first, _ = await park(world, 90, account="cli-1")
    second, _ = await park(world, 80, account="cli-2")
    env = {**os.environ, "DATABASE_URL": world.engine.url.render_as_string(hide_password=False),
           "SAUTI__PROVIDERS__MODE": "sandbox", "SAUTI__PROVIDERS__SANDBOX__RUN_IN_SERVE": "false"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateway.cli", "suspense", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    async def sauti(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(run, *args)

    listed = await sauti("list", "--json")
    assert listed.returncode == 0, listed.stderr
    waiting = {p["receipt"]: p for p in json.loads(listed.stdout)["parked"]}
    assert waiting[first]["account"] == "cli-1" and waiting[first]["amount_minor"] == 9_000
    credited = await sauti("credit", first, "--to", local(owner.phone), "--reason", "called in", "--by", "njeri")
    assert credited.returncode == 0, credited.stderr
    assert "to be credited once M-Pesa confirms the receipt" in credited.stdout
    await world.settle(credited.stdout.split()[1].rstrip(":"))  # this world's worker asks M-Pesa
    assert await world.wallet(owner) == Money.of(90, KES)
    again = await sauti("credit", first, "--to", owner.phone, "--reason", "again")
    assert again.returncode == 0, again.stderr
    assert "asked before: nothing changed" in again.stdout
    elsewhere = await sauti("credit", first, "--to", (await world.user()).phone, "--reason", "again")
    assert elsewhere.returncode == 1 and "credited already" in elsewhere.stderr and "Traceback" not in elsewhere.stderr
    returned = await sauti("return", second, "--reason", "reversed in the portal", "--by", "njeri")
    assert returned.returncode == 0 and "recorded as returned" in returned.stdout, returned.stderr
    text = (await sauti("list", "--all")).stdout
    assert f"{first}" in text and "credited as pay_" in text and f"{second}" in text


async def test_migration_0012_finds_what_waits_in_a_ledger_parked_before_it(new_database):
    """Upgrading a database that parked money before `suspense_waiting` existed: the parks with no
    release wait, the released ones do not, and `sauti ledger check`'s invariants hold."""
    engine = create_engine(await new_database(), pool_size=1)
    try:
        await downgrade(engine, "0011")
        async with engine.begin() as conn:
            collection = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, KES, "mpesa")).id
            held = (await open_account(conn, AccountKind.SUSPENSE, KES, "mpesa")).id
        ledger = Ledger(engine, LedgerLimits.from_major(1_000_000))
        for receipt in ("OLDPARK001", "OLDPARK002"):
            await ledger.transfer(TransferRequest(f"suspense:{receipt}", payment_legs(collection, held, Money.of(
                50, KES)), kind="c2b.suspense", reference=receipt))
        await ledger.transfer(TransferRequest("release:OLDPARK002", payment_legs(held, collection, Money.of(50, KES)),
                                              kind="suspense.return", reference="OLDPARK002"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT receipt FROM suspense_waiting"))).scalars().all() == ["OLDPARK001"]
            assert (await suspense.parked(conn, "OLDPARK002")).state == "returned"
        assert (await check_ledger(engine)).ok
    finally:
        await engine.dispose()


async def test_a_refund_never_reverses_money_parked_in_suspense(world):
    """A deposit credited without a receipt (its query vouched for the push) is refunded with the
    receipt an operator reads on the statement. A receipt under which someone else's money is
    parked is refused: its reversal would give the stranger theirs back out of this wallet."""
    user, deposit = await world.deposit_credited_without_receipt(Money.of(300, KES), f"stk-{uuid.uuid4().hex}")
    parked, _ = await park(world, 300)

    with pytest.raises(NotRefundable, match="parked in suspense"):
        await world.payments.handle(Refund(f"r-{uuid.uuid4().hex}", deposit.public_id, "customer asked",
                                           receipt=parked))

    assert await world.wallet(user) == Money.of(300, KES)
    async with world.engine.connect() as conn:
        assert (await suspense.parked(conn, parked)).state == "open"
