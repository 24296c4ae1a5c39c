"""The gateway's payments as `sauti serve` runs them, over real HTTP: the in-process sandboxes call
back to our callback routes, the in-process outbox worker runs the provider jobs, and money moves
only on what the providers really said: an STK deposit credited once its callback is confirmed, a
B2C payout settled by its result, a Wave checkout credited by its signed webhook. Forged, replayed,
misaddressed and malformed deliveries get a clear answer and change nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from payments import payment_store as store
from payments.accounts import AccountKind
from payments.commands import Channel, Deposit, Withdraw
from payments.money import Currency, Money
from payments.payment_settings import CALLBACK_B2C_RESULT, CALLBACK_B2C_TIMEOUT, CALLBACK_STK
from payments.providers.wave_signing import signature_header
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import (
    PREVIOUS_SECRET,
    SECRET,
    Gateway,
    free_port,
    gateway_settings,
    running_gateway,
    sandbox_deliveries,
    wait_for,
)

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus
DARAJA_PATHS = (CALLBACK_STK, CALLBACK_B2C_RESULT, CALLBACK_B2C_TIMEOUT)


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(await new_database(), free_port())) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(gw: Gateway) -> AsyncIterator[None]:
    yield
    await gw.assert_ledger_ok()


def stk_callback(payment, *, result_code: int = 0) -> str:
    """An STK callback for ``payment`` as Daraja writes it (contract: mpesa-daraja.md)."""
    items = [{"Name": "Amount", "Value": payment.amount.minor // 100},
             {"Name": "MpesaReceiptNumber", "Value": payment.provider_refs.get("receipt") or "QX1REPLAY0"},
             {"Name": "Balance"}, {"Name": "TransactionDate", "Value": 20250101120000},
             {"Name": "PhoneNumber", "Value": int(payment.recipient_phone.removeprefix("+"))}]
    callback = {"MerchantRequestID": payment.provider_refs.get("merchant_request_id", "1-1-1"),
                "CheckoutRequestID": payment.provider_ref, "ResultCode": result_code,
                "ResultDesc": "The service request is processed successfully."}
    if result_code == 0:
        callback["CallbackMetadata"] = {"Item": items}
    return json.dumps({"Body": {"stkCallback": callback}})


def b2c_result(payment, *, result_code: int = 0) -> str:
    return json.dumps({"Result": {
        "ResultType": 0, "ResultCode": result_code, "ResultDesc": "replayed",
        "OriginatorConversationID": payment.public_id, "ConversationID": payment.provider_ref,
        "TransactionID": "RPL0000001"}})


async def test_an_stk_deposit_is_credited_when_its_callback_reaches_our_route(gw: Gateway, caplog):
    user = await gw.user()
    with caplog.at_level(logging.INFO):
        payment = await gw.payments.handle(Deposit("gw-dep-1", user.id, Money.of(250, KES), Channel.USSD))
        done = await wait_for(gw, payment.public_id)

    assert done.status is S.SUCCEEDED
    assert await gw.wallet(user) == Money.of(250, KES)
    async with gw.engine.connect() as conn:
        events = await store.events_of(conn, payment.id)
    # Credited by the callback, and only once an STK query confirmed it (Daraja signs nothing).
    assert [e.cause for e in events] == ["command:ussd", "stk_accepted", "stk_callback_confirmed"]
    # The URL the orchestrator gave Daraja is the route we serve, with the secret in it.
    (delivery,) = [d for d in await sandbox_deliveries(gw, "daraja") if d["reference"] == done.provider_ref]
    assert delivery["url"] == f"{gw.url}/callbacks/{SECRET}{CALLBACK_STK}" and delivery["status"] == 200
    # The secret never reaches a log line (the access log redacts it).
    assert "POST /callbacks/***/stk 200" in caplog.text
    assert SECRET not in caplog.text


async def test_a_replayed_stk_callback_changes_nothing(gw: Gateway):
    user = await gw.user()
    payment = await gw.payments.handle(Deposit("gw-dep-replay", user.id, Money.of(120, KES), Channel.USSD))
    done = await wait_for(gw, payment.public_id)
    assert done.status is S.SUCCEEDED

    for body in (stk_callback(done), stk_callback(done, result_code=1032)):  # the same, then a contradiction
        status, answer = await gw.post(f"/callbacks/{SECRET}{CALLBACK_STK}", body)
        assert (status, answer) == (200, {"ResultCode": 0, "ResultDesc": "Success"})

    assert (await gw.payment(payment.public_id)).status is S.SUCCEEDED
    assert await gw.wallet(user) == Money.of(120, KES)
    assert await gw.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 1


async def test_a_b2c_withdrawal_is_settled_by_its_result_callback(gw: Gateway):
    user = await gw.user()
    await gw.fund(user, Money.of(1000, KES))
    clearing_before = await gw.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa")
    settled_before = await gw.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa")

    payment = await gw.payments.handle(Withdraw("gw-wd-1", user.id, Money.of(300, KES), Channel.USSD))
    done = await wait_for(gw, payment.public_id)

    assert done.status is S.SUCCEEDED and done.provider_refs["receipt"]
    assert await gw.wallet(user) == Money.of(1000, KES) - Money.of(300, KES) - done.fee
    assert await gw.balance(AccountKind.PROVIDER_CLEARING, KES, "mpesa") == clearing_before
    assert await gw.balance(AccountKind.PROVIDER_SETTLEMENT, KES, "mpesa") - settled_before == Money.of(300, KES)
    (delivery,) = [d for d in await sandbox_deliveries(gw, "daraja") if d["reference"] == payment.public_id]
    assert delivery["url"] == f"{gw.url}/callbacks/{SECRET}{CALLBACK_B2C_RESULT}" and delivery["status"] == 200

    # The same result again, or one saying the opposite: acknowledged, and nothing moves.
    for code in (0, 2001):
        status, answer = await gw.post(f"/callbacks/{SECRET}{CALLBACK_B2C_RESULT}", b2c_result(done, result_code=code))
        assert (status, answer["ResultCode"]) == (200, 0)
    assert (await gw.payment(payment.public_id)).status is S.SUCCEEDED
    assert await gw.wallet(user) == Money.of(1000, KES) - Money.of(300, KES) - done.fee
    assert await gw.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=payment.public_id) == 2


async def test_a_failed_b2c_gives_the_money_back(gw: Gateway):
    user = await gw.user(suffix="201")  # Daraja answers ResultCode 2001
    await gw.fund(user, Money.of(500, KES))
    payment = await gw.payments.handle(Withdraw("gw-wd-fail", user.id, Money.of(200, KES), Channel.USSD))
    done = await wait_for(gw, payment.public_id)
    assert done.status is S.FAILED and done.error_code == "wrong_pin"
    assert await gw.wallet(user) == Money.of(500, KES)


async def _open_wave_deposit(gw: Gateway, key: str, amount: int) -> tuple:
    user = await gw.user(XOF)
    payment = await gw.payments.handle(Deposit(key, user.id, Money.of(amount, XOF), Channel.USSD))
    opened = await wait_for(gw, payment.public_id, S.PROCESSING)
    assert opened.provider_ref
    return user, opened


async def _wave(gw: Gateway, method: str, path: str) -> dict:
    """Ask the Wave sandbox as a client would (the session as Wave describes it, or a payer's tap)."""
    runtime = gw.runtime
    assert runtime.sandboxes is not None and runtime.sandbox_urls is not None
    headers = {"Authorization": f"Bearer {runtime.sandboxes.settings.wave_api_key}"}
    async with aiohttp.ClientSession() as http, http.request(method, runtime.sandbox_urls.wave + path,
                                                             headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def _signed(gw: Gateway, body: bytes, *, secret: str | None = None, at: int | None = None) -> dict[str, str]:
    sandboxes = gw.runtime.sandboxes
    assert sandboxes is not None
    secrets = [secret] if secret else list(sandboxes.settings.wave_webhook_secrets)
    return {"Wave-Signature": signature_header(secrets, at or int(time.time()), body)}


async def test_a_wave_checkout_is_credited_by_its_signed_webhook_and_a_replay_changes_nothing(gw: Gateway):
    user, opened = await _open_wave_deposit(gw, "gw-wave-1", 4000)

    await _wave(gw, "POST", f"/_sandbox/checkout/sessions/{opened.provider_ref}/approve")  # the payer pays
    done = await wait_for(gw, opened.public_id)

    assert done.status is S.SUCCEEDED
    assert await gw.wallet(user, XOF) == Money.of(4000, XOF)
    deliveries = [d for d in await sandbox_deliveries(gw, "wave") if d["url"] == f"{gw.url}/callbacks/wave"]
    assert deliveries and all(d["status"] == 200 for d in deliveries)

    # Wave delivers at least once: the same event (same id), authentic, comes again.
    event_id = await gw.scalar("SELECT event_key FROM provider_events WHERE payment_id = :p AND kind = 'checkout'",
                               p=done.id)
    session = await _wave(gw, "GET", f"/v1/checkout/sessions/{done.provider_ref}")
    body = json.dumps({"id": event_id, "type": "checkout.session.completed", "data": session}).encode()
    status, _ = await gw.post("/callbacks/wave", body, _signed(gw, body))
    assert status == 200
    assert await gw.wallet(user, XOF) == Money.of(4000, XOF)
    assert await gw.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=done.public_id) == 1
    # Another event about it, whose text carries control characters (a NUL cannot be stored): the
    # event is recorded without them, and still credits nothing twice.
    odd = json.dumps({"id": event_id + "-2", "type": "checkout.session.completed",
                      "data": {**session, "client_reference": f"{session.get('client_reference')}\u0000\u0007"}})
    status, _ = await gw.post("/callbacks/wave", odd.encode(), _signed(gw, odd.encode()))
    assert status == 200
    assert await gw.wallet(user, XOF) == Money.of(4000, XOF)
    assert await gw.scalar("SELECT count(*) FROM transfers WHERE reference = :p", p=done.public_id) == 1


async def test_a_forged_wave_webhook_is_refused_and_credits_nothing(gw: Gateway):
    user, opened = await _open_wave_deposit(gw, "gw-wave-forged", 9000)
    session = await _wave(gw, "GET", f"/v1/checkout/sessions/{opened.provider_ref}")
    claimed = {**session, "checkout_status": "complete", "payment_status": "succeeded", "transaction_id": "T_FAKE"}
    body = json.dumps({"id": "EV_forged", "type": "checkout.session.completed", "data": claimed}).encode()

    attempts = {
        "wrong secret": _signed(gw, body, secret="wave_sn_WHS_guessed"),
        "no signature": {},
        "captured an hour ago": _signed(gw, body, at=int(time.time()) - 3600),
        "bearer instead of a signature": {"Authorization": "Bearer wave_sn_WHS_sauti_sandbox"},
    }
    for why, headers in attempts.items():
        status, answer = await gw.post("/callbacks/wave", body, headers)
        assert status == 401, why
        assert answer["error"] == "invalid_signature"
    # A signed body that was then altered fails too.
    signed = _signed(gw, body)
    status, _ = await gw.post("/callbacks/wave", body.replace(b"9000", b"90000"), signed)
    assert status == 401

    assert (await gw.payment(opened.public_id)).status is S.PROCESSING
    assert await gw.wallet(user, XOF) == Money.zero(XOF)
    assert await gw.scalar("SELECT count(*) FROM provider_events WHERE payment_id = :p", p=opened.id) == 0


async def test_a_wrong_daraja_secret_is_answered_like_an_unknown_path(gw: Gateway):
    user = await gw.user()
    payment = await gw.payments.handle(Deposit("gw-dep-guess", user.id, Money.of(90, KES), Channel.USSD))
    done = await wait_for(gw, payment.public_id)
    _, unknown = await gw.post("/no/such/path", "{}")
    for path in DARAJA_PATHS:
        for secret in ("guessed-secret-0123456789abcdef", SECRET[:-1], SECRET + "x", "%C3%A9" * 12):
            status, answer = await gw.post(f"/callbacks/{secret}{path}", stk_callback(done, result_code=1032))
            assert (status, answer) == (404, unknown)
    assert (await gw.payment(payment.public_id)).status is S.SUCCEEDED


async def test_while_the_callback_secret_changes_the_one_before_still_lets_daraja_in(gw: Gateway):
    """`payments.callback_previous_secret`: what Daraja says of a request made before the change comes
    to a URL carrying the old secret, and is applied; new requests name the new one."""
    assert gw.payments.settings.callback_base_url.endswith(f"/callbacks/{SECRET}")
    user = await gw.user(suffix="900")  # the sandbox never sends this push's callback: ours stands in
    payment = await gw.payments.handle(Deposit("gw-dep-rotated", user.id, Money.of(70, KES), Channel.USSD))
    for _ in range(300):
        pushed = await gw.payment(payment.public_id)
        if pushed.provider_ref:
            break
        await asyncio.sleep(0.03)
    status, _ = await gw.post(f"/callbacks/{PREVIOUS_SECRET}/stk", stk_callback(pushed, result_code=1032))
    assert status == 200
    done = await wait_for(gw, payment.public_id)
    assert done.status is S.FAILED and done.error_code == "cancelled_by_user"
    _, unknown = await gw.post("/no/such/path", "{}")
    for near in (PREVIOUS_SECRET[:-1], PREVIOUS_SECRET + SECRET, PREVIOUS_SECRET.upper()):
        assert await gw.post(f"/callbacks/{near}/stk", stk_callback(pushed, result_code=1032)) == (404, unknown)


async def test_malformed_deliveries_get_400_and_change_nothing(gw: Gateway):
    user = await gw.user()
    payment = await gw.payments.handle(Deposit("gw-dep-bad", user.id, Money.of(80, KES), Channel.USSD))
    done = await wait_for(gw, payment.public_id)
    good = json.loads(stk_callback(done, result_code=1032))
    del good["Body"]["stkCallback"]["CheckoutRequestID"]
    bodies = ["not json", "[]", "{}", '{"Body": {"stkCallback": "x"}}', json.dumps(good),
              '{"Result": {"ResultCode": 0}}', "\xff\xfe", '{"Body": {"stkCallback": {"ResultCode": 0}}}']
    for path in DARAJA_PATHS:
        for body in bodies:
            status, answer = await gw.post(f"/callbacks/{SECRET}{path}", body.encode("utf-8", "surrogateescape"))
            assert status == 400, (path, body)
            assert answer["error"] == "malformed_callback" and answer["message"]

    # An authentic Wave delivery that is not a Wave event, or whose session is unreadable.
    for envelope in (b"not json", b'{"type": "checkout.session.completed", "data": {}}',
                     json.dumps({"id": "EV_bad", "type": "checkout.session.completed",
                                 "data": {"id": "cos_1", "amount": "oops"}}).encode()):
        status, answer = await gw.post("/callbacks/wave", envelope, _signed(gw, envelope))
        assert status == 400 and answer["error"] == "malformed_webhook"

    assert (await gw.payment(payment.public_id)).status is S.SUCCEEDED
    assert await gw.wallet(user) == Money.of(80, KES)
