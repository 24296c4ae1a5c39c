"""B2C, B2B, transaction status, reversal, balance and C2B against the Daraja sandbox: the synchronous
answer from our client, the asynchronous Result over real HTTP, parsed by daraja_callbacks."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from aiohttp import web

from payments.money import Money
from payments.providers.daraja import B2BCommand, DarajaBadRequest, DarajaClient
from payments.providers.daraja_callbacks import (
    c2b_validation_answer,
    parse_account_balances,
    parse_c2b_payment,
    parse_queue_timeout,
    parse_result,
)
from payments.providers.daraja_credentials import security_credential
from payments.sandbox.daraja_server import DARAJA, create_daraja_sandbox
from payments.sandbox.initiator_keys import InitiatorKeys
from payments.sandbox.settings import SandboxSettings

KES_250 = Money.of("250", "KES")


def payment_id() -> str:
    return f"pay-{uuid.uuid4()}"


async def pay_out(daraja: DarajaClient, receiver, phone: str, amount: Money = KES_250, originator: str | None = None):
    return await daraja.b2c_payment(
        originator_conversation_id=originator or payment_id(),
        phone=phone,
        amount=amount,
        remarks="Withdrawal",
        result_url=receiver.url("/result"),
        queue_timeout_url=receiver.url("/timeout"),
    )


async def paid_receipt(daraja: DarajaClient, receiver, amount: Money = KES_250) -> str:
    await pay_out(daraja, receiver, "+254712345678", amount)
    result = parse_result((await receiver.wait_for("/result"))[-1].body)
    assert result.succeeded
    assert result.receipt is not None
    return result.receipt


async def test_b2c_pays_and_the_result_carries_our_payment_id(daraja, receiver, sandboxes):
    originator = payment_id()
    utility_before = sandboxes.daraja.books.balance("Utility Account")
    accepted = await pay_out(daraja, receiver, "0712 345 678", originator=originator)
    assert accepted.originator_conversation_id == originator
    assert accepted.conversation_id.startswith("AG_")

    [delivery] = await receiver.wait_for("/result")
    result = parse_result(delivery.body)
    assert result.succeeded and result.is_final
    assert result.originator_conversation_id == originator
    assert result.conversation_id == accepted.conversation_id
    assert result.amount == KES_250
    assert result.receipt == result.transaction_id
    assert result.completed_at is not None
    assert result.parameters["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert sandboxes.daraja.books.balance("Utility Account") == utility_before - 25_000
    assert receiver.at("/timeout") == []


@pytest.mark.parametrize(("suffix", "code"), [("001", 1), ("201", 2001)])
async def test_b2c_failures_carry_no_result_parameters(daraja, receiver, sandboxes, suffix, code):
    originator = payment_id()
    await pay_out(daraja, receiver, f"+254712345{suffix}", originator=originator)
    result = parse_result((await receiver.wait_for("/result"))[0].body)
    assert result.result_code == code
    assert result.parameters == {}
    assert result.amount is None
    assert originator not in [e.reference for e in sandboxes.daraja.books.entries()]


async def test_a_duplicated_result_repeats_the_same_ids(daraja, receiver):
    originator = payment_id()
    await pay_out(daraja, receiver, "+254712345902", originator=originator)
    first, second = (parse_result(d.body) for d in await receiver.wait_for("/result", count=2))
    assert first == second and first.originator_conversation_id == originator


async def test_a_result_can_arrive_before_the_synchronous_answer(daraja, receiver):
    accepted = await pay_out(daraja, receiver, "+254712345903")
    [delivery] = receiver.at("/result")  # already there
    assert parse_result(delivery.body).conversation_id == accepted.conversation_id


async def test_b2c_below_the_minimum_fails_with_code_2(daraja, receiver):
    await pay_out(daraja, receiver, "+254712345678", Money.of("5", "KES"))
    assert parse_result((await receiver.wait_for("/result"))[0].body).result_code == 2


async def test_a_wrong_initiator_password_fails_with_2001(daraja_settings, receiver):
    wrong = dataclasses.replace(daraja_settings, initiator_password="not-the-password")
    async with DarajaClient(wrong) as client:
        await pay_out(client, receiver, "+254712345678")
    result = parse_result((await receiver.wait_for("/result"))[0].body)
    assert result.result_code == 2001


async def test_a_credential_made_with_another_certificate_fails_with_2001(daraja_settings, receiver, sandboxes):
    other = InitiatorKeys.generate().certificate_pem
    credential = security_credential(sandboxes.settings.daraja_initiator_password, other)
    async with DarajaClient(dataclasses.replace(daraja_settings, security_credential=credential)) as client:
        await pay_out(client, receiver, "+254712345678")
    assert parse_result((await receiver.wait_for("/result"))[0].body).result_code == 2001


async def test_a_reused_originator_conversation_id_is_refused(daraja, receiver, sandboxes):
    originator = payment_id()
    await pay_out(daraja, receiver, "+254712345678", originator=originator)
    with pytest.raises(DarajaBadRequest):
        await pay_out(daraja, receiver, "+254712345678", originator=originator)
    await receiver.wait_for("/result")
    assert [e.reference for e in sandboxes.daraja.books.entries()].count(originator) == 1


async def test_a_queue_timeout_goes_to_the_timeout_url_and_pays_nothing(daraja, receiver, sandboxes):
    originator = payment_id()
    await pay_out(daraja, receiver, "+254712345905", originator=originator)
    timeout = parse_queue_timeout((await receiver.wait_for("/timeout"))[0].body)
    assert timeout.originator_conversation_id == originator
    assert receiver.at("/result") == []
    assert originator not in [e.reference for e in sandboxes.daraja.books.entries()]


async def test_b2c_recovers_from_a_revoked_token_with_the_b2c_error_code(daraja, receiver, sandboxes, http):
    await pay_out(daraja, receiver, "+254712345678")
    refused = sandboxes.daraja.tokens_refused
    async with http.post(f"{sandboxes.urls.daraja}/_sandbox/tokens/expire"):
        pass
    await pay_out(daraja, receiver, "+254712345678")  # 401.002.01, refresh, success
    assert sandboxes.daraja.tokens_refused == refused + 1
    results = await receiver.wait_for("/result", count=2)
    assert all(parse_result(d.body).succeeded for d in results)


@pytest.mark.parametrize(("command", "party_b"), [(B2BCommand.PAY_BILL, "888880"), (B2BCommand.BUY_GOODS, "5123456")])
async def test_b2b_pays_a_paybill_or_till(daraja, receiver, sandboxes, command, party_b):
    accepted = await daraja.b2b_payment(
        command=command,
        party_b=party_b,
        amount=Money.of("1500", "KES"),
        account_reference="12345",
        remarks="Bill",
        result_url=receiver.url("/result"),
        queue_timeout_url=receiver.url("/timeout"),
    )
    result = parse_result((await receiver.wait_for("/result"))[0].body)
    assert result.succeeded
    assert result.conversation_id == accepted.conversation_id
    assert result.amount == Money.of("1500", "KES")
    assert result.reference_data["BillReferenceNumber"] == "12345"
    assert result.parameters["Currency"] == "KES"
    [entry] = [e for e in sandboxes.daraja.books.entries() if e.transaction_id == result.receipt]
    assert (entry.party, entry.amount_minor) == (party_b, -150_000)


async def test_transaction_status_finds_a_receipt_and_not_an_unknown_one(daraja, receiver):
    receipt = await paid_receipt(daraja, receiver)
    await daraja.transaction_status(
        transaction_id=receipt, result_url=receiver.url("/status"), queue_timeout_url=receiver.url("/timeout")
    )
    found = parse_result((await receiver.wait_for("/status"))[0].body)
    assert found.succeeded
    assert found.parameters["ReceiptNo"] == receipt
    assert found.parameters["TransactionStatus"] == "Completed"
    assert found.amount == KES_250

    await daraja.transaction_status(
        transaction_id="NOSUCHTX00", result_url=receiver.url("/status"), queue_timeout_url=receiver.url("/timeout")
    )
    missing = parse_result((await receiver.wait_for("/status", count=2))[1].body)
    assert missing.result_code == "R000001"
    assert not missing.succeeded


async def test_a_reversal_undoes_a_payout_once(daraja, receiver, sandboxes):
    receipt = await paid_receipt(daraja, receiver)
    utility = sandboxes.daraja.books.balance("Utility Account")
    for _ in range(2):
        await daraja.reverse(
            transaction_id=receipt,
            amount=KES_250,
            result_url=receiver.url("/reversal"),
            queue_timeout_url=receiver.url("/timeout"),
        )
    first, second = (parse_result(d.body) for d in await receiver.wait_for("/reversal", count=2))
    assert first.succeeded
    assert first.parameters["OriginalTransactionID"] == receipt
    assert second.result_code == "R000002"
    assert sandboxes.daraja.books.balance("Utility Account") == utility + 25_000
    assert sandboxes.daraja.books.find(receipt).status == "reversed"


async def test_account_balance_matches_the_sandbox_books(daraja, receiver, sandboxes):
    await daraja.account_balance(result_url=receiver.url("/balance"), queue_timeout_url=receiver.url("/timeout"))
    result = parse_result((await receiver.wait_for("/balance"))[0].body)
    balances = {b.name: b for b in parse_account_balances(result.parameters["AccountBalance"])}
    utility = sandboxes.daraja.books.balance("Utility Account")
    assert balances["Utility Account"].available == Money(utility, "KES")
    assert balances["Working Account"].current == Money(sandboxes.daraja.books.balance("Working Account"), "KES")


async def test_c2b_validation_then_confirmation_reach_the_registered_urls(daraja, receiver, sandboxes):
    registered = await daraja.register_c2b_urls(
        confirmation_url=receiver.url("/c2b/confirm"), validation_url=receiver.url("/c2b/validate")
    )
    assert registered.originator_conversation_id
    await daraja.simulate_c2b(phone="+254712345678", amount=Money.of("700", "KES"), bill_ref_number="ACC-7")

    [validation] = await receiver.wait_for("/c2b/validate")
    [confirmation] = await receiver.wait_for("/c2b/confirm")
    asked, paid = parse_c2b_payment(validation.body), parse_c2b_payment(confirmation.body)
    assert asked.trans_id == paid.trans_id
    assert paid.amount == Money.of("700", "KES")
    assert paid.bill_ref_number == "ACC-7"
    assert paid.msisdn == "254712345678"
    assert asked.org_account_balance is None and paid.org_account_balance is not None
    assert sandboxes.daraja.books.find(paid.trans_id).amount_minor == 70_000


async def test_c2b_rejected_at_validation_is_neither_confirmed_nor_booked(daraja, receiver, sandboxes):
    receiver.respond("/c2b/validate", lambda d: (200, c2b_validation_answer(accept=False, rejection_code="C2B00012")))
    await daraja.register_c2b_urls(
        confirmation_url=receiver.url("/c2b/confirm"), validation_url=receiver.url("/c2b/validate")
    )
    await daraja.simulate_c2b(phone="+254712345678", amount=Money.of("700", "KES"), bill_ref_number="BAD")
    [validation] = await receiver.wait_for("/c2b/validate")
    trans_id = parse_c2b_payment(validation.body).trans_id
    await asyncio.sleep(0.2)  # a confirmation would follow the validation answer at once
    assert receiver.at("/c2b/confirm") == []
    assert sandboxes.daraja.books.find(trans_id) is None


def test_the_sandbox_waits_for_c2b_validation_as_long_as_daraja_does():
    # The contract: Daraja waits ~8 s for a validation answer; our other callbacks get less.
    assert SandboxSettings().daraja_c2b_validation_timeout_s == 8.0
    assert SandboxSettings.for_tests().daraja_c2b_validation_timeout_s == 8.0
    assert SandboxSettings().daraja_c2b_validation_timeout_s > SandboxSettings().callback_timeout_s


@pytest.mark.parametrize(("answer_after_s", "honoured"), [(0.5, True), (1.0, False)])
async def test_a_validation_answered_within_the_validation_timeout_is_honoured(serve, daraja_settings_factory,
                                                                                 answer_after_s, honoured):
    """The boundary, scaled down (a 0.75 s validation timeout, 0.25 s for other callbacks): a
    validation that answers after the other callbacks' timeout but within its own is honoured, as
    Daraja honours one answered after 6 s; one past it is not (ResponseType Cancelled: no payment)."""
    settings = SandboxSettings.for_tests(callback_timeout_s=0.25, daraja_c2b_validation_timeout_s=0.75)
    app = create_daraja_sandbox(settings)
    sandbox = app[DARAJA]
    confirmed = asyncio.Event()

    async def validate(request: web.Request) -> web.Response:
        await asyncio.sleep(answer_after_s)  # our endpoint, busy: it accepts, late
        return web.json_response(c2b_validation_answer(accept=True))

    async def confirm(request: web.Request) -> web.Response:
        confirmed.set()
        return web.json_response({"ResultCode": 0, "ResultDesc": "Success"})

    ours = web.Application()
    ours.router.add_post("/c2b/validate", validate)
    ours.router.add_post("/c2b/confirm", confirm)
    async with serve(app) as url, serve(ours) as our_url:
        client_settings = daraja_settings_factory(settings, url, sandbox.keys.certificate_pem)
        async with DarajaClient(client_settings) as client:
            await client.register_c2b_urls(confirmation_url=f"{our_url}/c2b/confirm",
                                           validation_url=f"{our_url}/c2b/validate", response_type="Cancelled")
            await client.simulate_c2b(phone="+254712345678", amount=Money.of("700", "KES"), bill_ref_number="ACC7")
            try:
                await asyncio.wait_for(confirmed.wait(), answer_after_s + 1.0)
            except TimeoutError:
                pass
        [validation] = [a for a in sandbox.dispatcher.attempts if a.kind == "c2b_validation"]
    assert confirmed.is_set() is honoured
    assert (validation.status == 200) is honoured
    assert bool([e for e in sandbox.books.entries() if e.kind == "c2b"]) is honoured


async def test_the_statement_lists_completed_transactions_in_a_time_window(daraja, receiver, sandboxes, http):
    receipt = await paid_receipt(daraja, receiver)
    entry = sandboxes.daraja.books.find(receipt)
    base = f"{sandboxes.urls.daraja}/_sandbox/statement"
    async with http.get(base, params={"from": entry.at.isoformat()}) as resp:
        assert receipt in [t["transaction_id"] for t in (await resp.json())["transactions"]]
    async with http.get(base, params={"to": entry.at.isoformat()}) as resp:
        assert receipt not in [t["transaction_id"] for t in (await resp.json())["transactions"]]
