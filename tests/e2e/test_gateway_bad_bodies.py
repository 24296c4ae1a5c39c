"""Request bodies that cannot be read, or whose amounts cannot be money, against the gateway `sauti
serve` builds (real TCP port): each gets a 400 naming what is wrong, never a 500, and changes
nothing. JSON with a number no Decimal holds or arrays nested thousands deep is ``invalid_json``,
as any other unparsable body; amounts out of range, or with more decimals than the currency has
(also past decimal's 28 digits, where arithmetic would round them), are ``invalid_amount``; a voice
command's multipart body without a boundary or parts is ``invalid_multipart``."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.keys import API_KEY_HASHER
from payments.api_keys import create_api_key
from payments.identities import Role, User, grant_role
from payments.money import Currency, Money
from payments.payment_settings import CALLBACK_STK
from tests.e2e.gateway_payments_world import SECRET, Gateway, free_port, gateway_settings, running_gateway

KES = Currency.KES
HUGE_EXPONENT = b"1e999999999999999999999"  # decimal.InvalidOperation, not ValueError, from json.loads
DEEP = b"[" * 5000 + b"]" * 5000  # RecursionError from json.loads


@pytest.fixture(scope="module")
async def gw(new_database) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(await new_database(), free_port(),
                                                api={"key_pepper": "e2e-bad-bodies-pepper"})) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def merchant(gw: Gateway) -> tuple[User, User, str]:
    """A funded wallet that may also ask for payments (intents), its key, and someone to pay."""
    user, payee = await gw.user(name="Amina Njoroge"), await gw.user(name="Juma Mwangi")
    await gw.fund(user, Money.of(1_000, KES))
    async with gw.engine.begin() as conn:
        await grant_role(conn, user.id, Role.MERCHANT, actor="test")
        key = (await create_api_key(conn, gw.app[API_KEY_HASHER], "bad bodies", user_id=user.id)).secret
    return user, payee, key


async def post(gw: Gateway, path: str, body: bytes, *, key: str | None,
               content_type: str = "application/json") -> tuple[int, Any]:
    headers = {"Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex,
               **({"Authorization": f"Bearer {key}"} if key else {})}
    async with aiohttp.ClientSession() as http, http.post(gw.url + path, data=body, headers=headers) as resp:
        return resp.status, json.loads(await resp.text())


def body_with(path: str, payee: User, amount: bytes) -> bytes:
    """A valid body for ``path`` but for its amount, given as raw JSON (a string or a number)."""
    rest = {"/v1/quotes": {"kind": "p2p", "recipient": payee.phone},
            "/v1/payments": {"kind": "p2p", "recipient": payee.phone},
            "/v1/payment_intents": {"payer": payee.phone, "description": "Order 7"}}[path]
    return b'{"amount": ' + amount + b', "currency": "KES", ' + json.dumps(rest).encode()[1:]


@pytest.mark.parametrize("path", ["/v1/devices", "/v1/quotes", "/v1/payments", "/v1/payment_intents", "/v1/contacts",
                                  "/v1/voice/commands", "/v1/webhook_endpoints"])
@pytest.mark.parametrize("body", [b'{"amount": ' + HUGE_EXPONENT + b"}", b'{"amount": -' + HUGE_EXPONENT + b"}",
                                  b'{"a": ' + DEEP + b"}", DEEP])
async def test_json_no_parser_can_hold_is_invalid_json(gw: Gateway, merchant, path, body):
    # /v1/devices needs no key: a stranger's body must not be a 500 either.
    status, answer = await post(gw, path, body, key=None if path == "/v1/devices" else merchant[2])
    assert (status, answer["error"]["code"]) == (400, "invalid_json"), answer


@pytest.mark.parametrize("path", ["/v1/quotes", "/v1/payments", "/v1/payment_intents"])
@pytest.mark.parametrize("amount", [
    b'"1e999999999"', b'"-1e999999999"', b"1e999999999", b'"1e-999999999"',  # abs() of these overflows
    b'"1.00999999999999999999999999999"', b"1.000000000000000000000000000001",  # past 28 digits
    b'"10000000000000"', b'"1.005"',
])
async def test_amounts_that_are_not_exact_money_are_invalid_amount_and_make_nothing(gw: Gateway, merchant, path,
                                                                                    amount):
    _, payee, key = merchant
    payments = await gw.scalar("SELECT count(*) FROM payments")
    intents = await gw.scalar("SELECT count(*) FROM payment_intents")

    status, answer = await post(gw, path, body_with(path, payee, amount), key=key)

    assert (status, answer["error"]["code"]) == (400, "invalid_amount"), answer
    assert len(answer["error"]["message"]) < 200
    assert await gw.scalar("SELECT count(*) FROM payments") == payments
    assert await gw.scalar("SELECT count(*) FROM payment_intents") == intents


async def test_trailing_zeros_are_no_decimals(gw: Gateway, merchant):
    _, payee, key = merchant
    for amount in (b'"1.50"', b'"1.500"', b"1.50000000000000000000000000000000"):
        status, quote = await post(gw, "/v1/quotes", body_with("/v1/quotes", payee, amount), key=key)
        assert status == 200 and quote["amount"] == "1.50", quote


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"--x\r\n"),  # no boundary
    ("multipart/form-data; boundary=x", b"garbage"),  # no first boundary
    ("multipart/form-data; boundary=" + "x" * 80, b"--x\r\n"),  # a boundary longer than 70
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\nsend 5'),  # cut
    ("multipart/form-data; boundary=x", b"--x\r\nnot a header\r\n\r\nsend 5\r\n--x--\r\n"),
])
async def test_a_voice_command_whose_multipart_cannot_be_read_is_invalid_multipart(gw: Gateway, merchant,
                                                                                   content_type, body):
    status, answer = await post(gw, "/v1/voice/commands", body, key=merchant[2], content_type=content_type)
    assert (status, answer["error"]["code"]) == (400, "invalid_multipart"), answer


async def test_a_voice_command_s_text_field_too_long_for_a_command_says_so(gw: Gateway, merchant):
    body = (b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\n' + b"send 5 " * 400 + b"\r\n--x--\r\n")
    status, answer = await post(gw, "/v1/voice/commands", body, key=merchant[2],
                                content_type="multipart/form-data; boundary=x")
    assert (status, answer["error"]["code"]) == (413, "field_too_large"), answer
    assert "text" in answer["error"]["message"] and "recording" not in answer["error"]["message"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize(("path", "needs_key", "content_type"), [
    ("/v1/devices", False, "application/json"),  # no key needed: anyone can send one
    ("/v1/payments", True, "application/json"),
    ("/ops/sign-in", False, "application/x-www-form-urlencoded"),
    ("/ussd", False, "application/x-www-form-urlencoded"),
    ("/voice", False, "application/x-www-form-urlencoded"),
    ("/callbacks/wave", False, "application/json"),
    (f"/callbacks/{SECRET}{CALLBACK_STK}", False, "application/json"),
])
async def test_a_body_that_does_not_decompress_is_refused_not_our_failure(gw: Gateway, merchant, caplog, path,
                                                                         needs_key, content_type, encoding):
    headers = {"Content-Type": content_type, "Content-Encoding": encoding, "Idempotency-Key": uuid.uuid4().hex,
               **({"Authorization": f"Bearer {merchant[2]}"} if needs_key else {})}
    with caplog.at_level(logging.ERROR):
        async with aiohttp.ClientSession() as http, http.post(gw.url + path, data=b"this is not compressed",
                                                              headers=headers) as resp:
            status, text = resp.status, await resp.text()
    if path in ("/ussd", "/voice"):  # Africa's Talking's callbacks: always a screen or a spoken answer
        assert status == 200 and "something went wrong" in text, text
    else:
        assert 400 <= status < 500, (status, text)
    assert "internal_error" not in text and "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
