"""Wave deposits whose payer's attempt fails, against the Wave sandbox over real HTTP
(`payments.wave_deposits`).

Per the contract a failed payment attempt (``checkout.session.payment_failed``, ``payment_status``
``cancelled``) leaves the session ``open``: the payer may pay with the same link until it expires.
So a declined attempt keeps the deposit open (and the payer is told they may try again, never
"failed, nothing was taken"), and the same link paying later credits the wallet, whether the
webhook or recovery says so. The deposit fails when its session has expired; a deposit that must
end sooner (recovery giving up on its checkout job, an operator's verdict) is ended through Wave's
expire endpoint first, and credited instead if Wave says it was paid."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp

from payments.commands import Channel, Deposit
from payments.money import Currency, Money
from payments.payment_settings import JOB_WAVE_CHECKOUT
from payments.review import OperatorVerdict
from payments.states import PaymentStatus
from payments.wave_deposits import EXPIRY_REQUESTED, LAST_PAYMENT_ERROR, LINK_EXPIRES_AT
from tests.integration.payments_helpers import PaymentsWorld, module_world

XOF = Currency.XOF
S = PaymentStatus

world, ledger_stays_consistent = module_world()


async def payer_answers(world: PaymentsWorld, session_id: str, answer: str) -> tuple[int, dict]:
    """The payer taps "pay" (approve) or "decline" in the Wave app, on the session's link."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{world.sandboxes.urls.wave}/_sandbox/checkout/sessions/{session_id}/{answer}") as resp:
        return resp.status, await resp.json()


async def opened_deposit(world: PaymentsWorld, key: str, amount: int, *, suffix: str = "123"):
    user = await world.user(XOF, suffix=suffix)
    payment = await world.payments.handle(Deposit(key, user.id, Money.of(amount, XOF), Channel.USSD))
    await world.worker.drain()
    opened = await world.payment(payment.public_id)
    assert opened.status is S.PROCESSING and opened.provider_ref
    return user, opened


def texts_to(world: PaymentsWorld, phone: str) -> list[str]:
    return [m.message for m in world.sandboxes.africastalking.messages if m.to == phone]


async def test_a_declined_attempt_keeps_the_deposit_open_and_the_same_link_then_credits_it(world: PaymentsWorld):
    user, opened = await opened_deposit(world, "wave-decline-pay", 3000)
    assert opened.provider_refs[LINK_EXPIRES_AT]  # when the link stops working, as Wave said

    before = len(world.callbacks.outcomes)
    status, session = await payer_answers(world, opened.provider_ref, "decline")
    assert (status, session["checkout_status"], session["payment_status"]) == (200, "open", "cancelled")
    assert await world.until_callback("wave", "declined", after=before) == "declined"
    await world.worker.drain()

    # Not failed: the session is open and the same link can still be paid.
    declined = await world.payment(opened.public_id)
    assert declined.status is S.PROCESSING, declined
    assert declined.provider_refs[LAST_PAYMENT_ERROR]["code"] == "payment-failure"
    texts = texts_to(world, user.phone)
    assert not any("No money was taken" in t or "Failed" in t for t in texts), texts
    told = [t for t in texts if "declined" in t]
    assert len(told) == 1 and "try again with the same link until" in told[0], texts

    # The payer tries again with the same link and pays: the wallet is credited, once.
    before = len(world.callbacks.outcomes)
    status, session = await payer_answers(world, opened.provider_ref, "approve")
    assert (status, session["checkout_status"], session["payment_status"]) == (200, "complete", "succeeded")
    await world.until_callback("wave", "credited", after=before)
    done = await world.settle(opened.public_id)
    assert done.status is S.SUCCEEDED and done.provider_refs["transaction_id"] == session["transaction_id"]
    assert await world.wallet(user, XOF) == Money.of(3000, XOF)
    assert "needs_review" not in done.provider_refs
    assert sum("declined" in t for t in texts_to(world, user.phone)) == 1  # told once, not again


async def test_recovery_keeps_a_declined_session_open_and_credits_it_once_paid(world: PaymentsWorld):
    # Suffix 900: Wave sends no webhook for this payer; recovery reads the session.
    user, opened = await opened_deposit(world, "wave-decline-recover", 2000, suffix="900")
    status, session = await payer_answers(world, opened.provider_ref, "decline")
    assert (status, session["checkout_status"], session["payment_status"]) == (200, "open", "cancelled")

    await world.payments.recover_stuck(timedelta(0))
    await world.payments.recover_stuck(timedelta(0))  # a second look at the same decline changes nothing
    await world.worker.drain()
    still = await world.payment(opened.public_id)
    assert still.status is S.PROCESSING and still.provider_refs[LAST_PAYMENT_ERROR]["code"] == "payment-failure"
    assert sum("declined" in t for t in texts_to(world, user.phone)) == 1

    status, session = await payer_answers(world, opened.provider_ref, "approve")
    assert (status, session["checkout_status"], session["payment_status"]) == (200, "complete", "succeeded")
    await world.payments.recover_stuck(timedelta(0))
    done = await world.settle(opened.public_id)
    assert done.status is S.SUCCEEDED, done
    assert await world.wallet(user, XOF) == Money.of(2000, XOF)


async def test_a_declined_deposit_fails_once_its_session_has_expired(world: PaymentsWorld):
    user, opened = await opened_deposit(world, "wave-decline-expire", 1500, suffix="900")
    await payer_answers(world, opened.provider_ref, "decline")
    await world.payments.recover_stuck(timedelta(0))
    assert (await world.payment(opened.public_id)).status is S.PROCESSING

    # The link lapses at Wave (as at its when_expires): now nothing can be taken with it.
    wave = world.payments.providers.wave
    assert wave is not None
    await wave.expire_checkout_session(opened.provider_ref)
    await world.payments.recover_stuck(timedelta(0))
    done = await world.settle(opened.public_id)
    assert done.status is S.FAILED and done.error_code == "payment-failure", done
    assert await world.wallet(user, XOF) == Money.zero(XOF)
    # Only now is the payer told it failed (and that nothing was taken, which is now true).
    assert any(t.startswith(done.reference) and "No money was taken" in t for t in texts_to(world, user.phone))


async def test_an_operators_failure_verdict_expires_the_session_before_failing_the_deposit(world: PaymentsWorld):
    user, opened = await opened_deposit(world, "wave-operator-expire", 2500)
    await world.payments.resolver.flag(opened.public_id, "test: a person looks")

    decided = await world.payments.decide(OperatorVerdict(opened.public_id, False, "not on the statement", "ops"))
    # Not failed yet: the payer could still pay the link. Wave is asked to expire it first.
    assert decided.status is S.PROCESSING and decided.provider_refs[EXPIRY_REQUESTED] == "operator:ops"
    done = await world.settle(opened.public_id)
    assert done.status is S.FAILED and done.error_code == "not_carried_out", done
    _, events = await world.payments.history(opened.public_id)
    assert events[-1].cause == "operator:ops"
    # Wave agrees: the link cannot be paid any more.
    status, answer = await payer_answers(world, opened.provider_ref, "approve")
    assert status == 409 and answer["code"] == "checkout-session-not-open"
    assert await world.wallet(user, XOF) == Money.zero(XOF)


async def test_an_operators_failure_verdict_credits_a_session_the_payer_paid_meanwhile(world: PaymentsWorld):
    # Suffix 900: the payer pays, and the webhook saying so never comes.
    user, opened = await opened_deposit(world, "wave-operator-paid", 4500, suffix="900")
    await world.payments.resolver.flag(opened.public_id, "test: a person looks")
    status, session = await payer_answers(world, opened.provider_ref, "approve")
    assert status == 200 and session["payment_status"] == "succeeded"

    await world.payments.decide(OperatorVerdict(opened.public_id, False, "looked too early", "ops"))
    # Wave refuses to expire a paid session (409): the deposit is credited, not failed.
    done = await world.settle(opened.public_id)
    assert done.status is S.SUCCEEDED and done.provider_refs["transaction_id"] == session["transaction_id"], done
    assert await world.wallet(user, XOF) == Money.of(4500, XOF)


async def test_recovery_giving_up_on_the_checkout_job_expires_a_session_whose_answer_was_lost(world: PaymentsWorld):
    # Suffix 429: Wave rate-limits every attempt of the checkout job, which is parked.
    user = await world.user(XOF, suffix="429")
    payment = await world.payments.handle(Deposit("wave-lost-answer", user.id, Money.of(1200, XOF), Channel.USSD))
    for _ in range(200):
        await world.worker.drain()
        if await world.scalar("SELECT status FROM outbox_jobs WHERE dedupe_key = :k",
                              k=f"{JOB_WAVE_CHECKOUT}:{payment.public_id}") == "parked":
            break
        await asyncio.sleep(0.05)
    assert (await world.payment(payment.public_id)).status is S.CREATED
    # Yet Wave made a session with our reference, whose answer never reached us.
    wave = world.payments.providers.wave
    assert wave is not None
    lost = await wave.create_checkout_session(Money.of(1200, XOF), success_url="https://sauti.example/ok",
                                              error_url="https://sauti.example/no", client_reference=payment.public_id)

    await world.payments.recover_stuck(timedelta(0))
    assert (await world.payment(payment.public_id)).status is S.CREATED  # not before Wave has expired it
    done = await world.settle(payment.public_id)
    assert done.status is S.FAILED and done.error_code == "provider_unavailable", done
    assert (await wave.get_checkout_session(lost.id)).checkout_status.value == "expired"
    status, _ = await payer_answers(world, lost.id, "approve")
    assert status == 409
    assert await world.wallet(user, XOF) == Money.zero(XOF)


async def test_recovery_expires_a_session_wave_still_calls_open_past_its_expiry(world: PaymentsWorld, monkeypatch):
    user, opened = await opened_deposit(world, "wave-past-expiry", 1800, suffix="900")
    await payer_answers(world, opened.provider_ref, "decline")
    # As if the session's when_expires (30 minutes on) had passed with Wave still calling it open:
    # recovery asks Wave to expire it, and the deposit fails once Wave has.
    monkeypatch.setattr("payments.wave_deposits.EXPIRY_GRACE", -timedelta(hours=1))
    await world.payments.recover_stuck(timedelta(0))
    assert (await world.payment(opened.public_id)).provider_refs[EXPIRY_REQUESTED] == "recovery"
    done = await world.settle(opened.public_id)
    assert done.status is S.FAILED and done.error_code == "expired", done
    status, _ = await payer_answers(world, opened.provider_ref, "approve")
    assert status == 409
    assert await world.wallet(user, XOF) == Money.zero(XOF)
