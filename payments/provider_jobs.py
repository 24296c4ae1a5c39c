"""The outbox handlers that talk to the providers for the orchestrator: send a B2C payout, a B2B
bill payment or till purchase, a Wave payout, an STK push, open a Wave checkout, reverse an M-Pesa
deposit, refund a Wave checkout, reverse a Wave payout, ask Daraja a transaction's status, send an
SMS receipt. Each is an ``async def handler(job)`` (`payments.worker`), idempotent because delivery
is at least once: it does nothing unless the payment still waits for it, and it reaches the provider
with our `public_id` as the idempotency id where the provider has one (B2C OriginatorConversationID,
Wave Idempotency-Key and client_reference). Where it has none (B2B), the request is sent at most once.

Errors: a request the provider refuses for good fails the payment (its money goes back); a
transient one raises, and the worker retries with backoff; a state that needs a person parks the
job (`PermanentJobError`) and flags the payment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import autocommit
from payments import payment_store as store
from payments.commands import B2B_KINDS, PaymentKind
from payments.money import Money
from payments.outbox import Job, PermanentJobError
from payments.payment_settings import (
    CALLBACK_B2B_RESULT,
    CALLBACK_B2B_TIMEOUT,
    CALLBACK_B2C_RESULT,
    CALLBACK_B2C_TIMEOUT,
    CALLBACK_REVERSAL_RESULT,
    CALLBACK_REVERSAL_TIMEOUT,
    CALLBACK_STATUS_RESULT,
    CALLBACK_STATUS_TIMEOUT,
    CALLBACK_STK,
    JOB_B2B,
    JOB_B2C,
    JOB_REVERSAL,
    JOB_SMS,
    JOB_STATUS_QUERY,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_EXPIRE,
    JOB_WAVE_PAYOUT,
    JOB_WAVE_REFUND,
    JOB_WAVE_REVERSE,
    MPESA,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.providers.daraja import (
    B2BCommand,
    DarajaBadRequest,
    DarajaError,
    DarajaMisconfigured,
    DarajaRejected,
)
from payments.providers.errors import ProviderTimeout, ProviderUnavailable
from payments.providers.wave import (
    CheckoutStatus,
    WaveConflict,
    WaveIdempotencyMismatch,
    WaveInsufficientFunds,
    WaveNotFound,
    WaveRecipientRefused,
    WaveReversalRefused,
    WaveValidationError,
)
from payments.receipts import Receipt, ReceiptWriter, english_receipt
from payments.resolution import Resolver, Verdict
from payments.states import PaymentStatus
from payments.wave_deposits import DECLINED, LINK_EXPIRES_AT, WaveDeposits

log = logging.getLogger(__name__)

S = PaymentStatus
Handler = Callable[[Job], Awaitable[None]]

#: The `provider_events` kind that remembers a status query we sent (keyed by the ConversationID
#: Daraja gave it): its Result names only the query, and this is how it finds its payment.
STATUS_QUERY_SENT = "status_query"
#: `provider_refs` marker: a B2B request is (or may be) on its way to Daraja.
B2B_IN_FLIGHT = "b2b_in_flight"
#: `provider_refs` marker: an STK push request was sent and its answer lost (a timeout, a connection
#: lost mid-request): it may have reached the payer's phone and been paid, and without its
#: CheckoutRequestID no STK query can say. Never pushed again; see `ProviderJobs.run_stk_push`.
STK_ANSWER_LOST = "stk_answer_lost"
#: The error code of a deposit ended that way: we could not confirm it, and cannot say nothing was taken.
UNCONFIRMED = "unconfirmed"


def status_query_ids(payment: Payment) -> tuple[str | None, str | None] | None:
    """How a Daraja transaction status query names this payment's transaction: (receipt,
    OriginatorConversationID), either may be None; None when we know neither (a B2B or a reversal
    whose synchronous answer never came)."""
    receipt = payment.provider_refs.get("receipt")
    if payment.kind == PaymentKind.DEPOSIT:
        # Only C2B deposits are asked about this way (STK pushes have their own query).
        return (payment.provider_ref, None) if payment.provider_refs.get("source") == "c2b" else None
    if payment.kind in B2B_KINDS or payment.kind == PaymentKind.REFUND:
        # Daraja picked the OriginatorConversationID of these requests: we learnt it from its answer.
        originator = payment.provider_refs.get("originator_conversation_id")
        return (receipt, originator) if receipt or originator else None
    return receipt, payment.public_id  # B2C: our public_id is the OriginatorConversationID


def _moment(value: object) -> datetime | None:
    """An ISO 8601 time kept in a payment's references, or None."""
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _never_reached_mpesa(exc: BaseException) -> bool:
    """Whether a request that failed certainly moved no money: Daraja answered it with an error, or
    we never connected, or the client refused to build it. A timeout, or a connection lost
    mid-request, may have paid."""
    if isinstance(exc, DarajaError | DarajaMisconfigured | ValueError):
        return True
    return (isinstance(exc, ProviderUnavailable) and not isinstance(exc, ProviderTimeout)
            and isinstance(exc.__cause__, aiohttp.ClientConnectorError))


class ProviderJobs:
    """The outbox handlers of the orchestrator's jobs (see `handlers`)."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, settings: PaymentSettings,
                 providers: ProviderClients, write_receipt: ReceiptWriter = english_receipt) -> None:
        self.engine = engine
        self.resolver = resolver
        self.settings = settings
        self.providers = providers
        self.write_receipt = write_receipt
        #: Ends Wave deposits through Wave (the ``wave.checkout_expire`` job).
        self.wave_deposits = WaveDeposits(resolver)

    def handlers(self) -> dict[str, Handler]:
        """The outbox worker's routing table for the jobs the orchestrator enqueues."""
        return {JOB_B2C: self.run_b2c, JOB_WAVE_PAYOUT: self.run_wave_payout, JOB_STK_PUSH: self.run_stk_push,
                JOB_WAVE_CHECKOUT: self.run_wave_checkout, JOB_SMS: self.send_receipt, JOB_B2B: self.run_b2b,
                JOB_REVERSAL: self.run_reversal, JOB_STATUS_QUERY: self.run_status_query,
                JOB_WAVE_REFUND: self.run_wave_refund, JOB_WAVE_REVERSE: self.run_wave_reverse,
                JOB_WAVE_EXPIRE: self.wave_deposits.run_expire}

    async def _job_payment(self, job: Job) -> Payment:
        # A read outside any transaction (`db.engine.autocommit`): a lone statement needs no BEGIN
        # and ROLLBACK, two more round trips, around it.
        async with autocommit(self.engine).connect() as conn:
            payment = await store.get_payment(conn, str(job.payload.get("payment", "")))
        if payment is None:
            raise PermanentJobError("the job names no known payment")
        return payment

    async def _refused(self, payment: Payment, cause: str, code: str, message: str) -> None:
        """The provider refused the request for good: the payment fails (a payout's money goes back)."""
        await self.resolver.apply(payment.public_id, Verdict(False, cause, code, message[:200]))

    def _callback_url(self, path: str) -> str:
        return self.settings.callback_base_url.rstrip("/") + path

    async def run_b2c(self, job: Job) -> None:
        """Send a pending M-Pesa payout. Our public_id is the OriginatorConversationID, so a resend
        after a crash is refused by Daraja as a duplicate instead of paying twice."""
        payment = await self._job_payment(job)
        if payment.status is not S.PENDING:
            return  # already sent (processing) or already resolved
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        try:
            accepted = await daraja.b2c_payment(
                originator_conversation_id=payment.public_id, phone=payment.recipient_phone or "",
                amount=payment.amount, remarks=self.settings.b2c_remarks,
                result_url=self._callback_url(CALLBACK_B2C_RESULT),
                queue_timeout_url=self._callback_url(CALLBACK_B2C_TIMEOUT))
        except DarajaBadRequest as exc:
            if "duplicate" in exc.message.lower():
                # An earlier attempt got through and its answer was lost: the result will come.
                await self.resolver.accepted(payment.public_id, None, {}, "b2c_already_submitted",
                                             attempts=job.attempts)
                return
            await self._refused(payment, "b2c_refused", "provider_refused", exc.message)
            return
        except DarajaRejected as exc:
            await self._refused(payment, "b2c_refused", "provider_refused", exc.message)
            return
        await self.resolver.accepted(payment.public_id, accepted.conversation_id,
                             {"conversation_id": accepted.conversation_id}, "b2c_accepted", attempts=job.attempts)

    async def run_wave_payout(self, job: Job) -> None:
        """Send a pending Wave payout with our public_id as Idempotency-Key: a resend returns the same
        payout. Wave answers with the payout's status at once."""
        payment = await self._job_payment(job)
        if payment.status is not S.PENDING:
            return
        wave = self.providers.wave
        if wave is None:
            raise PermanentJobError("Wave is not configured")
        try:
            payout = await wave.create_payout(idempotency_key=payment.public_id, receive_amount=payment.amount,
                                              mobile=payment.recipient_phone or "", client_reference=payment.public_id)
        except (WaveInsufficientFunds, WaveRecipientRefused, WaveValidationError) as exc:
            await self._refused(payment, "wave_payout_refused", exc.code or "provider_refused", exc.message)
            return
        except WaveIdempotencyMismatch as exc:
            # One key, two bodies: our bug. Never pick a new key (that could pay twice); a person decides.
            await self.resolver.flag(payment.public_id, "wave idempotency mismatch")
            raise PermanentJobError(str(exc)) from exc
        await self.resolver.apply_wave_payout(payout, cause="wave_payout_answer")

    async def run_stk_push(self, job: Job) -> None:
        """Ask the payer's phone for the M-Pesa PIN. The CheckoutRequestID it returns is how the
        callback finds the payment.

        IMPORTANT: a push whose answer was lost (a timeout, a connection lost mid-request) may have
        reached the payer's phone, and may be paid; Daraja has no idempotency id for a push, and an
        STK query needs the CheckoutRequestID that answer carried. So it is never sent again (each
        resend was another prompt, and another charge): the payment is marked `STK_ANSWER_LOST` and
        the job parked. A paid push's callback names no payment and is credited by
        `payments.stk_orphans`; recovery ends the deposit as unconfirmed, never as "nothing was
        taken" (`ProviderResults._recover`). Only failures that certainly reached nothing are retried."""
        payment = await self._job_payment(job)
        if payment.status is not S.CREATED:
            return
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        if payment.provider_refs.get(STK_ANSWER_LOST):
            raise PermanentJobError("an earlier push's answer was lost; it may have been paid, so none is sent again")
        # The token first: a failure to get one sent no push, and is retried like any such failure.
        await daraja.access_token()
        try:
            accepted = await daraja.stk_push(
                phone=payment.recipient_phone or "", amount=payment.amount,
                account_reference=self.settings.stk_account_reference, description=self.settings.stk_description,
                callback_url=self._callback_url(CALLBACK_STK))
        except (DarajaBadRequest, DarajaRejected) as exc:
            await self._refused(payment, "stk_refused", "provider_refused", exc.message)
            return
        except Exception as exc:
            if _never_reached_mpesa(exc):
                raise  # the worker retries after a backoff
            await self._mark(payment, {STK_ANSWER_LOST: type(exc).__name__})
            raise PermanentJobError("the push's answer was lost and it may have been paid; not pushed again") from exc
        await self.resolver.accepted(payment.public_id, accepted.checkout_request_id,
                             {"checkout_request_id": accepted.checkout_request_id,
                              "merchant_request_id": accepted.merchant_request_id}, "stk_accepted",
                             attempts=job.attempts)

    async def run_wave_checkout(self, job: Job) -> None:
        """Open a Wave checkout session for a deposit and text the payer its link. A session made by
        an earlier attempt (found by our reference) is reused, never doubled."""
        payment = await self._job_payment(job)
        if payment.status is not S.CREATED:
            return
        wave = self.providers.wave
        if wave is None:
            raise PermanentJobError("Wave is not configured")
        existing = [s for s in await wave.search_checkout_sessions(payment.public_id)
                    if s.checkout_status is not CheckoutStatus.EXPIRED]
        try:
            session = existing[0] if existing else await wave.create_checkout_session(
                payment.amount, success_url=self.settings.wave_success_url, error_url=self.settings.wave_error_url,
                client_reference=payment.public_id, restrict_payer_mobile=payment.recipient_phone)
        except WaveValidationError as exc:
            await self._refused(payment, "wave_checkout_refused", exc.code or "provider_refused", exc.message)
            return
        refs = {"checkout_session_id": session.id, "wave_launch_url": session.wave_launch_url}
        if session.when_expires is not None:
            refs[LINK_EXPIRES_AT] = session.when_expires.isoformat()  # until when the payer may pay
        await self.resolver.accepted(payment.public_id, session.id, refs, "wave_checkout_created", receipt=True,
                                     attempts=job.attempts)

    async def run_b2b(self, job: Job) -> None:
        """Send a pending bill payment (``BusinessPayBill`` with the account number) or till purchase
        (``BusinessBuyGoods``) from our shortcode.

        IMPORTANT: Daraja has no idempotency id for B2B, so a request is sent at most once. It is
        marked in flight before it leaves; an attempt that finds the mark, or that fails in a way
        that may have reached M-Pesa (a timeout), never sends again: the payment is flagged for a
        person and the job parked. Only failures that certainly reached nothing are retried."""
        payment = await self._job_payment(job)
        if payment.status is not S.PENDING:
            return
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        if payment.provider_refs.get(B2B_IN_FLIGHT):
            await self.resolver.flag(payment.public_id, "an earlier B2B attempt may have reached M-Pesa; not resent")
            raise PermanentJobError("an earlier B2B attempt's outcome is unknown")
        bill = payment.kind == PaymentKind.PAY_BILL
        await self._mark(payment, {B2B_IN_FLIGHT: True})
        try:
            accepted = await daraja.b2b_payment(
                command=B2BCommand.PAY_BILL if bill else B2BCommand.BUY_GOODS,
                party_b=(payment.paybill if bill else payment.till) or "", amount=payment.amount,
                # A till has no account number: our id's tail tells the merchant's statement which payment.
                account_reference=(payment.account_number if bill else None) or payment.public_id[-12:],
                remarks=self.settings.b2c_remarks, result_url=self._callback_url(CALLBACK_B2B_RESULT),
                queue_timeout_url=self._callback_url(CALLBACK_B2B_TIMEOUT))
        except (DarajaBadRequest, DarajaRejected) as exc:
            await self._refused(payment, "b2b_refused", "provider_refused", exc.message)
            return
        except Exception as exc:
            if _never_reached_mpesa(exc):
                await self._mark(payment, {B2B_IN_FLIGHT: False})
                raise  # the worker retries after a backoff
            await self.resolver.flag(payment.public_id, f"B2B outcome unknown ({type(exc).__name__}); not resent")
            raise PermanentJobError("the B2B request may have reached M-Pesa; a person decides") from exc
        await self.resolver.accepted(payment.public_id, accepted.conversation_id,
                                     {"conversation_id": accepted.conversation_id,
                                      "originator_conversation_id": accepted.originator_conversation_id},
                                     "b2b_accepted", attempts=job.attempts)

    async def run_reversal(self, job: Job) -> None:
        """Ask Daraja to reverse a deposit (the refund's original) by its receipt; the refund's money
        waits in clearing. Resending is harmless: Daraja reverses a transaction once at most."""
        refund = await self._job_payment(job)
        if refund.status is not S.PENDING:
            return
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        original = await self._original(refund)
        try:
            accepted = await daraja.reverse(
                transaction_id=str(refund.provider_refs.get("reverses_receipt") or original.provider_refs.get("receipt")
                                   or ""), amount=refund.amount,
                result_url=self._callback_url(CALLBACK_REVERSAL_RESULT),
                queue_timeout_url=self._callback_url(CALLBACK_REVERSAL_TIMEOUT),
                remarks=f"Refund {original.public_id}")
        except (DarajaBadRequest, DarajaRejected) as exc:
            await self._refused(refund, "reversal_refused", "provider_refused", exc.message)
            return
        await self.resolver.accepted(refund.public_id, accepted.conversation_id,
                                     {"conversation_id": accepted.conversation_id,
                                      "originator_conversation_id": accepted.originator_conversation_id},
                                     "reversal_accepted", attempts=job.attempts)

    async def run_wave_refund(self, job: Job) -> None:
        """Refund the Wave checkout a deposit was paid with. Wave answers at once; refunding twice
        makes no second refund, so a retry is safe."""
        refund = await self._job_payment(job)
        if refund.status is not S.PENDING:
            return
        wave = self.providers.wave
        if wave is None:
            raise PermanentJobError("Wave is not configured")
        original = await self._original(refund)
        session_id = original.provider_ref or ""
        try:
            await wave.refund_checkout_session(session_id)
        except (WaveConflict, WaveNotFound, WaveValidationError) as exc:
            await self._refused(refund, "wave_refund_refused", exc.code or "provider_refused", exc.message)
            return
        await self.resolver.apply(refund.public_id, Verdict(True, "wave_checkout_refunded",
                                                            refs={"checkout_session_id": session_id}))

    async def run_wave_reverse(self, job: Job) -> None:
        """Reverse a Wave payout (the refund's original): the money comes back to our Wave wallet,
        then to the payer. Reversing a reversed payout changes nothing, so a retry is safe."""
        refund = await self._job_payment(job)
        if refund.status is not S.PENDING:
            return
        wave = self.providers.wave
        if wave is None:
            raise PermanentJobError("Wave is not configured")
        original = await self._original(refund)
        payout_id = original.provider_ref or ""
        try:
            await wave.reverse_payout(payout_id)
        except (WaveReversalRefused, WaveConflict, WaveNotFound, WaveValidationError) as exc:
            await self._refused(refund, "wave_reverse_refused", exc.code or "provider_refused", exc.message)
            return
        await self.resolver.apply(refund.public_id,
                                  Verdict(True, "wave_payout_reversed", refs={"payout_id": payout_id}))

    async def run_status_query(self, job: Job) -> None:
        """Ask Daraja where a payment's transaction stands (a C2B payment to confirm, a payout or a
        reversal whose result never came). The answer comes by callback (`on_status_result`), and
        names only this query: the query's ConversationID is recorded against the payment."""
        payment = await self._job_payment(job)
        if payment.status.is_final:
            return
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        ids = status_query_ids(payment)
        if ids is None:
            await self.resolver.flag(payment.public_id, "no receipt or request id to ask M-Pesa about")
            raise PermanentJobError("nothing to name the transaction by")
        receipt, originator = ids
        try:
            accepted = await daraja.transaction_status(
                transaction_id=receipt, original_conversation_id=originator,
                result_url=self._callback_url(CALLBACK_STATUS_RESULT),
                queue_timeout_url=self._callback_url(CALLBACK_STATUS_TIMEOUT), remarks="Sauti status check")
        except (DarajaBadRequest, DarajaRejected) as exc:
            # Asking again would be refused again: a person reads the statement and decides (a payment
            # to our paybill, or a credit from suspense, would otherwise wait for ever).
            await self.resolver.flag(payment.public_id, f"M-Pesa refused the status query: {exc.message}"[:200])
            raise PermanentJobError(f"M-Pesa refused the status query: {exc.message}") from exc
        except Exception as exc:
            if job.is_last_attempt:
                # The job parks after this: the payment's money stays in clearing with nobody asking
                # (the outage may outlast any number of sweeps). A person looks: the statement, or
                # the job run again once Daraja answers (its Result still settles the payment).
                await self.resolver.flag(payment.public_id, f"the status query kept failing ({type(exc).__name__}); "
                                         f"check the statement, or run job {job.id} again (sauti outbox retry)")
            raise
        async with self.engine.begin() as conn:
            locked = await store.get_payment(conn, payment.public_id, lock=True)
            assert locked is not None
            await store.record_provider_event(conn, MPESA, accepted.conversation_id, STATUS_QUERY_SENT,
                                              {"receipt": receipt, "originator": originator}, locked.id)
            await store.note(conn, locked, {"status_query": accepted.conversation_id})

    async def _original(self, refund: Payment) -> Payment:
        async with autocommit(self.engine).connect() as conn:
            original = await store.get_payment_by_id(conn, refund.refund_of or 0)
        if original is None:
            raise PermanentJobError("the refund names no payment")
        return original

    async def _mark(self, payment: Payment, refs: Mapping[str, object]) -> None:
        """Record a step of a job in the payment's references, committed before the next step."""
        async with self.engine.begin() as conn:
            locked = await store.get_payment(conn, payment.public_id, lock=True)
            assert locked is not None
            await store.note(conn, locked, refs)

    async def send_receipt(self, job: Job) -> None:
        """One SMS about a payment to its payer or payee. A refused number is not retried."""
        sms = self.providers.sms
        if sms is None:
            return
        to = job.payload.get("to")
        async with autocommit(self.engine).connect() as conn:  # a lone read, as in `_job_payment`
            found = await store.get_payment_and_parties(conn, str(job.payload.get("payment", "")))
        if found is None:
            raise PermanentJobError("the job names no known payment")
        payment, parties = found
        if job.payload.get(DECLINED) and payment.status.is_final:
            return  # paid or ended since the attempt failed: its own receipt says so, not this one
        status = S(job.payload.get("status", payment.status.value))
        url = payment.provider_refs.get("wave_launch_url") if status is S.PROCESSING else None
        # A Wave payment attempt that failed while its link stays open: until when it works.
        retry_until = _moment(payment.provider_refs.get(LINK_EXPIRES_AT)) if job.payload.get(DECLINED) else None
        side: dict[str, Any]
        if to == "payee" and parties.payee_phone is not None:
            number, after = parties.payee_phone, parties.payee_balance_after
            side = {"party": "payee", "language": parties.payee_language, "counterpart": parties.payer_name,
                    "counterpart_phone": parties.payer_phone}
        else:
            # A failed payment's receipt says nothing was taken: a balance there would be the one a
            # refund restored, or none at all.
            number = parties.payer_phone
            after = parties.payer_balance_after if status is S.SUCCEEDED else None
            side = {"party": "payer", "language": parties.payer_language, "counterpart": parties.payee_name or "",
                    "counterpart_phone": payment.recipient_phone, "paybill": payment.paybill,
                    "account": payment.account_number, "till": payment.till,
                    "approve_url": None if retry_until else url, "retry_until": retry_until,
                    # A push whose answer was lost may have been paid: never "nothing was taken".
                    "unconfirmed": status is S.FAILED and payment.error_code == UNCONFIRMED}
        if payment.refund_of is not None:
            # A refund's receipt says what it undid, and its payer's what came back with the amount.
            original = await self._original(payment)
            side |= {"original": original.reference, "original_kind": original.kind, "provider": original.provider,
                     "returned_fee": original.fee}
        receipt = Receipt(kind=payment.kind, status=status, reference=payment.reference, amount=payment.amount,
                          fee=payment.fee, balance=None if after is None else Money(after, payment.amount.currency),
                          **side)
        sent = await sms.send(self.write_receipt(receipt), [number])
        if not sent.all_accepted:
            log.warning("receipt SMS for payment %s not accepted by the SMS provider", payment.public_id)


