"""Payments left for a person: the review queue, and an operator's verdict on one of them.

Recovery settles what a provider vouches for. What it cannot vouch for (M-Pesa has no record of a
payout, a B2B whose answer was lost and which is never sent twice, a B2C that timed out in Daraja's
queue, a refund whose provider job gave up) is flagged ``needs_review`` and stays open, its money
held in provider clearing, until a person has looked at the provider's own statement (`sauti
reconcile` lists each such payment beside the statement's lines) and says what happened there:
`decide` with ``succeeded=False`` gives the money back to the payer, with ``succeeded=True`` (and
the provider's receipt) settles it as a provider's result would.

The verdict goes through the one door every provider result takes (`Resolver.apply`): once, with
its money movement, state change and SMS receipts in one transaction, recorded in
``provider_events`` under a key naming the payment (a second verdict changes nothing), and in the
audit log with who decided and why.

IMPORTANT: a verdict is refused while anything may still reach the provider for the payment (its
provider job waiting or running: money must never come back to the wallet while a request that
pays it out can still go), and for a payment nobody flagged (recovery is still on it). A waiting job
can be parked first; a running one cannot (`outbox.park` refuses a job under a live lease: its
request may be in flight), so the operator waits for its attempt to end. The job rows are locked
with the payment, so no worker claims one between the check and the verdict.

The queue holds more than what waits for a verdict (`payments.review_flags`): a **final** payment a
provider's late word contradicts (``contradiction``: M-Pesa paid a B2C after its money was given
back, an STK push succeeded after its deposit failed), and an STK push nobody recorded that M-Pesa
could not confirm or that cannot be booked (``stk_orphan``). No verdict moves money on those: a
person settles each by hand (README, Operators: a push's receipt is booked with `sauti mpesa
book-c2b`; a payout paid twice is recovered from its recipient, nothing here takes money back) and
then closes its flag (`close_flag`: who, why, audited), which takes it out of the queue.

IMPORTANT: a Wave deposit whose checkout session the payer may still pay is not failed by a verdict:
Wave is asked to expire the session first (`payments.wave_deposits.request_expiry`), and the
deposit fails once Wave agrees, or is credited if the payer paid meanwhile; `decide` then returns it
still open, with ``wave_expiry_requested`` among its references.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.commands import PaymentKind
from payments.errors import InvalidRequest, PaymentsError
from payments.identities import audit
from payments.money import Currency, Money
from payments.payment_settings import (
    JOB_B2B,
    JOB_B2C,
    JOB_REVERSAL,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_EXPIRE,
    JOB_WAVE_PAYOUT,
    JOB_WAVE_REFUND,
    JOB_WAVE_REVERSE,
)
from payments.payment_store import Payment
from payments.references import payment_reference
from payments.resolution import Resolver, Verdict
from payments.review_flags import (
    CONTRADICTED,
    CONTRADICTION,
    CONTRADICTION_CLOSED,
    OPEN_FLAGGED,
    ORPHAN_FLAGGED,
)
from payments.states import PaymentStatus
from payments.wave_deposits import may_still_be_paid, request_expiry

#: The outbox jobs that send a request to a provider (their dedupe key is ``<job>:<public_id>``);
#: status queries and SMS receipts move no money and are not among them. Expiring a Wave session
#: moves none either, but ends in a verdict of its own (`payments.wave_deposits`).
PROVIDER_REQUESTS = (JOB_B2C, JOB_B2B, JOB_WAVE_PAYOUT, JOB_STK_PUSH, JOB_WAVE_CHECKOUT, JOB_REVERSAL,
                     JOB_WAVE_REFUND, JOB_WAVE_REVERSE, JOB_WAVE_EXPIRE)
#: The longest reason and receipt an operator may give (they go into the history and the audit log).
REASON_MAX, RECEIPT_MAX = 500, 64


class NotDecidable(InvalidRequest):
    """The payment cannot take an operator's verdict now (see the module's docstring)."""

    code = "not_decidable"


class UnknownPayment(PaymentsError):
    code = "unknown_payment"


@dataclass(frozen=True)
class OperatorVerdict:
    """What a person found at the provider for one flagged payment. ``payment_id``: its public id or
    short reference; ``receipt``: the provider's transaction id for a payment it carried out."""

    payment_id: str
    succeeded: bool
    reason: str
    decided_by: str
    receipt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.payment_id, str) or not self.payment_id.strip():
            raise InvalidRequest("name the payment")
        if not _said(self.reason, REASON_MAX):
            raise InvalidRequest(f"say why, from the provider's statement (1 to {REASON_MAX} printable "
                                 "characters)")
        if not _said(self.decided_by):
            raise InvalidRequest("say who decides")
        receipt = self.receipt.strip() if isinstance(self.receipt, str) else None
        if self.succeeded and not receipt:
            raise InvalidRequest("a payment the provider carried out needs its receipt (transaction id) "
                                 "from the statement")
        if receipt is not None and (len(receipt) > RECEIPT_MAX or not receipt.isprintable()):
            raise InvalidRequest(f"a receipt is 1 to {RECEIPT_MAX} printable characters")
        object.__setattr__(self, "receipt", receipt if self.succeeded else None)


#: What a queue item is: a payment (open, waiting for a verdict; or final, contradicted), or the
#: callback of an STK push no payment names (`payments.stk_orphans`).
PAYMENT, STK_ORPHAN = "payment", "stk_orphan"


@dataclass(frozen=True)
class Flagged:
    """One item of the review queue; ``reference`` as people read it (`payments.references`). For an
    STK push nobody recorded (``subject`` ``stk_orphan``), ``reference`` and ``public_id`` are its
    CheckoutRequestID, ``kind`` ``deposit`` and ``status`` what became of it (``pending`` while M-Pesa
    has not confirmed it). ``final``: a final payment, which takes no verdict (`close_flag`)."""

    reference: str
    public_id: str
    kind: str
    status: str
    amount: Money
    provider: str | None
    reason: str
    open_since: datetime
    flagged_at: datetime
    subject: str = PAYMENT

    @property
    def final(self) -> bool:
        return self.subject == PAYMENT and PaymentStatus(self.status).is_final


#: Each part through its own index (`payments.review_flags`): open payments (``payments_open``), final
#: ones contradicted and unrecorded pushes (partial indexes of migration 0021). A push parked in
#: suspense is the suspense list's; ``needs_review: false`` is a flag a release answered.
_FLAGGED = sql(
    "SELECT * FROM ("
    f"  (SELECT 'payment' AS subject, id, public_id, kind, status, amount, currency, provider, "
    f"   provider_refs->>'needs_review' AS reason, created_at, updated_at FROM payments WHERE {OPEN_FLAGGED} "
    "   ORDER BY created_at, id LIMIT :limit)"
    "  UNION ALL"
    f"  (SELECT 'payment', id, public_id, kind, status, amount, currency, provider, "
    f"   provider_refs->>'contradiction', created_at, updated_at FROM payments WHERE {CONTRADICTED} "
    "   ORDER BY id LIMIT :limit)"
    "  UNION ALL"
    "  (SELECT 'stk_orphan', id, event_key, 'deposit', coalesce(payload->>'outcome', 'pending'), "
    "   coalesce((payload->>'amount')::bigint, 0), 'KES', provider, payload->>'needs_review', received_at, "
    f"   received_at FROM provider_events WHERE {ORPHAN_FLAGGED} "
    "   AND payload->>'needs_review' <> 'false' AND coalesce(payload->>'outcome', '') <> 'suspense' "
    "   ORDER BY id LIMIT :limit)"
    ") queue ORDER BY created_at, id LIMIT :limit")


async def flagged(engine: AsyncEngine, *, limit: int = 100) -> list[Flagged]:
    """What waits for a person, the longest waiting first: open payments flagged for a verdict,
    final payments a provider's late word contradicts, and STK pushes nobody recorded that M-Pesa
    could not confirm or that could not be booked (see the module's docstring)."""
    async with engine.connect() as conn:
        rows = await conn.execute(_FLAGGED, {"limit": limit})
        return [Flagged(payment_reference(r.id) if r.subject == PAYMENT else r.public_id, r.public_id, r.kind,
                        r.status, Money(r.amount, Currency(r.currency)), r.provider, r.reason, r.created_at,
                        r.updated_at, r.subject) for r in rows]


async def close_flag(engine: AsyncEngine, subject: str, reason: str, closed_by: str) -> Flagged:
    """Take out of the queue what no verdict settles, once a person has settled it by hand: the
    ``contradiction`` of a final payment (its public id or reference), or the flag of an STK push
    nobody recorded (its CheckoutRequestID). What the flag said is kept, with who closed it, when
    and why (``contradiction_closed`` on the payment, ``review_closed`` on the push's callback), and
    audited (``review.close``). Raises `UnknownPayment` when ``subject`` names neither, and
    `NotDecidable` when it names nothing to close (an open payment takes a verdict: `decide`).
    Returns the item as it stood."""
    why, who = _closing(reason, closed_by)
    async with engine.begin() as conn:
        named = subject.strip()
        found = await store.find_payment(conn, named[:64])
        if found is not None:
            item = await _close_contradiction(conn, found, why, who)
        else:
            item = await _close_orphan(conn, named[:128], why, who)
        await audit(conn, actor=who, action="review.close", subject=item.public_id,
                    details={"reason": why, "flag": item.reason, "status": item.status})
        return item


def _closing(reason: object, closed_by: object) -> tuple[str, str]:
    if not _said(reason, REASON_MAX):
        raise InvalidRequest(f"say how it was settled (1 to {REASON_MAX} printable characters)")
    if not _said(closed_by):
        raise InvalidRequest("say who closes it")
    return str(reason).strip(), str(closed_by).strip()


def _said(text: object, most: int | None = None) -> bool:
    """Whether an operator's words (why, who) are text with something in it, printable only (they go
    into the payment's history and the audit log: jsonb holds no NUL, no lone surrogate), and at
    most ``most`` characters."""
    return (isinstance(text, str) and bool(text.strip()) and text.isprintable()
            and (most is None or len(text) <= most))


async def _close_contradiction(conn: AsyncConnection, found: Payment, why: str, who: str) -> Flagged:
    payment = await store.get_payment(conn, found.public_id, lock=True)
    assert payment is not None
    flag = payment.provider_refs.get(CONTRADICTION)
    if not flag:
        if payment.provider_refs.get("needs_review") and not payment.status.is_final:
            raise NotDecidable(f"payment {payment.public_id} is {payment.status}, waiting for a verdict: "
                               "`sauti payment decide` settles it")
        raise NotDecidable(f"payment {payment.public_id} is {payment.status} and no provider contradicts it: "
                           "nothing to close")
    closed = {"flag": flag, "reason": why, "closed_by": who, "at": datetime.now(UTC).isoformat()}
    await conn.execute(sql(
        "UPDATE payments SET provider_refs = (provider_refs - 'contradiction') || CAST(:closed AS jsonb), "
        "updated_at = now() WHERE id = :id"), {"closed": json.dumps({CONTRADICTION_CLOSED: closed}), "id": payment.id})
    return Flagged(payment_reference(payment.id), payment.public_id, payment.kind, payment.status.value,
                   payment.amount, payment.provider, str(flag), payment.created_at, payment.updated_at)


async def _close_orphan(conn: AsyncConnection, checkout_id: str, why: str, who: str) -> Flagged:
    row = (await conn.execute(sql(
        "SELECT id, provider, payload, received_at FROM provider_events "
        f"WHERE provider = 'mpesa' AND event_key = :k AND {ORPHAN_FLAGGED} FOR UPDATE"), {"k": checkout_id})).first()
    payload = (json.loads(row.payload) if isinstance(row.payload, str) else row.payload) if row is not None else {}
    if row is None or payload.get("needs_review") in (None, False):
        raise UnknownPayment(f"no payment has the reference or id {checkout_id[:40]!r}, and no STK push nobody "
                             "recorded is flagged under that CheckoutRequestID")
    if payload.get("outcome") == "suspense":  # its money waits in suspense: releasing it answers the flag
        raise NotDecidable(f"the push {checkout_id[:40]} was parked in suspense ({payload.get('receipt')}): release "
                           "it with `sauti suspense credit` or `return`, which the suspense list shows")
    closed = {"flag": payload["needs_review"], "reason": why, "closed_by": who, "at": datetime.now(UTC).isoformat()}
    await conn.execute(sql(
        "UPDATE provider_events SET payload = (payload - 'needs_review') || CAST(:closed AS jsonb) WHERE id = :id"),
        {"closed": json.dumps({"review_closed": closed}), "id": row.id})
    return Flagged(checkout_id, checkout_id, "deposit", str(payload.get("outcome") or "pending"),
                   Money(int(payload.get("amount") or 0), Currency.KES), row.provider, str(payload["needs_review"]),
                   row.received_at, row.received_at, STK_ORPHAN)


async def find(engine: AsyncEngine, id_or_reference: str) -> Payment:
    """The payment a person names (its public id or short reference); `UnknownPayment` if none."""
    async with engine.connect() as conn:
        found = await store.find_payment(conn, id_or_reference.strip())
    if found is None:
        raise UnknownPayment(f"no payment has the reference or id {id_or_reference.strip()[:40]!r}")
    return found


async def decide(engine: AsyncEngine, resolver: Resolver, verdict: OperatorVerdict) -> Payment:
    """Apply an operator's verdict to a flagged payment (see the module's docstring); returns the
    payment as it now stands. Raises `UnknownPayment`, or `NotDecidable` saying why not."""
    found = await find(engine, verdict.payment_id)
    back = "nothing was credited" if found.kind == PaymentKind.DEPOSIT else "the money is back in the wallet"
    outcome = Verdict(
        verdict.succeeded, f"operator:{verdict.decided_by.strip()[:60]}",
        None if verdict.succeeded else "not_carried_out",
        None if verdict.succeeded else f"The provider did not carry out the payment; {back}.",
        {"decided_by": verdict.decided_by.strip(), "reason": verdict.reason.strip()},
        {"receipt": verdict.receipt} if verdict.receipt else {})
    summary = {"succeeded": verdict.succeeded, "decided_by": verdict.decided_by.strip(),
               "reason": verdict.reason.strip(), "receipt": verdict.receipt}
    if not verdict.succeeded and may_still_be_paid(found):
        return await _expire_first(engine, found, outcome, summary, verdict.decided_by.strip())
    payment, changed = await resolver.apply(
        found.public_id, outcome, event=(found.provider or "sauti", f"operator:{found.public_id}", "operator_verdict",
                                         summary),
        guard=lambda conn, payment: _decidable(conn, payment, verdict.receipt), after=lambda conn, decided: audit(
            conn, actor=verdict.decided_by.strip(), action="payment.decide", subject=decided.public_id,
            details=summary))
    assert payment is not None
    if not changed:  # a push whose money was booked as an orphan's: `Resolver.apply` flagged why
        raise NotDecidable(f"payment {found.public_id} was not changed: {payment.provider_refs.get('needs_review')}")
    return payment


async def _expire_first(engine: AsyncEngine, found: Payment, outcome: Verdict, summary: dict[str, object],
                        actor: str) -> Payment:
    """A failure verdict on a Wave deposit whose session may still be paid: Wave is asked to expire
    the session, and the job that asks applies ``outcome`` once Wave agrees (see the module's
    docstring). Audited now, as the verdict is given; returns the payment, still open."""
    async with engine.begin() as conn:
        payment = await store.get_payment(conn, found.public_id, lock=True)
        assert payment is not None
        await _decidable(conn, payment, None)
        await request_expiry(conn, payment, outcome)
        await audit(conn, actor=actor, action="payment.decide", subject=payment.public_id,
                    details={**summary, "pending": "Wave asked to expire the checkout session"})
        refreshed = await store.get_payment(conn, payment.public_id)
    assert refreshed is not None
    return refreshed


async def _decidable(conn: AsyncConnection, payment: Payment, receipt: str | None) -> None:
    """Refuse (`NotDecidable`) a verdict on a payment that is not waiting for one, or one that names
    a receipt another payment holds; called with the payment's row locked, in the verdict's
    transaction."""
    if payment.status.is_final:
        if payment.provider_refs.get(CONTRADICTION):
            raise NotDecidable(f"payment {payment.public_id} is {payment.status} already, and the provider said "
                               f"otherwise since ({payment.provider_refs[CONTRADICTION]}): no verdict moves its "
                               "money again; settle it by hand, then close the flag (sauti payment close-flag)")
        raise NotDecidable(f"payment {payment.public_id} is {payment.status} already: nothing to decide "
                           "(a refund undoes a succeeded one)")
    if not payment.provider_refs.get("needs_review"):
        raise NotDecidable(f"payment {payment.public_id} is not flagged for review: recovery is still on it "
                           "(it asks the provider every payments.recovery_interval_s)")
    if receipt is not None and payment.provider is not None and (
            holder := await store.holder_of_receipt(conn, payment.provider, receipt, other_than=payment.id)):
        raise NotDecidable(f"the receipt {receipt} is payment {holder}'s: one provider transaction settles one "
                           "payment")
    # FOR UPDATE, whatever their status: a worker claiming one of these jobs, or an operator's
    # `sauti outbox retry` of a parked one, waits for this transaction and then finds the payment
    # decided (every provider job does nothing unless its payment still waits for it).
    jobs = (await conn.execute(sql(
        "SELECT id, kind, status FROM outbox_jobs WHERE dedupe_key = ANY(:keys) ORDER BY id FOR UPDATE"),
        {"keys": [f"{job}:{payment.public_id}" for job in PROVIDER_REQUESTS]})).all()
    for job in jobs:
        if job.status == "pending":
            raise NotDecidable(f"payment {payment.public_id}: its {job.kind} job {job.id} is pending and may "
                               f"still reach the provider; wait for it, or park it first (sauti outbox park {job.id})")
        if job.status == "running":
            # Its request may be in flight: parking the row would not stop it (`outbox.park` refuses a
            # job under a live lease), so only the end of this attempt tells what reached the provider.
            raise NotDecidable(f"payment {payment.public_id}: its {job.kind} job {job.id} is running, its request "
                               "may be on its way to the provider; wait for this attempt to end, then look again")
