"""Refunds and reversals: undoing a succeeded payment, whole, at an operator's or an API caller's request.

A refund is a payment of its own, of kind ``refund``, whose ``refund_of`` names the original (the
database allows one refund per payment that has not failed). Its payer is the original's payer, its
amount the original's; its history says who asked and why (and the audit log keeps both). How the
money comes back depends on what is undone:

- an M-Pesa deposit (STK push or C2B): Daraja ``TransactionReversal`` of its receipt (job
  ``mpesa.reversal``; the Result comes by callback). The amount leaves the wallet for clearing at
  once (refused, nothing changed, when the wallet no longer holds it); success moves it on to
  provider collection, failure back to the wallet.
- a Wave checkout deposit: ``POST /v1/checkout/sessions/{id}/refund`` (job ``wave.checkout_refund``),
  the money as for M-Pesa.
- an M-Pesa payout (B2C, B2B, pochi): nothing to ask; the operator says the money came back (the
  provider reversed it), and the payer gets back amount and fee from provider settlement at once.
- a Wave payout: ``POST /v1/payout/{id}/reverse`` (job ``wave.payout_reverse``); once Wave has
  reversed it, the payer is credited as for M-Pesa payouts (nothing moves before).
- a wallet-to-wallet payment (p2p): a ledger reversal of its transfer, at once, when the recipient
  still holds the amount (else refused, nothing changed).

When the refund succeeds the original becomes ``refunded`` (a Wave checkout refund) or ``reversed``
(everything else), in the same transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payments import payment_store as store
from payments.commands import PAYOUT_KINDS, PaymentKind, Refund
from payments.errors import IdempotencyConflict, InsufficientFunds, InvalidRequest, PaymentsError
from payments.identities import audit
from payments.money import Money
from payments.outbox import enqueue
from payments.payment_settings import JOB_REVERSAL, JOB_WAVE_REFUND, JOB_WAVE_REVERSE, MPESA, WAVE
from payments.payment_store import Payment
from payments.resolution import Resolver
from payments.settlement import Settlement, lock_receipt, parked_receipt
from payments.states import PaymentStatus

S = PaymentStatus


class NotRefundable(InvalidRequest):
    """This payment cannot be refunded (not succeeded, already refunded, itself a refund…)."""

    code = "not_refundable"


class UnknownPayment(PaymentsError):
    code = "unknown_payment"


class Refunds:
    """Runs `Refund` commands (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, money: Settlement, resolver: Resolver) -> None:
        self.engine = engine
        self.money = money
        self.resolver = resolver

    async def refund(self, cmd: Refund) -> Payment:
        """Record the refund and do (or enqueue) what undoes the original. Returns the refund: failed
        when the money is no longer there to take back, pending while a provider is asked, succeeded
        when it was done at once. The same key again gives the same refund."""
        async with self.engine.begin() as conn:
            # The original's row lock makes concurrent refunds of one payment queue up here.
            # IMPORTANT: the lock order of a refund and its original is the original first, then the
            # refund (here: made after it), in every transaction that locks both: a verdict on a
            # refund takes them so too (`payments.resolution.lock_with_original`).
            original = await store.get_payment(conn, cmd.payment_id.strip(), lock=True)
            if original is None:
                raise UnknownPayment(f"no payment {cmd.payment_id.strip()}")
            existing = await store.find_by_key(conn, original.payer_user_id, cmd.stored_key)
            if existing is not None:
                if existing.request_hash != cmd.request_hash():
                    raise IdempotencyConflict(cmd.idempotency_key, existing.id)
                return existing
            given = {} if cmd.receipt is None else {"reverses_receipt": await _receipt_to_reverse(conn, original, cmd)}
            job = _check_refundable(original, receipt_given=bool(given))
            live = await store.live_refund_of(conn, original.id)
            if live is not None:
                raise NotRefundable(f"payment {original.public_id} is already being refunded by {live.public_id}")
            refund = await store.insert_payment(conn, store.NewPayment(
                payer_user_id=original.payer_user_id, idempotency_key=cmd.stored_key,
                request_hash=cmd.request_hash(), kind=PaymentKind.REFUND.value, channel=cmd.channel.value,
                amount=original.amount, fee=Money.zero(original.amount.currency), provider=original.provider,
                recipient_phone=original.recipient_phone, recipient_user_id=original.recipient_user_id,
                refund_of=original.id, api_key_id=cmd.api_key_id), cause=f"refund:{cmd.requested_by}")
            assert refund is not None  # the key was free and the original is locked
            refund = await store.note(conn, refund, {"reason": cmd.reason[:500], "requested_by": cmd.requested_by,
                                                     **({"refund_job": job} if job else {}), **given})
            await audit(conn, actor=cmd.requested_by, action="refund", subject=original.public_id,
                        details={"refund": refund.public_id, "reason": cmd.reason[:500]})
            if original.provider is None:
                return await self._reverse_in_ledger(conn, refund, original)
            if original.kind == PaymentKind.DEPOSIT:
                return await self._take_back_deposit(conn, refund, job)
            if original.provider == WAVE:
                await enqueue(conn, JOB_WAVE_REVERSE, {"payment": refund.public_id},
                              dedupe_key=f"{JOB_WAVE_REVERSE}:{refund.public_id}")
                return await store.transition(conn, refund, S.PENDING, cause="wave_reverse_requested")
            return await self._credit_returned_payout(conn, refund, original)

    async def _reverse_in_ledger(self, conn: AsyncConnection, refund: Payment, original: Payment) -> Payment:
        """A wallet-to-wallet payment: the opposite transfer, if the recipient still holds the money."""
        try:
            async with conn.begin_nested():
                moved = await self.money.reverse_wallet_payment(conn, refund, original)
        except InsufficientFunds:
            return await _refused(conn, refund, "The recipient no longer holds the money; nothing was reversed.")
        refund = await store.transition(conn, refund, S.SUCCEEDED, cause="ledger_reversal",
                                        debit_transfer_id=moved.transfer_id, settle_transfer_id=moved.transfer_id)
        await self.resolver.mark_undone(conn, original, refund)
        # Both sides were moved: the payer got amount and fee back, the payee gave the amount back.
        await self.resolver.receipts(conn, refund, "payer", "payee")
        return refund

    async def _take_back_deposit(self, conn: AsyncConnection, refund: Payment, job: str | None) -> Payment:
        """A deposit: its amount leaves the wallet for clearing now (so it cannot be spent while the
        provider is asked), then the provider job gives it back to the payer's M-Pesa / Wave."""
        assert job is not None
        try:
            async with conn.begin_nested():
                debited = await self.money.debit_for_payout(conn, refund)
        except InsufficientFunds:
            return await _refused(conn, refund, "The wallet no longer holds the deposit; nothing was reversed.")
        refund = await store.transition(conn, refund, S.PENDING, cause="debited_to_clearing",
                                        debit_transfer_id=debited.transfer_id)
        await enqueue(conn, job, {"payment": refund.public_id}, dedupe_key=f"{job}:{refund.public_id}")
        return refund

    async def _credit_returned_payout(self, conn: AsyncConnection, refund: Payment, original: Payment) -> Payment:
        """An M-Pesa payout whose money the provider gave back: the payer is credited at once."""
        moved = await self.money.credit_returned_payout(conn, refund, original)
        refund = await store.transition(conn, refund, S.SUCCEEDED, cause="provider_returned",
                                        settle_transfer_id=moved.transfer_id)
        await self.resolver.mark_undone(conn, original, refund)
        await self.resolver.receipts(conn, refund, "payer")
        return refund


def rests_on_operator(payment: Payment) -> bool:
    """An M-Pesa payout: M-Pesa has nothing to ask for it, so its refund credits the payer on an
    operator's word that M-Pesa reversed it (not through the payments API; `gateway.ops_actions`
    asks for that word)."""
    return payment.provider == MPESA and payment.kind in PAYOUT_KINDS


def refusal(original: Payment) -> str | None:
    """Why ``original`` cannot be refunded, by its kind and state, as a refund would be refused
    (a receipt an operator may still give counts as given); None when it can be (one not already
    refunded: the database allows one live refund)."""
    try:
        _check_refundable(original, receipt_given=True)
    except NotRefundable as exc:
        return str(exc)
    return None


def _check_refundable(original: Payment, *, receipt_given: bool = False) -> str | None:
    """Refuse what cannot be refunded; returns the provider job that will undo it, if one does."""
    if original.kind == PaymentKind.REFUND:
        raise NotRefundable("a refund cannot itself be refunded")
    if original.kind in (PaymentKind.CASH_IN, PaymentKind.CASH_OUT):
        # Cash changed hands at the agent: undoing it is a new cash movement there, never a
        # ledger reversal (which would credit the agent's wallet instead of its float).
        raise NotRefundable(f"a {original.kind} at an agent cannot be refunded; do the opposite at the agent")
    if original.status in (S.REVERSED, S.REFUNDED):
        raise NotRefundable(f"payment {original.public_id} was already {original.status}")
    if original.status is not S.SUCCEEDED:
        raise NotRefundable(f"only a succeeded payment can be refunded; {original.public_id} is {original.status}")
    if original.provider is None:
        if original.settle_transfer_id is None:
            raise NotRefundable(f"payment {original.public_id} moved no money")
        return None
    if original.kind == PaymentKind.DEPOSIT and original.provider == MPESA:
        if not original.provider_refs.get("receipt") and not receipt_given:
            raise NotRefundable(f"deposit {original.public_id} has no M-Pesa receipt to reverse (recovery confirmed "
                                "it by an STK query, which names none): an operator gives it from the M-Pesa "
                                "statement (sauti payment refund REF --receipt R)")
        return JOB_REVERSAL
    if original.kind == PaymentKind.DEPOSIT:
        if not original.provider_ref:
            raise NotRefundable(f"deposit {original.public_id} has no Wave checkout session")
        return JOB_WAVE_REFUND
    if original.kind not in PAYOUT_KINDS:
        raise NotRefundable(f"a {original.kind} payment cannot be refunded")
    if original.provider == WAVE:
        if not original.provider_ref:
            raise NotRefundable(f"payout {original.public_id} has no Wave payout id")
        return JOB_WAVE_REVERSE
    return None


async def _receipt_to_reverse(conn: AsyncConnection, original: Payment, cmd: Refund) -> str:
    """The receipt an operator read on the statement (`Refund.receipt`), checked: only for an M-Pesa
    deposit credited without one, and never a receipt another payment of ours holds or money parked
    in suspense under it (its reversal would take back someone else's money). It is kept on the
    refund, whose reversal uses it; a wrong one fails at M-Pesa (no such transaction, or another
    amount) and the money stays."""
    receipt = cmd.receipt
    if original.kind != PaymentKind.DEPOSIT or original.provider != MPESA:
        raise InvalidRequest("a receipt is given only for an M-Pesa deposit credited without one")
    known = original.provider_refs.get("receipt")
    if known and known != receipt:
        raise NotRefundable(f"deposit {original.public_id} has the M-Pesa receipt {known}, not {receipt}")
    assert receipt is not None
    # Under the receipt's lock, as every path that books a receipt checks the others' bookings.
    await lock_receipt(conn, receipt)
    holder = await store.holder_of_receipt(conn, MPESA, receipt, other_than=original.id)
    if holder is not None:
        raise NotRefundable(f"the M-Pesa receipt {receipt} is payment {holder}'s, not {original.public_id}'s")
    if await parked_receipt(conn, receipt):
        # Someone else's money, parked in suspense: reversing it would give them theirs back out of
        # this customer's wallet, and leave this customer's own payment at M-Pesa.
        raise NotRefundable(f"the M-Pesa receipt {receipt} is money parked in suspense, not {original.public_id}'s")
    return receipt


async def _refused(conn: AsyncConnection, refund: Payment, message: str) -> Payment:
    return await store.transition(conn, refund, S.FAILED, cause="ledger", details={"error": "insufficient_funds"},
                                  error_code=InsufficientFunds.code, error_message=message)
