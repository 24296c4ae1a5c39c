"""What marks something for a person: the flags the review queue (`payments.review.flagged`) reads.

- ``needs_review`` on an **open** payment (in ``provider_refs``): the provider could not vouch for it.
  It stays open, its money held, out of recovery's rounds, until an operator's verdict
  (`payments.review.decide`) settles it or gives the money back.
- ``contradiction`` on a **final** payment: a provider's word that came after the payment was final,
  and contradicts it (M-Pesa paid a B2C whose money the operator had given back; an STK push
  succeeded after its deposit failed). Nothing moves by itself: money never moves twice on a
  provider's late word. A person settles it by hand, then closes the flag
  (`payments.review.close_flag`), which keeps what it said as ``contradiction_closed``. A second
  contradiction replaces the first's text (the provider events keep every delivery).
- ``needs_review`` in the recorded callback of an STK push nobody recorded (``provider_events``,
  kind ``stk_orphan``, `payments.stk_orphans`): M-Pesa may hold money no payment names. One parked
  in suspense is the suspense list's (`payments.suspense`), not the review queue's.

IMPORTANT: each is read through a partial index of its own (migration 0021 for the last two), so
the queue never reads the payments or the provider events.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from payments import payment_store as store
from payments.payment_store import Payment

NEEDS_REVIEW = "needs_review"
CONTRADICTION = "contradiction"
CONTRADICTION_CLOSED = "contradiction_closed"

#: The predicates of the partial indexes (migration 0021), written as they are so the planner uses them.
CONTRADICTED = "provider_refs ? 'contradiction'"
ORPHAN_FLAGGED = "kind = 'stk_orphan' AND payload ? 'needs_review'"
#: Open payments flagged (read through ``payments_open``).
OPEN_FLAGGED = "status IN ('created', 'pending', 'processing') AND provider_refs ? 'needs_review'"


def review_key(payment: Payment) -> str:
    """The key a flag on the payment goes under: ``needs_review`` while it is open (a verdict can
    settle it), ``contradiction`` once it is final (a person settles it by hand)."""
    return CONTRADICTION if payment.status.is_final else NEEDS_REVIEW


async def flag_payment(conn: AsyncConnection, payment: Payment, reason: str) -> Payment:
    """Flag the payment (whose row the caller locked) for a person, open or final (`review_key`)."""
    return await store.note(conn, payment, {review_key(payment): reason[:500]})


def review_reason(payment: Payment) -> str | None:
    """Why the payment waits for a person, or None: an open one's ``needs_review``, a final one's
    ``contradiction`` (a final payment's ``needs_review`` was settled by the verdict that ended it)."""
    reason = payment.provider_refs.get(review_key(payment))
    return str(reason) if reason else None
