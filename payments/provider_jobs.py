"""The outbox handlers that talk to the providers for the orchestrator: send a B2C payout, a Wave
payout, an STK push, open a Wave checkout, send an SMS receipt. Each is an ``async def handler(job)``
(`payments.worker`), idempotent because delivery is at least once: it does nothing unless the
payment still waits for it, and it reaches the provider with our `public_id` as the idempotency id
(B2C OriginatorConversationID, Wave Idempotency-Key and client_reference).

Errors: a request the provider refuses for good fails the payment (its money goes back); a
transient one raises, and the worker retries with backoff; a state that needs a person parks the
job (`PermanentJobError`) and flags the payment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncEngine

from payments import payment_store as store
from payments.identities import get_user
from payments.outbox import Job, PermanentJobError
from payments.payment_settings import (
    JOB_B2C,
    JOB_SMS,
    JOB_STK_PUSH,
    JOB_WAVE_CHECKOUT,
    JOB_WAVE_PAYOUT,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.providers.daraja import DarajaBadRequest, DarajaRejected
from payments.providers.wave import (
    CheckoutStatus,
    WaveIdempotencyMismatch,
    WaveInsufficientFunds,
    WaveRecipientRefused,
    WaveValidationError,
)
from payments.resolution import Resolver, Verdict
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus
Handler = Callable[[Job], Awaitable[None]]


class ProviderJobs:
    """The outbox handlers of the orchestrator's jobs (see `handlers`)."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, settings: PaymentSettings,
                 providers: ProviderClients) -> None:
        self.engine = engine
        self.resolver = resolver
        self.settings = settings
        self.providers = providers

    def handlers(self) -> dict[str, Handler]:
        """The outbox worker's routing table for the jobs the orchestrator enqueues."""
        return {JOB_B2C: self.run_b2c, JOB_WAVE_PAYOUT: self.run_wave_payout, JOB_STK_PUSH: self.run_stk_push,
                JOB_WAVE_CHECKOUT: self.run_wave_checkout, JOB_SMS: self.send_receipt}

    async def _job_payment(self, job: Job) -> Payment:
        async with self.engine.connect() as conn:
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
                result_url=self._callback_url("/mpesa/b2c/result"),
                queue_timeout_url=self._callback_url("/mpesa/b2c/timeout"))
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
        callback finds the payment."""
        payment = await self._job_payment(job)
        if payment.status is not S.CREATED:
            return
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        try:
            accepted = await daraja.stk_push(
                phone=payment.recipient_phone or "", amount=payment.amount,
                account_reference=self.settings.stk_account_reference, description=self.settings.stk_description,
                callback_url=self._callback_url("/mpesa/stk"))
        except (DarajaBadRequest, DarajaRejected) as exc:
            await self._refused(payment, "stk_refused", "provider_refused", exc.message)
            return
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
        await self.resolver.accepted(payment.public_id, session.id,
                             {"checkout_session_id": session.id, "wave_launch_url": session.wave_launch_url},
                             "wave_checkout_created", receipt=True, attempts=job.attempts)

    async def send_receipt(self, job: Job) -> None:
        """One SMS about a payment to its payer or payee. A refused number is not retried."""
        sms = self.providers.sms
        if sms is None:
            return
        payment = await self._job_payment(job)
        to = job.payload.get("to")
        async with self.engine.connect() as conn:
            payer = await get_user(conn, payment.payer_user_id)
            payee = await get_user(conn, payment.recipient_user_id) if payment.recipient_user_id else None
        status = S(job.payload.get("status", payment.status.value))
        if to == "payee" and payee is not None:
            number, message = payee.phone, f"You received {payment.amount} from {payer.display_name or payer.phone}."
        elif status is S.PROCESSING and payment.provider_refs.get("wave_launch_url"):
            number = payer.phone
            message = f"Approve your deposit of {payment.amount} in Wave: {payment.provider_refs['wave_launch_url']}"
        elif status is S.SUCCEEDED:
            number = payer.phone
            message = f"{_VERB[payment.kind]} {payment.amount} ({payment.public_id[-8:]}) succeeded. Fee {payment.fee}."
        else:
            number = payer.phone
            message = f"{_VERB[payment.kind]} {payment.amount} ({payment.public_id[-8:]}) failed. No money was taken."
        receipt = await sms.send(message, [number])
        if not receipt.all_accepted:
            log.warning("receipt SMS for payment %s not accepted by the SMS provider", payment.public_id)


_VERB: Mapping[str, str] = MappingProxyType({
    "p2p": "Payment of", "send_to_phone": "Payment of", "withdraw": "Withdrawal of", "deposit": "Deposit of",
    "pay_bill": "Bill payment of", "buy_goods_till": "Payment of", "buy_goods_pochi": "Payment of",
    "refund": "Refund of",
})
