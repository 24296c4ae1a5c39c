"""Wave deposits: what a checkout session says of its deposit, and how a deposit is ended early.

A Wave deposit waits on a checkout session whose link (``wave_launch_url``) the payer opens in the
Wave app. Per the contract a failed payment attempt (``checkout.session.payment_failed``,
``payment_status`` ``cancelled``: declined, not enough money, a blocked account) ends nothing: the
session stays ``open`` until it expires, and the payer may try again with the same link. So
(`WaveDeposits.apply_session`, for webhooks and recovery alike):

- a paid session (``succeeded``) credits the deposit; an ``expired`` one fails it: nothing can be
  taken with it any more;
- a failed attempt on an open session keeps the deposit processing. Its error is kept
  (``last_payment_error``), and the payer is told once that the payment was declined and that the
  same link works until the session expires (``sms.declined``): never "failed, nothing was taken"
  while the link can still be paid.

A deposit that must end before Wave expires its session by itself is ended through Wave
(`request_expiry`, the outbox job ``wave.checkout_expire``, `WaveDeposits.run_expire`): Wave is
asked to expire its session (every session made with our reference, when its id never reached us)
and the deposit fails only once Wave says they are expired; a session Wave refuses to expire because
it was paid meanwhile credits the deposit instead. That happens when recovery finds a session still
open past its own expiry, when recovery gives up on a checkout job that never got Wave's answer,
and on an operator's verdict that the deposit failed (`payments.review`).

IMPORTANT: a Wave deposit is never failed while one of its sessions can still be paid. Wave would
take the payer's money for a deposit we said failed, and a failed payment is never credited.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payments import payment_store as store
from payments.commands import PaymentKind
from payments.outbox import Job, PermanentJobError, enqueue, latest_job_of_payment
from payments.payment_settings import JOB_SMS, JOB_WAVE_EXPIRE, WAVE
from payments.payment_store import Payment
from payments.providers.errors import ProviderError
from payments.providers.wave import CheckoutSession, CheckoutStatus, WaveConflict, WaveNotFound
from payments.providers.wave import PaymentStatus as WavePaymentStatus
from payments.resolution import Resolver, Verdict
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus

#: `provider_refs` of a Wave deposit: the last failed payment attempt's ``{code, message}``, and
#: when its session's link expires (ISO 8601).
LAST_PAYMENT_ERROR = "last_payment_error"
LINK_EXPIRES_AT = "wave_expires_at"
#: `provider_refs`: what asked Wave to expire the deposit's session (recovery, an operator).
EXPIRY_REQUESTED = "wave_expiry_requested"
#: `provider_refs`: Wave says none of the deposit's sessions can be paid any more, yet the deposit
#: could not be settled by what they say (a person decides, and need not ask Wave again).
SESSIONS_CLOSED = "wave_sessions_closed"
#: The `Receipt` payload marker (and dedupe suffix) of the SMS telling a payer their attempt failed.
DECLINED = "declined"
#: Wave's default lifetime of a session (the contract), for one that does not say when it expires.
DEFAULT_SESSION_TTL = timedelta(minutes=30)
#: How long past its expiry a session Wave still calls open is left before Wave is asked to expire
#: it: Wave expires its sessions itself, and its clock and ours may disagree a little.
EXPIRY_GRACE = timedelta(minutes=2)


#: What the payer reads of a deposit whose link expired unpaid.
LINK_EXPIRED = "The Wave payment link expired; nothing was taken."


class SessionStillOpen(Exception):
    """Wave took the request to expire a session and still calls it open: the job is retried."""


def is_wave_checkout(payment: Payment) -> bool:
    """Whether the payment is a Wave deposit paid through a checkout session."""
    return (payment.kind == PaymentKind.DEPOSIT and payment.provider == WAVE
            and payment.provider_refs.get("source") is None)


def may_still_be_paid(payment: Payment) -> bool:
    """Whether an open Wave deposit may still have a session the payer can pay: failing it must go
    through Wave (`request_expiry`)."""
    return is_wave_checkout(payment) and not payment.status.is_final and not payment.provider_refs.get(SESSIONS_CLOSED)


def checkout_verdict(session: CheckoutSession, cause: str) -> Verdict | None:
    """What a session means for its deposit: credited (paid), failed (expired), or None while the
    payer may still pay with it (a failed attempt on an open session included)."""
    if session.succeeded:
        return Verdict(True, cause, refs={"transaction_id": session.transaction_id},
                       details={"checkout_status": session.checkout_status.value})
    if session.checkout_status is CheckoutStatus.EXPIRED:
        error = session.last_payment_error
        details = {"checkout_status": session.checkout_status.value}
        if error is None:
            return Verdict(False, cause, "expired", LINK_EXPIRED, details)
        # The last attempt's reason is the most useful one (not enough money, a blocked account).
        return Verdict(False, cause, error.code, f"{error.message} The Wave payment link has expired."[:200],
                       details)
    return None


def past_deadline(session: CheckoutSession, now: datetime, opened_at: datetime) -> bool:
    """Whether an open session should have expired by ``now``: its ``when_expires`` (or the
    contract's default lifetime from its creation, else from ``opened_at``) and `EXPIRY_GRACE`."""
    expires = session.when_expires or (session.when_created or opened_at) + DEFAULT_SESSION_TTL
    return now >= expires + EXPIRY_GRACE


def session_key(session: CheckoutSession) -> str:
    """The `provider_events` key of what a read of the session found (recovery, the expire job):
    one per state, so a declined attempt recorded first does not hide the session's expiry."""
    return f"{session.id}:{session.checkout_status.value}:{session.payment_status.value}"


async def request_expiry(conn: AsyncConnection, payment: Payment, ending: Verdict) -> int:
    """Enqueue, in the caller's transaction, the job that asks Wave to expire the deposit's session
    and then applies ``ending`` (a failure) once Wave agrees; returns its id. One such job per
    deposit at a time: while one waits or runs, it is the answer; after one ended without ending the
    deposit (parked), a new one."""
    key = f"{JOB_WAVE_EXPIRE}:{payment.public_id}"
    last = await latest_job_of_payment(conn, payment.public_id, JOB_WAVE_EXPIRE)
    if last is not None and last.status in ("pending", "running"):
        return last.id
    if last is not None:
        key = f"{key}:{last.id}"
    payload = {"payment": payment.public_id, "cause": ending.cause, "error_code": ending.error_code,
               "error_message": ending.error_message, "details": dict(ending.details)}
    job_id = await enqueue(conn, JOB_WAVE_EXPIRE, payload, dedupe_key=key)
    await store.note(conn, payment, {EXPIRY_REQUESTED: ending.cause})
    return job_id


class WaveDeposits:
    """Applies what Wave says of checkout sessions to their deposits, and ends deposits early
    through Wave (see the module's docstring)."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.engine = resolver.engine

    async def apply_session(self, session: CheckoutSession, *, cause: str, event_key: str) -> str:
        """Apply a session (a webhook's, recovery's read) to the deposit its client_reference names;
        returns ``credited``, ``failed``, ``declined`` (a failed attempt, the session still open),
        ``processing``, ``duplicate``, ``amount_mismatch`` (flagged) or ``unknown``."""
        public_id = session.client_reference or ""
        async with self.engine.connect() as conn:
            payment = await store.get_payment(conn, public_id)
        if payment is None or not is_wave_checkout(payment):
            log.warning("Wave checkout event for no deposit of ours")
            return "unknown"
        outcome = checkout_verdict(session, cause)
        if outcome is None:
            if session.payment_status is WavePaymentStatus.CANCELLED:
                return await self._declined(payment, session, event_key)
            return "processing"
        if outcome.succeeded and session.amount != payment.amount:
            await self.resolver.flag(public_id, f"Wave checkout amount {session.amount} differs")
            return "amount_mismatch"
        summary = {"session": session.id, "payment_status": session.payment_status.value}
        _, changed = await self.resolver.apply(public_id, outcome, event=(WAVE, event_key, "checkout", summary))
        if not changed:
            return "duplicate"
        return "credited" if outcome.succeeded else "failed"

    async def _declined(self, payment: Payment, session: CheckoutSession, event_key: str) -> str:
        """A failed attempt on a session still open: recorded once, its error kept, the payer told
        once that the same link works until the session expires. The deposit stays as it is."""
        error = session.last_payment_error
        summary = {"session": session.id, "payment_status": session.payment_status.value,
                   "error": error.code if error else None}
        refs: dict[str, Any] = {LAST_PAYMENT_ERROR: {"code": error.code if error else "cancelled",
                                                     "message": (error.message if error else "")[:200]}}
        if session.when_expires is not None:
            refs[LINK_EXPIRES_AT] = session.when_expires.isoformat()
        async with self.engine.begin() as conn:
            locked = await store.get_payment(conn, payment.public_id, lock=True)
            if locked is None or locked.status.is_final:
                return "duplicate"
            if not await store.record_provider_event(conn, WAVE, event_key, "checkout", summary, locked.id):
                return "duplicate"
            await store.note(conn, locked, refs)
            if session.when_expires is not None and session.when_expires > datetime.now(UTC):
                await self._tell_declined(conn, locked)
        return "declined"

    async def _tell_declined(self, conn: AsyncConnection, payment: Payment) -> None:
        """Enqueue the payer's "declined, try again until …" SMS, once per deposit (a payer who
        tries three times reads it once)."""
        if not (self.resolver.settings.sms_receipts and self.resolver.providers.sms is not None):
            return
        await enqueue(conn, JOB_SMS, {"payment": payment.public_id, "to": "payer", "status": payment.status.value,
                                      DECLINED: True},
                      dedupe_key=f"{JOB_SMS}:{payment.public_id}:payer:{DECLINED}")

    async def recover(self, payment: Payment, job_parked: bool) -> str:
        """Recovery's look at an open Wave deposit: its session read and applied; a session still
        open past its expiry, or a checkout job that gave up (a session may exist whose answer never
        reached us), is ended through Wave (`request_expiry`). Returns recovery's word (``resolved``,
        ``open``, ``review``)."""
        wave = self.resolver.providers.wave
        if wave is None:
            return "open"
        if payment.status is S.PROCESSING and payment.provider_ref:
            session = await wave.get_checkout_session(payment.provider_ref)
            done = await self.apply_session(session, cause="recovery", event_key=session_key(session))
            if done in ("credited", "failed"):
                return "resolved"
            if done == "amount_mismatch":
                return "review"
            if session.checkout_status is CheckoutStatus.OPEN and past_deadline(session, datetime.now(UTC),
                                                                                payment.created_at):
                await self._end(payment, Verdict(False, "recovery", "expired",
                                                 LINK_EXPIRED))
            return "open"
        if payment.status is S.CREATED and job_parked:
            # The checkout job gave up: Wave may have made a session whose answer was lost.
            await self._end(payment, Verdict(False, "recovery", "provider_unavailable",
                                             "Wave could not be reached; nothing was taken."))
        return "open"

    async def _end(self, payment: Payment, ending: Verdict) -> None:
        async with self.engine.begin() as conn:
            locked = await store.get_payment(conn, payment.public_id, lock=True)
            if locked is not None and not locked.status.is_final:
                await request_expiry(conn, locked, ending)

    async def run_expire(self, job: Job) -> None:
        """The ``wave.checkout_expire`` job: expire the deposit's session(s) at Wave, read them back,
        and credit the deposit if one was paid, fail it (with the payload's verdict) once every one
        is expired. Wave refusing to expire a session (409) is no error: the session says why.
        Retried while Wave cannot be reached or still calls a session open; a person is asked
        (flagged, job parked) when Wave has no such session or the attempts run out."""
        public_id = str(job.payload.get("payment", ""))
        async with self.engine.connect() as conn:
            payment = await store.get_payment(conn, public_id)
        if payment is None:
            raise PermanentJobError("the job names no known payment")
        if payment.status.is_final:
            return
        wave = self.resolver.providers.wave
        if wave is None:
            raise PermanentJobError("Wave is not configured")
        try:
            # Its own session, and any other Wave made with our reference (a checkout job's attempt
            # whose answer was lost): each could be paid.
            found = [s.id for s in await wave.search_checkout_sessions(public_id)]
            ids = list(dict.fromkeys([payment.provider_ref, *found] if payment.provider_ref else found))
            for session_id in ids:
                try:
                    await wave.expire_checkout_session(session_id)
                except WaveConflict:
                    pass  # not open any more: paid, or expired already
            sessions = [await wave.get_checkout_session(session_id) for session_id in ids]
            if any(s.checkout_status is CheckoutStatus.OPEN for s in sessions):
                raise SessionStillOpen("Wave still calls the session open")
        except WaveNotFound as exc:
            await self.resolver.flag(public_id, f"Wave has no such checkout session: {exc.message}"[:200])
            raise PermanentJobError(str(exc)) from exc
        except (ProviderError, SessionStillOpen) as exc:
            if job.is_last_attempt or (isinstance(exc, ProviderError) and not exc.retryable):
                await self.resolver.flag(public_id, f"Wave did not expire the deposit's checkout session "
                                         f"({type(exc).__name__}); run job {job.id} again (sauti outbox retry)")
                raise PermanentJobError(str(exc)) from exc
            raise
        paid = next((s for s in sessions if s.succeeded), None)
        if paid is not None:
            # The payer paid before Wave could expire the session: the money is ours to credit.
            done = await self.apply_session(paid, cause="wave_expire_refused", event_key=session_key(paid))
            if done == "amount_mismatch":
                await self._note(public_id, {SESSIONS_CLOSED: True})
            return
        if any(s.checkout_status is not CheckoutStatus.EXPIRED for s in sessions):
            # Complete yet not paid: no state the contract knows. Nothing can be paid with it any more.
            await self.resolver.flag(public_id, "Wave calls the checkout session complete but not paid")
            await self._note(public_id, {SESSIONS_CLOSED: True})
            raise PermanentJobError("a complete session that is not paid")
        payload = job.payload
        ending = Verdict(False, str(payload.get("cause") or "wave_expired"), payload.get("error_code") or "expired",
                         payload.get("error_message") or LINK_EXPIRED,
                         {**(payload.get("details") or {}), "expired_sessions": ids})

        async def same_sessions(conn: AsyncConnection, locked: Payment) -> None:
            # A checkout job run again meanwhile (an operator's retry) may have opened a session we
            # did not expire: look again rather than fail a deposit the payer can pay.
            if locked.provider_ref != payment.provider_ref:
                raise SessionStillOpen("the deposit has a session this job did not expire")

        try:
            await self.resolver.apply(public_id, ending, guard=same_sessions, event=(
                WAVE, f"{JOB_WAVE_EXPIRE}:{job.id}", "checkout_expired", {"sessions": ids}))
        except SessionStillOpen:
            if job.is_last_attempt:
                await self.resolver.flag(public_id, "the deposit got a new Wave session while its old one expired")
            raise

    async def _note(self, public_id: str, refs: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            payment = await store.get_payment(conn, public_id, lock=True)
            if payment is not None and not payment.status.is_final:
                await store.note(conn, payment, refs)
