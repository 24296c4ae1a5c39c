"""The gateway's other Daraja callback routes, end to end over real HTTP as `sauti serve` runs them
(the in-process sandboxes call back to our routes, the in-process worker runs the jobs): a bill
payment settled by its B2B Result, a deposit refunded by a reversal Result, a B2C whose Result was
lost settled by a transaction status Result, and a customer's paybill payment (C2B simulate)
reaching our validation and confirmation routes and crediting the wallet once. Also: the C2B URLs
are registered with neutral paths (at start-up in sandbox mode, with ``register_c2b_on_start`` in
live mode, or by `sauti mpesa register-c2b`), and refund errors get their HTTP statuses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import click
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from gateway.commands.mpesa import mpesa as mpesa_command
from gateway.errors import error_middleware
from gateway.settings import Settings
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, PayBill, Refund, Withdraw
from payments.money import Currency, Money
from payments.payment_settings import (
    CALLBACK_B2B_RESULT,
    CALLBACK_C2B_CONFIRMATION,
    CALLBACK_C2B_VALIDATION,
    CALLBACK_REVERSAL_RESULT,
    CALLBACK_STATUS_RESULT,
)
from payments.payment_store import find_by_provider_ref
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import (
    SECRET,
    Gateway,
    free_port,
    gateway_settings,
    running_gateway,
    sandbox_deliveries,
    wait_for,
)
from tests.e2e.test_gateway_payments_recovery import sandboxes_at_a_port_base

KES = Currency.KES
S = PaymentStatus


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(await new_database(), free_port())) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(gw: Gateway) -> AsyncIterator[None]:
    yield
    await gw.assert_ledger_ok()


async def deliveries_to(gw: Gateway, path: str) -> list[dict]:
    """Every POST the Daraja sandbox made to our route ``path``, with the status we answered."""
    return [a for a in await sandbox_deliveries(gw, "daraja") if a["url"] == f"{gw.url}/callbacks/{SECRET}{path}"]


async def eventually(check, *, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{check.__name__} still false after {within_s}s")
        await asyncio.sleep(0.05)


async def test_a_bill_payment_is_settled_by_the_b2b_result_at_our_route(gw: Gateway):
    user = await gw.user()
    await gw.fund(user, Money.of(1000, KES))
    fees_before = await gw.balance(AccountKind.FEE_REVENUE, KES, "sauti")

    payment = await gw.payments.handle(PayBill("gw-bill", user.id, Money.of(300, KES), Channel.USSD,
                                               paybill="888880", account_number="INV9"))
    done = await wait_for(gw, payment.public_id)

    assert done.status is S.SUCCEEDED and done.provider_refs["receipt"]
    assert await gw.wallet(user) == Money.of(697, KES)
    assert await gw.balance(AccountKind.FEE_REVENUE, KES, "sauti") - fees_before == Money.of(3, KES)
    (delivery,) = [d for d in await deliveries_to(gw, CALLBACK_B2B_RESULT)
                   if d["reference"] == done.provider_refs["originator_conversation_id"]]
    assert delivery["status"] == 200


async def test_a_deposit_is_refunded_by_the_reversal_result_at_our_route(gw: Gateway):
    user = await gw.user()
    deposit = await wait_for(gw, (await gw.payments.handle(
        Deposit("gw-dep-rf", user.id, Money.of(250, KES), Channel.USSD))).public_id)
    assert deposit.status is S.SUCCEEDED and await gw.wallet(user) == Money.of(250, KES)

    refund = await gw.payments.handle(Refund("gw-rf", deposit.public_id, "paid the wrong shop"))
    done = await wait_for(gw, refund.public_id)

    assert done.status is S.SUCCEEDED
    assert (await gw.payment(deposit.public_id)).status is S.REVERSED
    assert await gw.wallet(user) == Money.zero(KES)
    assert await gw.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == Money.zero(KES)
    (delivery,) = [d for d in await deliveries_to(gw, CALLBACK_REVERSAL_RESULT)
                   if d["reference"] == done.provider_refs["originator_conversation_id"]]
    assert delivery["status"] == 200


async def test_a_b2c_whose_result_was_lost_is_settled_by_the_status_result_at_our_route(gw: Gateway):
    user = await gw.user(suffix="900")  # M-Pesa pays, and its B2C Result never comes
    await gw.fund(user, Money.of(1000, KES))
    payment = await gw.payments.handle(Withdraw("gw-wd-lost", user.id, Money.of(400, KES), Channel.USSD))
    await wait_for(gw, payment.public_id, S.PROCESSING)
    await asyncio.sleep(0.3)  # well past the sandbox's callback delay: the Result is lost
    before = len(await deliveries_to(gw, CALLBACK_STATUS_RESULT))

    report = await gw.payments.recover_stuck(timedelta(0))
    done = await wait_for(gw, payment.public_id)

    assert report.queried >= 1 and report.errors == 0
    assert done.status is S.SUCCEEDED and done.provider_refs["receipt"]
    _, events = await gw.payments.history(payment.public_id)
    assert events[-1].cause == "status_query"
    assert await gw.wallet(user) == Money.of(1000 - 404, KES)
    answered = (await deliveries_to(gw, CALLBACK_STATUS_RESULT))[before:]
    assert answered and all(d["status"] == 200 for d in answered)


async def test_a_paybill_payment_reaches_our_c2b_routes_and_credits_the_wallet_once(gw: Gateway):
    owner, payer = await gw.user(), await gw.user()
    sandbox = gw.runtime.sandboxes
    assert sandbox is not None
    # Registered at start-up (sandbox mode), with paths Safaricom accepts.
    validation, confirmation, response_type = sandbox.daraja._c2b_urls[sandbox.settings.daraja_shortcode]
    assert (validation, confirmation, response_type) == (f"{gw.url}/callbacks/{SECRET}{CALLBACK_C2B_VALIDATION}",
                                                         f"{gw.url}/callbacks/{SECRET}{CALLBACK_C2B_CONFIRMATION}",
                                                         "Completed")
    assert "mpesa" not in validation.lower() and "safaricom" not in confirmation.lower()
    account = "0" + owner.phone.removeprefix("+254")  # the wallet's number, as a customer types it

    await gw.payments.providers.daraja.simulate_c2b(phone=payer.phone, amount=Money.of(700, KES),
                                                    bill_ref_number=account)

    async def credited() -> bool:
        return await gw.wallet(owner) == Money.of(700, KES)
    await eventually(credited)
    (entry,) = [e for e in sandbox.daraja.books.entries() if e.kind == "c2b" and e.client_reference == account]
    async with gw.engine.connect() as conn:
        payment = await find_by_provider_ref(conn, "mpesa", entry.transaction_id)
    assert payment is not None and payment.status is S.SUCCEEDED and payment.payer_user_id == owner.id
    for path in (CALLBACK_C2B_VALIDATION, CALLBACK_C2B_CONFIRMATION):
        (delivery,) = [d for d in await deliveries_to(gw, path) if d["reference"] == entry.transaction_id]
        assert delivery["status"] == 200

    # The confirmation again: acknowledged, and nothing moves.
    replay = {"TransactionType": "Pay Bill", "TransID": entry.transaction_id, "TransTime": "20250101120000",
              "TransAmount": "700.00", "BusinessShortCode": sandbox.settings.daraja_shortcode,
              "BillRefNumber": account, "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "",
              "MSISDN": payer.phone.removeprefix("+"), "FirstName": "A", "MiddleName": "", "LastName": "B"}
    for _ in range(2):
        status, answer = await gw.post(f"/callbacks/{SECRET}{CALLBACK_C2B_CONFIRMATION}", json.dumps(replay))
        assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Success"})
    assert await gw.wallet(owner) == Money.of(700, KES)
    assert await gw.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 1


async def test_refund_errors_are_answered_with_404_and_409(gw: Gateway):
    user = await gw.user()
    failed = await gw.payments.handle(Withdraw("gw-wd-poor", user.id, Money.of(100, KES), Channel.USSD))
    assert failed.status is S.FAILED  # an empty wallet

    async def refund(request: web.Request) -> web.Response:
        made = await gw.payments.handle(Refund("gw-rf-err", request.match_info["payment"], "asked"))
        return web.json_response({"refund": made.public_id})

    # The gateway's error middleware in front of the orchestrator's real refund command.
    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/refund/{payment}", refund)
    async with TestClient(TestServer(app)) as client:
        unknown = await client.post("/refund/pay_nosuchpayment")
        refused = await client.post(f"/refund/{failed.public_id}")
        assert (unknown.status, (await unknown.json())["error"]) == (404, "unknown_payment")
        assert (refused.status, (await refused.json())["error"]) == (409, "not_refundable")


# -- registering the C2B URLs ---------------------------------------------------------------------


def sauti_mpesa(settings: Settings, *args: str) -> Result:
    """`sauti mpesa …` as the CLI runs it (in a thread: it calls asyncio.run)."""

    @click.group()
    @click.pass_context
    def sauti(ctx: click.Context) -> None:
        ctx.obj = {"settings": settings}

    sauti.add_command(mpesa_command)
    return CliRunner().invoke(sauti, ["mpesa", *args])


async def test_sauti_mpesa_register_c2b_registers_neutral_urls_and_never_shows_the_secret(new_database):
    url = await new_database()
    async with sandboxes_at_a_port_base() as (sandboxes, base):
        settings = gateway_settings(url, free_port(), payments={"callback_base_url": "https://pay.example.com"},
                                    providers={"sandbox": {"run_in_serve": False, "port_base": base}})

        ran = await asyncio.to_thread(sauti_mpesa, settings, "register-c2b")

        assert ran.exit_code == 0, ran.output
        assert "validation   https://pay.example.com/callbacks/***/c2b/validation" in ran.output
        assert "confirmation https://pay.example.com/callbacks/***/c2b/confirmation" in ran.output
        assert SECRET not in ran.output
        assert sandboxes.daraja._c2b_urls[sandboxes.settings.daraja_shortcode] == (
            f"https://pay.example.com/callbacks/{SECRET}/c2b/validation",
            f"https://pay.example.com/callbacks/{SECRET}/c2b/confirmation", "Completed")

    # The sandboxes are gone: a plain message saying what to start, no traceback.
    failed = await asyncio.to_thread(sauti_mpesa, settings, "register-c2b")
    assert failed.exit_code != 0 and "do not answer" in failed.output and "Traceback" not in failed.output


async def test_live_mode_registers_the_c2b_urls_at_start_up_only_when_asked(new_database):
    url = await new_database()
    async with sandboxes_at_a_port_base() as (sandboxes, _):
        s = sandboxes.settings
        port = free_port()

        def live(register: bool) -> Settings:
            return gateway_settings(url, port, payments={"callback_base_url": f"http://127.0.0.1:{port}",
                                                         "register_c2b_on_start": register}, providers={
                "mode": "live", "mpesa": {
                    "base_url": sandboxes.urls.daraja, "consumer_key": s.daraja_consumer_key,
                    "consumer_secret": s.daraja_consumer_secret, "shortcode": s.daraja_shortcode,
                    "passkey": s.daraja_passkey, "initiator_name": s.daraja_initiator_name,
                    "security_credential": "pre-made-credential"}})

        async with running_gateway(live(False)):
            assert s.daraja_shortcode not in sandboxes.daraja._c2b_urls
        async with running_gateway(live(True)):
            validation, confirmation, _ = sandboxes.daraja._c2b_urls[s.daraja_shortcode]
        assert validation == f"http://127.0.0.1:{port}/callbacks/{SECRET}{CALLBACK_C2B_VALIDATION}"
        assert confirmation == f"http://127.0.0.1:{port}/callbacks/{SECRET}{CALLBACK_C2B_CONFIRMATION}"


_STK_HEAD = '{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"huge-1","ResultDesc":"x",'
_STK_ITEM = '"ResultCode":1032,"CallbackMetadata":{"Item":[{"Name":"NAME","Value":1e5000}]}}}}'
_RESULT_HEAD = '{"Result":{"ResultDesc":"x","OriginatorConversationID":"huge-a","ConversationID":"huge-b",'
_C2B_HEAD = '{"TransID":"HUGE1","TransAmount":"10","BusinessShortCode":"600000","MSISDN":"254700000000",'
#: Bodies with numbers no Daraja field holds, by the path they are posted to. Read as Decimal, each
#: once became an int too big for str() (a 500, at parsing or when the delivery was recorded), or, for
#: 1e1000000, one that blocked the event loop for half a minute while it was built.
HUGE_NUMBER_BODIES = [
    ("/stk", _STK_HEAD + _STK_ITEM.replace("NAME", "PhoneNumber")),
    ("/stk", _STK_HEAD + _STK_ITEM.replace("NAME", "TransactionDate")),
    ("/stk", _STK_HEAD + '"ResultCode":1e5000}}}'),
    ("/b2c/result", _RESULT_HEAD + '"ResultType":0,"ResultCode":1e5000}}'),
    ("/b2c/result", _RESULT_HEAD + '"ResultType":1e1000000,"ResultCode":0}}'),
    ("/b2c/timeout", _RESULT_HEAD + '"ResultCode":1e5000}}'),
    (CALLBACK_STATUS_RESULT, _RESULT_HEAD + '"ResultType":0,"ResultCode":"' + "9" * 5000 + '"}}'),
    (CALLBACK_C2B_CONFIRMATION, _C2B_HEAD + '"TransTime":1e5000}'),
    (CALLBACK_C2B_VALIDATION, _C2B_HEAD + '"TransTime":1e1000000}'),
    (CALLBACK_STATUS_RESULT, '{"Result":' + '{"a":' * 900 + "1" + "}" * 900 + "}"),  # nested past plain()'s stack
]


@pytest.mark.parametrize(("path", "body"), HUGE_NUMBER_BODIES, ids=[f"{p}-{i}" for i, (p, _) in
                                                                    enumerate(HUGE_NUMBER_BODIES)])
async def test_numbers_too_big_for_daraja_are_answered_400_not_500(gw: Gateway, path: str, body: str):
    status, answer = await gw.post(f"/callbacks/{SECRET}{path}", body)
    assert (status, answer["error"]) == (400, "malformed_callback"), (status, answer)
