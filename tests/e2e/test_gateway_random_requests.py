"""Seeded random requests to every HTTP endpoint of the gateway `sauti serve` builds (the payments,
app, voice and operator APIs, the operator dashboard, the USSD and voice callbacks, the Daraja
callbacks behind their secret, the Wave webhook): valid bodies with one to three fields changed to
anything (wrong types, huge numbers, NaN, junk strings, nested objects), dropped or added; good,
revoked, malformed and missing credentials (operators' keys and dashboard sessions too) and
idempotency keys; bodies that are not JSON. Whatever comes in, the answer is never
a server error; an API refusal is JSON naming its error; nothing logs a traceback; and the ledger
balances afterwards. The endpoints' own tests check each refusal; this checks that none was missed."""

from __future__ import annotations

import collections
import copy
import json
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.keys import API_KEY_HASHER
from gateway.ops_dashboard import COOKIE
from payments.api_keys import OPERATOR, create_api_key
from payments.identities import Role, User, grant_role
from tests.e2e.gateway_payments_world import SECRET, Gateway, free_port, gateway_settings, running_gateway
from tests.e2e.test_gateway_app_api import PIN, customer
from tests.http_servers import serve_app

PEPPER = "e2e-random-pepper"
REQUESTS, BLOCKS = 3600, 3  # more endpoints, as many requests each as before
FIELDS = ("kind", "payer", "amount", "currency", "recipient", "phone", "paybill", "account_number", "till", "payment",
          "reason", "text", "language", "name", "nickname", "favourite", "pin", "device_name", "limit", "Body",
          "Result", "TransID", "TransAmount", "MSISDN", "BillRefNumber", "id", "type", "data", "client_reference",
          "url", "outcome", "receipt", "key", "csrf", "payee", "description", "reference", "expires_in_s")
ENDPOINTS = (
    *[("POST", "/v1/payments")] * 6, ("POST", "/v1/quotes"), ("GET", "/v1/payments/{id}"), ("GET", "/v1/payments"),
    ("GET", "/v1/wallets/{id}/history"), ("POST", "/v1/devices"), ("GET", "/v1/contacts"), ("POST", "/v1/contacts"),
    ("GET", "/v1/contacts/{id}"), ("PATCH", "/v1/contacts/{id}"), ("DELETE", "/v1/contacts/{id}"),
    *[("POST", "/v1/voice/commands")] * 2, ("GET", "/v1/voice/commands/{id}"),
    *[("POST", "/v1/voice/commands/{id}/answer")] * 2, *[("POST", "/v1/voice/commands/{id}/confirm")] * 2,
    ("POST", "/v1/voice/commands/{id}/cancel"), ("POST", "/ussd"), ("POST", "/ussd/events"), ("POST", "/voice"),
    ("GET", "/voice/prompts/{id}"), ("POST", "/callbacks/wave"),
    *[("POST", "/v1/webhook_endpoints")] * 2, ("GET", "/v1/webhook_endpoints"),
    ("DELETE", "/v1/webhook_endpoints/{id}"), ("POST", "/v1/webhook_endpoints/{id}/test"),
    ("POST", "/v1/webhook_endpoints/{id}/roll_secret"), ("GET", "/v1/webhook_endpoints/{id}/deliveries"),
    *[("POST", "/v1/payment_intents")] * 2, ("GET", "/v1/payment_intents"), ("GET", "/v1/payment_intents/{id}"),
    *[("POST", "/v1/payment_intents/{id}/pay")] * 2, ("POST", "/v1/payment_intents/{id}/decline"),
    ("POST", "/v1/payment_intents/{id}/cancel"),
    ("GET", "/v1/ops/payments"), ("GET", "/v1/ops/payments/{id}"), *[("POST", "/v1/ops/payments/{id}/refund")] * 2,
    ("POST", "/v1/ops/payments/{id}/decide"), ("GET", "/v1/ops/review"), ("GET", "/v1/ops/outbox"),
    ("POST", "/v1/ops/outbox/{id}/retry"), ("GET", "/v1/ops/wallets/{id}"), ("GET", "/ops/wallets/{id}"),
    ("POST", "/ops/sign-in"), ("GET", "/ops"), ("GET", "/ops/payments/{id}"),
    *[("POST", "/ops/payments/{id}/refund")] * 2, ("POST", "/ops/payments/{id}/decide"), ("GET", "/ops/outbox"),
    ("POST", "/ops/outbox/{id}/retry"), ("GET", "/ops/find"),
    ("GET", "/v1/ops/suspense"), ("GET", "/v1/ops/suspense/{id}"), ("POST", "/v1/ops/suspense/{id}/credit"),
    ("POST", "/v1/ops/suspense/{id}/return"), ("GET", "/ops/suspense"), ("POST", "/ops/suspense/{id}/credit"),
    ("POST", "/ops/suspense/{id}/return"), ("POST", "/v1/ops/reconciliations"), ("GET", "/ops/reconcile"),
    ("POST", "/ops/reconcile"),
    *[("POST", f"/callbacks/{SECRET}{path}") for path in (
        "/stk", "/b2c/result", "/b2c/timeout", "/b2b/result", "/reversal/result", "/status/result", "/status/timeout",
        "/c2b/validation", "/c2b/confirmation")],
)


@pytest.fixture(scope="module")
async def hook_url() -> AsyncIterator[str]:
    """A merchant's webhook endpoint that takes every event: where valid endpoints point."""

    async def taken(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hooks", taken)
    async with serve_app(app) as base:
        yield f"{base}/hooks"


@pytest.fixture(scope="module")
async def gw(new_database, hook_url) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(await new_database(), free_port(), api={"key_pepper": PEPPER},
                                                webhooks={"allow_local_urls": True})) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
async def ledger_stays_consistent(gw: Gateway) -> AsyncIterator[None]:
    yield
    await gw.assert_ledger_ok()


def anything(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type and size, from plausible to hostile."""
    roll = rng.random()
    if depth < 2 and roll < 0.06:
        return [anything(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.12:
        return {rng.choice(FIELDS): anything(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice((
        lambda: rng.randint(-10**20, 10**20), lambda: rng.choice((0, 1, -1, 50, 999_999, 10**9, 2**63, 2**64)),
        lambda: rng.random() * 1e6, lambda: 1.5, lambda: None, lambda: rng.choice((True, False)),
        lambda: rng.choice(("KES", "XOF", "USD", "kes", "")),
        lambda: rng.choice(("NaN", "1e400", "1e999999999", "1.00999999999999999999999999999", "-0", "10,000")),
        lambda: rng.choice(("+254712345678", "0712345678", "+221770000001", "12", "+1 202 555 0100", "٠٧١٢٣٤٥٦٧٨")),
        lambda: "x" * rng.choice((0, 1, 300, 5000)), lambda: "😀'\"\\\x00\u202e", lambda: "half a pair \ud800",
        lambda: PIN,
        lambda: rng.choice(("send 500 to Mama", "tuma elfu moja kwa Juma", "envoyer 2000 à Awa", "balance", "")),
        lambda: str(rng.randint(-5, 10**12)), lambda: "pay_" + uuid.uuid4().hex, lambda: "Q90A9KXSV4",
    ))()


def template(path: str, rng: random.Random, user: User, payee: User, made: list[str], hook_url: str,
             ops: tuple[str, str]) -> dict[str, Any]:
    """A valid body for ``path`` (as its endpoint's tests send it), or {} where none is known.
    ``ops``: an operator key and its dashboard session's CSRF token."""
    verdict = {"outcome": rng.choice(("succeeded", "failed")), "reason": "read on the statement",
               "receipt": rng.choice(("QK7H2ABC9", None))}
    kes = {"amount": 10, "currency": "KES"}
    c2b = {"TransactionType": "Pay Bill", "TransID": f"RND{rng.randrange(10**7):07d}", "TransTime": "20261130120000",
           "TransAmount": "100.00", "BusinessShortCode": "600000",
           "BillRefNumber": rng.choice(("0" + user.phone[4:], "0799000111")),  # the second names no wallet
           "InvoiceNumber": "", "OrgAccountBalance": "", "ThirdPartyTransID": "", "MSISDN": user.phone[1:],
           "FirstName": "Amina", "MiddleName": "", "LastName": "Njoroge"}
    return {
        f"/callbacks/{SECRET}/c2b/validation": c2b, f"/callbacks/{SECRET}/c2b/confirmation": c2b,
        "/v1/payments": rng.choice((
            {"kind": "p2p", **kes, "recipient": payee.phone},
            {"kind": "send_to_phone", **kes, "recipient": "+254712345678"},
            {"kind": "withdraw", **kes}, {"kind": "deposit", **kes},
            {"kind": "pay_bill", **kes, "paybill": "888880", "account_number": "A1"},
            {"kind": "buy_goods_till", **kes, "till": "123456"},
            {"kind": "buy_goods_pochi", **kes, "recipient": "+254712345678"},
            {"kind": "refund", "payment": rng.choice(made or ["pay_x"]), "reason": "returned"})),
        "/v1/quotes": {"kind": "p2p", **kes, "recipient": payee.phone},
        "/v1/devices": {"phone": user.phone, "pin": rng.choice((PIN, PIN, "0000")), "device_name": "Tecno Spark"},
        "/v1/contacts": {"name": "Mama", "phone": "+254712345678", "nickname": "mama", "favourite": True},
        "/v1/contacts/{id}": {"name": "Mama Njeri", "favourite": False},
        "/v1/voice/commands": {"text": rng.choice(("send 50 to Mama", "tuma shilingi mia kwa Juma", "balance",
                                                   "pay bill 888880 account A1 100", "withdraw 20")), "language": "en"},
        "/v1/voice/commands/{id}/answer": {"text": rng.choice(("50", "Mama", "yes", "0712345678"))},
        "/v1/voice/commands/{id}/confirm": {"pin": PIN},
        "/v1/webhook_endpoints": {"url": rng.choice((hook_url, hook_url + "?shop=7", "https://shop.example.com/h"))},
        "/v1/webhook_endpoints/{id}/roll_secret": {"previous_secret_valid_s": rng.choice((0, 60, 86400))},
        # The user asks the payee (its key) or, for a platform key, the payee asks the user.
        "/v1/payment_intents": {**kes, "payer": payee.phone, "payee": rng.choice((None, user.phone)),
                                "description": "Order 7", "reference": "inv-7", "expires_in_s": 900},
        "/v1/ops/payments/{id}/refund": {"reason": "the customer asked", "provider_reversed": rng.random() < 0.5},
        "/v1/ops/payments/{id}/decide": verdict,
        "/ops/sign-in": {"key": ops[0]},
        "/ops/payments/{id}/refund": {"csrf": ops[1], "reason": "the customer asked"},
        "/ops/payments/{id}/decide": {"csrf": ops[1], **verdict},
        "/ops/outbox/{id}/retry": {"csrf": ops[1]},
        "/v1/ops/suspense/{id}/credit": {"phone": user.phone, "reason": "called with the receipt"},
        "/v1/ops/suspense/{id}/return": {"reason": "reversed in the portal", "reversal": "QK7H2ABC9"},
        "/ops/suspense/{id}/credit": {"csrf": ops[1], "phone": user.phone, "reason": "called with the receipt"},
        "/ops/suspense/{id}/return": {"csrf": ops[1], "reason": "reversed in the portal", "reversed": "yes"},
        "/v1/ops/reconciliations": {"from": f"{date.today() - timedelta(days=rng.choice((0, 1, 2))):%Y-%m-%d}",
                                    "provider": rng.choice((None, "mpesa", "wave")), "grace_minutes": 5},
        "/ops/reconcile": {"csrf": ops[1], "from": f"{date.today():%Y-%m-%d}", "provider": "mpesa",
                           "mpesa_statement": "Receipt No.,Completion Time,Paid In,Withdrawn\n"},
    }.get(path, {})


def changed(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``body`` with one to three changes, at its top or in an object or list nested in it."""
    body = copy.deepcopy(body)
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        target: dict[str, Any] | list[Any] = body
        while rng.random() < 0.6:
            inner = [v for v in (target.values() if isinstance(target, dict) else target)
                     if isinstance(v, dict | list) and v]
            if not inner:
                break
            target = rng.choice(inner)
        roll = rng.random()
        if isinstance(target, list):
            if roll < 0.7:
                target[rng.randrange(len(target))] = anything(rng)
            else:
                target.pop(rng.randrange(len(target)))
        elif roll < 0.6 and target:
            target[rng.choice(list(target))] = anything(rng)
        elif roll < 0.8 and target:
            target.pop(rng.choice(list(target)))
        else:
            target[rng.choice(FIELDS)] = anything(rng)
    return body


@pytest.mark.parametrize("block", range(BLOCKS))
async def test_no_request_gets_a_server_error(gw, hook_url, caplog, block):
    caplog.set_level(logging.WARNING)
    user, payee = await customer(gw, name="Amina Njoroge", funds=50_000), await customer(gw, name="Juma Mwangi")
    async with gw.engine.begin() as conn:
        await grant_role(conn, user.id, Role.MERCHANT, actor="test")  # its key asks for payments (intents)
        user_key = (await create_api_key(conn, gw.app[API_KEY_HASHER], "random", user_id=user.id)).secret
        platform_key = (await create_api_key(conn, gw.app[API_KEY_HASHER], "random platform")).secret
        ops_key = (await create_api_key(conn, gw.app[API_KEY_HASHER], "random operator", role=OPERATOR)).secret
    ops = await dashboard_session(gw, ops_key)
    rng = random.Random(block)
    made: list[str] = []
    ids: list[str] = []
    receipts: list[str] = []
    answers: collections.Counter[tuple[str, int]] = collections.Counter()
    async with aiohttp.ClientSession() as http:
        for n in range(REQUESTS // BLOCKS):
            method, path = rng.choice(ENDPOINTS)
            some_id = rng.choice(("pay_" + uuid.uuid4().hex, "Q90A9KXSV4", "1", "-1", "99999999999999999999", "%00",
                                  "x" * 300, user.phone, "0712345678", "%2e%2e", "pay_%00", "%ED%A0%80",
                                  *ids[-3:], *made[-2:]))
            if "/ops/payments/" in path and made and rng.random() < 0.6:  # operators mostly open real payments
                some_id = rng.choice(made[-3:])
            if "/suspense/" in path and receipts and rng.random() < 0.6:  # and money paid to our paybill
                some_id = rng.choice(receipts[-3:])
            headers = {"Authorization": rng.choice((
                *[f"Bearer {user_key}"] * 8, f"Bearer {platform_key}", "Bearer", "Basic eDp5", "Bearer " + "y" * 500,
                "Bearer é", *[f"Bearer {ops_key}"] * (12 if "/ops/" in path else 1)))} if rng.random() < 0.95 else {}
            # Not to sign-in: signing in again ends the session a cookie names, this test's own.
            if path.startswith("/ops") and path != "/ops/sign-in" and rng.random() < 0.85:
                headers["Cookie"] = f"{COOKIE}={rng.choice((ops[2], ops[2], ops[2], 'x' * 43, ''))}"
            if rng.random() < 0.9:
                fresh = uuid.uuid4().hex
                headers["Idempotency-Key"] = rng.choice((fresh, fresh, "", "k" * 300, "same", "é"))
            body = changed(template(path, rng, user, payee, made, hook_url, ops[:2]), rng)
            # The dashboard's forms post form data; everything else JSON (each also gets the others).
            roll = rng.random() if not path.startswith("/ops") else rng.choice((0.0, 0.9, 0.95, *[0.99] * 7))
            data: Any
            if roll < 0.88:
                data, headers["Content-Type"] = json.dumps(body, default=str).encode(), "application/json"
            elif roll < 0.94:
                data = rng.choice((b"", b"{", b"[]", b"null", b"\xff\xfe", b'{"a":' * 200, b"1", b'"s"',
                                   b"[" * 5000 + b"]" * 5000, b"--x\r\n",
                                   b'{"amount": 1e999999999999999999999}'))
                # Multipart that is not (no boundary, no part) too: the voice API and the dashboard read it.
                headers["Content-Type"] = rng.choice(("application/json",) * 4 + (
                    "multipart/form-data", "multipart/form-data; boundary=x"))
            else:
                # A form cannot carry half a surrogate pair in UTF-8: a browser sends a replacement.
                data = aiohttp.FormData({key: str(value).encode("utf-8", "replace").decode()
                                         for key, value in body.items()})
            request = f"request {n} of block {block}: {method} {path} ({some_id[:40]}) {str(body)[:300]}"
            async with http.request(method, gw.url + path.replace("{id}", some_id), data=data, headers=headers,
                                    allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
            answers[(path, resp.status)] += 1
            assert resp.status < 500, f"{resp.status} {text[:300]}\n{request}"
            if path.startswith("/v1/") and resp.status >= 400:
                assert json.loads(text)["error"]["code"], f"{resp.status} {text[:300]}\n{request}"
            elif resp.status in (200, 201) and (method, path) == ("POST", "/v1/payments"):
                made.append(json.loads(text)["public_id"])
            elif resp.status == 201 and path in ("/v1/voice/commands", "/v1/webhook_endpoints"):
                ids.append(json.loads(text)["id"])
            elif resp.status == 201 and (method, path) == ("POST", "/v1/payment_intents"):
                ids.append(json.loads(text)["public_id"])
            elif path.endswith("/c2b/confirmation") and isinstance(body.get("TransID"), str):
                receipts.append(body["TransID"])
            tracebacks = [r for r in caplog.records if r.exc_info]
            assert not tracebacks, f"{tracebacks[0].getMessage()}\n{request}"
    # The requests got past the doors: payments made, voice commands taken, contacts written, refunds
    # asked by operators through the API and through the dashboard's form (key, session, CSRF token).
    assert made and ids and answers[("/v1/contacts", 200)] + answers[("/v1/contacts", 201)], answers
    assert answers[("/v1/webhook_endpoints", 201)], answers
    assert answers[("/v1/payment_intents", 201)], sorted(answers.items())
    assert sum(n for (path, status), n in answers.items()
               if path == "/v1/ops/payments/{id}/refund" and status not in (401, 403)), answers
    forms = ("/ops/payments/{id}/refund", "/ops/payments/{id}/decide", "/ops/outbox/{id}/retry")
    assert sum(n for (path, status), n in answers.items() if path in forms and status != 403), answers


async def dashboard_session(gw: Gateway, ops_key: str) -> tuple[str, str, str]:
    """Sign in to the dashboard with ``ops_key``: the key, the session's CSRF token, its cookie's token."""
    # unsafe: keep cookies from an IP address (the gateway's 127.0.0.1), as browsers do.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(gw.url + "/ops/sign-in") as answer:
            sign_in_token = re.search(r'name="sign_in_token" value="([^"]+)"', await answer.text()).group(1)
        async with http.post(gw.url + "/ops/sign-in", data={"key": ops_key, "sign_in_token": sign_in_token}) as answer:
            page = await answer.text()
        token = http.cookie_jar.filter_cookies(URL(gw.url + "/ops"))[COOKIE].value
    return ops_key, re.search(r'name="csrf" value="([^"]+)"', page).group(1), token
