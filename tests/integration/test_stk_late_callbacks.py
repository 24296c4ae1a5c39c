"""STK callbacks that are not the push's first and last word, over real HTTP against the Daraja
sandbox: a "still processing" (ResultCode 4999) answers nothing and leaves the deposit open for the
success that follows; a success after a failure (the deposit failed, M-Pesa took the money) is
recorded and put before a person with its receipt, who books it from the statement and closes the
flag; a success for a push recovery credited by STK query keeps its receipt, so that the receipt
cannot be booked by hand a second time; and a push nobody recorded is not lost to a 4999 or a
failure callback before its success."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from payments import payment_store as store
from payments.commands import Channel, Deposit
from payments.money import Currency, Money
from payments.payment_settings import CALLBACK_STK, STK_ORPHAN_EVENT
from payments.review import STK_ORPHAN, close_flag, flagged
from payments.sandbox.outcomes import Outcome
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world, stk_callback

KES = Currency.KES
S = PaymentStatus


# No grace: a push nobody recorded is confirmed and credited as soon as its success is kept.
world, ledger_stays_consistent = module_world(stk_orphan_grace_s=0)


async def post_stk(world: PaymentsWorld, body: dict[str, Any]) -> str:
    """POST a callback as Daraja does; returns what applying it did."""
    before = len(world.callbacks.outcomes)
    url = world.payments.settings.callback_base_url + CALLBACK_STK
    async with aiohttp.ClientSession() as http, http.post(url, data=json.dumps(body)) as resp:
        assert resp.status == 200, await resp.text()
    return next(did for what, did in world.callbacks.outcomes[before:] if what == "stk")


async def pushed(world: PaymentsWorld, key: str, phone_suffix: str | None = None) -> tuple[Any, str]:
    """A deposit of KES 500 whose push Daraja accepted; the payer (whose PIN, by the sandbox, comes
    2 s later: its success callback then) and the deposit's id."""
    user = await world.user(suffix=phone_suffix) if phone_suffix else await world.user()
    world.sandboxes.daraja.outcomes.set_next(Outcome.SUCCESS, msisdn=user.phone, delay_s=2.0)
    payment = await world.payments.handle(Deposit(key, user.id, Money.of(500, KES), Channel.USSD))
    for _ in range(300):
        await world.worker.drain()
        if (await world.payment(payment.public_id)).status is S.PROCESSING:
            return user, payment.public_id
        await asyncio.sleep(0.02)
    raise AssertionError("the push was never accepted")


def taken_by_m_pesa(world: PaymentsWorld, checkout_id: str) -> list[Any]:
    return [e for e in world.sandboxes.daraja.books.entries() if e.reference == checkout_id]


async def sms_jobs(world: PaymentsWorld, public_id: str) -> list[str]:
    rows = await world.rows("SELECT dedupe_key FROM outbox_jobs WHERE kind = 'sms.receipt' "
                            "AND payload->>'payment' = :p ORDER BY id", p=public_id)
    return [row.dedupe_key for row in rows]


async def test_a_still_processing_callback_leaves_the_deposit_open_for_the_success_after_it(world: PaymentsWorld):
    user, public_id = await pushed(world, "late-4999")
    payment = await world.payment(public_id)
    checkout = payment.provider_ref or ""
    before = len(world.callbacks.outcomes)

    # Daraja: "The transaction is still under processing": no answer, nothing failed, nobody told.
    assert await post_stk(world, stk_callback(checkout, 4999, "The transaction is still under processing")) == "pending"
    still = await world.payment(public_id)
    assert still.status is S.PROCESSING and still.error_code is None
    async with world.engine.connect() as conn:
        recorded = await store.provider_event(conn, "mpesa", checkout, "stk_callback:4999")
    assert recorded is not None and recorded["result_code"] == 4999
    # The same delivery again is a duplicate.
    assert await post_stk(world, stk_callback(checkout, 4999, "The transaction is still under processing")) \
        == "duplicate"

    # Then the payer's PIN: M-Pesa takes the money, and its success callback credits the deposit.
    assert await world.until_callback("stk", "credited", after=before, within_s=10) == "credited"
    done = await world.settle(public_id)
    assert done.status is S.SUCCEEDED and taken_by_m_pesa(world, checkout)[0].amount_minor == 50_000
    assert await world.wallet(user) == Money.of(500, KES)
    assert not [key for key in await sms_jobs(world, public_id) if key.endswith(":failed")]
    assert public_id not in {item.public_id for item in await flagged(world.engine)}


async def test_a_success_after_a_failure_is_put_before_a_person_who_books_its_receipt(world: PaymentsWorld):
    user, public_id = await pushed(world, "late-1037")
    payment = await world.payment(public_id)
    checkout = payment.provider_ref or ""
    before = len(world.callbacks.outcomes)
    # Safaricom's wait for the PIN ran out ("DS timeout"): the deposit fails, the payer is told.
    assert await post_stk(world, stk_callback(checkout, 1037, "DS timeout user cannot be reached")) == "failed"
    assert (await world.payment(public_id)).status is S.FAILED

    # The PIN comes after all: M-Pesa takes the money and calls back with its success.
    assert await world.until_callback("stk", "needs_review", after=before + 1, within_s=10) == "needs_review"
    late = await world.payment(public_id)
    receipt = taken_by_m_pesa(world, checkout)[0].transaction_id
    # Nothing is credited on an unsigned word for a final deposit; a person reads it, with the receipt.
    assert late.status is S.FAILED and await world.wallet(user) == Money.zero(KES)
    assert late.provider_refs["contradiction"] == \
        f"provider said succeeded while failed (stk_callback, receipt {receipt})"
    async with world.engine.connect() as conn:
        assert (await store.provider_event(conn, "mpesa", checkout, "stk_callback"))["receipt"] == receipt
    item = next(item for item in await flagged(world.engine) if item.public_id == public_id)
    assert item.final and item.status == "failed" and item.reference == payment.reference and receipt in item.reason
    # The same success again changes nothing more.
    again = stk_callback(checkout, 0, "The service request is processed successfully.", receipt=receipt,
                         amount=500, phone=user.phone)
    assert await post_stk(world, again) == "duplicate"

    # The operator finds the receipt on the statement and books it (README, Operators): credited
    # once M-Pesa confirms it; then closes the flag.
    assert await world.payments.book_missed_c2b(receipt=receipt, amount=Money.of(500, KES), account=user.phone,
                                                phone=user.phone, booked_by="alice", reason=f"{public_id} failed, paid"
                                                ) == "confirming"
    for _ in range(300):
        await world.worker.drain()
        if await world.wallet(user) == Money.of(500, KES):
            break
        await asyncio.sleep(0.03)
    assert await world.wallet(user) == Money.of(500, KES)
    closed = await close_flag(world.engine, payment.reference, "booked from the statement (book-c2b)", "alice")
    assert closed.public_id == public_id and receipt in closed.reason
    assert public_id not in {item.public_id for item in await flagged(world.engine)}
    kept = (await world.payment(public_id)).provider_refs["contradiction_closed"]
    assert (kept["closed_by"], kept["reason"]) == ("alice", "booked from the statement (book-c2b)")
    assert await world.scalar("SELECT count(*) FROM audit_log WHERE action = 'review.close' AND subject = :s",
                              s=public_id) == 1


async def test_a_late_success_keeps_the_receipt_of_a_push_credited_by_query(world: PaymentsWorld):
    # M-Pesa never called back (a number ending 900): recovery's STK query credited it, no receipt.
    user, deposit = await world.deposit_credited_without_receipt(Money.of(300, KES), "late-receipt")
    line = taken_by_m_pesa(world, deposit.provider_ref or "")[0]

    # The callback comes after all: its receipt is kept, nothing else moves.
    late = stk_callback(deposit.provider_ref or "", 0, "The service request is processed successfully.",
                        receipt=line.transaction_id, amount=300, phone=user.phone)
    assert await post_stk(world, late) == "receipt_kept"
    kept = await world.payment(deposit.public_id)
    assert kept.status is S.SUCCEEDED and kept.provider_refs["receipt"] == line.transaction_id
    assert "contradiction" not in kept.provider_refs
    assert await post_stk(world, late) == "duplicate"
    # So the receipt, read on the statement, is not booked by hand a second time.
    assert await world.payments.book_missed_c2b(receipt=line.transaction_id, amount=Money.of(300, KES),
                                                account=user.phone, phone=user.phone, booked_by="bob",
                                                reason="on the statement") == "duplicate"
    await world.worker.drain()
    assert await world.wallet(user) == Money.of(300, KES)


async def test_a_push_nobody_recorded_is_not_lost_to_a_callback_before_its_success(world: PaymentsWorld):
    settings = world.payments.settings
    for code, desc in ((4999, "The transaction is still under processing"),
                       (1037, "DS timeout user cannot be reached")):
        user = await world.user()
        # The push's success comes 4 s after it (the payer's PIN); its job "died" before recording it.
        world.sandboxes.daraja.outcomes.set_next(Outcome.SUCCESS, msisdn=user.phone, delay_s=4.0)
        accepted = await world.payments.providers.daraja.stk_push(
            phone=user.phone, amount=Money.of(200, KES), account_reference=settings.stk_account_reference,
            description=settings.stk_description, callback_url=settings.callback_base_url + CALLBACK_STK)
        before = len(world.callbacks.outcomes)
        first = await post_stk(world, stk_callback(accepted.checkout_request_id, code, desc))
        assert first == ("pending" if code == 4999 else "ignored"), code

        assert await world.until_callback("stk", "orphan", after=before + 1, within_s=12) == "orphan"
        for _ in range(300):
            await world.worker.drain()
            if await world.wallet(user) == Money.of(200, KES):
                break
            await asyncio.sleep(0.03)
        assert await world.wallet(user) == Money.of(200, KES), code
        async with world.engine.connect() as conn:
            event = await store.provider_event(conn, "mpesa", accepted.checkout_request_id, STK_ORPHAN_EVENT)
        assert event is not None and event["outcome"] == "credited"
        if code == 1037:
            assert event["earlier"]["result_code"] == 1037
        assert accepted.checkout_request_id not in {item.public_id for item in await flagged(world.engine)
                                                    if item.subject == STK_ORPHAN}
