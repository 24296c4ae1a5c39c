"""Wave checkout sessions and webhooks: our client creates, the sandbox's payer approves or declines,
webhooks reach a receiver over real HTTP and are verified by wave_webhooks."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest

from payments.money import Money
from payments.providers.wave import CheckoutStatus, PaymentStatus, WaveConflict, WaveNotFound
from payments.providers.wave_webhooks import SharedSecret, SigningSecret, WebhookRejected, verify_webhook

XOF_2500 = Money.of("2500", "XOF")


@pytest.fixture
async def webhooks(receiver, http, sandboxes):
    """Point the Wave sandbox's webhooks at the receiver, signed with the sandbox's secrets."""
    async with http.post(f"{sandboxes.urls.wave}/_sandbox/webhooks", json={"url": receiver.url("/wave")}) as resp:
        assert resp.status == 200
    return SigningSecret(sandboxes.settings.wave_webhook_secrets)


async def new_session(wave, **extra):
    return await wave.create_checkout_session(
        XOF_2500,
        success_url="https://example.com/paid",
        error_url="https://example.com/failed",
        client_reference=extra.pop("client_reference", str(uuid.uuid4())),
        **extra,
    )


async def payer(http, sandboxes, session_id: str, action: str, mobile: str | None = None) -> dict:
    body = {"payer_mobile": mobile} if mobile else {}
    async with http.post(f"{sandboxes.urls.wave}/_sandbox/checkout/sessions/{session_id}/{action}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_an_approved_session_completes_and_sends_a_verified_webhook(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave)
    assert session.checkout_status is CheckoutStatus.OPEN
    assert session.payment_status is PaymentStatus.PROCESSING
    assert session.wave_launch_url.endswith(f"/c/{session.id}")
    assert session.when_expires is not None and session.when_created is not None
    async with http.get(session.wave_launch_url) as page:
        assert "Approve" in await page.text()

    await payer(http, sandboxes, session.id, "approve")
    [delivery] = await receiver.wait_for("/wave")
    event = verify_webhook(delivery.body, delivery.headers, webhooks)
    assert event.type == "checkout.session.completed"
    assert event.id.startswith("EV_")
    paid = event.checkout_session()
    assert paid.id == session.id and paid.succeeded
    assert paid.amount == XOF_2500

    current = await wave.get_checkout_session(session.id)
    assert current.checkout_status is CheckoutStatus.COMPLETE
    assert current.transaction_id == paid.transaction_id
    assert (await wave.get_checkout_session_by_transaction(paid.transaction_id)).id == session.id
    assert [s.id for s in await wave.search_checkout_sessions(session.client_reference)] == [session.id]


async def test_a_declined_session_sends_payment_failed_and_stays_open(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "decline")
    event = verify_webhook((await receiver.wait_for("/wave"))[0].body, receiver.at("/wave")[0].headers, webhooks)
    assert event.type == "checkout.session.payment_failed"
    failed = event.checkout_session()
    assert failed.last_payment_error is not None
    assert failed.payment_status is PaymentStatus.CANCELLED
    assert failed.checkout_status is CheckoutStatus.OPEN


@pytest.mark.parametrize(
    ("mobile", "code"), [("+221771234001", "insufficient-client-funds"), ("+221771234003", "blocked-account")]
)
async def test_the_payers_number_can_make_the_payment_fail(wave, http, sandboxes, receiver, webhooks, mobile, code):
    session = await new_session(wave)
    answered = await payer(http, sandboxes, session.id, "approve", mobile)
    assert answered["last_payment_error"]["code"] == code
    event = verify_webhook((await receiver.wait_for("/wave"))[0].body, receiver.at("/wave")[0].headers, webhooks)
    assert event.checkout_session().last_payment_error.code == code


async def test_a_session_restricted_to_one_payer_refuses_another(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave, restrict_payer_mobile="+221771234581")
    answered = await payer(http, sandboxes, session.id, "approve", "+221771234582")
    assert answered["last_payment_error"]["code"] == "payer-mobile-mismatch"
    answered = await payer(http, sandboxes, session.id, "approve", "+221771234581")
    assert answered["payment_status"] == "succeeded"


async def test_webhooks_are_retried_with_backoff_until_acknowledged(wave, http, sandboxes, receiver, webhooks):
    receiver.fail_first("/wave", times=2)
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve")
    deliveries = await receiver.wait_for("/wave", count=3)
    events = [verify_webhook(d.body, d.headers, webhooks) for d in deliveries]
    assert len({e.id for e in events}) == 1  # one event, three deliveries
    gaps = [b.at - a.at for a, b in itertools.pairwise(deliveries)]
    base = sandboxes.settings.webhook_retry_base_s
    assert gaps[0] >= 0.9 * base and gaps[1] >= 0.9 * 2 * base  # exponential backoff (lower bounds only)
    await asyncio.sleep(0.3)
    assert len(receiver.at("/wave")) == 3  # acknowledged: no more tries


async def test_webhook_retries_stop_after_the_configured_attempts(wave, http, sandboxes, receiver, webhooks):
    receiver.fail_first("/wave", times=100)
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve")
    attempts = sandboxes.settings.webhook_max_attempts
    await receiver.wait_for("/wave", count=attempts)
    await asyncio.sleep(sandboxes.settings.webhook_retry_base_s * 2 ** (attempts - 1) + 0.1)  # the next gap
    assert len(receiver.at("/wave")) == attempts


async def test_a_receiver_that_verifies_rejects_a_tampered_delivery(receiver, webhooks, wave, http, sandboxes):
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve")
    [delivery] = await receiver.wait_for("/wave")
    tampered = delivery.body.replace(b'"2500"', b'"9999"')
    assert tampered != delivery.body
    with pytest.raises(WebhookRejected):
        verify_webhook(tampered, delivery.headers, webhooks)


async def test_rotated_secrets_sign_with_each_and_either_verifies(wave, http, sandboxes, receiver):
    endpoint = {"url": receiver.url("/wave"), "secrets": ["whs_old_secret", "whs_new_secret"]}
    async with http.post(f"{sandboxes.urls.wave}/_sandbox/webhooks", json=endpoint):
        pass
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve")
    [delivery] = await receiver.wait_for("/wave")
    assert delivery.headers["Wave-Signature"].count("v1=") == 2
    for only in ("whs_old_secret", "whs_new_secret"):
        assert verify_webhook(delivery.body, delivery.headers, SigningSecret((only,))).type.startswith("checkout.")
    with pytest.raises(WebhookRejected):
        verify_webhook(delivery.body, delivery.headers, SigningSecret(("whs_unknown",)))


async def test_the_shared_secret_strategy_sends_a_bearer_secret(http, sandboxes, receiver):
    endpoint = {"url": receiver.url("/wave"), "strategy": "shared_secret", "secrets": ["whs_shared"]}
    async with http.post(f"{sandboxes.urls.wave}/_sandbox/webhooks", json=endpoint):
        pass
    async with http.post(f"{sandboxes.urls.wave}/_sandbox/webhooks/test") as resp:
        event_id = (await resp.json())["id"]
    [delivery] = await receiver.wait_for("/wave")
    event = verify_webhook(delivery.body, delivery.headers, SharedSecret("whs_shared"))
    assert (event.id, event.type) == (event_id, "test.test_event")
    with pytest.raises(WebhookRejected):
        verify_webhook(delivery.body, delivery.headers, SharedSecret("whs_other"))


async def test_a_duplicated_webhook_carries_the_same_event_id(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve", "+221771234902")
    first, second = await receiver.wait_for("/wave", count=2)
    assert (
        verify_webhook(first.body, first.headers, webhooks).id
        == verify_webhook(second.body, second.headers, webhooks).id
    )


async def test_a_webhook_can_arrive_before_the_approval_answer(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve", "+221771234903")
    assert len(receiver.at("/wave")) == 1  # already there, no waiting


async def test_a_webhook_that_never_comes_leaves_the_session_readable(wave, http, sandboxes, receiver, webhooks):
    session = await new_session(wave)
    await payer(http, sandboxes, session.id, "approve", "+221771234900")
    await asyncio.sleep(0.3)
    assert receiver.at("/wave") == []
    assert (await wave.search_checkout_sessions(session.client_reference))[0].succeeded


async def test_expire_and_refund_follow_the_session_state(wave, http, sandboxes):
    open_session = await new_session(wave)
    await wave.expire_checkout_session(open_session.id)
    assert (await wave.get_checkout_session(open_session.id)).checkout_status is CheckoutStatus.EXPIRED
    with pytest.raises(WaveConflict):
        await wave.expire_checkout_session(open_session.id)
    with pytest.raises(WaveConflict):
        await wave.refund_checkout_session(open_session.id)

    paid = await new_session(wave)
    await payer(http, sandboxes, paid.id, "approve")
    balance = await wave.get_balance()
    await wave.refund_checkout_session(paid.id)
    await wave.refund_checkout_session(paid.id)  # refunding twice makes no second refund
    fee = Money.of("25", "XOF")
    assert await wave.get_balance() == balance - (XOF_2500 - fee)
    refunds = [e for e in sandboxes.wave.books.entries() if e.kind == "refund" and e.reference == paid.id]
    assert len(refunds) == 1


async def test_a_transaction_refund_by_id_refunds_its_session(wave, http, sandboxes):
    session = await new_session(wave)
    paid = await payer(http, sandboxes, session.id, "approve")
    await wave.refund_transaction(paid["transaction_id"])
    assert sandboxes.wave.books.find(paid["transaction_id"]).status == "refunded"


async def test_unknown_sessions_are_not_found(wave):
    with pytest.raises(WaveNotFound):
        await wave.get_checkout_session("cos-nosuchsession")
    with pytest.raises(WaveNotFound):
        await wave.get_checkout_session_by_transaction("T_nosuchtx")
    assert await wave.search_checkout_sessions("no-such-reference") == ()
