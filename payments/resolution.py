"""How a provider's verdict resolves a payment: once, with its money movement, its state change,
its event and its receipt in one transaction.

`Resolver.apply` is the one door every result goes through (a callback, a webhook, a provider's
synchronous answer, a status query, recovery). It locks the payment, records the delivery in
`provider_events` (a duplicate stops there), ignores a verdict the payment already reached, refuses
(and flags for a person) one the state machine forbids, and otherwise settles, unwinds or credits
through `payments.settlement`, whose deterministic keys make a second attempt move nothing.

A verdict that contradicts a final payment (M-Pesa's late success for a B2C whose money went back,
an STK success after the deposit failed) moves nothing and flags the payment ``contradiction``,
which the review queue lists (`payments.review_flags`). A success for a push that succeeded without
its receipt (credited by STK query, which names none) keeps the receipt it brings, so that the
receipt cannot be booked a second time (`payments.c2b`), or flags the push if it was.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.commands import PaymentKind
from payments.contacts import count_send
from payments.intents import intent_refunded
from payments.outbox import NewJob, enqueue_many
from payments.payment_settings import (
    JOB_SMS,
    MPESA,
    PARKED_BY,
    STK_ORPHAN_EVENT,
    WAVE,
    PaymentSettings,
    ProviderClients,
)
from payments.payment_store import Payment
from payments.providers.wave import Payout, PayoutStatus
from payments.review_flags import flag_payment
from payments.settlement import Settlement, lock_receipt, parked_receipt, wait_in_suspense
from payments.states import InvalidTransition, PaymentStatus, check_transition, is_replay

log = logging.getLogger(__name__)

S = PaymentStatus
#: Run by `Resolver.apply` on a payment, in the verdict's transaction (see there).
PaymentHook = Callable[[AsyncConnection, Payment], Awaitable[None]]

# Daraja ResultCodes (STK callbacks and B2C results) as our error codes and a sentence for the payer.
_DARAJA_FAILURES: Mapping[int, tuple[str, str]] = MappingProxyType({
    1: ("insufficient_funds", "The M-Pesa balance was not enough."),
    2: ("below_minimum", "The amount is below M-Pesa's minimum."),
    1019: ("expired", "The M-Pesa request expired before it was answered."),
    1025: ("provider_error", "M-Pesa could not send the request to the phone."),
    9999: ("provider_error", "M-Pesa could not send the request to the phone."),
    1032: ("cancelled_by_user", "The M-Pesa request was cancelled on the phone."),
    1037: ("unreachable", "The phone could not be reached, or no PIN was entered in time."),
    2001: ("wrong_pin", "The M-Pesa PIN or initiator details were wrong."),
})


@dataclass(frozen=True)
class Verdict:
    """A provider's verdict on a payment, ready to apply."""

    succeeded: bool
    cause: str
    error_code: str | None = None
    error_message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    refs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> PaymentStatus:
        """Where the verdict takes the payment."""
        return PaymentStatus.SUCCEEDED if self.succeeded else PaymentStatus.FAILED


def _stk_push(payment: Payment) -> bool:
    """Whether the payment is an M-Pesa deposit by STK push (named by its CheckoutRequestID)."""
    return (payment.kind == PaymentKind.DEPOSIT and payment.provider == MPESA and payment.provider_ref is not None
            and payment.provider_refs.get("source") is None)


#: A payment's row and, for a refund, its original's, locked in one statement in the order of their
#: ids: the original's first (a refund is always made after the payment it undoes).
_LOCK_WITH_ORIGINAL = sql(
    f"SELECT {store.PAYMENT_COLUMNS} FROM payments WHERE public_id = :p "
    "OR id = (SELECT refund_of FROM payments WHERE public_id = :p) ORDER BY id FOR UPDATE")


async def lock_with_original(conn: AsyncConnection, public_id: str) -> Payment | None:
    """The payment named, its row locked until the transaction ends; for a refund, its original's
    row locked before it.

    IMPORTANT: the one lock order of a refund and its original, in every transaction that locks
    both: the original first, then the refund. `Refunds.refund` locks the original and then makes
    the refund; a verdict on the refund (here) takes the original's lock before the refund's, and
    `_finish_refund` finds it held. Locking the refund first, as verdicts once did, deadlocks with
    any transaction that holds the original and reaches for the refund. The rows are locked as the
    ORDER BY returns them (PostgreSQL locks after sorting), and the original's id is the smaller."""
    rows = (await conn.execute(_LOCK_WITH_ORIGINAL, {"p": public_id})).all()
    return next((store.payment_from_row(row) for row in rows if row.public_id == public_id), None)


def _contradiction(payment: Payment, outcome: Verdict) -> str:
    """What a person reads of a provider's verdict that contradicts the final payment: what it
    said, through what, and the receipt it names (to find on the statement)."""
    receipt = outcome.refs.get("receipt")
    named = f", receipt {receipt}" if isinstance(receipt, str) and receipt else ""
    return f"provider said {outcome.status} while {payment.status} ({outcome.cause}{named})"


def daraja_failure(code: int | str, desc: str, cause: str) -> Verdict:
    error_code, message = _DARAJA_FAILURES.get(code, ("provider_declined", "M-Pesa declined the payment.")) \
        if isinstance(code, int) else ("provider_declined", "M-Pesa declined the payment.")
    return Verdict(False, cause, error_code, message, {"result_code": code, "result_desc": desc[:200]})


class Resolver:
    """Applies verdicts to payments and enqueues their receipts."""

    def __init__(self, engine: AsyncEngine, money: Settlement, settings: PaymentSettings,
                 providers: ProviderClients) -> None:
        self.engine = engine
        self.money = money
        self.settings = settings
        self.providers = providers

    async def receipts(self, conn: AsyncConnection, payment: Payment, *parties: str,
                       status: PaymentStatus | None = None) -> None:
        """Enqueue an SMS receipt per party (``payer``, ``payee``), in the caller's transaction, all
        in one statement. ``status``: the one the receipts tell of, when the payment is about to
        reach it in this transaction (else the payment's own)."""
        if not (self.settings.sms_receipts and self.providers.sms is not None):
            return
        told = (status or payment.status).value
        # The payload names the payment, never a phone number: the handler reads it from the database.
        await enqueue_many(conn, [NewJob(JOB_SMS, {"payment": payment.public_id, "to": party, "status": told},
                                         f"{JOB_SMS}:{payment.public_id}:{party}:{told}") for party in parties])

    async def accepted(self, public_id: str, provider_ref: str | None, refs: Mapping[str, Any], cause: str,
                        *, receipt: bool = False, attempts: int = 1) -> None:
        """The provider took the request: processing, with its reference. A result that came first
        (an early callback) already finished the payment: then only the reference is kept."""
        async with self.engine.begin() as conn:
            payment = await store.get_payment(conn, public_id, lock=True)
            assert payment is not None
            columns = {"provider_ref": provider_ref} if provider_ref else {}
            if payment.status in (S.CREATED, S.PENDING):
                payment = await store.transition(conn, payment, S.PROCESSING, cause=cause, refs=refs,
                                                 retry_count=max(0, attempts - 1), **columns)
                if receipt:
                    await self.receipts(conn, payment, "payer")
            else:
                await store.note(conn, payment, refs, **columns)

    async def apply(
        self, public_id: str, outcome: Verdict, *, event: tuple[str, str, str, Mapping[str, Any]] | None = None,
        guard: PaymentHook | None = None, after: PaymentHook | None = None,
    ) -> tuple[Payment | None, bool]:
        """Apply a provider's verdict, once: record the delivery (``event``: provider, its id, kind,
        summary), move the money (settle, unwind or credit, by the payment's kind) and the state.
        Returns the payment and whether this call changed it: a duplicate delivery, or a verdict the
        payment already reached, changes nothing. ``guard`` runs first, on the locked payment (it
        refuses by raising: nothing is recorded); ``after`` runs once the verdict changed it, in
        the same transaction (an operator's verdict: its audit line, `payments.review`)."""
        async with self.engine.begin() as conn:
            payment = await lock_with_original(conn, public_id)
            if payment is None:
                return None, False
            if guard is not None:
                await guard(conn, payment)
            if event is not None:
                provider, key, kind, summary = event
                if not await store.record_provider_event(conn, provider, key, kind, summary, payment.id):
                    return payment, False
            target = outcome.status
            # A success for a payment that succeeded, and may since have been reversed or refunded
            # (our own doing), is no news either.
            if is_replay(payment.status, target) or (outcome.succeeded and payment.status.settled):
                if outcome.succeeded and payment.status is S.SUCCEEDED:
                    payment = await self._keep_receipt(conn, payment, outcome)
                return payment, False
            try:
                check_transition(payment.status, target)
            except InvalidTransition:
                # IMPORTANT: e.g. a success after we gave the money back. Never move money twice:
                # flag it for a person (the review queue lists a final payment's ``contradiction``),
                # who settles it by hand from the provider's statement.
                log.error("payment %s: provider says %s but it is %s; flagged for review", public_id, target,
                          payment.status)
                payment = await flag_payment(conn, payment, _contradiction(payment, outcome))
                return payment, False
            if outcome.succeeded and _stk_push(payment) and not await self._claim_push(conn, payment, outcome):
                return payment, False
            payment = await self._finish(conn, payment, outcome)
            if after is not None:
                await after(conn, payment)
            return payment, True

    async def _claim_push(self, conn: AsyncConnection, payment: Payment, outcome: Verdict) -> bool:
        """An STK deposit is about to be credited: make sure its push's money was not booked as an
        orphan's (`payments.stk_orphans`: its callback came before the push was recorded, and was
        taken for one), and that it cannot be any more; nor its receipt parked in suspense (by a
        confirmation that named it: a forged or replayed delivery, one of the two) or held by another
        payment (booked by hand). False, with the payment flagged, when it was."""
        assert payment.provider_ref is not None
        receipt = outcome.refs.get("receipt")
        if isinstance(receipt, str) and receipt:
            await lock_receipt(conn, receipt)
            if await parked_receipt(conn, receipt):
                log.error("payment %s: its receipt is parked in suspense; flagged for review", payment.public_id)
                await store.note(conn, payment, {"needs_review": f"its receipt {receipt} is parked in suspense"})
                return False
            # Or booked by hand from the statement (a C2B booking of the push's receipt): one receipt
            # is credited once.
            holder = await store.holder_of_receipt(conn, MPESA, receipt, other_than=payment.id, failed_too=False)
            if holder is not None:
                log.error("payment %s: payment %s holds its receipt; flagged for review", payment.public_id, holder)
                await store.note(conn, payment, {"needs_review": f"its receipt {receipt} is held by {holder}"})
                return False
        orphan = await store.provider_event(conn, MPESA, payment.provider_ref, STK_ORPHAN_EVENT, lock=True)
        if orphan is None:
            return True
        booked = {"credited": f"credited as {orphan.get('payment')}", "suspense": "parked in suspense"}
        if orphan.get("outcome") in booked:
            where = booked[orphan["outcome"]]
            log.error("payment %s: its push was %s already; flagged for review", payment.public_id, where)
            await store.note(conn, payment, {"needs_review": f"its push was {where}"})
            return False
        if orphan.get("outcome") == "pending":
            await store.note_provider_event(conn, MPESA, payment.provider_ref, STK_ORPHAN_EVENT,
                                            {"outcome": "matched"}, payment_id=payment.id)
        return True

    async def _keep_receipt(self, conn: AsyncConnection, payment: Payment, outcome: Verdict) -> Payment:
        """A success for an STK push that succeeded without its receipt (recovery's STK query names
        none): keep the receipt it brings, under the receipt's lock, so that no other path books it
        again (`payments.c2b`: a booking by hand asks who holds it). If another payment holds it, or
        it is parked in suspense, the push's money was booked twice: flagged for a person."""
        receipt = outcome.refs.get("receipt")
        if not (_stk_push(payment) and isinstance(receipt, str) and receipt) or payment.provider_refs.get("receipt"):
            return payment
        await lock_receipt(conn, receipt)
        where = None
        if await parked_receipt(conn, receipt):
            where = "is parked in suspense"
        elif holder := await store.holder_of_receipt(conn, MPESA, receipt, other_than=payment.id, failed_too=False):
            where = f"is held by {holder}"
        if where is None:
            return await store.note(conn, payment, {"receipt": receipt})
        log.error("payment %s: its receipt %s %s; flagged for review", payment.public_id, receipt, where)
        return await flag_payment(conn, payment, f"its receipt {receipt} (a late STK callback's) {where}: "
                                                 "the push's money may be booked twice")

    async def _finish(self, conn: AsyncConnection, payment: Payment, outcome: Verdict) -> Payment:
        details = {**outcome.details, **({"error": outcome.error_code} if outcome.error_code else {})}
        # The receipt first: the money movement below locks hot accounts (clearing, shards) until the
        # commit, and every statement after it is a round trip other payments wait for.
        await self.receipts(conn, payment, "payer", status=outcome.status)
        if payment.kind == PaymentKind.REFUND:
            payment = await self._finish_refund(conn, payment, outcome, details)
        elif payment.kind == PaymentKind.DEPOSIT:
            parked_by = payment.provider_refs.get(PARKED_BY)
            if outcome.succeeded:
                moved = await self.money.credit_deposit(conn, payment)
                # Money from suspense: its parking is its debit (reconciliation counts it from collection).
                debit = {"debit_transfer_id": int(parked_by)} if parked_by else {}
                payment = await store.transition(conn, payment, S.SUCCEEDED, cause=outcome.cause, details=details,
                                                 refs=outcome.refs, settle_transfer_id=moved.transfer_id, **debit)
            else:
                refs = outcome.refs
                if parked_by and payment.provider_ref:
                    # M-Pesa did not vouch for it: the money waits in suspense for a person again, and
                    # the receipt is no longer this payment's (reconciliation must not match it here).
                    await wait_in_suspense(conn, payment.provider_ref, int(parked_by))
                    refs = {**refs, "receipt": None, "refused_receipt": payment.provider_ref}
                # A failed payment to our paybill (`payments.c2b`: a confirmation or a booking by hand
                # that M-Pesa did not vouch for as sent or typed) credited nothing: its receipt is
                # freed, so the payment the statement shows can be booked by hand, and verified.
                freed = {"provider_ref": None} if payment.provider_refs.get("source") == "c2b" else {}
                payment = await store.transition(conn, payment, S.FAILED, cause=outcome.cause, details=details,
                                                 refs=refs, error_code=outcome.error_code,
                                                 error_message=outcome.error_message, **freed)
        elif outcome.succeeded:
            # A send to a phone counts towards the payer's contacts in the transaction of its success
            # (a duplicate delivery stopped above); before the settlement, which holds the clearing
            # account's lock until the commit.
            await count_send(conn, payment, max_contacts=self.settings.max_contacts_per_user)
            moved = await self.money.settle_payout(conn, payment)
            payment = await store.transition(conn, payment, S.SUCCEEDED, cause=outcome.cause, details=details,
                                             refs=outcome.refs, settle_transfer_id=moved.transfer_id)
        else:
            moved = await self.money.unwind_payout(conn, payment)
            payment = await store.transition(conn, payment, S.FAILED, cause=outcome.cause, details=details,
                                             refs=outcome.refs, settle_transfer_id=moved.transfer_id,
                                             error_code=outcome.error_code, error_message=outcome.error_message)
        return payment

    async def _finish_refund(self, conn: AsyncConnection, refund: Payment, outcome: Verdict,
                             details: Mapping[str, Any]) -> Payment:
        """A provider's verdict on a refund it was asked to make (M-Pesa reversal, Wave refund or
        payout reversal): on success the money movement of `payments.settlement` for what the
        refund undoes, and the original becomes reversed / refunded, in this transaction."""
        # Locked already, before the refund (`lock_with_original`): this reads it again, under that lock.
        original = await store.get_payment_by_id(conn, refund.refund_of or 0, lock=True)
        assert original is not None  # the foreign key and the check constraint guarantee it
        if outcome.succeeded:
            if original.kind == PaymentKind.DEPOSIT:
                moved = await self.money.return_deposit(conn, refund)
            else:
                moved = await self.money.credit_returned_payout(conn, refund, original)
            refund = await store.transition(conn, refund, S.SUCCEEDED, cause=outcome.cause, details=details,
                                            refs=outcome.refs, settle_transfer_id=moved.transfer_id)
            await self.mark_undone(conn, original, refund)
            return refund
        columns: dict[str, Any] = {}
        if refund.debit_transfer_id is not None:
            # The wallet's money waited in clearing for the provider: it goes back to the wallet.
            columns["settle_transfer_id"] = (await self.money.unwind_payout(conn, refund)).transfer_id
        return await store.transition(conn, refund, S.FAILED, cause=outcome.cause, details=details, refs=outcome.refs,
                                      error_code=outcome.error_code, error_message=outcome.error_message, **columns)

    async def mark_undone(self, conn: AsyncConnection, original: Payment, refund: Payment) -> Payment:
        """The original of a succeeded refund (whose row the caller locked) becomes ``refunded`` when
        a Wave checkout refund gave the money back, ``reversed`` otherwise (an M-Pesa reversal, a Wave
        payout reversal, a payout whose money came back, a wallet payment reversed in the ledger);
        a payment intent it paid becomes ``refunded`` (`payments.intents.intent_refunded`)."""
        target = S.REFUNDED if refund.provider == WAVE and original.kind == PaymentKind.DEPOSIT else S.REVERSED
        if original.status is not S.SUCCEEDED:
            # IMPORTANT: never reached, since a refund is only made of a succeeded payment and at most
            # one at a time; if it were, the money has moved and a person must look.
            log.error("payment %s is %s, not succeeded, when its refund %s succeeded", original.public_id,
                      original.status, refund.public_id)
            return await flag_payment(conn, original, f"refund {refund.public_id} succeeded "
                                                      f"while the payment was {original.status}")
        undone = await store.transition(conn, original, target, cause=f"refund:{refund.public_id}",
                                        details={"refund": refund.public_id})
        # The payment intent it paid, if any, says so too, and its merchant hears of it.
        await intent_refunded(conn, undone, refund)
        return undone

    async def flag(self, public_id: str, reason: str, *, even_if_final: bool = False) -> None:
        """Flag an open payment for a person. A final one only ``even_if_final`` (a provider's word
        that contradicts it, `payments.review_flags`): otherwise a job or a result that came after
        the end (a status query's failure, say) has nothing to show anyone."""
        async with self.engine.begin() as conn:
            payment = await store.get_payment(conn, public_id, lock=True)
            if payment is not None and (even_if_final or not payment.status.is_final):
                await flag_payment(conn, payment, reason)

    async def apply_wave_payout(self, payout: Payout, *, cause: str = "wave_payout_update",
                                    event_id: str | None = None) -> str:
        """Apply what Wave says of a payout (its answer, a GET, a webhook with ``event_id``); the
        payout's client_reference is our public_id. Returns what it did."""
        public_id = payout.client_reference or ""
        key = event_id or f"{payout.id}:{payout.status.value}"
        summary = {"payout_id": payout.id, "status": payout.status.value,
                   "error": payout.error.code if payout.error else None}
        if payout.status is PayoutStatus.PROCESSING:
            await self.accepted(public_id, payout.id, {"payout_id": payout.id}, cause)
            return "processing"
        if payout.status is PayoutStatus.SUCCEEDED:
            outcome = Verdict(True, cause, refs={"payout_id": payout.id}, details={"status": "succeeded"})
        elif payout.status is PayoutStatus.FAILED:
            code = payout.error.code if payout.error else "provider_declined"
            message = payout.error.message if payout.error else "Wave declined the payout."
            outcome = Verdict(False, cause, code, message[:200], {"status": "failed"}, {"payout_id": payout.id})
        else:
            await self.flag(public_id, f"Wave payout {payout.status.value}")
            return "needs_review"
        async with self.engine.begin() as conn:
            payment = await store.get_payment(conn, public_id, lock=True)
            if payment is not None and payment.provider_ref is None:
                await store.note(conn, payment, {}, provider_ref=payout.id)
        applied, changed = await self.apply(public_id, outcome, event=(WAVE, key, "payout_status", summary))
        if applied is None:
            return "unknown"
        if not changed:
            return "duplicate"
        return "settled" if outcome.succeeded else "unwound"
