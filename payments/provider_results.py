"""Provider deliveries and recovery: parsed callbacks and webhooks in, verdicts applied once.

Each ``on_*`` takes a payload already parsed (and, for Wave, verified) by `payments.providers`, finds
its payment by the provider's id for it, and hands a `Verdict` to `Resolver.apply`, which records the
delivery in `provider_events` in the transaction that applies it: duplicates, late and out-of-order
deliveries change nothing. Each returns a word saying what it did (for logs and tests).

`recover_stuck` asks the providers about payments left open too long: STK pushes by STK query, Wave
payouts by our reference, Wave checkouts by session (`payments.wave_deposits`: a failed attempt on a
session still open fails nothing, and a deposit that must end is ended through Wave's expire
endpoint first), Wave payout reversals by payout; M-Pesa payouts
(B2C, B2B), reversals and C2B payments by a Daraja transaction status query, whose answer comes by
callback (`on_status_result`): "Completed" settles, anything M-Pesa cannot vouch for is flagged
``needs_review`` for a person and the statement, never guessed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.commands import B2B_KINDS, B2C_KINDS, PaymentKind
from payments.outbox import enqueue, latest_job_of_payment
from payments.payment_settings import (
    BOOKED_BY,
    JOB_B2B,
    JOB_B2C,
    JOB_REVERSAL,
    JOB_STATUS_QUERY,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_PAYOUT,
    JOB_WAVE_REVERSE,
    MPESA,
    WAVE,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.provider_jobs import (
    B2B_IN_FLIGHT,
    STATUS_QUERY_SENT,
    STK_ANSWER_LOST,
    UNCONFIRMED,
    status_query_ids,
)
from payments.providers.daraja import STK_STILL_PROCESSING, StkState
from payments.providers.daraja_callbacks import DarajaResult, QueueTimeout, StkCallback
from payments.providers.errors import ProviderError
from payments.providers.wave import CheckoutSession, Payout, PayoutStatus
from payments.providers.wave_webhooks import WaveEvent
from payments.resolution import Resolver, Verdict, daraja_failure
from payments.review_flags import CONTRADICTION
from payments.states import PaymentStatus
from payments.stk_orphans import StkOrphans
from payments.wave_deposits import WaveDeposits

log = logging.getLogger(__name__)

S = PaymentStatus

#: Status Result codes saying M-Pesa has no such transaction. Daraja's own code for it is not in the
#: contract: this is the sandbox's (`payments.sandbox.daraja_server`); any other failing code is
#: taken as "the query failed", and the question is asked again later.
_NOT_FOUND: frozenset[int | str] = frozenset({"R000001"})
#: Reversal Result code saying the transaction was already reversed (sandbox convention too): the
#: money went back, which is what the refund wanted, so it counts as the reversal's success.
_ALREADY_REVERSED: frozenset[int | str] = frozenset({"R000002"})
#: STK callback ResultCodes that are no answer: "still under processing" (the payer still has the
#: prompt), which the STK query takes for pending too; the contract's other callback codes (0, 1,
#: 1019, 1025, 1032, 1037, 2001, 9999) are final.
STK_NOT_FINAL: frozenset[int] = frozenset({STK_STILL_PROCESSING})

Event = tuple[str, str, str, Mapping[str, Any]]


@dataclass(frozen=True)
class RecoveryReport:
    examined: int = 0
    resolved: int = 0
    still_open: int = 0
    #: Open payments waiting for a person after the round: flagged by it or before it (recovery
    #: leaves those out, `payment_store.open_payments`, so they are counted apart).
    needs_review: int = 0
    #: Payments about which a Daraja status query was sent (its answer comes by callback).
    queried: int = 0
    #: Payments whose recovery failed on an unexpected error (logged with the payment's id); the
    #: next round tries them again.
    errors: int = 0
    #: STK pushes nobody recorded, still unconfirmed after their job gave up, asked about again
    #: (`StkOrphans.retry_parked`).
    orphans_retried: int = 0


#: Open payments flagged for a person (read through ``payments_open``, as `payment_store.open_payments`).
_FLAGGED_OPEN = sql("SELECT count(*) FROM payments WHERE status IN ('created', 'pending', 'processing') "
                    "AND provider_refs ? 'needs_review'")

#: Pauses between looks for a Result's payment (about 3 s in all), then give up (None).
_ANSWER_GRACE_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.5, None)


class ProviderResults:
    """Callbacks, webhooks and recovery sweeps, each turned into a `Verdict` for the `Resolver`."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, settings: PaymentSettings,
                 providers: ProviderClients, orphans: StkOrphans) -> None:
        self.engine = engine
        self.resolver = resolver
        self.settings = settings
        self.providers = providers
        self.orphans = orphans
        self.wave_deposits = WaveDeposits(resolver)

    async def on_stk_callback(self, callback: StkCallback) -> str:
        """Apply an STK push callback; returns what happened (for logs and tests): ``credited``,
        ``failed``, ``duplicate``, ``unconfirmed`` (the query does not confirm it yet: recovery asks
        again), ``pending`` (a code that is no answer, `STK_NOT_FINAL`: recorded, the deposit left
        open for the next callback or recovery's STK query), ``needs_review`` (a word that
        contradicts the final deposit: flagged, nothing moved), ``receipt_kept`` (a success for a
        deposit credited without its receipt); for a push no payment names (its id
        was never recorded, or not yet), what `StkOrphans.record` did: ``orphan`` (a success, kept
        to be confirmed and credited) or ``ignored`` (a failure).

        Each delivery is recorded under its ResultCode (`_stk_event_kind`): a duplicate is one with
        the same code, so an answer after a non-answer, or a success after a failure, is heard."""
        # The push job records the CheckoutRequestID once Daraja has answered; a callback can beat it.
        payment = await self._found_soon(lambda conn: store.find_by_provider_ref(
            conn, MPESA, callback.checkout_request_id))
        summary = {"result_code": callback.result_code, "receipt": callback.receipt,
                   "amount": callback.amount.minor if callback.amount else None}
        if callback.result_code in STK_NOT_FINAL:
            # IMPORTANT: not a failure. Failing the deposit here lost the payer's money when the
            # real success followed (the deposit final, the success dropped).
            return await self._stk_not_final(payment, callback, summary)
        if payment is None:
            return await self.orphans.record(callback)
        if callback.succeeded and callback.amount is not None and callback.amount != payment.amount:
            # Final or not: M-Pesa took an amount we did not ask for.
            await self.resolver.flag(payment.public_id, f"STK callback amount {callback.amount} differs "
                                     f"(receipt {callback.receipt}) while {payment.status}", even_if_final=True)
            return "amount_mismatch"
        if not callback.succeeded:
            outcome = daraja_failure(callback.result_code, callback.result_desc, "stk_callback")
        elif payment.status.is_final:
            # A deposit already final (by an earlier callback, recovery's STK query or an operator)
            # is never examined again, so no STK query first: this is the last word anyone hears, and
            # `Resolver.apply` moves nothing on it. A success on a failed deposit is flagged
            # (``contradiction``, with the receipt) for a person, who books the receipt from the
            # statement; on a succeeded one its receipt is kept if it had none (credited by STK
            # query), so that no booking by hand credits it again. A failure on a succeeded one is
            # flagged too (we credited money M-Pesa says it never took).
            outcome = Verdict(True, "stk_callback", refs={"receipt": callback.receipt})
        else:
            outcome = await self._confirm_stk(payment, callback)
            if outcome is None:
                return "unconfirmed"
        event: Event = (MPESA, callback.checkout_request_id, _stk_event_kind(callback.result_code), summary)
        applied, changed = await self.resolver.apply(payment.public_id, outcome, event=event)
        if not changed:
            return _unchanged(payment, applied)
        return "credited" if outcome.succeeded else "failed"

    async def _stk_not_final(self, payment: Payment | None, callback: StkCallback, summary: Mapping[str, Any]) -> str:
        """Record a callback that answers nothing (`STK_NOT_FINAL`), and change nothing: the push's
        next callback, or recovery's STK query, says how it ended. For a push no payment names, the
        orphan's own record waits for its real callback (`payments.stk_orphans`)."""
        async with self.engine.begin() as conn:
            if not await store.record_provider_event(conn, MPESA, callback.checkout_request_id,
                                                     _stk_event_kind(callback.result_code), summary,
                                                     payment.id if payment is not None else None):
                return "duplicate"
        log.info("STK callback %s (%s) for payment %s: not an answer; left open", callback.result_code,
                 callback.result_desc[:80], payment.public_id if payment is not None else "(none yet)")
        return "pending"

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
        """Apply a B2C Result (our public_id is its OriginatorConversationID): settle or unwind.

        IMPORTANT: only to an M-Pesa B2C payout, for its amount. The id is ours and any payment has
        one: a Result naming a deposit would otherwise credit it with no STK query (and none is
        asked of a Result), and one for another amount would settle what M-Pesa did not pay."""
        if not result.is_final:
            return "partial"
        async with self.engine.connect() as conn:
            payment = await store.get_payment(conn, result.originator_conversation_id)
        if payment is None or payment.provider != MPESA or payment.kind not in B2C_KINDS:
            log.warning("B2C result for an unknown OriginatorConversationID, or a payment no B2C paid")
            return "unknown"
        if result.succeeded and result.amount is not None and result.amount != payment.amount:
            # Final or not: M-Pesa paid an amount we did not book (a final payout's money moved already).
            await self.resolver.flag(payment.public_id, f"b2c_result amount {result.amount} differs",
                                     even_if_final=True)
            return "amount_mismatch"
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
            return _unchanged(payment, applied)
        return "settled" if outcome.succeeded else "unwound"

    async def _found_soon(self, lookup: Callable[[AsyncConnection], Awaitable[Payment | None]]) -> Payment | None:
        """The payment a Result names by the ConversationID of Daraja's synchronous answer. That
        answer is recorded by the job that sent the request, and a Result can beat it (the contract
        lists "callback before the answer"): look again for a moment before calling it unknown
        (recovery's status query is the backstop)."""
        for pause in _ANSWER_GRACE_S:
            async with self.engine.connect() as conn:
                found = await lookup(conn)
            if found is not None or pause is None:
                return found
            await asyncio.sleep(pause)
        return None

    async def on_b2b_result(self, result: DarajaResult) -> str:
        """Apply a B2B Result: settle or unwind a bill payment / till purchase. Daraja chose the
        request's ids, so the payment is found by the ConversationID its answer gave us; a Result
        that beats that answer is ``unknown`` here, and recovery's status query settles it."""
        return await self._apply_result(result, "b2b_result", B2B_KINDS, ("settled", "unwound"))

    async def on_reversal_result(self, result: DarajaResult) -> str:
        """Apply a reversal Result to the refund that asked for it: the wallet's money in clearing
        goes to the provider (success) or back to the wallet (failure)."""
        return await self._apply_result(result, "reversal_result", {PaymentKind.REFUND}, ("reversed", "failed"))

    async def _apply_result(self, result: DarajaResult, kind: str, kinds: Collection[str],
                            words: tuple[str, str]) -> str:
        """Apply a B2B or reversal Result to the payment whose ConversationID it carries; ``words``
        say what a success and a failure did."""
        if not result.is_final:
            return "partial"

        async def lookup(conn: AsyncConnection) -> Payment | None:
            found = await store.find_by_provider_ref(conn, MPESA, result.conversation_id)
            return found if found is not None and found.kind in kinds else None

        payment = await self._found_soon(lookup)
        if payment is None:
            log.warning("%s for an unknown ConversationID; recovery will query it", kind)
            return "unknown"
        summary = {"result_code": result.result_code, "receipt": result.receipt,
                   "amount": result.amount.minor if result.amount else None}
        if result.succeeded or (result.result_code in _ALREADY_REVERSED and kind == "reversal_result"):
            if result.succeeded and result.amount is not None and result.amount != payment.amount:
                await self.resolver.flag(payment.public_id, f"{kind} amount {result.amount} differs",
                                         even_if_final=True)
                return "amount_mismatch"
            outcome = Verdict(True, kind, details={"result_code": result.result_code},
                              refs={"receipt": result.receipt} if result.succeeded else {})
        else:
            outcome = daraja_failure(result.result_code, result.result_desc, kind)
        applied, changed = await self.resolver.apply(payment.public_id, outcome,
                                                     event=(MPESA, result.conversation_id, kind, summary))
        if not changed:
            return _unchanged(payment, applied)
        return words[0] if outcome.succeeded else words[1]

    async def on_b2b_queue_timeout(self, notice: QueueTimeout) -> str:
        """A B2B that timed out in Daraja's queue: outcome unknown, flagged, never resent."""
        return await self._queue_timeout(notice, "b2b_queue_timeout")

    async def on_reversal_queue_timeout(self, notice: QueueTimeout) -> str:
        """A reversal that timed out in Daraja's queue: flagged; the wallet's money stays in clearing."""
        return await self._queue_timeout(notice, "reversal_queue_timeout")

    async def _queue_timeout(self, notice: QueueTimeout, kind: str) -> str:
        async with self.engine.begin() as conn:
            found = None
            if notice.conversation_id:
                found = await store.find_by_provider_ref(conn, MPESA, notice.conversation_id, lock=True)
            if found is None:
                return "unknown"
            if not await store.record_provider_event(conn, MPESA, notice.conversation_id or "", kind,
                                                     {"result_code": notice.result_code}, found.id):
                return "duplicate"
            if not found.status.is_final:
                await store.note(conn, found, {"needs_review": kind.replace("_", " ")})
        return "needs_review"

    async def on_status_result(self, result: DarajaResult) -> str:
        """Apply the answer to a transaction status query we sent (found by the query's
        ConversationID): ``Completed`` settles a payout or reversal and credits a C2B payment;
        "no such transaction" fails a C2B payment (nothing was credited) and flags anything else;
        a query that failed leaves the payment open for the next sweep."""
        if not result.is_final:
            return "partial"
        payment = await self._found_soon(lambda conn: store.payment_of_provider_event(
            conn, MPESA, result.conversation_id, STATUS_QUERY_SENT))
        if payment is None:
            log.warning("status Result for a query we did not send")
            return "unknown"
        summary = {"result_code": result.result_code, "status": result.transaction_status,
                   "receipt": result.receipt if result.succeeded else None,
                   "amount": result.amount.minor if result.amount else None}
        event: Event = (MPESA, result.conversation_id, "status_result", summary)
        ours = self.providers.daraja.shortcode if self.providers.daraja is not None else None
        outcome, review = _status_verdict(payment, result, shortcode=ours)
        if outcome is None:
            return await self._record_only(payment, event, review)
        _, changed = await self.resolver.apply(payment.public_id, outcome, event=event)
        if not changed:
            return "duplicate"
        return "succeeded" if outcome.succeeded else "failed"

    async def on_status_queue_timeout(self, notice: QueueTimeout) -> str:
        """A status query that timed out in Daraja's queue: nothing changes; the next sweep asks again."""
        log.info("a Daraja status query timed out in its queue; recovery will ask again")
        return "noted"

    async def _record_only(self, payment: Payment, event: Event, review: str | None) -> str:
        """Record a delivery that decides nothing, flagging the payment when a person must look."""
        provider, key, kind, summary = event
        async with self.engine.begin() as conn:
            locked = await store.get_payment(conn, payment.public_id, lock=True)
            assert locked is not None
            if not await store.record_provider_event(conn, provider, key, kind, summary, locked.id):
                return "duplicate"
            if review is None or locked.status.is_final:
                return "open"
            await store.note(conn, locked, {"needs_review": review})
        return "needs_review"

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
        id. Checkout events settle Wave deposits (``checkout.session.payment_failed`` only records a
        failed attempt: the session stays open for the payer); other types are acknowledged and ignored."""
        if not event.type.startswith("checkout.session."):
            return "ignored"
        return await self._apply_checkout(event.checkout_session(), cause=event.type.replace(".", "_"),
                                          event_key=event.id)

    async def _apply_checkout(self, session: CheckoutSession, *, cause: str, event_key: str) -> str:
        """A session to its deposit (`WaveDeposits.apply_session`): a failed attempt on a session
        still open is no failure of the deposit (``declined``): the payer may pay with the same link."""
        return await self.wave_deposits.apply_session(session, cause=cause, event_key=event_key)

    async def recover_stuck(self, older_than: timedelta, *, limit: int = 200) -> RecoveryReport:
        """Ask the providers about payments left open longer than ``older_than`` and resolve them:
        STK pushes by STK query, Wave payouts by searching our reference, Wave payout reversals by
        the payout. M-Pesa payouts, reversals and C2B payments get a transaction status query (an
        outbox job; Daraja answers by callback), at most once per ``older_than`` each, since sending
        one touches the payment. Payments flagged for a person are left to that person, not examined.
        STK pushes nobody recorded whose confirming job gave up get a fresh one."""
        async with self.engine.connect() as conn:
            stuck = await store.open_payments(conn, older_than.total_seconds(), limit=limit)
        try:
            orphans = await self.orphans.retry_parked(limit=limit)
        except Exception:  # like one payment's: never stalls the round (the next one tries again)
            log.exception("recovery of STK pushes with no record failed; the payments go on")
            orphans = 0
        counts = {"resolved": 0, "open": 0, "review": 0, "queried": 0, "errors": 0}
        for payment in stuck:
            try:
                result = await self._recover(payment)
            except ProviderError as exc:
                log.warning("recovery of payment %s: provider error %s", payment.public_id, type(exc).__name__)
                result = "open"
            except Exception:
                # IMPORTANT: one payment that cannot be recovered (a bug, bad data) must not stall the
                # others: the round goes on, and this one is tried again next round.
                log.exception("recovery of payment %s failed; the others go on", payment.public_id)
                result = "errors"
            counts[result] += 1
        async with self.engine.connect() as conn:
            waiting = (await conn.execute(_FLAGGED_OPEN)).scalar_one()
        return RecoveryReport(len(stuck), counts["resolved"], counts["open"], waiting, counts["queried"],
                              counts["errors"], orphans)

    async def _recover(self, payment: Payment) -> str:
        if payment.provider_refs.get("needs_review"):
            return "review"  # a person decides; recovery must not guess over them
        daraja, wave = self.providers.daraja, self.providers.wave
        job_parked = await self._job_parked(payment)
        if payment.kind == PaymentKind.REFUND:
            return await self._recover_refund(payment, job_parked)
        if payment.kind == PaymentKind.DEPOSIT and payment.provider_refs.get("source") == "c2b":
            return await self._ask_status(payment)  # a C2B payment waiting for its confirmation
        if payment.kind == PaymentKind.DEPOSIT and payment.provider == WAVE:
            # Never failed while its session may still be paid: ended through Wave if it must end.
            return await self.wave_deposits.recover(payment, job_parked)
        if payment.kind == PaymentKind.DEPOSIT:
            if payment.status is S.CREATED and job_parked:
                if payment.provider_refs.get(STK_ANSWER_LOST):
                    # IMPORTANT: the push may have reached the payer's phone and been paid; its
                    # answer, whose CheckoutRequestID an STK query needs, was lost, so M-Pesa cannot
                    # be asked. Never "nothing was taken": a paid push's callback is credited on its
                    # own (`payments.stk_orphans`), and the payer is told so.
                    await self.resolver.apply(payment.public_id, Verdict(
                        False, "recovery", UNCONFIRMED,
                        "M-Pesa did not answer the payment request; if you paid, the money will reach your wallet."))
                    return "resolved"
                # Every attempt failed before reaching M-Pesa (the job retries only those, and stops
                # at a push whose answer was lost): nothing was asked of the payer.
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
            return await self._recover_mpesa_payout(payment, job_parked)
        return "open"

    async def _recover_mpesa_payout(self, payment: Payment, job_parked: bool) -> str:
        """A B2C or B2B payout without a result. Still pending: its job will send it, unless the job
        gave up, when a B2B that certainly never reached M-Pesa is unwound and anything else is
        asked about. Processing: asked about by status query."""
        if payment.status is S.PENDING and not job_parked:
            return "open"
        if payment.status is S.PENDING and payment.kind in B2B_KINDS and not payment.provider_refs.get(B2B_IN_FLIGHT):
            await self._gave_up(payment, "M-Pesa could not be reached; the money is back.")
            return "resolved"
        return await self._ask_status(payment)

    async def _recover_refund(self, refund: Payment, job_parked: bool) -> str:
        job = refund.provider_refs.get("refund_job")
        if job == JOB_REVERSAL and refund.status is S.PROCESSING:
            return await self._ask_status(refund)
        if job == JOB_WAVE_REVERSE and job_parked and self.providers.wave is not None:
            # Nothing moved before Wave's answer: Wave's payout says whether the reversal happened.
            async with self.engine.connect() as conn:
                original = await store.get_payment_by_id(conn, refund.refund_of or 0)
            assert original is not None
            payout = await self.providers.wave.get_payout(original.provider_ref or "")
            if payout.status is PayoutStatus.REVERSED:
                await self.resolver.apply(refund.public_id, Verdict(True, "recovery", refs={"payout_id": payout.id}))
            else:
                await self._gave_up(refund, "Wave could not be reached; the payout was not reversed.")
            return "resolved"
        if job_parked:
            # The request may or may not have reached the provider (the wallet's money is in clearing).
            await self.resolver.flag(refund.public_id, "the refund's provider job gave up; check the statement")
            return "review"
        return "open"

    async def _ask_status(self, payment: Payment) -> str:
        """Enqueue a Daraja transaction status query about the payment, once per sweep that finds it
        stuck (the key names the payment's last change, which the query itself moves on once sent).

        A query that ended without touching the payment (parked: its worker's lease ran out on its
        last attempt, or an operator parked it) leaves that key as it was: every later sweep would
        find its job under it and ask nothing, the money held in clearing for good. So a key whose
        job ended is followed by one naming that job: a fresh query, still one per sweep (concurrent
        sweeps compute the same key)."""
        if status_query_ids(payment) is None:
            await self.resolver.flag(payment.public_id, "no result, and no id M-Pesa could be asked about")
            return "review"
        key = f"{JOB_STATUS_QUERY}:{payment.public_id}:{int(payment.updated_at.timestamp() * 1000)}"
        async with self.engine.begin() as conn:
            last = await latest_job_of_payment(conn, payment.public_id, JOB_STATUS_QUERY)
            if last is not None and last.status in ("done", "parked") and last.dedupe_key is not None and (
                    last.dedupe_key == key or last.dedupe_key.startswith(f"{key}:")):
                key = f"{key}:{last.id}"
            await enqueue(conn, JOB_STATUS_QUERY, {"payment": payment.public_id}, dedupe_key=key)
        return "queried"

    async def _gave_up(self, payment: Payment, message: str) -> None:
        await self.resolver.apply(payment.public_id, Verdict(False, "recovery", "provider_unavailable", message))

    async def _job_parked(self, payment: Payment) -> bool:
        """Whether the outbox job that should reach the provider for this payment gave up."""
        deposit_job = JOB_STK_PUSH if payment.provider == MPESA else JOB_WAVE_CHECKOUT
        if payment.kind == PaymentKind.DEPOSIT:
            job = {S.CREATED: deposit_job}.get(payment.status)
        elif payment.kind == PaymentKind.REFUND:
            job = payment.provider_refs.get("refund_job")
        elif payment.kind in B2B_KINDS:
            job = JOB_B2B
        else:
            job = JOB_B2C if payment.provider == MPESA else JOB_WAVE_PAYOUT
        if job is None:
            return False
        async with self.engine.connect() as conn:
            return await store.job_status(conn, f"{job}:{payment.public_id}") == "parked"


def _unchanged(before: Payment, after: Payment | None) -> str:
    """What a verdict that moved nothing did (`Resolver.apply`): ``needs_review`` (it contradicted the
    final payment: flagged), ``receipt_kept`` (a receipt for a push credited without one), or
    ``duplicate``."""
    if after is None:
        return "unknown"
    if after.provider_refs.get(CONTRADICTION) != before.provider_refs.get(CONTRADICTION):
        return "needs_review"
    if after.provider_refs.get("receipt") != before.provider_refs.get("receipt"):
        return "receipt_kept"
    return "duplicate"


def _stk_event_kind(result_code: int) -> str:
    """The kind an STK callback is recorded under for its push (its CheckoutRequestID the key):
    ``stk_callback`` for a success, ``stk_callback:<code>`` otherwise. A replay has the same code;
    another code is another delivery, which must be heard (a success after a failure or after
    a "still processing")."""
    return "stk_callback" if result_code == 0 else f"stk_callback:{result_code}"


def _status_verdict(payment: Payment, result: DarajaResult, *,
                    shortcode: str | None = None) -> tuple[Verdict | None, str | None]:
    """What a transaction status Result means for the payment asked about: a verdict to apply, or
    none with the reason a person must look (None when the query itself failed: ask again later).
    ``shortcode``: our paybill, which a payment to us must have credited."""
    status = result.transaction_status
    c2b = payment.kind == PaymentKind.DEPOSIT
    details = {"result_code": result.result_code, "transaction_status": status}
    if result.succeeded:
        if status == "Completed":
            if result.amount is not None and result.amount != payment.amount:
                if c2b and payment.provider_refs.get(BOOKED_BY):
                    # Booked by hand with a mistyped amount: nothing was credited; failing it frees
                    # the receipt to be booked again as the statement says (`C2BReceiver.book_missed`).
                    return Verdict(False, "status_query", "amount_mismatch",
                                   f"M-Pesa reports {result.amount} for it, not {payment.amount}; nothing was "
                                   "credited.", details), None
                return None, f"M-Pesa reports {result.amount} for it, not {payment.amount}"
            credited = str(result.parameters.get("CreditPartyName") or "").strip()
            # "<number> - <name>": the party credited. Only a number that is not our paybill's is a
            # refusal (a name alone cannot be told from ours).
            party = credited.split(" - ", 1)[0].strip()
            if c2b and shortcode and party.isdigit() and party != shortcode:
                # A real receipt, but of money that went elsewhere (a reversal, a payout nobody
                # booked): a confirmation that named it was forged. Nothing comes into the wallet.
                return Verdict(False, "status_query", "not_to_our_paybill",
                               f"M-Pesa shows that transaction paying {credited[:40]!r}, not our paybill; nothing was "
                               "credited.", details), None
            return Verdict(True, "status_query", details=details, refs={"receipt": result.receipt}), None
        if status == "Reversed" and c2b:
            return Verdict(False, "status_query", "reversed", "M-Pesa reversed this payment; nothing was credited.",
                           details), None
        return None, f"M-Pesa says the transaction is {status or 'in no known state'}"
    if result.result_code in _NOT_FOUND:
        if c2b:
            # A confirmation M-Pesa cannot vouch for (forged, or for another shortcode): credit nothing.
            return Verdict(False, "status_query", "not_found", "M-Pesa has no such payment; nothing was credited.",
                           details), None
        return None, "M-Pesa has no record of this request; check the statement"
    log.warning("status query for payment %s failed with %s; asked again later", payment.public_id,
                result.result_code)
    return None, None
