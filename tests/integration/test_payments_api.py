"""The JSON payments API over real HTTP (aiohttp test server), with a real database, the real
orchestrator and the provider sandboxes: API-key authentication, idempotent payment creation,
reading payments and wallet history, quotes, and bad input answered with a clear 4xx that writes
nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.payments_api import add_payment_api_routes
from gateway.settings import Settings
from payments.api_keys import ApiKeyHasher, create_api_key, revoke_api_key
from payments.identities import User
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.integration.ledger_helpers import random_kenyan_number
from tests.integration.ops_helpers import plans_without_seq_scans, statements_run
from tests.integration.payments_helpers import PaymentsWorld, api_client, module_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus
PEPPER = "api-test-pepper"


world, ledger_stays_consistent = module_world()


@pytest.fixture(scope="module")
async def client(world: PaymentsWorld) -> AsyncIterator[TestClient]:
    """The API mounted as the gateway mounts it, on an app holding the test world's engine and
    orchestrator, behind the gateway's own error middleware."""
    async with api_client(world, Settings.model_validate({"api": {"key_pepper": PEPPER}}),
                          add_payment_api_routes) as test_client:
        yield test_client


async def new_key(world: PaymentsWorld, user: User | None = None) -> str:
    async with world.engine.begin() as conn:
        made = await create_api_key(conn, ApiKeyHasher(PEPPER), "test", user_id=user.id if user else None)
    return made.secret


def auth(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


async def post(client: TestClient, path: str, key: str, body: Any, idem: str | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with client.post(path, data=data, headers={**auth(key, idem), "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def get(client: TestClient, path: str, key: str) -> tuple[int, dict[str, Any]]:
    async with client.get(path, headers=auth(key)) as r:
        return r.status, await r.json()


async def count_payments(world: PaymentsWorld) -> int:
    return await world.scalar("SELECT count(*) FROM payments")


# -- authentication --------------------------------------------------------------------------------


async def test_missing_bad_and_revoked_keys_get_the_same_401(world, client):
    key = await new_key(world)
    async with world.engine.begin() as conn:
        revoked = await create_api_key(conn, ApiKeyHasher(PEPPER), "old")
        await revoke_api_key(conn, revoked.key.prefix)
    wrong_pepper = await new_key(world)
    other = key[:-1] + ("A" if key[-1] != "A" else "B")
    answers = []
    for headers in ({}, {"Authorization": key}, {"Authorization": f"Basic {key}"}, {"Authorization": "Bearer "},
                    {"Authorization": f"Bearer {other}"}, {"Authorization": f"Bearer {revoked.secret}"},
                    {"Authorization": "Bearer sk_garbage"}):
        async with client.get("/v1/payments/pay_x", headers=headers) as r:
            answers.append((r.status, await r.json(), r.headers.get("WWW-Authenticate")))
    assert {(s, json.dumps(b), h) for s, b, h in answers} == {
        (401, json.dumps({"error": {"code": "unauthorized",
                                    "message": "A valid API key is required: Authorization: Bearer sk_…"}}),
         'Bearer realm="sauti"')}
    async with client.post("/v1/payments", data=b"{}") as r:
        assert r.status == 401
    assert (await get(client, "/v1/payments/pay_x", wrong_pepper))[0] == 404  # a good key gets past


# -- creating payments -----------------------------------------------------------------------------


async def test_a_user_key_pays_another_wallet_and_a_replay_gives_the_same_payment(world, client):
    payer, payee = await world.user(name="Amina"), await world.user(name="Baraka")
    await world.fund(payer, Money.of(5000, KES))
    key = await new_key(world, payer)
    body = {"kind": "p2p", "recipient": payee.phone, "amount": "1500.00", "currency": "KES"}

    status, created = await post(client, "/v1/payments", key, body, "order-17")

    assert status == 201
    assert created["status"] == "succeeded" and created["kind"] == "p2p" and created["channel"] == "api"
    assert created["amount"] == "1500.00" and created["amount_minor"] == 150_000
    assert created["fee"] == "15.00" and created["fee_minor"] == 1_500 and created["total_minor"] == 151_500
    assert created["display"] == {"amount": "KES 1,500", "fee": "KES 15", "total": "KES 1,515"}
    assert created["payer"] == payer.phone and created["recipient"] == {"phone": payee.phone}
    assert created["public_id"].startswith("pay_") and created["error"] is None
    assert await world.wallet(payer) == Money.of(3485, KES) and await world.wallet(payee) == Money.of(1500, KES)

    # A retry (a lost answer) gets the same payment and moves nothing again.
    status, replayed = await post(client, "/v1/payments", key, body, "order-17")
    assert status == 200 and replayed["public_id"] == created["public_id"]
    assert await world.wallet(payer) == Money.of(3485, KES)
    # The same key for another request is a conflict, and writes nothing.
    before = await count_payments(world)
    status, conflict = await post(client, "/v1/payments", key, {**body, "amount": "10"}, "order-17")
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
    assert await count_payments(world) == before


async def test_concurrent_retries_make_one_payment(world, client):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    key = await new_key(world, payer)
    body = {"kind": "p2p", "recipient": payee.phone, "amount": 100, "currency": "KES"}

    answers = await asyncio.gather(*(post(client, "/v1/payments", key, body, "same-click") for _ in range(6)))

    assert {s for s, _ in answers} <= {200, 201}
    assert len({b["public_id"] for _, b in answers}) == 1
    assert await world.wallet(payee) == Money.of(100, KES)


async def test_idempotency_keys_are_scoped_to_the_api_key(world, client):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    one, two = await new_key(world), await new_key(world)  # two integrators, both platform keys
    body = {"kind": "p2p", "payer": payer.phone, "recipient": payee.phone, "amount": "50", "currency": "KES"}

    first = await post(client, "/v1/payments", one, body, "1")
    second = await post(client, "/v1/payments", two, body, "1")

    assert first[0] == second[0] == 201 and first[1]["public_id"] != second[1]["public_id"]
    assert await world.wallet(payee) == Money.of(100, KES)


async def test_a_platform_key_names_the_payer_and_a_user_key_cannot(world, client):
    payer, payee, stranger = await world.user(), await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    platform, own = await new_key(world), await new_key(world, stranger)
    body = {"kind": "p2p", "recipient": payee.phone, "amount": "10", "currency": "KES"}
    before = await count_payments(world)

    assert (await post(client, "/v1/payments", platform, body, "k1"))[1]["error"]["code"] == "missing_payer"
    status, unknown = await post(client, "/v1/payments", platform, {**body, "payer": "+254 711 000 999"}, "k2")
    assert status == 404 and unknown["error"]["code"] == "unknown_payer"
    status, forbidden = await post(client, "/v1/payments", own, {**body, "payer": payer.phone}, "k3")
    assert status == 403 and forbidden["error"]["code"] == "forbidden"
    assert await count_payments(world) == before

    status, paid = await post(client, "/v1/payments", platform, {**body, "payer": payer.phone}, "k4")
    assert status == 201 and paid["payer"] == payer.phone
    # Keys are the API key's: the same key for another payer is another request, and pays nothing.
    other = await world.user()
    await world.fund(other, Money.of(1000, KES))
    status, conflict = await post(client, "/v1/payments", platform, {**body, "payer": other.phone}, "k4")
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict", conflict
    assert await world.wallet(other) == Money.of(1000, KES)
    assert (await post(client, "/v1/payments", platform, {**body, "payer": payer.phone}, "k4"))[0] == 200


async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(world, client):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100_000, KES))
    key = await new_key(world, payer)
    good = {"kind": "p2p", "recipient": payee.phone, "amount": "10", "currency": "KES"}
    cases: list[tuple[dict[str, Any] | None, bytes | None, str | None, int, str]] = [
        (good, None, None, 400, "idempotency_key_required"),
        (good, None, "x" * 300, 400, "invalid_idempotency_key"),
        (None, b"not json", "b1", 400, "invalid_json"),
        (None, b"[1, 2]", "b2", 400, "invalid_json"),
        (None, b'{"kind": "p2p", "amount": NaN}', "b3", 400, "invalid_json"),
        (None, b"\xff\xfe", "b4", 400, "invalid_json"),
        ({**good, "ammount": "10"}, None, "b5", 400, "unknown_field"),
        ({**good, "kind": "lottery"}, None, "b6", 400, "invalid_kind"),
        ({**good, "kind": "pay_bill"}, None, "b7", 400, "unknown_field"),  # a bill has no "recipient"
        ({k: v for k, v in good.items() if k != "amount"}, None, "b8", 400, "missing_amount"),
        ({**good, "amount": "10.005"}, None, "b9", 400, "invalid_amount"),  # more decimals than KES has
        ({**good, "amount": 1e-3}, None, "b10", 400, "invalid_amount"),
        ({**good, "amount": True}, None, "b11", 400, "invalid_amount"),
        ({**good, "amount": "ten"}, None, "b12", 400, "invalid_amount"),
        ({**good, "amount": "1e400000"}, None, "b13", 400, "invalid_amount"),
        ({**good, "amount": "-5"}, None, "b14", 400, "invalid_request"),
        ({**good, "amount": "0"}, None, "b15", 400, "invalid_request"),
        ({**good, "amount": "2000000"}, None, "b16", 400, "amount_out_of_range"),
        ({**good, "amount": {"minor": 5}}, None, "b17", 400, "invalid_amount"),
        ({**good, "currency": "USD"}, None, "b18", 400, "unknown_currency"),
        ({**good, "currency": 404}, None, "b19", 400, "invalid_currency"),
        ({**good, "recipient": "+1 202 555 0100"}, None, "b20", 400, "invalid_request"),
        ({**good, "recipient": "+254 711 000 998"}, None, "b21", 404, "unknown_user"),
        ({**good, "recipient": payer.phone}, None, "b22", 400, "invalid_request"),
        ({**good, "recipient": None}, None, "b23", 400, "missing_recipient"),
        ({"kind": "withdraw", "amount": "10.50", "currency": "KES"}, None, "b24", 400, "invalid_request"),
        ({**good, "amount": "80000"}, None, "b25", 422, "limit_exceeded"),  # over the day's limit
        # A control character (a NUL cannot even be stored) in any text.
        ({**good, "recipient": payee.phone + "\u0000"}, None, "b27", 400, "invalid_recipient"),
        ({"kind": "pay_bill", "amount": "10", "currency": "KES", "paybill": "888880", "account_number": "A\u001b1"},
         None, "b28", 400, "invalid_account_number"),
        ({**good, "currency": "KES\u0007"}, None, "b29", 400, "invalid_currency"),
    ]
    before = await count_payments(world)
    for body, raw, idem, status, code in cases:
        got_status, answer = await post(client, "/v1/payments", key, body, idem, raw=raw)
        assert (got_status, answer["error"]["code"]) == (status, code), (body, raw, answer)
        assert answer["error"]["message"] and "Traceback" not in answer["error"]["message"]
    big = json.dumps({**good, "note": "x" * 70_000}).encode()
    status, answer = await post(client, "/v1/payments", key, None, "b26", raw=big)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert await count_payments(world) == before
    assert await world.wallet(payer) == Money.of(100_000, KES)


async def test_an_exact_json_number_is_an_amount_too(world, client):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))
    key = await new_key(world, payer)
    raw = b'{"kind": "p2p", "recipient": "' + payee.phone.encode() + b'", "amount": 12.30, "currency": "KES"}'

    status, paid = await post(client, "/v1/payments", key, None, "num", raw=raw)

    assert status == 201 and paid["amount_minor"] == 1230 and paid["amount"] == "12.30"


async def test_a_payment_the_wallet_cannot_cover_is_recorded_as_failed(world, client):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(50, KES))
    key = await new_key(world, payer)

    status, failed = await post(client, "/v1/payments", key,
                                {"kind": "p2p", "recipient": payee.phone, "amount": "100", "currency": "KES"}, "poor")

    assert status == 201 and failed["status"] == "failed"
    assert failed["error"]["code"] == "insufficient_funds" and "available" in failed["error"]["message"]
    assert await world.wallet(payer) == Money.of(50, KES)


async def test_a_withdrawal_goes_out_through_m_pesa_and_reads_back_with_its_events(world, client):
    payer = await world.user()
    await world.fund(payer, Money.of(1000, KES))
    key = await new_key(world, payer)

    status, pending = await post(client, "/v1/payments", key, {"kind": "withdraw", "amount": "300",
                                                                "currency": "KES"}, "wd-api")
    assert status == 201 and pending["status"] == "pending" and pending["provider"]["name"] == "mpesa"
    assert pending["recipient"] == {"phone": payer.phone}
    await world.settle(pending["public_id"])

    status, done = await get(client, f"/v1/payments/{pending['public_id']}", key)

    assert status == 200 and done["status"] == "succeeded" and done["finished_at"]
    assert done["provider"]["receipt"] and done["provider"]["reference"].startswith("AG_")
    assert [e["to"] for e in done["events"]] == ["created", "pending", "processing", "succeeded"]
    assert done["events"][0]["from"] is None and done["events"][-1]["cause"] == "b2c_result"
    assert "needs_review" not in json.dumps(done)


async def test_a_wave_deposit_answers_with_the_link_the_payer_opens(world, client):
    payer = await world.user(XOF)
    platform = await new_key(world)

    status, created = await post(client, "/v1/payments", platform, {"kind": "deposit", "payer": payer.phone,
                                                                     "amount": "4000", "currency": "XOF"}, "dep")
    assert status == 201 and created["status"] == "created" and created["amount"] == "4000"
    await world.worker.drain()

    status, opened = await get(client, f"/v1/payments/{created['public_id']}", platform)
    assert status == 200 and opened["status"] == "processing"
    assert opened["provider"]["checkout_url"].startswith("http")


async def test_a_payment_is_visible_to_its_payer_its_recipient_and_platform_keys(world, client):
    payer, payee, other = await world.user(), await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))
    mine, theirs, platform = await new_key(world, payer), await new_key(world, other), await new_key(world)
    _, paid = await post(client, "/v1/payments", mine, {"kind": "p2p", "recipient": payee.phone, "amount": "5",
                                                        "currency": "KES"}, "vis")
    path = f"/v1/payments/{paid['public_id']}"

    assert (await get(client, path, mine))[0] == 200
    assert (await get(client, path, platform))[0] == 200
    assert (await get(client, path, await new_key(world, payee)))[0] == 200  # its recipient too
    status, hidden = await get(client, path, theirs)
    assert status == 404 and hidden["error"]["code"] == "payment_not_found"
    assert (await get(client, "/v1/payments/pay_doesnotexist", platform))[0] == 404
    # The short reference people see on screens and receipts finds it too (read as typed back by a
    # person: lower case, a dash), under the same scoping.
    reference = paid["reference"]
    assert len(reference) == 10 and reference.isalnum() and reference.isupper()
    typed = f"/v1/payments/{reference[:5].lower()}-{reference[5:]}"
    status, found = await get(client, typed, mine)
    assert status == 200 and found["public_id"] == paid["public_id"] and found["reference"] == reference
    assert (await get(client, typed, theirs))[0] == 404
    assert (await get(client, "/v1/payments/ZZZZZZZZZZ", platform))[0] == 404  # names no payment


async def test_a_key_lists_what_it_may_read_newest_first_a_page_at_a_time(world, client):
    payer, payee, other = await world.user(), await world.user(), await world.user()
    await world.fund(payer, Money.of(100, KES))
    await world.fund(other, Money.of(100, KES))
    mine, theirs, platform = await new_key(world, payer), await new_key(world, other), await new_key(world)
    made = [(await post(client, "/v1/payments", mine, {"kind": "p2p", "recipient": payee.phone, "amount": str(n),
                                                        "currency": "KES"}, f"list-{n}"))[1] for n in (1, 2, 3)]
    _, received = await post(client, "/v1/payments", theirs, {"kind": "p2p", "recipient": payer.phone, "amount": "7",
                                                               "currency": "KES"}, "to-payer")
    _, refused = await post(client, "/v1/payments", mine, {"kind": "p2p", "recipient": payee.phone,
                                                          "amount": "500", "currency": "KES"}, "too-much")
    _, by_platform = await post(client, "/v1/payments", platform, {"kind": "p2p", "payer": other.phone,
                                                                   "recipient": payee.phone, "amount": "4",
                                                                   "currency": "KES"}, "platform-1")
    assert refused["status"] == "failed" and by_platform["status"] == "succeeded"

    with statements_run(world.engine) as statements:
        status, listed = await get(client, "/v1/payments", mine)
    assert status == 200 and listed["limit"] == 20 and listed["next_before"] is None
    newest_first = [refused, received, *reversed(made)]
    assert [p["public_id"] for p in listed["payments"]] == [p["public_id"] for p in newest_first]
    assert listed["payments"][1] == {k: v for k, v in received.items() if k != "events"} | {
        "updated_at": listed["payments"][1]["updated_at"]}
    assert listed["payments"][1]["payer"] == other.phone
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "FROM payments" in statement:  # each side through its own index, never the whole table
            assert "payments_payer_newest" in plan and "payments_recipient_user" in plan, plan

    # A page at a time: ``next_before`` from one page asks for the next.
    pages, before = [], ""
    while True:
        status, page = await get(client, f"/v1/payments?limit=2{before}", mine)
        assert status == 200 and page["limit"] == 2
        pages.append([p["public_id"] for p in page["payments"]])
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert [i for page in pages for i in page] == [p["public_id"] for p in newest_first]
    assert [len(page) for page in pages] == [2, 2, 1]
    # Filters; what the payee received; a platform key's own payments; another user's key.
    status, failed = await get(client, "/v1/payments?status=failed", mine)
    assert [p["public_id"] for p in failed["payments"]] == [refused["public_id"]]
    assert (await get(client, "/v1/payments?kind=refund", mine))[1]["payments"] == []
    status, payee_sees = await get(client, "/v1/payments?status=succeeded", await new_key(world, payee))
    assert [p["public_id"] for p in payee_sees["payments"]] == [
        by_platform["public_id"], *[p["public_id"] for p in reversed(made)]]
    with statements_run(world.engine) as statements:
        status, platform_sees = await get(client, "/v1/payments", platform)
    assert [p["public_id"] for p in platform_sees["payments"]] == [by_platform["public_id"]]
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "FROM payments" in statement:
            assert "payments_api_key" in plan, plan
    assert [p["public_id"] for p in (await get(client, "/v1/payments", theirs))[1]["payments"]] == [
        by_platform["public_id"], received["public_id"]]  # the platform's payment was its user's

    for query, code in (("status=lost", "invalid_request"), ("kind=gift", "invalid_request"),
                        ("limit=0", "invalid_limit"), ("limit=101", "invalid_limit"), ("before=abc", "invalid_before"),
                        ("before=-1", "invalid_before"), ("payer=%2B254700000000", "unknown_query_parameter")):
        status, answer = await get(client, f"/v1/payments?{query}", mine)
        assert status == 400 and answer["error"]["code"] == code, (query, answer)
    async with client.get("/v1/payments") as r:
        assert r.status == 401


# -- quotes ----------------------------------------------------------------------------------------


async def test_a_quote_prices_the_payment_and_names_the_recipient(world, client):
    payer, payee = await world.user(), await world.user(name="Wanjiku")
    key = await new_key(world, payer)

    status, priced = await post(client, "/v1/quotes", key, {"amount": "1000", "currency": "KES",
                                                            "recipient": payee.phone})
    assert status == 200
    assert (priced["amount"], priced["fee"], priced["total"]) == ("1000.00", "10.00", "1010.00")
    assert priced["total_minor"] == 101_000 and priced["recipient_name"] == "Wanjiku" and priced["plan"] == "basic"

    status, deposit = await post(client, "/v1/quotes", key, {"kind": "deposit", "amount": "1000", "currency": "KES"})
    assert status == 200 and deposit["fee_minor"] == 0

    status, refused = await post(client, "/v1/quotes", key, {"amount": "80000", "currency": "KES"})
    assert status == 422 and refused["error"]["code"] == "limit_exceeded"
    status, bad = await post(client, "/v1/quotes", key, {"kind": "magic", "amount": "1", "currency": "KES"})
    assert status == 400 and bad["error"]["code"] == "invalid_kind"


async def test_a_quote_prices_only_what_post_payments_makes(world, client):
    """A quote prices a payment ``POST /v1/payments`` makes with an amount of its own: a refund gives
    a whole payment back and an agent prices its cash-ins and cash-outs, so those kinds are refused
    (a cash-in was quoted with a fee no cash-in is charged)."""
    payer = await world.user()
    key = await new_key(world, payer)
    for kind in ("cash_in", "cash_out", "refund"):
        status, refused = await post(client, "/v1/quotes", key, {"kind": kind, "amount": "1000", "currency": "KES"})
        assert status == 400 and refused["error"]["code"] == "invalid_kind", (kind, refused)
        assert "p2p, send_to_phone" in refused["error"]["message"] and "refund" in refused["error"]["message"]


async def test_a_deposit_quote_is_not_refused_by_the_day_s_spending(world, client):
    """Deposits are limited per transaction only, as ``POST /v1/payments`` takes them."""
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(80_000, KES))
    key = await new_key(world, payer)
    status, _ = await post(client, "/v1/payments", key, {"kind": "p2p", "recipient": payee.phone,
                                                         "amount": "70000", "currency": "KES"}, "spend-all")
    assert status == 201
    status, refused = await post(client, "/v1/quotes", key, {"amount": "1000", "currency": "KES"})
    assert status == 422 and refused["error"]["code"] == "limit_exceeded"
    status, deposit = await post(client, "/v1/quotes", key, {"kind": "deposit", "amount": "1000", "currency": "KES"})
    assert status == 200 and deposit["fee_minor"] == 0 and deposit["total"] == "1000.00", deposit


async def test_kes_to_a_senegalese_wallet_is_refused_with_its_own_code(world, client):
    """A wallet holds its number's currency: KES paid to a Senegalese user would land in a KES wallet
    they never see. The quote and the payment are refused, and nothing is written."""
    payer, awa = await world.user(), await world.user(XOF, name="Awa")
    await world.fund(payer, Money.of(1000, KES))
    key = await new_key(world, payer)
    body = {"recipient": awa.phone, "amount": "500", "currency": "KES"}
    status, quoted = await post(client, "/v1/quotes", key, body)
    assert status == 400 and quoted["error"]["code"] == "recipient_currency_mismatch", quoted
    before = await count_payments(world)
    for kind in ("p2p", "send_to_phone"):
        status, refused = await post(client, "/v1/payments", key, {"kind": kind, **body}, f"to-awa-{kind}")
        assert status == 400 and refused["error"]["code"] == "recipient_currency_mismatch", refused
        assert "holds XOF" in refused["error"]["message"]
    assert await count_payments(world) == before
    assert await world.wallet(payer) == Money.of(1000, KES) and await world.wallet(awa, KES) == Money.zero(KES)


# -- wallet history --------------------------------------------------------------------------------


async def test_wallet_history_pages_newest_first_with_counterparties(world, client):
    payer, payee = await world.user(name="Otieno"), await world.user(name="Akinyi")
    await world.fund(payer, Money.of(1000, KES))
    key, payee_key = await new_key(world, payer), await new_key(world, payee)
    paid = [(await post(client, "/v1/payments", key, {"kind": "p2p", "recipient": payee.phone, "amount": amount,
                                                      "currency": "KES"}, f"h{n}"))[1]
            for n, amount in enumerate(("100", "200"))]

    status, page = await get(client, f"/v1/wallets/{payer.phone}/history?limit=2", key)

    assert status == 200 and page["phone"] == payer.phone and page["currency"] == "KES"
    assert page["balance"] == "697.00" and page["available_minor"] == 69_700
    assert [line["amount"] for line in page["lines"]] == ["-202.00", "-101.00"]
    assert page["lines"][0]["counterparty"] == {"phone": payee.phone, "name": "Akinyi"}
    assert page["lines"][0]["payment"].startswith("pay_") and page["next_before"] == page["lines"][-1]["id"]
    # Each line names its payment by the reference its SMS and screens showed too.
    assert [line["payment_reference"] for line in page["lines"]] == [p["reference"] for p in reversed(paid)]
    status, older = await get(client, f"/v1/wallets/{payer.phone}/history?limit=2&before={page['next_before']}",
                              key)
    assert status == 200 and [line["amount"] for line in older["lines"]] == ["1000.00"]
    assert older["lines"][0]["counterparty"]["account"] == "provider_collection" and older["next_before"] is None
    assert older["lines"][0]["payment_reference"] is None  # a test funding: no payment moved it

    status, theirs = await get(client, f"/v1/wallets/{payee.phone}/history", payee_key)
    assert status == 200 and theirs["balance"] == "300.00"
    assert theirs["lines"][0]["counterparty"] == {"phone": payer.phone, "name": "Otieno"}


async def test_wallet_history_refuses_what_it_should(world, client):
    owner, other = await world.user(), await world.user()
    own, platform = await new_key(world, owner), await new_key(world)

    assert (await get(client, f"/v1/wallets/{other.phone}/history", own))[0] == 404
    assert (await get(client, f"/v1/wallets/{other.phone}/history", platform))[0] == 200
    assert (await get(client, "/v1/wallets/+254711000997/history", platform))[0] == 404
    status, empty = await get(client, f"/v1/wallets/{owner.phone}/history?currency=XOF", own)
    assert status == 200 and empty["balance_minor"] == 0 and empty["lines"] == []
    for query, code in (("limit=0", "invalid_limit"), ("limit=1000", "invalid_limit"), ("limit=²", "invalid_limit"),
                        ("before=-1", "invalid_before"), ("currency=EUR", "unknown_currency"),
                        ("page=2", "unknown_query_parameter")):
        status, answer = await get(client, f"/v1/wallets/{owner.phone}/history?{query}", own)
        assert (status, answer["error"]["code"]) == (400, code), query
    status, answer = await get(client, "/v1/wallets/not-a-phone/history", platform)
    assert status == 400 and answer["error"]["code"] == "invalid_phone"


async def test_a_wallet_a_user_key_may_not_see_looks_like_no_wallet(world, client):
    # Another user's wallet and a number with no wallet get the same answer: nothing to probe.
    a, b = await world.user(), await world.user()
    key = await new_key(world, a)
    unknown = await get(client, f"/v1/wallets/{random_kenyan_number()}/history", key)
    other = await get(client, f"/v1/wallets/{b.phone}/history", key)
    assert unknown == other == (404, {"error": {"code": "wallet_not_found",
                                                "message": "No Sauti wallet for this number and API key."}})


# -- merchants and refunds -------------------------------------------------------------------------


async def test_bills_tills_and_pochis_are_paid_through_m_pesa(world, client):
    payer = await world.user()
    await world.fund(payer, Money.of(5000, KES))
    key = await new_key(world, payer)
    base = {"amount": "100", "currency": "KES"}

    status, bill = await post(client, "/v1/payments", key, {**base, "kind": "pay_bill", "paybill": "888880",
                                                            "account_number": "ACC12345"}, "bill")
    assert status == 201 and bill["kind"] == "pay_bill" and bill["status"] == "pending"
    assert bill["recipient"] == {"paybill": "888880", "account_number": "ACC12345"}
    assert bill["provider"]["name"] == "mpesa"
    status, till = await post(client, "/v1/payments", key, {**base, "kind": "buy_goods_till", "till": "123456"},
                              "till")
    assert status == 201 and till["recipient"] == {"till": "123456"}
    pochi_phone = random_kenyan_number()
    status, pochi = await post(client, "/v1/payments", key, {**base, "kind": "buy_goods_pochi",
                                                             "recipient": pochi_phone}, "pochi")
    assert status == 201 and pochi["recipient"] == {"phone": pochi_phone}
    assert await world.wallet(payer) == Money.of(5000 - 3 * 101, KES)  # each debited, amount and fee

    before = await count_payments(world)
    for body, code in (({**base, "kind": "pay_bill", "paybill": "12", "account_number": "A"}, "invalid_request"),
                       ({**base, "kind": "pay_bill", "paybill": "888880"}, "missing_account_number"),
                       # Only what M-Pesa takes: letters and digits, 13 at most ("€" would also make the
                       # receipt naming it longer than one SMS).
                       ({**base, "kind": "pay_bill", "paybill": "888880", "account_number": "€" * 13},
                        "invalid_account_number"),
                       ({**base, "kind": "pay_bill", "paybill": "888880", "account_number": "ACC-12345"},
                        "invalid_account_number"),
                       ({**base, "kind": "buy_goods_till", "till": "123456", "currency": "XOF"}, "invalid_request")):
        status, answer = await post(client, "/v1/payments", key, body, f"bad-{uuid.uuid4()}")
        assert (status, answer["error"]["code"]) == (400, code), answer
        if code == "invalid_account_number":
            assert "1 to 13 letters (A-Z) and digits" in answer["error"]["message"], answer
    assert await count_payments(world) == before


async def test_a_merchant_refunds_what_it_was_paid_and_only_that(world, client):
    customer, merchant = await world.user(name="Customer"), await world.user(name="Duka")
    await world.fund(customer, Money.of(1000, KES))
    customer_key, merchant_key, platform = (await new_key(world, customer), await new_key(world, merchant),
                                            await new_key(world))
    _, paid = await post(client, "/v1/payments", customer_key, {"kind": "p2p", "recipient": merchant.phone,
                                                                "amount": "400", "currency": "KES"}, "buy")
    refund = {"kind": "refund", "payment": paid["public_id"], "reason": "out of stock"}

    # The payer cannot take back what it paid; an unknown payment is not found either.
    status, answer = await post(client, "/v1/payments", customer_key, refund, "take-back")
    assert status == 404 and answer["error"]["code"] == "payment_not_found"
    assert (await post(client, "/v1/payments", merchant_key, {**refund, "payment": "pay_nope"}, "r0"))[0] == 404
    assert (await post(client, "/v1/payments", merchant_key, {**refund, "reason": " "}, "r1"))[0] == 400
    assert (await post(client, "/v1/payments", merchant_key, {**refund, "amount": "1"}, "r2"))[0] == 400

    status, refunded = await post(client, "/v1/payments", merchant_key, refund, "r3")

    assert status == 201 and refunded["kind"] == "refund" and refunded["status"] == "succeeded"
    assert refunded["refund_of"] == paid["public_id"] and refunded["amount"] == "400.00"
    assert await world.wallet(customer) == Money.of(1000 - 404 + 404, KES)  # amount and fee back
    assert await world.wallet(merchant) == Money.zero(KES)
    status, again = await post(client, "/v1/payments", merchant_key, refund, "r3")
    assert status == 200 and again["public_id"] == refunded["public_id"]
    # The key is the merchant's key's: used again for another customer's payment, it is a conflict.
    other = await world.user()
    await world.fund(other, Money.of(1000, KES))
    other_key = await new_key(world, other)
    _, other_paid = await post(client, "/v1/payments", other_key, {"kind": "p2p", "recipient": merchant.phone,
                                                                   "amount": "300", "currency": "KES"}, "buy")
    status, conflict = await post(client, "/v1/payments", merchant_key, {**refund, "payment": other_paid["public_id"]},
                                  "r3")
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict", conflict
    assert await world.wallet(merchant) == Money.of(300, KES)
    status, twice = await post(client, "/v1/payments", platform, refund, "r4")
    assert status == 409 and twice["error"]["code"] == "not_refundable"
    assert (await get(client, f"/v1/payments/{paid['public_id']}", customer_key))[1]["status"] == "reversed"
    status, followed = await get(client, f"/v1/payments/{refunded['public_id']}", merchant_key)
    assert status == 200 and followed["refund_of"] == paid["public_id"]
    assert [e["to"] for e in followed["events"]] == ["created", "succeeded"]


async def test_an_m_pesa_payout_is_not_refunded_through_the_api(world, client):
    payer = await world.user()
    await world.fund(payer, Money.of(1000, KES))
    platform = await new_key(world)
    _, paid = await post(client, "/v1/payments", platform, {"kind": "withdraw", "payer": payer.phone,
                                                            "amount": "100", "currency": "KES"}, "wd-r")
    await world.settle(paid["public_id"])
    before = await count_payments(world)

    status, answer = await post(client, "/v1/payments", platform, {"kind": "refund", "payment": paid["public_id"],
                                                                   "reason": "customer asked"}, "wd-refund")

    assert status == 403 and answer["error"]["code"] == "refund_needs_operator"
    assert await count_payments(world) == before
