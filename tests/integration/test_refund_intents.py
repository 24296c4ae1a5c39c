"""A payment intent whose payment is refunded (`payments.intents.intent_refunded`): the merchant
refunds the customer's payment through the payments API, the intent reads ``refunded`` with its
refund, the merchant's endpoints hear ``payment_intent.refunded`` once, and both sides get their SMS.
A refund refused (the merchant spent the money) leaves the intent ``succeeded``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from gateway.intents_api import add_intent_api_routes
from gateway.payments_api import add_payment_api_routes
from gateway.settings import Settings
from payments.commands import Channel, SendToWallet
from payments.identities import Role, User, grant_role
from payments.money import Currency, Money
from payments.webhook_endpoints import add_endpoint
from tests.integration.payments_helpers import PaymentsWorld, api_client, module_world

# The intents API's own helpers: a user's key, and a call with it.
from tests.integration.test_payment_intents import PEPPER, call, new_key

KES = Currency.KES

world, ledger_stays_consistent = module_world()


@pytest.fixture(scope="module")
async def client(world: PaymentsWorld) -> AsyncIterator[TestClient]:
    async with api_client(world, Settings.model_validate({"api": {"key_pepper": PEPPER}}),
                          add_intent_api_routes, add_payment_api_routes) as test_client:
        yield test_client


async def paid_intent(world: PaymentsWorld, client: TestClient,
                      tag: str) -> tuple[dict, dict, User, str, User, str]:
    """A merchant (subscribed to webhooks) whose intent of 1,200 its customer paid from the app."""
    merchant, customer = await world.user(name="Duka la Njeri"), await world.user(name="Amina")
    async with world.engine.begin() as conn:
        assert await grant_role(conn, merchant.id, Role.MERCHANT, actor="test")
    await world.fund(customer, Money.of(5000, KES))
    merchant_key, merchant_key_id = await new_key(world, merchant)
    customer_key, _ = await new_key(world, customer)
    async with world.engine.begin() as conn:
        await add_endpoint(conn, merchant_key_id, "https://127.0.0.1:9/hooks", allow_local=True, max_per_key=5,
                           actor="test")
    status, intent = await call(client, "POST", "/v1/payment_intents", merchant_key,
                                {"payer": customer.phone, "amount": "1200", "currency": "KES"}, f"{tag}-ask")
    assert status == 201, intent
    status, paid = await call(client, "POST", f"/v1/payment_intents/{intent['public_id']}/pay", customer_key,
                              idem=f"{tag}-pay")
    assert status == 201 and paid["payment_intent"]["status"] == "succeeded", paid
    await world.worker.drain()
    return paid["payment_intent"], paid["payment"], merchant, merchant_key, customer, customer_key


async def intent_events(world: PaymentsWorld, public_id: str) -> list[dict]:
    rows = await world.rows(
        "SELECT payload->'event' AS event FROM outbox_jobs WHERE kind = 'webhook.deliver' "
        "AND payload->'event'->'data'->'payment_intent'->>'public_id' = :p ORDER BY id", p=public_id)
    return [row.event if isinstance(row.event, dict) else json.loads(row.event) for row in rows]


async def test_a_refunded_intent_reads_refunded_and_its_merchant_hears_of_it(world, client):
    intent, payment, merchant, merchant_key, customer, customer_key = await paid_intent(world, client, "rf-intent")

    # The merchant refunds the payment made to it (a user key refunds payments made to its user).
    status, refund = await call(client, "POST", "/v1/payments", merchant_key,
                                {"kind": "refund", "payment": payment["public_id"], "reason": "order cancelled"},
                                "rf-intent-refund")
    assert status == 201 and refund["status"] == "succeeded", refund
    await world.worker.drain()

    assert await world.wallet(customer) == Money.of(5000, KES)  # amount and fee back
    assert await world.wallet(merchant) == Money.zero(KES)
    status, read = await call(client, "GET", f"/v1/payment_intents/{intent['public_id']}", merchant_key)
    assert status == 200 and read["status"] == "refunded", read
    assert read["payment"] == payment["public_id"]  # still the payment that paid it
    assert read["refund"]["payment"] == refund["public_id"]
    assert read["refund"]["reference"] == refund["reference"] and read["refund"]["refunded_at"]
    # Its merchant's endpoints hear it, once, after the intent's end.
    events = await intent_events(world, intent["public_id"])
    assert [e["type"] for e in events] == ["payment_intent.succeeded", "payment_intent.refunded"]
    told = events[-1]["data"]["payment_intent"]
    assert told["status"] == "refunded" and told["refund"]["payment"] == refund["public_id"]
    # Listed as refunded, no longer as succeeded.
    _, refunded = await call(client, "GET", "/v1/payment_intents?status=refunded", merchant_key)
    _, succeeded = await call(client, "GET", "/v1/payment_intents?status=succeeded", merchant_key)
    assert intent["public_id"] in [i["public_id"] for i in refunded["payment_intents"]]
    assert intent["public_id"] not in [i["public_id"] for i in succeeded["payment_intents"]]
    # Both sides were told by SMS: the customer what came back, the merchant what was taken back.
    texts = {m.to: m.message for m in world.sandboxes.africastalking.messages if refund["reference"] in m.message}
    assert f"{payment['reference']} reversed: KES 1,212 returned to your wallet" in texts[customer.phone], texts
    assert "KES 1,200 taken back from your wallet. New balance KES 0." in texts[merchant.phone], texts
    # The customer's app paying it again is answered with its payment (reversed now); nothing moves.
    status, again = await call(client, "POST", f"/v1/payment_intents/{intent['public_id']}/pay", customer_key,
                               idem="rf-intent-pay-again")
    assert status == 200 and again["payment"]["public_id"] == payment["public_id"], again
    assert again["payment"]["status"] == "reversed" and again["payment_intent"]["status"] == "refunded"
    assert await world.wallet(customer) == Money.of(5000, KES)
    # It stays closed: cancelling it is refused; refunding again is too.
    status, _ = await call(client, "POST", f"/v1/payment_intents/{intent['public_id']}/cancel", merchant_key)
    assert status == 409
    status, _ = await call(client, "POST", "/v1/payments", merchant_key,
                           {"kind": "refund", "payment": payment["public_id"], "reason": "again"}, "rf-intent-2")
    assert status == 409
    assert len(await intent_events(world, intent["public_id"])) == 2


async def test_a_refund_refused_leaves_the_intent_succeeded_and_tells_nobody(world, client):
    intent, payment, merchant, merchant_key, _, _ = await paid_intent(world, client, "rf-spent")
    spend = await world.user()
    await world.payments.handle(SendToWallet("merchant-spends", merchant.id, Money.of(1000, KES), Channel.USSD,
                                             recipient_user_id=spend.id))

    status, refund = await call(client, "POST", "/v1/payments", merchant_key,
                                {"kind": "refund", "payment": payment["public_id"], "reason": "order cancelled"},
                                "rf-spent-refund")
    assert refund["status"] == "failed", (status, refund)

    _, read = await call(client, "GET", f"/v1/payment_intents/{intent['public_id']}", merchant_key)
    assert read["status"] == "succeeded" and read["refund"] is None
    assert [e["type"] for e in await intent_events(world, intent["public_id"])] == ["payment_intent.succeeded"]
