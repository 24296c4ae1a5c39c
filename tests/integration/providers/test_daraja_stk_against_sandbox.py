"""STK push and query between our Daraja client and the Daraja sandbox, callbacks over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from payments.money import Money
from payments.phones import InvalidPhoneNumber
from payments.providers.daraja import (
    DarajaBadRequest,
    DarajaClient,
    DarajaRejected,
    DarajaServerError,
    StkState,
)
from payments.providers.daraja_callbacks import parse_stk_callback
from payments.providers.errors import ProviderTimeout

KES_100 = Money.of("100", "KES")


async def push(daraja: DarajaClient, receiver, phone: str, amount: Money = KES_100):
    return await daraja.stk_push(
        phone=phone,
        amount=amount,
        account_reference="INV-42",
        description="Deposit",
        callback_url=receiver.url("/stk"),
    )


async def test_a_paid_push_calls_back_with_receipt_and_shows_in_query_and_statement(daraja, receiver, http, sandboxes):
    accepted = await push(daraja, receiver, "0712 345 678")
    assert accepted.checkout_request_id.startswith("ws_CO_")

    [delivery] = await receiver.wait_for("/stk")
    callback = parse_stk_callback(delivery.body)
    assert callback.succeeded
    assert callback.checkout_request_id == accepted.checkout_request_id
    assert callback.merchant_request_id == accepted.merchant_request_id
    assert callback.amount == KES_100
    assert callback.phone == "+254712345678"
    assert callback.receipt and len(callback.receipt) == 10
    assert callback.metadata["Balance"] is None  # the item Daraja sends without a Value

    queried = await daraja.stk_query(accepted.checkout_request_id)
    assert (queried.state, queried.result_code) == (StkState.SUCCEEDED, 0)

    async with http.get(f"{sandboxes.urls.daraja}/_sandbox/statement") as resp:
        statement = await resp.json()
    [entry] = [t for t in statement["transactions"] if t["transaction_id"] == callback.receipt]
    assert entry["amount_minor"] == 10_000
    assert entry["reference"] == accepted.checkout_request_id
    assert entry["party"] == "254712345678"


async def test_query_while_the_payer_has_not_answered_is_pending_not_failed(daraja, receiver, http, sandboxes, control):
    phone = "+254712345611"
    await control(http, sandboxes.urls.daraja, "success", msisdn=phone, delay_s=0.6)
    accepted = await push(daraja, receiver, phone)

    pending = await daraja.stk_query(accepted.checkout_request_id)
    assert pending.state is StkState.PENDING
    assert pending.result_code is None
    assert "being processed" in pending.result_desc

    await receiver.wait_for("/stk")
    done = await daraja.stk_query(accepted.checkout_request_id)
    assert done.state is StkState.SUCCEEDED


@pytest.mark.parametrize(
    ("suffix", "code"),
    [("001", 1), ("019", 1019), ("032", 1032), ("037", 1037), ("201", 2001)],
)
async def test_failure_suffixes_give_their_result_codes_in_callback_and_query(
    daraja, receiver, sandboxes, suffix, code
):
    accepted = await push(daraja, receiver, f"+254712345{suffix}")
    [delivery] = await receiver.wait_for("/stk")
    callback = parse_stk_callback(delivery.body)
    assert callback.result_code == code
    assert not callback.succeeded
    assert callback.amount is None and callback.receipt is None
    assert "CallbackMetadata" not in delivery.json()["Body"]["stkCallback"]

    queried = await daraja.stk_query(accepted.checkout_request_id)
    assert (queried.state, queried.result_code) == (StkState.FAILED, code)
    refs = [e.reference for e in sandboxes.daraja.books.entries()]
    assert accepted.checkout_request_id not in refs  # nothing was paid


async def test_the_control_api_sets_the_next_outcome_for_a_number(daraja, receiver, http, sandboxes, control):
    phone = "+254712345612"
    await control(http, sandboxes.urls.daraja, "user_cancelled", msisdn=phone)
    await push(daraja, receiver, phone)
    first = parse_stk_callback((await receiver.wait_for("/stk"))[0].body)
    assert first.result_code == 1032

    await push(daraja, receiver, phone)  # the override was for one request only
    second = parse_stk_callback((await receiver.wait_for("/stk", count=2))[1].body)
    assert second.result_code == 0


async def test_a_global_override_applies_to_any_number(daraja, receiver, http, sandboxes, control):
    await control(http, sandboxes.urls.daraja, "insufficient_funds")
    await push(daraja, receiver, "+254712345613")
    assert parse_stk_callback((await receiver.wait_for("/stk"))[0].body).result_code == 1


async def test_a_callback_that_never_comes_is_recovered_by_query(daraja, receiver):
    accepted = await push(daraja, receiver, "+254712345900")
    for _ in range(50):
        queried = await daraja.stk_query(accepted.checkout_request_id)
        if queried.state is not StkState.PENDING:
            break
        await asyncio.sleep(0.05)
    assert queried.state is StkState.SUCCEEDED
    await asyncio.sleep(0.2)
    assert receiver.at("/stk") == []


async def test_a_duplicated_callback_arrives_twice_with_the_same_ids(daraja, receiver):
    accepted = await push(daraja, receiver, "+254712345902")
    first, second = await receiver.wait_for("/stk", count=2)
    a, b = parse_stk_callback(first.body), parse_stk_callback(second.body)
    assert a == b
    assert a.checkout_request_id == accepted.checkout_request_id  # the key to deduplicate on


async def test_a_callback_can_arrive_before_the_synchronous_answer(daraja, receiver):
    accepted = await push(daraja, receiver, "+254712345903")
    # No waiting: the callback was delivered before stk_push returned.
    [delivery] = receiver.at("/stk")
    assert parse_stk_callback(delivery.body).checkout_request_id == accepted.checkout_request_id


async def test_http_500_is_a_retryable_server_error(daraja, receiver):
    with pytest.raises(DarajaServerError) as caught:
        await push(daraja, receiver, "+254712345500")
    assert caught.value.retryable
    assert caught.value.http_status == 500
    assert caught.value.code == "500.003.1001"


async def test_rate_limiting_is_retryable(daraja, receiver):
    with pytest.raises(DarajaServerError) as caught:
        await push(daraja, receiver, "+254712345429")
    assert caught.value.http_status == 429 and caught.value.retryable


async def test_a_slow_answer_times_out_as_outcome_unknown(daraja_settings, receiver):
    async with DarajaClient(daraja_settings.__class__(**{**_fields(daraja_settings), "timeout_s": 0.3})) as impatient:
        with pytest.raises(ProviderTimeout) as caught:
            await push(impatient, receiver, "+254712345904")
    assert caught.value.retryable


async def test_a_wrong_passkey_is_refused_with_wrong_credentials(daraja_settings, receiver):
    wrong = daraja_settings.__class__(**{**_fields(daraja_settings), "passkey": "not-the-passkey"})
    async with DarajaClient(wrong) as client:
        with pytest.raises(DarajaRejected) as caught:
            await push(client, receiver, "+254712345678")
    assert caught.value.code == "500.001.1001"
    assert "Wrong credentials" in caught.value.message
    assert not caught.value.retryable


async def test_a_timestamp_three_hours_off_is_refused(daraja_settings, receiver):
    # A client whose clock is three hours behind writes the same stamps as one that forgot Nairobi time.
    def utc_taken_for_nairobi() -> datetime:
        return datetime.now(UTC) - timedelta(hours=3)

    async with DarajaClient(daraja_settings, now=utc_taken_for_nairobi) as client:
        with pytest.raises(DarajaBadRequest) as caught:
            await push(client, receiver, "+254712345678")
    assert caught.value.code == "400.002.02"
    assert "Timestamp" in caught.value.message


async def test_a_query_for_an_unknown_checkout_is_a_bad_request(daraja):
    with pytest.raises(DarajaBadRequest):
        await daraja.stk_query("ws_CO_000000000000000000")


async def test_bad_input_never_leaves_the_client(daraja, receiver, sandboxes):
    issued = sandboxes.daraja.tokens_issued
    with pytest.raises(InvalidPhoneNumber):
        await push(daraja, receiver, "+221771234567")  # a Senegalese number: no M-Pesa there
    with pytest.raises(ValueError, match="AccountReference"):
        await daraja.stk_push(
            phone="+254712345678",
            amount=KES_100,
            account_reference="far-too-long-reference",
            description="x",
            callback_url=receiver.url("/stk"),
        )
    assert sandboxes.daraja.tokens_issued == issued


def _fields(settings) -> dict:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
