"""Provider deliveries and recovery: parsed callbacks and webhooks in, verdicts applied once.

Each ``on_*`` takes a payload already parsed (and, for Wave, verified) by `payments.providers`, finds
its payment by the provider's id for it, and hands a `Verdict` to `Resolver.apply`, which records the
delivery in `provider_events` in the transaction that applies it: duplicates, late and out-of-order
deliveries change nothing. Each returns a word saying what it did (for logs and tests).

`recover_stuck` asks the providers about payments left open too long: STK pushes by STK query, Wave
payouts by our reference, Wave checkouts by session; M-Pesa payouts (whose status query answers by
callback) are flagged ``needs_review`` for reconciliation against the statement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from payments import payment_store as store
from payments.commands import PaymentKind
from payments.payment_settings import (
    JOB_B2C,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_PAYOUT,
    MPESA,
    WAVE,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.providers.daraja import StkState
from payments.providers.daraja_callbacks import DarajaResult, QueueTimeout, StkCallback
from payments.providers.errors import ProviderError
from payments.providers.wave import CheckoutSession, CheckoutStatus, Payout
from payments.providers.wave import PaymentStatus as WavePaymentStatus
from payments.providers.wave_webhooks import WaveEvent
from payments.resolution import Resolver, Verdict, daraja_failure
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus


@dataclass(frozen=True)
class RecoveryReport:
    examined: int = 0
    resolved: int = 0
    still_open: int = 0
    needs_review: int = 0


class ProviderResults:
    """Callbacks, webhooks and recovery sweeps, each turned into a `Verdict` for the `Resolver`."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, settings: PaymentSettings,
                 providers: ProviderClients) -> None:
        self.engine = engine
        self.resolver = resolver
        self.settings = settings
        self.providers = providers

    async def on_stk_callback(self, callback: StkCallback) -> str:
        """Apply an STK push callback; returns what happened (for logs and tests): ``credited``,
        ``failed``, ``duplicate``, ``unconfirmed`` (the query does not confirm it yet: recovery asks
        again), ``unknown`` (not our push, or it arrived before the push was recorded)."""
        async with self.engine.connect() as conn:
            payment = await store.find_by_provider_ref(conn, MPESA, callback.checkout_request_id)
        if payment is None:
            log.warning("STK callback for an unknown CheckoutRequestID; recovery will query it")
            return "unknown"
        if payment.status.is_final:
            return "duplicate"
        summary = {"result_code": callback.result_code, "receipt": callback.receipt,
                   "amount": callback.amount.minor if callback.amount else None}
        if callback.succeeded:
            if callback.amount is not None and callback.amount != payment.amount:
                await self.resolver.flag(payment.public_id, f"STK callback amount {callback.amount} differs")
                return "amount_mismatch"
            outcome = await self._confirm_stk(payment, callback)
            if outcome is None:
                return "unconfirmed"
        else:
            outcome = daraja_failure(callback.result_code, callback.result_desc, "stk_callback")
        _, changed = await self.resolver.apply(payment.public_id, outcome,
                                       event=(MPESA, callback.checkout_request_id, "stk_callback", summary))
        if not changed:
            return "duplicate"
        return "credited" if outcome.succeeded else "failed"

    async def _confirm_stk(self, payment: Payment, callback: StkCallback) -> Verdict | None:
        refs = {"receipt": callback.receipt}
        if not self.settings.confirm_stk_with_query:
            return Verdict(True, "stk_callback", refs=refs)
        daraja = self.providers.daraja
        if daraja is None:
            return None
        try:
            answer = await daraja.stk_query(callback.checkout_request_id)
        except ProviderError as exc:
            log.warning("STK query for payment %s failed (%s); left for recovery", payment.public_id,
                        type(exc).__name__)
            return None
        if answer.state is StkState.PENDING:
            return None
        if answer.state is StkState.SUCCEEDED:
            return Verdict(True, "stk_callback_confirmed", refs=refs, details={"query_result_code": 0})
        # The callback claimed success and the query says otherwise: believe the query.
        return daraja_failure(answer.result_code or -1, answer.result_desc, "stk_query")

    async def on_b2c_result(self, result: DarajaResult) -> str:
        """Apply a B2C Result (our public_id is its OriginatorConversationID): settle or unwind."""
        if not result.is_final:
            return "partial"
        summary = {"result_code": result.result_code, "receipt": result.receipt,
                   "conversation_id": result.conversation_id}
        if result.succeeded:
            outcome = Verdict(True, "b2c_result", details={"result_code": 0},
                               refs={"receipt": result.receipt, "conversation_id": result.conversation_id})
        else:
            outcome = daraja_failure(result.result_code, result.result_desc, "b2c_result")
        applied, changed = await self.resolver.apply(result.originator_conversation_id, outcome,
                                             event=(MPESA, result.originator_conversation_id, "b2c_result", summary))
        if applied is None:
            log.warning("B2C result for an unknown OriginatorConversationID")
            return "unknown"
        if not changed:
            return "duplicate"
        return "settled" if outcome.succeeded else "unwound"

    async def on_b2c_queue_timeout(self, notice: QueueTimeout) -> str:
        """Daraja gave up queueing a B2C: its outcome is unknown (it may still be paid). Never resend
        blindly: flag it; the statement (reconciliation) or a late result decides."""
        async with self.engine.begin() as conn:
            payment = await store.get_payment(conn, notice.originator_conversation_id, lock=True)
            if payment is None:
                return "unknown"
            if not await store.record_provider_event(conn, MPESA, notice.originator_conversation_id,
                                                     "b2c_queue_timeout", {"result_code": notice.result_code},
                                                     payment.id):
                return "duplicate"
            if not payment.status.is_final:
                await store.note(conn, payment, {"needs_review": "B2C queue timeout"})
        return "needs_review"

    async def on_wave_payout_update(self, payout: Payout, *, cause: str = "wave_payout_update",
                                    event_id: str | None = None) -> str:
        """Apply what Wave says of a payout (a GET, a webhook with ``event_id``)."""
        return await self.resolver.apply_wave_payout(payout, cause=cause, event_id=event_id)

    async def on_wave_event(self, event: WaveEvent) -> str:
        """Apply a verified Wave webhook (`wave_webhooks.verify_webhook`), deduplicated on its event
        id. Checkout events settle Wave deposits; other types are acknowledged and ignored."""
        if not event.type.startswith("checkout.session."):
            return "ignored"
        return await self._apply_checkout(event.checkout_session(), cause=event.type.replace(".", "_"),
                                          event_key=event.id)

    async def _apply_checkout(self, session: CheckoutSession, *, cause: str, event_key: str) -> str:
        public_id = session.client_reference or ""
        if session.succeeded:
            outcome = Verdict(True, cause, refs={"transaction_id": session.transaction_id},
                               details={"checkout_status": session.checkout_status.value})
        elif session.payment_status is WavePaymentStatus.CANCELLED or session.checkout_status is CheckoutStatus.EXPIRED:
            error = session.last_payment_error
            outcome = Verdict(False, cause, error.code if error else "expired",
                               (error.message if error else "The Wave payment link expired.")[:200],
                               {"checkout_status": session.checkout_status.value})
        else:
            return "processing"
        async with self.engine.connect() as conn:
            payment = await store.get_payment(conn, public_id)
        if payment is None or payment.kind != PaymentKind.DEPOSIT or payment.provider != WAVE:
            log.warning("Wave checkout event for no deposit of ours")
            return "unknown"
        if outcome.succeeded and session.amount != payment.amount:
            await self.resolver.flag(public_id, f"Wave checkout amount {session.amount} differs")
            return "amount_mismatch"
        summary = {"session": session.id, "payment_status": session.payment_status.value}
        _, changed = await self.resolver.apply(public_id, outcome, event=(WAVE, event_key, "checkout", summary))
        if not changed:
            return "duplicate"
        return "credited" if outcome.succeeded else "failed"

    async def recover_stuck(self, older_than: timedelta, *, limit: int = 200) -> RecoveryReport:
        """Ask the providers about payments left open longer than ``older_than`` and resolve them:
        STK pushes by STK query, Wave payouts by searching our reference. M-Pesa payouts have no
        synchronous status query (Daraja answers it by callback): they are flagged ``needs_review``
        for reconciliation against the statement."""
        async with self.engine.connect() as conn:
            stuck = await store.open_payments(conn, older_than.total_seconds(), limit=limit)
        resolved = still_open = review = 0
        for payment in stuck:
            try:
                result = await self._recover(payment)
            except ProviderError as exc:
                log.warning("recovery of payment %s: provider error %s", payment.public_id, type(exc).__name__)
                result = "open"
            resolved += result == "resolved"
            still_open += result == "open"
            review += result == "review"
        return RecoveryReport(len(stuck), resolved, still_open, review)

    async def _recover(self, payment: Payment) -> str:
        if payment.provider_refs.get("needs_review"):
            return "review"  # a person decides; recovery must not guess over them
        daraja, wave = self.providers.daraja, self.providers.wave
        job_parked = await self._job_parked(payment)
        if payment.kind == PaymentKind.DEPOSIT and payment.provider == WAVE:
            if payment.status is S.PROCESSING and payment.provider_ref and wave is not None:
                session = await wave.get_checkout_session(payment.provider_ref)
                done = await self._apply_checkout(session, cause="recovery",
                                                  event_key=f"{session.id}:{session.payment_status.value}")
                return "open" if done == "processing" else "resolved"
            if payment.status is S.CREATED and job_parked:
                await self._gave_up(payment, "Wave could not be reached; nothing was taken.")
                return "resolved"
            return "open"
        if payment.kind == PaymentKind.DEPOSIT:
            if payment.status is S.CREATED and job_parked:
                # The push was never accepted (the job gave up): nothing was asked of the payer.
                await self._gave_up(payment, "M-Pesa could not be reached; nothing was taken.")
                return "resolved"
            if payment.status is not S.PROCESSING or payment.provider_ref is None or daraja is None:
                return "open"  # the push job has not run yet: the outbox will run it
            answer = await daraja.stk_query(payment.provider_ref)
            if answer.state is StkState.PENDING:
                return "open"
            outcome = Verdict(True, "status_query") if answer.state is StkState.SUCCEEDED else \
                daraja_failure(answer.result_code or -1, answer.result_desc, "status_query")
            await self.resolver.apply(payment.public_id, outcome)
            return "resolved"
        if payment.provider == WAVE and wave is not None:
            found = await wave.search_payouts(payment.public_id)
            if found:
                await self.on_wave_payout_update(found[0], cause="recovery")
                return "resolved"
            if job_parked:
                # Wave has no payout with our reference and our job gave up: it never happened.
                await self._gave_up(payment, "Wave could not be reached; the money is back.")
                return "resolved"
            return "open"  # never reached Wave yet: the payout job (same key) will send it
        if payment.provider == MPESA:
            # No synchronous B2C status: the statement (reconciliation) decides, not a guess.
            await self.resolver.flag(payment.public_id, "no B2C result received; check the M-Pesa statement")
            return "review"
        return "open"

    async def _gave_up(self, payment: Payment, message: str) -> None:
        await self.resolver.apply(payment.public_id, Verdict(False, "recovery", "provider_unavailable", message))

    async def _job_parked(self, payment: Payment) -> bool:
        """Whether the outbox job that should reach the provider for this payment gave up."""
        deposit_job = JOB_STK_PUSH if payment.provider == MPESA else JOB_WAVE_CHECKOUT
        job = {S.CREATED: deposit_job}.get(payment.status) if payment.kind == PaymentKind.DEPOSIT else \
            (JOB_B2C if payment.provider == MPESA else JOB_WAVE_PAYOUT)
        if job is None:
            return False
        async with self.engine.connect() as conn:
            return await store.job_status(conn, f"{job}:{payment.public_id}") == "parked"
