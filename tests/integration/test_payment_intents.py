"""Payment intents over the JSON API (real HTTP, a real database, the real orchestrator and the
provider sandboxes): a merchant asks a customer to pay, the customer's app pays or declines, the
merchant cancels, intents expire; each ends once, and the money moves once, under concurrency too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from gateway.intents_api import add_intent_api_routes
from gateway.settings import Settings
from payments.api_keys import ApiKeyHasher, create_api_key, revoke_api_key
from payments.identities import Role, User, grant_role
from payments.intents import JOB_INTENT_SMS, CreateIntent
from payments.money import Currency, Money
from payments.webhook_endpoints import add_endpoint
from tests.integration.payments_helpers import PaymentsWorld, api_client, module_world

KES, XOF = Currency.KES, Currency.XOF
PEPPER = "intents-test-pepper"

world, ledger_stays_consistent = module_world()


@pytest.fixture(scope="module")
async def client(world: PaymentsWorld) -> AsyncIterator[TestClient]:
    async with api_client(world, Settings.model_validate({"api": {"key_pepper": PEPPER}}),
                          add_intent_api_routes) as test_client:
        yield test_client


async def new_key(world: PaymentsWorld, user: User | None = None) -> tuple[str, int]:
    async with world.engine.begin() as conn:
        made = await create_api_key(conn, ApiKeyHasher(PEPPER), "test", user_id=user.id if user else None)
    return made.secret, made.key.id


async def call(client: TestClient, method: str, path: str, key: str, body: Any = None,
               idem: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    data = json.dumps(body).encode() if body is not None else None
    async with client.request(method, path, data=data, headers=headers) as r:
        return r.status, await r.json()


def asked(payer: User, amount: str = "250.00", **more: Any) -> dict[str, Any]:
    return {"payer": payer.phone, "amount": amount, "currency": "KES", **more}


async def new_merchant(world: PaymentsWorld, name: str = "Duka la Njeri") -> User:
    user = await world.user(name=name)
    async with world.engine.begin() as conn:
        assert await grant_role(conn, user.id, Role.MERCHANT, actor="test")
    return user


async def merchant_and_customer(world: PaymentsWorld, *, funds: int = 5000) -> tuple[User, str, int, User, str]:
    """A merchant with its key, and a customer with money and a key of their own (their app)."""
    merchant, customer = await new_merchant(world), await world.user(name="Amina")
    if funds:
        await world.fund(customer, Money.of(funds, KES))
    merchant_key, merchant_key_id = await new_key(world, merchant)
    customer_key, _ = await new_key(world, customer)
    return merchant, merchant_key, merchant_key_id, customer, customer_key


async def intent_events(world: PaymentsWorld, public_id: str) -> list[str]:
    """The webhook events queued about an intent, by type."""
    rows = await world.rows(
        "SELECT payload->'event'->>'type' AS type FROM outbox_jobs WHERE kind = 'webhook.deliver' "
        "AND payload->'event'->'data'->'payment_intent'->>'public_id' = :p ORDER BY id", p=public_id)
    return [row.type for row in rows]


async def subscribe(world: PaymentsWorld, api_key_id: int) -> None:
    """A webhook endpoint for the key, where nothing listens: its deliveries are looked at in the outbox."""
    async with world.engine.begin() as conn:
        await add_endpoint(conn, api_key_id, "https://127.0.0.1:9/hooks", allow_local=True, max_per_key=5,
                           actor="test")


async def execute(world: PaymentsWorld, statement: str, **params: Any) -> None:
    async with world.engine.begin() as conn:
        await conn.execute(text(statement), params)


# -- asking ----------------------------------------------------------------------------------------


async def test_a_merchant_asks_and_the_customer_is_told_by_sms_once(world, client):
    merchant, key, _, customer, _ = await merchant_and_customer(world)
    body = asked(customer, description="Order 17", reference="inv-17")

    status, intent = await call(client, "POST", "/v1/payment_intents", key, body, "ask-17")

    assert status == 201
    assert intent["status"] == "pending" and intent["public_id"].startswith("pi_")
    assert (intent["amount"], intent["amount_minor"], intent["currency"]) == ("250.00", 25000, "KES")
    assert intent["payer"] == customer.phone and intent["payee"] == {"phone": merchant.phone, "name": "Duka la Njeri"}
    assert (intent["description"], intent["reference"], intent["payment"]) == ("Order 17", "inv-17", None)
    assert intent["code"] == intent["public_id"][-6:].upper()
    # The same key and body: the same intent, and no second SMS.
    again = await call(client, "POST", "/v1/payment_intents", key, body, "ask-17")
    assert again == (200, intent)
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = :k AND payload->>'intent' = :p",
                              k=JOB_INTENT_SMS, p=intent["public_id"]) == 1
    await world.worker.drain()
    texts = [m.message for m in world.sandboxes.africastalking.messages if m.to == customer.phone]
    assert len(texts) == 1
    assert texts[0].startswith(f"Duka la Njeri {merchant.phone} asks you to pay KES 250 for Order 17")
    assert intent["code"] in texts[0]
    # The same key with another request is a conflict, and writes nothing.
    status, error = await call(client, "POST", "/v1/payment_intents", key, asked(customer, "300"), "ask-17")
    assert (status, error["error"]["code"]) == (409, "idempotency_conflict")


async def test_bad_requests_are_refused_before_anything_is_written(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world)
    platform_key, _ = await new_key(world)
    stranger = "+254711000111"
    xof_customer = await world.user(XOF)
    before = await world.scalar("SELECT count(*) FROM payment_intents")
    cases = [
        (key, asked(customer), None, 400, "idempotency_key_required"),
        (key, {**asked(customer), "tip": 1}, "b1", 400, "unknown_field"),
        (key, asked(customer, "0"), "b2", 400, None),
        (key, asked(customer, "-5"), "b3", 400, None),
        (key, asked(customer, "99999999999"), "b4", 400, "amount_out_of_range"),
        (key, {**asked(customer), "payer": stranger}, "b5", 404, "unknown_user"),
        (key, {**asked(customer), "payer": "not a number"}, "b6", 400, None),
        (key, {**asked(customer), "payer": merchant.phone}, "b7", 400, None),
        (key, {**asked(xof_customer), "currency": "XOF", "amount": "500"}, "b8", 400, None),
        (key, asked(customer, description="x" * 41), "b9", 400, None),
        (key, asked(customer, description="bad\u0007bell"), "b10", 400, None),
        (key, asked(customer, expires_in_s=30), "b11", 400, None),
        (key, asked(customer, expires_in_s=8 * 24 * 3600), "b12", 400, None),
        (key, asked(customer, expires_in_s="soon"), "b13", 400, "invalid_expires_in_s"),
        (key, asked(customer, description=17), "b14", 400, "invalid_description"),
        (key, {**asked(customer), "payee": customer.phone}, "b15", 403, "forbidden"),
        (platform_key, asked(customer), "b16", 400, None),  # a platform key names the payee
        (platform_key, {**asked(customer), "payee": stranger}, "b17", 404, "unknown_payee"),
        (platform_key, {**asked(merchant), "payee": customer.phone}, "b19", 403, "not_a_merchant"),
        (customer_key, asked(merchant), "b20", 403, "not_a_merchant"),  # a customer's app asks no one
    ]
    for use, body, idem, status, code in cases:
        got, answer = await call(client, "POST", "/v1/payment_intents", use, body, idem)
        assert got == status, (body, answer)
        if code is not None:
            assert answer["error"]["code"] == code, answer
    assert await world.scalar("SELECT count(*) FROM payment_intents") == before
    # A platform key asks for a merchant it names.
    status, intent = await call(client, "POST", "/v1/payment_intents", platform_key,
                                {**asked(customer), "payee": merchant.phone}, "b18")
    assert status == 201 and intent["payee"]["phone"] == merchant.phone


async def merchant_keys(world: PaymentsWorld, count: int) -> list[str]:
    """``count`` more merchants, each with a key of its own: the API secrets."""
    return [(await new_key(world, await new_merchant(world, f"Duka {n}")))[0] for n in range(count)]


async def test_a_customer_has_at_most_so_many_open_intents(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    settings = world.payments.settings
    # Several merchants ask (each holds no more than its own share), until the customer is full.
    keys = [key, *await merchant_keys(world, settings.max_pending_intents)]
    for n in range(settings.max_pending_intents):
        use = keys[n // settings.max_pending_intents_per_merchant]
        assert (await call(client, "POST", "/v1/payment_intents", use, asked(customer), f"many-{n}"))[0] == 201
    status, error = await call(client, "POST", "/v1/payment_intents", keys[-1], asked(customer), "many-x")
    assert (status, error["error"]["code"]) == (422, "too_many_payment_intents")


async def test_one_merchant_holds_at_most_its_share_of_a_customer_s_open_intents(world, client):
    """One merchant cannot take all of a customer's places and keep every other merchant from asking."""
    merchant, key, _, customer, _ = await merchant_and_customer(world)
    share = world.payments.settings.max_pending_intents_per_merchant
    assert share < world.payments.settings.max_pending_intents
    made = []
    for n in range(share):
        status, intent = await call(client, "POST", "/v1/payment_intents", key, asked(customer), f"share-{n}")
        assert status == 201, intent
        made.append(intent)
    status, error = await call(client, "POST", "/v1/payment_intents", key, asked(customer), "share-x")
    assert (status, error["error"]["code"]) == (422, "too_many_payment_intents"), error
    assert "as many as one merchant may" in error["error"]["message"], error
    # Another key of the same merchant, or a platform key asking for it, is the same merchant.
    second_key, _ = await new_key(world, merchant)
    platform_key, _ = await new_key(world)
    assert (await call(client, "POST", "/v1/payment_intents", second_key, asked(customer), "share-y"))[0] == 422
    assert (await call(client, "POST", "/v1/payment_intents", platform_key,
                        {**asked(customer), "payee": merchant.phone}, "share-z"))[0] == 422
    # A retry of a request that was taken still answers it.
    status, again = await call(client, "POST", "/v1/payment_intents", key, asked(customer), "share-0")
    assert (status, again["public_id"]) == (200, made[0]["public_id"])
    # Other merchants may still ask the customer.
    (other,) = await merchant_keys(world, 1)
    assert (await call(client, "POST", "/v1/payment_intents", other, asked(customer), "share-other"))[0] == 201
    # One of the merchant's ends: its place is free again.
    assert (await call(client, "POST", f"/v1/payment_intents/{made[0]['public_id']}/cancel", key))[0] == 200
    assert (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "share-x"))[0] == 201
    assert await world.scalar("SELECT count(*) FROM payment_intents WHERE payer_user_id = :u AND "
                              "payee_user_id = :m AND status = 'pending'", u=customer.id, m=merchant.id) == share


# -- paying ----------------------------------------------------------------------------------------


async def test_the_customer_pays_once_and_the_merchant_hears_of_it(world, client):
    merchant, key, key_id, customer, customer_key = await merchant_and_customer(world)
    await subscribe(world, key_id)
    _, intent = await call(client, "POST", "/v1/payment_intents", key, asked(customer, "1200"), "pay-1")
    path = f"/v1/payment_intents/{intent['public_id']}/pay"

    status, paid = await call(client, "POST", path, customer_key, idem="app-pay-1")

    assert status == 201
    payment = paid["payment"]
    assert payment["status"] == "succeeded" and payment["kind"] == "p2p" and payment["channel"] == "api"
    assert payment["recipient"] == {"phone": merchant.phone} and payment["amount"] == "1200.00"
    assert paid["payment_intent"]["status"] == "succeeded"
    assert paid["payment_intent"]["payment"] == payment["public_id"]
    fee = Money(payment["fee_minor"], KES)
    assert await world.wallet(customer) == Money.of(5000, KES) - Money.of(1200, KES) - fee
    assert await world.wallet(merchant) == Money.of(1200, KES)
    assert await intent_events(world, intent["public_id"]) == ["payment_intent.succeeded"]
    # Paying again, with the same key or another: the same payment, nothing moves.
    for idem in ("app-pay-1", "app-pay-2"):
        status, again = await call(client, "POST", path, customer_key, idem=idem)
        assert status == 200 and again["payment"]["public_id"] == payment["public_id"]
    assert await world.wallet(merchant) == Money.of(1200, KES)
    read = await call(client, "GET", f"/v1/payment_intents/{intent['public_id']}", key)
    assert read[0] == 200 and read[1]["status"] == "succeeded" and read[1]["payment"] == payment["public_id"]


async def test_a_wallet_that_cannot_cover_it_leaves_the_intent_open(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world, funds=100)
    _, intent = await call(client, "POST", "/v1/payment_intents", key, asked(customer, "900"), "short-1")
    path = f"/v1/payment_intents/{intent['public_id']}/pay"

    status, tried = await call(client, "POST", path, customer_key, idem="short-try-1")

    assert status == 201 and tried["payment"]["status"] == "failed"
    assert tried["payment"]["error"]["code"] == "insufficient_funds"
    assert tried["payment_intent"]["status"] == "pending" and tried["payment_intent"]["payment"] is None
    await world.fund(customer, Money.of(2000, KES))
    status, paid = await call(client, "POST", path, customer_key, idem="short-try-2")
    assert status == 201 and paid["payment"]["status"] == "succeeded"
    assert paid["payment_intent"]["status"] == "succeeded"
    assert await world.wallet(merchant) == Money.of(900, KES)


async def test_one_idempotency_key_never_pays_two_intents(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world)
    first = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, "100"), "twin-1"))[1]
    second = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, "100"), "twin-2"))[1]
    paid = [await call(client, "POST", f"/v1/payment_intents/{i['public_id']}/pay", customer_key, idem="same")
            for i in (first, second)]
    assert [status for status, _ in paid] == [201, 201]
    assert paid[0][1]["payment"]["public_id"] != paid[1][1]["payment"]["public_id"]
    assert await world.wallet(merchant) == Money.of(200, KES)


async def test_declined_and_cancelled_intents_end_once(world, client):
    merchant, key, key_id, customer, customer_key = await merchant_and_customer(world)
    await subscribe(world, key_id)
    other_merchant_key, _ = await new_key(world, await new_merchant(world, "Other"))
    declined = (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "end-1"))[1]
    cancelled = (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "end-2"))[1]
    d_path, c_path = (f"/v1/payment_intents/{i['public_id']}" for i in (declined, cancelled))

    # Only the customer declines, only the merchant cancels; anyone else is told it does not exist.
    assert (await call(client, "POST", f"{d_path}/decline", key))[0] == 404
    assert (await call(client, "POST", f"{c_path}/cancel", customer_key))[0] == 404
    assert (await call(client, "POST", f"{c_path}/cancel", other_merchant_key))[0] == 404
    assert (await call(client, "GET", d_path, other_merchant_key))[0] == 404

    status, answer = await call(client, "POST", f"{d_path}/decline", customer_key)
    assert status == 200 and answer["status"] == "declined" and answer["resolved_at"]
    assert await call(client, "POST", f"{d_path}/decline", customer_key) == (200, answer)
    status, answer = await call(client, "POST", f"{c_path}/cancel", key)
    assert status == 200 and answer["status"] == "cancelled"

    for path in (d_path, c_path):
        status, error = await call(client, "POST", f"{path}/pay", customer_key, idem=f"late{path[-4:]}")
        assert (status, error["error"]["code"]) == (409, "payment_intent_closed")
    assert (await call(client, "POST", f"{d_path}/cancel", key))[0] == 409
    assert await world.wallet(merchant) == Money.zero(KES)
    assert await intent_events(world, declined["public_id"]) == ["payment_intent.declined"]
    assert await intent_events(world, cancelled["public_id"]) == ["payment_intent.cancelled"]


async def test_intents_expire_by_the_sweep_or_when_paid_too_late(world, client):
    merchant, key, key_id, customer, customer_key = await merchant_and_customer(world)
    await subscribe(world, key_id)
    late = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, expires_in_s=60), "exp-1"))[1]
    swept = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, expires_in_s=60), "exp-2"))[1]
    await world.worker.drain()
    await execute(world, "UPDATE payment_intents SET expires_at = now() - interval '1 second' "
                        "WHERE public_id IN (:a, :b)", a=late["public_id"], b=swept["public_id"])

    status, error = await call(client, "POST", f"/v1/payment_intents/{late['public_id']}/pay", customer_key,
                               idem="too-late")
    assert (status, error["error"]["code"]) == (409, "payment_intent_closed")
    assert await world.payments.intents.expire() >= 1
    for intent in (late, swept):
        status, read = await call(client, "GET", f"/v1/payment_intents/{intent['public_id']}", customer_key)
        assert status == 200 and read["status"] == "expired"
        assert await intent_events(world, intent["public_id"]) == ["payment_intent.expired"]
    assert await world.wallet(merchant) == Money.zero(KES)
    assert await world.payments.intents.expire() == 0


async def test_paying_and_cancelling_at_once_end_it_one_way_only(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world, funds=20_000)
    outcomes = []
    for n in range(8):
        intent = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, "100"), f"race-{n}"))[1]
        path = f"/v1/payment_intents/{intent['public_id']}"
        paid, cancelled = await asyncio.gather(call(client, "POST", f"{path}/pay", customer_key, idem=f"r-{n}"),
                                               call(client, "POST", f"{path}/cancel", key))
        final = (await call(client, "GET", path, key))[1]["status"]
        assert {paid[0], cancelled[0]} <= {200, 201, 409}
        assert (paid[0] == 201) == (final == "succeeded") and (cancelled[0] == 200) == (final == "cancelled")
        outcomes.append(final)
    succeeded = outcomes.count("succeeded")
    assert await world.wallet(merchant) == Money.of(100 * succeeded, KES)
    assert await world.scalar("SELECT count(*) FROM payments WHERE recipient_user_id = :m AND status = 'succeeded'",
                              m=merchant.id) == succeeded


# -- reading ---------------------------------------------------------------------------------------


async def test_a_key_lists_what_it_asked_newest_first_a_page_at_a_time(world, client):
    _, key, _, customer, customer_key = await merchant_and_customer(world)
    made = [(await call(client, "POST", "/v1/payment_intents", key, asked(customer, str(10 + n)), f"list-{n}"))[1]
            for n in range(3)]
    await call(client, "POST", f"/v1/payment_intents/{made[0]['public_id']}/decline", customer_key)

    status, page = await call(client, "GET", "/v1/payment_intents?limit=2", key)
    assert status == 200 and [i["public_id"] for i in page["payment_intents"]] == [made[2]["public_id"],
                                                                                  made[1]["public_id"]]
    rest = (await call(client, "GET", f"/v1/payment_intents?limit=2&before={page['next_before']}", key))[1]
    assert [i["public_id"] for i in rest["payment_intents"]] == [made[0]["public_id"]] and rest["next_before"] is None
    declined = (await call(client, "GET", "/v1/payment_intents?status=declined", key))[1]
    assert [i["public_id"] for i in declined["payment_intents"]] == [made[0]["public_id"]]
    assert (await call(client, "GET", "/v1/payment_intents?status=maybe", key))[0] == 400
    assert (await call(client, "GET", "/v1/payment_intents", customer_key))[1]["payment_intents"] == []
    # The customer's app finds what it is asked to pay: the open ones, newest first.
    status, to_pay = await call(client, "GET", "/v1/payment_intents?to_pay=true", customer_key)
    assert status == 200 and [i["public_id"] for i in to_pay["payment_intents"]] == [made[2]["public_id"],
                                                                                    made[1]["public_id"]]
    for bad in ("to_pay=yes", "to_pay=true&status=pending"):
        assert (await call(client, "GET", f"/v1/payment_intents?{bad}", customer_key))[0] == 400
    assert (await call(client, "GET", "/v1/payment_intents?to_pay=true", (await new_key(world))[0]))[0] == 400


async def test_the_service_refuses_what_the_api_never_sends(world):
    merchant, customer = await new_merchant(world), await world.user()
    _, key_id = await new_key(world, merchant)
    intents = world.payments.intents
    with pytest.raises(Exception, match="expires_in_s"):
        await intents.create(CreateIntent("svc-1", key_id, merchant.id, customer.phone, Money.of(5, KES),
                                          expires_in_s=float("nan")))
    assert await world.scalar("SELECT count(*) FROM payment_intents WHERE api_key_id = :k", k=key_id) == 0


async def test_cancelling_and_asking_again_cannot_flood_a_customer(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    per_day = world.payments.settings.max_intents_per_day
    for n in range(per_day):
        status, intent = await call(client, "POST", "/v1/payment_intents", key, asked(customer), f"flood-{n}")
        assert status == 201
        assert (await call(client, "POST", f"/v1/payment_intents/{intent['public_id']}/cancel", key))[0] == 200
    status, error = await call(client, "POST", "/v1/payment_intents", key, asked(customer), "flood-x")
    assert (status, error["error"]["code"]) == (422, "too_many_payment_intents")
    # A retry of an earlier request still answers what it got.
    assert (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "flood-0"))[0] == 200


async def test_concurrent_creations_keep_to_the_cap(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    settings = world.payments.settings
    # More merchants than the customer has places for, each asking more often than its share, at once.
    keys = [key, *await merchant_keys(world, settings.max_pending_intents // settings.max_pending_intents_per_merchant)]
    answers = await asyncio.gather(*(call(client, "POST", "/v1/payment_intents", use, asked(customer),
                                          f"burst-{n}") for n in range(6) for use in keys))
    assert sorted(status for status, _ in answers).count(201) == settings.max_pending_intents, answers
    held = await world.rows("SELECT count(*) AS n FROM payment_intents WHERE payer_user_id = :u AND status = 'pending' "
                            "GROUP BY payee_user_id", u=customer.id)
    assert len(held) == len(keys) and max(row.n for row in held) <= settings.max_pending_intents_per_merchant, held


async def test_one_merchant_s_concurrent_creations_keep_to_its_share(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    answers = await asyncio.gather(*(call(client, "POST", "/v1/payment_intents", key, asked(customer), f"rush-{n}")
                                     for n in range(8)))
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(201) == world.payments.settings.max_pending_intents_per_merchant, answers
    assert set(statuses) == {201, 422}, answers


async def test_one_key_for_several_customers_at_once_is_one_intent_and_conflicts(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    others = [await world.user(name=f"Other {n}") for n in range(5)]
    answers = await asyncio.gather(*(call(client, "POST", "/v1/payment_intents", key, asked(c), "shared-key")
                                     for c in (customer, *others)))
    # Each asks for another customer, so none waits for another's lock: the key's unique index decides.
    assert sorted(status for status, _ in answers) == [201, 409, 409, 409, 409, 409], answers
    assert await world.scalar("SELECT count(*) FROM payment_intents WHERE idempotency_key LIKE '%shared-key'") == 1


async def test_a_retry_answers_the_first_intent_after_the_customer_closed(world, client):
    _, key, _, customer, _ = await merchant_and_customer(world)
    status, first = await call(client, "POST", "/v1/payment_intents", key, asked(customer), "before-closing")
    assert status == 201
    await execute(world, "UPDATE users SET status = 'closed' WHERE id = :u", u=customer.id)
    assert await call(client, "POST", "/v1/payment_intents", key, asked(customer), "before-closing") == (200, first)
    # The same key for a number with no wallet is another request: a conflict, not "unknown number".
    stranger = {**asked(customer), "payer": "+254700000001"}
    status, other = await call(client, "POST", "/v1/payment_intents", key, stranger, "before-closing")
    assert status == 409 and other["error"]["code"] == "idempotency_conflict", other


async def test_two_pays_at_once_make_one_payment_and_one_says_so(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world)
    intent = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, "300"), "both-1"))[1]
    path = f"/v1/payment_intents/{intent['public_id']}/pay"
    answers = await asyncio.gather(*(call(client, "POST", path, customer_key, idem=f"both-{n}") for n in range(4)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, 201]
    assert len({answer["payment"]["public_id"] for _, answer in answers}) == 1
    assert await world.wallet(merchant) == Money.of(300, KES)


async def test_a_lapsed_intent_reads_expired_before_the_sweep_and_a_revoked_keys_is_not_paid(world, client):
    merchant, key, key_id, customer, customer_key = await merchant_and_customer(world)
    lapsed = (await call(client, "POST", "/v1/payment_intents", key, asked(customer, expires_in_s=900.0), "rk-1"))[1]
    await execute(world, "UPDATE payment_intents SET expires_at = now() - interval '1 second' WHERE public_id = :p",
                  p=lapsed["public_id"])
    assert (await call(client, "GET", f"/v1/payment_intents/{lapsed['public_id']}", key))[1]["status"] == "expired"
    listed = (await call(client, "GET", "/v1/payment_intents?status=expired", key))[1]["payment_intents"]
    assert [i["public_id"] for i in listed] == [lapsed["public_id"]]
    assert (await call(client, "GET", "/v1/payment_intents?status=pending", key))[1]["payment_intents"] == []

    asked_then = (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "rk-2"))[1]
    async with world.engine.begin() as conn:
        prefix = (await conn.execute(text("SELECT prefix FROM api_keys WHERE id = :i"), {"i": key_id})).scalar_one()
        await revoke_api_key(conn, prefix)
    status, error = await call(client, "POST", f"/v1/payment_intents/{asked_then['public_id']}/pay", customer_key,
                               idem="rk-pay")
    assert (status, error["error"]["code"]) == (409, "payment_intent_closed")
    status, read = await call(client, "GET", f"/v1/payment_intents/{asked_then['public_id']}", customer_key)
    assert status == 200 and read["status"] == "cancelled"
    assert await world.wallet(merchant) == Money.zero(KES)


async def test_a_closed_merchants_intent_is_not_paid(world, client):
    merchant, key, _, customer, customer_key = await merchant_and_customer(world)
    intent = (await call(client, "POST", "/v1/payment_intents", key, asked(customer), "closed-1"))[1]
    await execute(world, "UPDATE users SET status = 'closed' WHERE id = :m", m=merchant.id)
    assert (await call(client, "GET", "/v1/payment_intents?to_pay=true", customer_key))[1]["payment_intents"] == []
    status, error = await call(client, "POST", f"/v1/payment_intents/{intent['public_id']}/pay", customer_key,
                               idem="closed-pay")
    assert (status, error["error"]["code"]) == (409, "payment_intent_closed")
    assert (await call(client, "GET", f"/v1/payment_intents/{intent['public_id']}", key))[1]["status"] == "cancelled"
    assert await world.wallet(merchant) == Money.zero(KES)
