"""Webhooks to the API's callers, over real HTTP: endpoints added through `/v1/webhook_endpoints`,
payments made through the API (and by USSD, to a merchant's wallet), the outbox worker delivering
each final state to a real receiver that checks every signature, retries until the receiver answers
2xx, and what disabled endpoints and revoked keys no longer hear."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from gateway.commands.worker import worker as worker_command
from gateway.payments_api import add_payment_api_routes
from gateway.settings import Settings, load_settings
from gateway.webhooks_api import add_webhook_api_routes
from gateway.worker_resources import build_workers
from payments import outbox
from payments.api_keys import ApiKeyHasher, create_api_key, revoke_api_key, split_key
from payments.commands import Channel, SendToWallet
from payments.identities import User
from payments.money import Currency, Money
from payments.outbox import Job, PermanentJobError
from payments.providers.wave_signing import compute_signature, parse_signature_header
from payments.webhook_delivery import (
    SIGNATURE_HEADER,
    DeliveryFailed,
    PublicOnlyResolver,
    WebhookRejected,
    WebhookSender,
    verify_delivery,
)
from payments.webhook_endpoints import (
    InvalidWebhookUrl,
    WebhookEndpointDisabled,
    add_endpoint,
    check_url,
    roll_secret,
)
from payments.webhook_events import DELIVERY_ATTEMPTS, JOB_WEBHOOK, deliveries
from tests.http_servers import serve_app
from tests.integration.ops_helpers import plans_without_seq_scans, statements_run
from tests.integration.payments_helpers import PaymentsWorld, api_client, module_world

KES = Currency.KES
ROOT = Path(__file__).resolve().parents[2]
PEPPER = "webhook-test-pepper"


@dataclass
class Receiver:
    """A merchant's webhook endpoint: records what it is sent, and answers ``answers`` in turn
    (then 200), optionally after ``delay_s``."""

    url: str = ""
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    in_flight: int = 0
    most_at_once: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), dict(request.headers)))
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        status = self.answers.pop(0) if self.answers else 200
        if status in (301, 307):
            return web.Response(status=status, headers={"Location": self.url + "/elsewhere"})
        return web.Response(status=status, text="ok" if status < 300 else "not now, please")

    def events(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery, each checked against ``secret`` as a merchant would check it."""
        out = []
        for body, headers in self.received:
            event = verify_delivery(body, headers.get(SIGNATURE_HEADER), secret)
            assert headers["Sauti-Event-Id"] == event["id"] and headers["Sauti-Event-Type"] == event["type"]
            assert headers["Content-Type"] == "application/json"
            out.append(event)
        return out


world, ledger_stays_consistent = module_world()


@pytest.fixture(scope="module")
async def client(world: PaymentsWorld) -> AsyncIterator[TestClient]:
    settings = Settings.model_validate({"api": {"key_pepper": PEPPER},
                                        "webhooks": {"allow_local_urls": True, "max_endpoints_per_key": 3}})
    async with api_client(world, settings, add_payment_api_routes, add_webhook_api_routes) as test_client:
        yield test_client


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/sauti", got.handle)
    async with serve_app(app) as base:
        got.url = f"{base}/hooks/sauti"
        yield got


async def new_key(world: PaymentsWorld, user=None) -> str:
    async with world.engine.begin() as conn:
        return (await create_api_key(conn, ApiKeyHasher(PEPPER), "hooks", user_id=user.id if user else None)).secret


def auth(key: str, idem: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **({"Idempotency-Key": idem} if idem else {})}


async def call(client: TestClient, method: str, path: str, key: str, body: Any = None,
               idem: str | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body)
    async with client.request(method, path, data=data, headers=auth(key, idem)) as answer:
        return answer.status, await answer.json()


async def subscribe(client: TestClient, key: str, url: str) -> dict[str, Any]:
    status, made = await call(client, "POST", "/v1/webhook_endpoints", key, {"url": url})
    assert status == 201, made
    return made


@dataclass
class Payer:
    """A funded wallet whose own key (its app's) has an endpoint at the receiver."""

    key: str
    endpoint: dict[str, Any]
    payee: User

    async def pays(self, client: TestClient, idem: str) -> dict[str, Any]:
        """10 KES to its payee, through the API."""
        status, paid = await call(client, "POST", "/v1/payments", self.key, {
            "kind": "p2p", "recipient": self.payee.phone, "amount": "10", "currency": "KES"}, idem)
        assert status == 201, paid
        return paid


async def subscribed_payer(world: PaymentsWorld, client: TestClient, receiver: Receiver) -> Payer:
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    key = await new_key(world, payer)
    return Payer(key, await subscribe(client, key, receiver.url), payee)


async def newest_webhook_job(world: PaymentsWorld) -> Job:
    job = await outbox.get_job(world.engine, await world.scalar(
        f"SELECT max(id) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}'"))
    assert job is not None
    return job


async def deliver_all(world: PaymentsWorld, *, within_s: float = 10.0) -> None:
    """Run the outbox until no webhook delivery waits (backoffs included)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while await world.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                             "AND status IN ('pending', 'running')"):
        await world.worker.drain()
        assert asyncio.get_running_loop().time() < deadline, "webhook deliveries still waiting"
        await asyncio.sleep(0.02)


async def test_an_api_payment_s_end_reaches_its_key_s_endpoint_signed(world, client, receiver):
    payer, payee = await world.user(name="Amina"), await world.user(name="Baraka")
    await world.fund(payer, Money.of(5000, KES))
    key = await new_key(world)  # a platform key: an app's backend
    endpoint = await subscribe(client, key, receiver.url)
    assert endpoint["id"].startswith("we_") and endpoint["secret"].startswith("whsec_")
    assert endpoint["active"] and "payment.succeeded" in endpoint["events"]

    status, paid = await call(client, "POST", "/v1/payments", key, {"kind": "p2p", "payer": payer.phone,
                                                                    "recipient": payee.phone, "amount": "1500",
                                                                    "currency": "KES"}, "order-1")
    assert status == 201
    await deliver_all(world)

    [event] = receiver.events(endpoint["secret"])
    assert event["type"] == "payment.succeeded" and event["id"].startswith("evt_")
    shown = (await call(client, "GET", f"/v1/payments/{paid['public_id']}", key))[1]
    assert event["data"]["payment"] == {k: v for k, v in shown.items() if k != "events"}
    # A replayed request is the same payment: nothing new to tell.
    await call(client, "POST", "/v1/payments", key, {"kind": "p2p", "payer": payer.phone, "recipient": payee.phone,
                                                     "amount": "1500", "currency": "KES"}, "order-1")
    await deliver_all(world)
    assert len(receiver.received) == 1
    # A body changed in transit, or another endpoint's secret, does not verify.
    body, headers = receiver.received[0]
    with pytest.raises(WebhookRejected):
        verify_delivery(body.replace(b"1500", b"9500"), headers[SIGNATURE_HEADER], endpoint["secret"])
    with pytest.raises(WebhookRejected):
        verify_delivery(body, headers[SIGNATURE_HEADER], "whsec_" + "x" * 43)


async def test_payments_through_providers_are_told_when_they_end_and_failures_too(world, client, receiver):
    payer = await world.user()
    await world.fund(payer, Money.of(1000, KES))
    key = await new_key(world, payer)  # a user key: the payer's own app
    endpoint = await subscribe(client, key, receiver.url)

    _, withdrawal = await call(client, "POST", "/v1/payments", key, {"kind": "withdraw", "amount": "300",
                                                                     "currency": "KES"}, "wd-1")
    _, too_much = await call(client, "POST", "/v1/payments", key, {"kind": "withdraw", "amount": "900",
                                                                   "currency": "KES"}, "wd-2")
    assert withdrawal["status"] == "pending" and too_much["status"] == "failed"
    await world.settle(withdrawal["public_id"])
    await deliver_all(world)

    told = {e["data"]["payment"]["public_id"]: e for e in receiver.events(endpoint["secret"])}
    assert told.keys() == {withdrawal["public_id"], too_much["public_id"]}
    assert told[too_much["public_id"]]["type"] == "payment.failed"
    assert told[too_much["public_id"]]["data"]["payment"]["error"]["code"] == "insufficient_funds"
    done = told[withdrawal["public_id"]]
    assert done["type"] == "payment.succeeded" and done["data"]["payment"]["provider"]["receipt"]
    # Nothing about the states on the way (created, pending): only how it ended.
    assert len(receiver.received) == 2


async def test_a_merchant_hears_of_payments_to_its_wallet_and_of_its_refunds(world, client, receiver):
    customer, merchant = await world.user(name="Customer"), await world.user(name="Duka")
    await world.fund(customer, Money.of(1000, KES))
    merchant_key = await new_key(world, merchant)
    endpoint = await subscribe(client, merchant_key, receiver.url)

    # The customer pays by USSD: no API key of the merchant's made it, but its wallet received it.
    paid = await world.payments.handle(SendToWallet("ussd-pay-1", customer.id, Money.of(400, KES), Channel.USSD,
                                                    recipient_user_id=merchant.id))
    await deliver_all(world)
    [received] = receiver.events(endpoint["secret"])
    assert received["type"] == "payment.received" and received["data"]["payment"]["public_id"] == paid.public_id
    assert received["data"]["payment"]["channel"] == "ussd"

    # The merchant refunds it through the API: it hears of its refund, not of money "received".
    status, refund = await call(client, "POST", "/v1/payments", merchant_key,
                                {"kind": "refund", "payment": paid.public_id, "reason": "out of stock"}, "ref-1")
    assert status == 201
    await deliver_all(world)
    events = receiver.events(endpoint["secret"])
    assert [e["type"] for e in events] == ["payment.received", "payment.succeeded"]
    assert events[1]["data"]["payment"]["public_id"] == refund["public_id"]
    assert events[1]["data"]["payment"]["refund_of"] == paid.public_id


async def test_an_endpoint_that_fails_gets_the_same_event_again_until_it_answers_2xx(world, client, receiver):
    payer = await subscribed_payer(world, client, receiver)
    receiver.answers = [500, 307, 404]  # down, a redirect (not followed), misrouted; then 200

    await payer.pays(client, "p-1")
    await deliver_all(world)

    events = receiver.events(payer.endpoint["secret"])  # every try signed afresh, and valid
    assert len(events) == 4 and len({e["id"] for e in events}) == 1
    assert {json.dumps(e, sort_keys=True) for e in events} == {json.dumps(events[0], sort_keys=True)}
    [job] = (await world.rows(f"SELECT status, attempts FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                              "AND payload->'event'->>'id' = :e", e=events[0]["id"]))
    assert (job.status, job.attempts) == ("done", 4)


async def test_a_delivery_that_never_succeeds_is_parked_with_the_endpoint_s_answer(world, client, receiver):
    payer = await subscribed_payer(world, client, receiver)
    receiver.answers = [503] * DELIVERY_ATTEMPTS

    await payer.pays(client, "p-2")
    await deliver_all(world, within_s=30)

    assert len(receiver.received) == DELIVERY_ATTEMPTS
    [job] = await world.rows(f"SELECT id, status, last_error FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                             "ORDER BY id DESC LIMIT 1")
    assert job.status == "parked" and "HTTP 503" in job.last_error and "not now, please" in job.last_error
    # An operator sends it again once the merchant is back (`sauti outbox retry`).
    assert await outbox.retry_parked(world.engine, job.id)
    await deliver_all(world)
    assert len(receiver.received) == DELIVERY_ATTEMPTS + 1
    assert await world.scalar("SELECT status FROM outbox_jobs WHERE id = :j", j=job.id) == "done"


async def test_a_slow_endpoint_has_not_taken_the_event(world, client, receiver):
    await (await subscribed_payer(world, client, receiver)).pays(client, "p-3")
    job = await newest_webhook_job(world)
    receiver.delay_s = 1.0
    sender = WebhookSender(world.engine, timeout_s=0.3, allow_local=True)  # the worker's, with a short timeout
    try:
        with pytest.raises(DeliveryFailed, match="TimeoutError"):
            await sender.deliver(job)
    finally:
        await sender.close()
    receiver.delay_s = 0.0
    await deliver_all(world)
    assert await world.scalar("SELECT status FROM outbox_jobs WHERE id = :j", j=job.id) == "done"


async def test_disabled_endpoints_and_revoked_keys_hear_nothing_more(world, client, receiver):
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    key, other = await new_key(world, payer), await new_key(world)
    first = await subscribe(client, key, receiver.url)
    second = await subscribe(client, key, receiver.url + "?second")

    # Queued for both, then the first is disabled before the worker's turn: it gets nothing.
    await call(client, "POST", "/v1/payments", key, {"kind": "p2p", "recipient": payee.phone, "amount": "10",
                                                     "currency": "KES"}, "d-1")
    assert (await call(client, "DELETE", f"/v1/webhook_endpoints/{first['id']}", other))[0] == 404
    status, disabled = await call(client, "DELETE", f"/v1/webhook_endpoints/{first['id']}", key)
    assert status == 200 and not disabled["active"] and disabled["disabled_at"]
    assert (await call(client, "DELETE", f"/v1/webhook_endpoints/{first['id']}", key))[0] == 200  # again: the same
    await deliver_all(world)
    assert len(receiver.received) == 1 and receiver.events(second["secret"])

    # A revoked key's endpoints hear nothing, queued or new.
    await call(client, "POST", "/v1/payments", key, {"kind": "p2p", "recipient": payee.phone, "amount": "10",
                                                     "currency": "KES"}, "d-2")
    async with world.engine.begin() as conn:
        await revoke_api_key(conn, split_key(key)[0])
    await world.payments.handle(SendToWallet("d-3", payer.id, Money.of(10, KES), Channel.USSD,
                                             recipient_user_id=payee.id))
    await deliver_all(world)
    assert len(receiver.received) == 1


async def test_nobody_subscribed_means_no_event_is_queued(world):
    before = await world.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}'")
    payer, payee = await world.user(), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    await new_key(world, payee)  # a key, but no endpoint
    await world.payments.handle(SendToWallet("n-1", payer.id, Money.of(10, KES), Channel.USSD,
                                             recipient_user_id=payee.id))
    assert await world.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}'") == before


async def test_endpoints_are_listed_checked_and_limited_per_key(world, client, receiver):
    key, other = await new_key(world), await new_key(world)
    made = [await subscribe(client, key, f"{receiver.url}?n={n}") for n in range(3)]

    status, refused = await call(client, "POST", "/v1/webhook_endpoints", key, {"url": receiver.url})
    assert status == 422 and refused["error"]["code"] == "too_many_webhook_endpoints"
    status, listed = await call(client, "GET", "/v1/webhook_endpoints", key)
    assert status == 200 and [e["id"] for e in listed["webhook_endpoints"]] == [m["id"] for m in made]
    assert all("secret" not in e for e in listed["webhook_endpoints"])
    assert (await call(client, "GET", "/v1/webhook_endpoints", other))[1] == {"webhook_endpoints": []}
    for body, code in (({"url": "ftp://example.com/x"}, "invalid_webhook_url"),
                       ({"url": "https://user:pw@example.com/x"}, "invalid_webhook_url"),
                       ({"url": "https://example.com:99999/x"}, "invalid_webhook_url"),
                       ({"url": ""}, "invalid_webhook_url"),
                       ({"url": 42}, "invalid_webhook_url"),
                       ({"url": "https://example.com", "events": ["x"]}, "unknown_field")):
        status, answer = await call(client, "POST", "/v1/webhook_endpoints", other, body)
        assert status == 400 and answer["error"]["code"] == code, (body, answer)
    assert (await call(client, "POST", "/v1/webhook_endpoints", "sk_nope", {"url": receiver.url}))[0] == 401
    # Outside tests (allow_local_urls false), http and local addresses are refused.
    key_id = await world.scalar("SELECT id FROM api_keys WHERE prefix = :p", p=split_key(other)[0])
    async with world.engine.begin() as conn:
        for url in (receiver.url, "https://127.0.0.1/x", "https://10.1.2.3/x", "https://localhost/x",
                    "https://[::1]/x", "https://169.254.169.254/latest"):
            with pytest.raises(InvalidWebhookUrl, match=r"uses https|local or private"):
                await add_endpoint(conn, key_id, url, allow_local=False, max_per_key=5, actor="test")


@pytest.mark.parametrize("url", [
    "https://[::127.0.0.1]/x",  # IPv4-compatible: Python 3.11 calls it global, it is reserved
    "https://[::ffff:0:7f00:1]/x",  # IPv4-translated 127.0.0.1
    "https://[64:ff9b::7f00:1]/x",  # NAT64 of 127.0.0.1
    "https://[64:ff9b::a00:1]/x",  # NAT64 of 10.0.0.1
    "https://[2002:7f00:1::1]/x",  # 6to4 of 127.0.0.1: not reserved, the IPv4 address inside is local
    "https://[2002:a9fe:a9fe::1]/x",  # 6to4 of 169.254.169.254
    "https://[::ffff:8.8.8.8]/x",  # IPv4-mapped: write the IPv4 address itself
    "https://224.0.0.1/x", "https://[ff0e::1]/x",  # multicast
])
async def test_reserved_ipv6_and_ipv6_carrying_a_local_ipv4_are_refused(world, url):
    key_id = await world.scalar("SELECT id FROM api_keys WHERE prefix = :p",
                                p=split_key(await new_key(world))[0])
    async with world.engine.begin() as conn:
        with pytest.raises(InvalidWebhookUrl, match="local or private"):
            await add_endpoint(conn, key_id, url, allow_local=False, max_per_key=5, actor="test")


def test_public_ipv6_and_6to4_of_a_public_ipv4_are_taken():
    for url in ("https://[2606:4700:4700::1111]/x", "https://[2002:808:808::1]/x"):
        assert check_url(url, allow_local=False) == url


async def test_a_worker_that_cannot_reach_the_sandboxes_still_sends_webhooks(world, client, receiver):
    """`sauti worker` in sandbox mode without the sandboxes' ports leaves provider jobs to `sauti
    serve`'s worker, but webhooks go to the API's callers: it sends them."""
    payer = await subscribed_payer(world, client, receiver)
    await payer.pays(client, "w-1")
    receipts = await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = 'sms.receipt' AND status = 'pending'")
    assert receipts  # the payment's SMS receipts wait for a worker too

    @click.group()
    @click.pass_context
    def sauti(ctx: click.Context) -> None:
        url = world.engine.url.render_as_string(hide_password=False)
        ctx.obj = {"settings": load_settings(ROOT / "config.yml", env={
            "DATABASE_URL": url, "SAUTI__WEBHOOKS__ALLOW_LOCAL_URLS": "true"})}  # the receiver is on this machine

    sauti.add_command(worker_command)
    ran = await asyncio.to_thread(CliRunner().invoke, sauti, ["worker", "--once"])

    assert ran.exit_code == 0, ran.output
    [event] = receiver.events(payer.endpoint["secret"])
    assert event["type"] == "payment.succeeded"
    # Left to serve's worker untouched: not claimed, so no attempt spent on them.
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = 'sms.receipt' "
                              "AND status = 'pending' AND attempts = 0 AND last_error IS NULL") == receipts


async def test_a_slow_endpoint_never_holds_up_payouts_and_receipts(world, client, receiver):
    """The workers `sauti serve` and `sauti worker` run: webhooks in slots of their own."""
    payer = await subscribed_payer(world, client, receiver)
    receiver.delay_s = 1.0  # a merchant's server in trouble: every event takes it a second
    for n in range(12):
        await payer.pays(client, f"slow-{n}")
    receipts = await world.rows("SELECT id FROM outbox_jobs WHERE kind = 'sms.receipt' AND status = 'pending'")
    assert len(receipts) >= 24  # payer's and payee's, for each payment
    settings = Settings.model_validate({"outbox": {"concurrency": 4, "poll_interval_s": 0.05},
                                        "webhooks": {"concurrency": 2}})
    workers = build_workers(settings, world.engine, world.payments.register_handlers())
    running = [asyncio.create_task(w.run_forever()) for w in workers]
    try:
        # Every receipt is sent while the webhook worker is still busy with the slow endpoint (with one
        # worker of 4 slots for both, the last receipts would wait 3 s for the webhooks ahead of them).
        deadline = asyncio.get_running_loop().time() + 2
        while await world.scalar("SELECT count(*) FROM outbox_jobs WHERE id = ANY(:ids) AND status <> 'done'",
                                 ids=[r.id for r in receipts]):
            assert asyncio.get_running_loop().time() < deadline, "receipts waited for the webhooks"
            await asyncio.sleep(0.05)
        assert receiver.in_flight > 0 and len(receiver.received) < 12
        await deliver_all_by(workers, world)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*running)
    assert len(receiver.received) == 12 and receiver.most_at_once == 2  # webhooks.concurrency, no more


async def deliver_all_by(workers, world: PaymentsWorld, within_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while await world.scalar(f"SELECT count(*) FROM outbox_jobs WHERE kind = '{JOB_WEBHOOK}' "
                             "AND status IN ('pending', 'running')"):
        assert asyncio.get_running_loop().time() < deadline, "webhook deliveries still waiting"
        await asyncio.sleep(0.05)


async def test_the_webhook_worker_wakes_when_an_event_is_queued(world, client, receiver):
    """Its lane's channel is notified in the transaction that queues the event: no waiting for a poll."""
    payer = await subscribed_payer(world, client, receiver)
    settings = Settings.model_validate({"outbox": {"poll_interval_s": 60}})
    _, webhooks = build_workers(settings, world.engine, world.payments.register_handlers())
    running = asyncio.create_task(webhooks.run_forever())
    try:
        await asyncio.sleep(0.5)  # listening, and past its first claim
        await payer.pays(client, "wake-1")
        deadline = asyncio.get_running_loop().time() + 5
        while not receiver.received:
            assert asyncio.get_running_loop().time() < deadline, "the webhook worker slept through the event"
            await asyncio.sleep(0.05)
    finally:
        webhooks.stop()
        await running


async def test_an_endpoint_s_owner_can_ask_for_a_test_event(world, client, receiver):
    key, other = await new_key(world), await new_key(world)
    endpoint = await subscribe(client, key, receiver.url)

    status, queued = await call(client, "POST", f"/v1/webhook_endpoints/{endpoint['id']}/test", key)
    assert status == 202 and queued["type"] == "webhook.test" and queued["endpoint"] == endpoint["id"]
    await deliver_all(world)
    [event] = receiver.events(endpoint["secret"])
    assert event == {"id": queued["event"], "type": "webhook.test", "created_at": event["created_at"],
                     "data": {"endpoint": endpoint["id"]}}

    assert (await call(client, "POST", f"/v1/webhook_endpoints/{endpoint['id']}/test", other))[0] == 404
    assert (await call(client, "POST", "/v1/webhook_endpoints/we_nope/test", key))[0] == 404
    await call(client, "DELETE", f"/v1/webhook_endpoints/{endpoint['id']}", key)
    status, refused = await call(client, "POST", f"/v1/webhook_endpoints/{endpoint['id']}/test", key)
    assert status == 409 and refused["error"]["code"] == "webhook_endpoint_disabled"


async def test_outside_tests_a_delivery_goes_only_to_public_https_addresses(world, client, receiver):
    """An endpoint registered while local URLs were allowed, sent by a worker that does not allow
    them (production's): refused at once, nothing sent; and names resolve to public addresses only."""
    await (await subscribed_payer(world, client, receiver)).pays(client, "public-1")
    job = await newest_webhook_job(world)
    sender = WebhookSender(world.engine)  # as `sauti serve` builds it with webhooks.allow_local_urls false
    try:
        with pytest.raises(PermanentJobError, match="uses https"):
            await sender.deliver(job)
    finally:
        await sender.close()
    assert not receiver.received
    await deliver_all(world)  # the test world's own worker allows local URLs

    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="no public address"):
            await resolver.resolve("localhost", 443)
        assert [r["host"] for r in await resolver.resolve("8.8.8.8", 443)] == ["8.8.8.8"]
        # A name's AAAA record that reaches a local IPv4 address (IPv4-compatible, 6to4) is no more public.
        for local in ("::127.0.0.1", "2002:7f00:1::"):
            with pytest.raises(OSError, match="no public address"):
                await resolver.resolve(local, 443, socket.AF_INET6)
    finally:
        await resolver.close()


def signed_with(delivery: tuple[bytes, dict[str, str]], candidates) -> list[str]:
    """Which of ``candidates`` signed ``delivery``, in the order of its ``v1`` values."""
    body, headers = delivery
    header = parse_signature_header(headers[SIGNATURE_HEADER])
    by_signature = {compute_signature(secret, header.timestamp, body): secret for secret in candidates}
    return [by_signature.get(signature, "?") for signature in header.signatures]


async def test_an_endpoint_s_secret_is_rolled_the_one_before_signing_beside_it_for_a_while(world, client, receiver):
    key, other = await new_key(world), await new_key(world)
    endpoint = await subscribe(client, key, receiver.url)
    first = endpoint["secret"]
    assert endpoint["previous_secret_expires_at"] is None
    path = f"/v1/webhook_endpoints/{endpoint['id']}"

    async def test_event() -> tuple[bytes, dict[str, str]]:
        assert (await call(client, "POST", f"{path}/test", key))[0] == 202
        await deliver_all(world)
        return receiver.received[-1]

    # No body: the one before signs for a day.
    status, rolled = await call(client, "POST", f"{path}/roll_secret", key)
    assert status == 200 and rolled["id"] == endpoint["id"] and rolled["active"], rolled
    second = rolled["secret"]
    assert second.startswith("whsec_") and second != first
    until = datetime.fromisoformat(rolled["previous_secret_expires_at"])
    assert timedelta(hours=23, minutes=59) < until - datetime.now(UTC) <= timedelta(hours=24)
    status, listed = await call(client, "GET", "/v1/webhook_endpoints", key)
    [listed] = listed["webhook_endpoints"]
    assert listed["previous_secret_expires_at"] == rolled["previous_secret_expires_at"] and "secret" not in listed
    delivery = await test_event()
    assert signed_with(delivery, (first, second)) == [second, first]  # the newest first
    body, headers = delivery  # a receiver holding either accepts it
    assert verify_delivery(body, headers[SIGNATURE_HEADER], second) == verify_delivery(body, headers[SIGNATURE_HEADER],
                                                                                       first)

    # A second roll keeps the second secret for a second; the first stops at once.
    status, rolled = await call(client, "POST", f"{path}/roll_secret", key, {"previous_secret_valid_s": 1})
    third = rolled["secret"]
    assert signed_with(await test_event(), (first, second, third)) == [third, second]
    await asyncio.sleep(1.1)  # the second's second is up: it signs no more, and is not listed
    assert (await call(client, "GET", "/v1/webhook_endpoints", key))[1]["webhook_endpoints"][0][
        "previous_secret_expires_at"] is None
    body, headers = await test_event()
    assert signed_with((body, headers), (first, second, third)) == [third]
    with pytest.raises(WebhookRejected):
        verify_delivery(body, headers[SIGNATURE_HEADER], second)

    # A leak: 0 stops the one before at once.
    status, rolled = await call(client, "POST", f"{path}/roll_secret", key, {"previous_secret_valid_s": 0})
    assert status == 200 and rolled["previous_secret_expires_at"] is None
    assert signed_with(await test_event(), (first, second, third, rolled["secret"])) == [rolled["secret"]]

    # Audited, without a secret in it.
    details = [r.details for r in await world.rows(
        "SELECT details FROM audit_log WHERE action = 'webhook.secret_rolled' AND details ->> 'endpoint' = :e "
        "ORDER BY id", e=endpoint["id"])]
    assert [d["previous_valid_s"] for d in details] == [86400, 1, 0]
    assert not any("whsec_" in json.dumps(d) for d in details)

    for body, code in (({"previous_secret_valid_s": -1}, "invalid_request"),
                       ({"previous_secret_valid_s": 604801}, "invalid_request"),
                       ({"previous_secret_valid_s": "3600"}, "invalid_request"),
                       ({"previous_secret_valid_s": True}, "invalid_request"),
                       ({"previous_secret_valid_s": 1.5}, "invalid_request"),
                       ({"expires": 10}, "unknown_field")):
        status, answer = await call(client, "POST", f"{path}/roll_secret", key, body)
        assert status == 400 and answer["error"]["code"] == code, (body, answer)
    assert (await call(client, "POST", f"{path}/roll_secret", other))[0] == 404
    assert (await call(client, "POST", "/v1/webhook_endpoints/we_nope/roll_secret", key))[0] == 404
    for data, chunked in ((None, None), (b"", True)):  # no body, or an empty chunked one: the default
        async with client.post(f"{path}/roll_secret", data=data, chunked=chunked, headers=auth(key)) as answer:
            assert answer.status == 200 and (await answer.json())["previous_secret_expires_at"], await answer.text()
    await call(client, "DELETE", path, key)
    status, refused = await call(client, "POST", f"{path}/roll_secret", key)
    assert status == 409 and refused["error"]["code"] == "webhook_endpoint_disabled"


async def test_concurrent_rolls_leave_secrets_their_callers_were_shown(world, client, receiver):
    key = await new_key(world)
    endpoint = await subscribe(client, key, receiver.url)
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    answers = await asyncio.gather(*(call(client, "POST", f"{path}/roll_secret", key) for _ in range(4)))
    assert [status for status, _ in answers] == [200] * 4
    shown = {endpoint["secret"]} | {rolled["secret"] for _, rolled in answers}
    assert len(shown) == 5
    assert (await call(client, "POST", f"{path}/test", key))[0] == 202
    await deliver_all(world)
    signers = signed_with(receiver.received[-1], shown)
    assert len(set(signers)) == 2 and "?" not in signers and endpoint["secret"] not in signers


async def test_an_endpoint_of_a_revoked_key_gets_no_new_secret(world, client, receiver):
    """`sauti webhook roll` reaches any endpoint: one whose key was revoked hears nothing more, and a
    secret for it would be a secret for nothing."""
    key = await new_key(world)
    endpoint = await subscribe(client, key, receiver.url)
    async with world.engine.begin() as conn:
        await revoke_api_key(conn, split_key(key)[0])
    async with world.engine.begin() as conn:
        with pytest.raises(WebhookEndpointDisabled, match="revoked"):
            await roll_secret(conn, endpoint["id"], actor="test")
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'webhook.secret_rolled' "
                              "AND details ->> 'endpoint' = :e", e=endpoint["id"]) == 0


async def test_an_endpoint_s_owner_reads_its_deliveries_newest_first(world, client, receiver):
    payer = await subscribed_payer(world, client, receiver)
    path = f"/v1/webhook_endpoints/{payer.endpoint['id']}/deliveries"
    first = await payer.pays(client, "deliveries-1")

    status, waiting = await call(client, "GET", path + "?undelivered=true", payer.key)
    assert status == 200 and waiting["next_before"] is None
    [pending] = waiting["deliveries"]
    assert (pending["payment"], pending["status"], pending["attempts"]) == (first["public_id"], "pending", 0)
    assert pending["event"]["type"] == "payment.succeeded" and pending["next_try_at"] and pending["event"]["id"]
    receiver.answers = [500]  # the first try fails, the second is taken
    await world.worker.drain()
    status, failed_once = await call(client, "GET", path + "?undelivered=true", payer.key)
    [retrying] = failed_once["deliveries"]
    assert (retrying["status"], retrying["attempts"]) == ("pending", 1), retrying
    # The endpoint's own answer; never where in our code (the outbox keeps that, for operators).
    assert retrying["last_error"] == "the endpoint answered HTTP 500: 'not now, please'"
    await deliver_all(world)
    second = await payer.pays(client, "deliveries-2")
    await deliver_all(world)

    with statements_run(world.engine) as statements:
        status, listed = await call(client, "GET", path, payer.key)
    assert [d["payment"] for d in listed["deliveries"]] == [second["public_id"], first["public_id"]]
    assert [(d["status"], d["attempts"], d["next_try_at"]) for d in listed["deliveries"]] == [
        ("done", 1, None), ("done", 2, None)]
    heard = list(dict.fromkeys(e["id"] for e in receiver.events(payer.endpoint["secret"])))  # the first twice
    assert [d["event"]["id"] for d in listed["deliveries"]] == heard[::-1] and heard[0] == pending["event"]["id"]
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "FROM outbox_jobs" in statement:  # not the whole outbox backwards: its own index
            assert "outbox_jobs_webhook_endpoint" in plan, plan
    with statements_run(world.engine) as statements:
        assert (await call(client, "GET", path + "?undelivered=true", payer.key))[1]["deliveries"] == []
    for statement, plan in await plans_without_seq_scans(world.engine, statements):
        if "FROM outbox_jobs" in statement:  # what waits, without reading what was delivered
            assert "outbox_jobs_webhook_endpoint_open" in plan, plan

    status, page = await call(client, "GET", path + "?limit=1", payer.key)
    assert [d["payment"] for d in page["deliveries"]] == [second["public_id"]] and page["next_before"]
    status, older = await call(client, "GET", f"{path}?limit=1&before={page['next_before']}", payer.key)
    assert [d["payment"] for d in older["deliveries"]] == [first["public_id"]]

    # Disabled before its turn came: dropped, not sent, and not said to be delivered.
    third = await payer.pays(client, "deliveries-3")
    await call(client, "DELETE", f"/v1/webhook_endpoints/{payer.endpoint['id']}", payer.key)
    await deliver_all(world)
    status, after = await call(client, "GET", path, payer.key)
    assert [(d["payment"], d["status"], d["last_error"]) for d in after["deliveries"]][:2] == [
        (third["public_id"], "dropped", None), (second["public_id"], "done", None)]
    # A job no code of ours would write (no endpoint number) does not break the operators' list.
    async with world.engine.begin() as conn:
        await outbox.enqueue(conn, JOB_WEBHOOK, {"endpoint": "not-a-number", "event": {}})
        assert await deliveries(conn, limit=5)

    other = await new_key(world)
    assert (await call(client, "GET", path, other))[0] == 404
    assert (await call(client, "GET", "/v1/webhook_endpoints/we_nope/deliveries", payer.key))[0] == 404
    for query, code in (("undelivered=yes", "invalid_undelivered"), ("limit=0", "invalid_limit"),
                        ("limit=101", "invalid_limit"), ("before=x", "invalid_before"),
                        ("status=done", "unknown_query_parameter")):
        status, answer = await call(client, "GET", f"{path}?{query}", payer.key)
        assert status == 400 and answer["error"]["code"] == code, (query, answer)
