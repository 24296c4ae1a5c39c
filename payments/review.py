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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
    JOB_WAVE_PAYOUT,
    JOB_WAVE_REFUND,
    JOB_WAVE_REVERSE,
)
from payments.payment_store import Payment
from payments.references import payment_reference
from payments.resolution import Resolver, Verdict

#: The outbox jobs that send a request to a provider (their dedupe key is ``<job>:<public_id>``);
#: status queries and SMS receipts move no money and are not among them.
PROVIDER_REQUESTS = (JOB_B2C, JOB_B2B, JOB_WAVE_PAYOUT, JOB_STK_PUSH, JOB_WAVE_CHECKOUT, JOB_REVERSAL,
                     JOB_WAVE_REFUND, JOB_WAVE_REVERSE)
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
        # Printable only: both go into the payment's history (jsonb: no NUL, no lone surrogate).
        if not isinstance(self.reason, str) or not self.reason.strip() or len(self.reason) > REASON_MAX \
                or not self.reason.isprintable():
            raise InvalidRequest(f"say why, from the provider's statement (1 to {REASON_MAX} printable "
                                 "characters)")
        if not isinstance(self.decided_by, str) or not self.decided_by.strip() or not self.decided_by.isprintable():
            raise InvalidRequest("say who decides")
        receipt = self.receipt.strip() if isinstance(self.receipt, str) else None
        if self.succeeded and not receipt:
            raise InvalidRequest("a payment the provider carried out needs its receipt (transaction id) "
                                 "from the statement")
        if receipt is not None and (len(receipt) > RECEIPT_MAX or not receipt.isprintable()):
            raise InvalidRequest(f"a receipt is 1 to {RECEIPT_MAX} printable characters")
        object.__setattr__(self, "receipt", receipt if self.succeeded else None)


@dataclass(frozen=True)
class Flagged:
    """One payment in the review queue; ``reference`` as people read it (`payments.references`)."""

    reference: str
    public_id: str
    kind: str
    status: str
    amount: Money
    provider: str | None
    reason: str
    open_since: datetime
    flagged_at: datetime


async def flagged(engine: AsyncEngine, *, limit: int = 100) -> list[Flagged]:
    """Open payments flagged for a person, the longest waiting first."""
    async with engine.connect() as conn:
        rows = await conn.execute(sql(
            "SELECT id, public_id, kind, status, amount, currency, provider, provider_refs->>'needs_review' AS reason, "
            "created_at, updated_at FROM payments WHERE status IN ('created', 'pending', 'processing') "
            "AND provider_refs ? 'needs_review' ORDER BY created_at, id LIMIT :limit"), {"limit": limit})
        return [Flagged(payment_reference(r.id), r.public_id, r.kind, r.status, Money(r.amount, Currency(r.currency)),
                        r.provider, r.reason, r.created_at, r.updated_at) for r in rows]


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


async def _decidable(conn: AsyncConnection, payment: Payment, receipt: str | None) -> None:
    """Refuse (`NotDecidable`) a verdict on a payment that is not waiting for one, or one that names
    a receipt another payment holds; called with the payment's row locked, in the verdict's
    transaction."""
    if payment.status.is_final:
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
