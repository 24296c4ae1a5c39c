"""STK pushes whose CheckoutRequestID we never recorded: kept when their callback comes, confirmed,
and credited once.

The push job (`ProviderJobs.run_stk_push`) records the CheckoutRequestID Daraja answers a push
with. A worker that dies between the two leaves a push nobody knows of: the job runs again and
pushes again. If the payer approves the first push too, M-Pesa takes their money, and the first
push's callback finds no payment. Such a callback (`StkOrphans.record`):

- is recorded once, in `provider_events` (kind ``stk_orphan``, keyed by its CheckoutRequestID), with
  what it says. A failure is recorded and ignored: nothing was taken.
- a success enqueues the job ``mpesa.stk_orphan``, due ``stk_orphan_grace_s`` later: longer than a
  push job may take to record the id, so that a callback which merely beat the record (Daraja calls
  back before it answers, at times) is not taken for an orphan. If by then a payment has that
  CheckoutRequestID, the callback was its own: recovery's STK query credits that payment
  (`ProviderResults.recover_stuck`), and the orphan is marked ``matched``.
- otherwise (`StkOrphans.run`), when ``confirm_stk_with_query`` is on, an STK query must confirm that
  the push succeeded (Daraja signs nothing); then the money is credited, once per M-Pesa receipt, as
  a ``deposit`` payment (channel ``api``, ``provider_ref`` the receipt, ``provider_refs.source``
  ``stk_orphan``) of the KES wallet of the user whose number paid (the callback's PhoneNumber). No
  such wallet: the money goes to M-Pesa suspense (keyed by the receipt) and the event is flagged
  ``needs_review``, as for a C2B payment naming no wallet (`payments.c2b`).

IMPORTANT: a push is credited once, whichever path comes first. Both lock the orphan's event row: the
orphan credit requires it ``pending`` and no payment with the push's id; a payment's own credit
(`Resolver.apply`) marks it ``matched``, or, if the push was credited as an orphan meanwhile, flags
the payment for a person instead of crediting it twice.

What a person must look at is flagged ``needs_review`` on the event, and the review queue lists it
(`payments.review.flagged`, `payments.review_flags`): M-Pesa refused the STK query, the push cannot
be booked, its receipt was booked already, and, while the query cannot confirm it, a job that ran out
of attempts. Such a job is not the end of it: recovery runs a fresh one for every orphan still
``pending`` whose job was parked (`retry_parked`), one per parked job, so Daraja is asked again once
it answers; a confirmation (or M-Pesa's denial) takes the flag off. A success callback after a
failure one (recorded ``ignored``) makes the orphan ``pending`` after all: M-Pesa's query decides.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.c2b import receipt_taken, wallet_owner_of
from payments.commands import Channel, PaymentKind
from payments.errors import PaymentsError
from payments.money import Currency, Money
from payments.outbox import Job, PermanentJobError, enqueue
from payments.payment_settings import JOB_STK_ORPHAN, MPESA, STK_ORPHAN_EVENT, PaymentSettings, ProviderClients
from payments.providers.daraja import StkState
from payments.providers.daraja_callbacks import StkCallback
from payments.providers.errors import ProviderError
from payments.resolution import Resolver
from payments.settlement import Settlement, lock_receipt
from payments.states import PaymentStatus

log = logging.getLogger(__name__)

S = PaymentStatus

#: `provider_refs.source` of a deposit made from an orphan push.
SOURCE = "stk_orphan"


class PushStillPending(Exception):
    """The STK query does not confirm the push yet: the job is retried later."""


class StkOrphans:
    """Records, confirms and credits STK pushes nobody recorded (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, money: Settlement, settings: PaymentSettings,
                 providers: ProviderClients) -> None:
        self.engine = engine
        self.resolver = resolver
        self.money = money
        self.settings = settings
        self.providers = providers

    async def record(self, callback: StkCallback) -> str:
        """Keep the callback of a push no payment names. Returns ``orphan`` (a success: confirmed
        and credited later, unless its push is recorded meanwhile), ``ignored`` (a failure: nothing
        was taken) or ``duplicate``."""
        checkout_id = callback.checkout_request_id
        summary = {"merchant_request_id": callback.merchant_request_id, "result_code": callback.result_code,
                   "result_desc": callback.result_desc[:200], "receipt": callback.receipt, "phone": callback.phone,
                   "amount": callback.amount.minor if callback.amount else None,
                   "outcome": "pending" if callback.succeeded else "ignored"}
        async with self.engine.begin() as conn:
            if not await store.record_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, summary):
                if not (callback.succeeded and await self._success_after_failure(conn, checkout_id, summary)):
                    return "duplicate"
            elif not callback.succeeded:
                log.info("failed STK callback for a push we have no record of: recorded, nothing to credit")
                return "ignored"
            grace = self.settings.stk_orphan_grace_s
            await enqueue(conn, JOB_STK_ORPHAN, {"checkout_request_id": checkout_id},
                          dedupe_key=f"{JOB_STK_ORPHAN}:{checkout_id}",
                          run_after=datetime.now(UTC) + timedelta(seconds=grace) if grace > 0 else None)
        log.warning("STK callback for a push we have no record of: kept; credited in %gs once M-Pesa confirms it, "
                    "unless its push is recorded meanwhile", self.settings.stk_orphan_grace_s)
        return "orphan"

    async def _success_after_failure(self, conn: AsyncConnection, checkout_id: str, summary: dict[str, Any]) -> bool:
        """A success callback for an orphan recorded as a failure (``ignored``: a 1037, say, and then
        the payer's PIN after all): it becomes ``pending``, with what the success says and the failure
        kept as ``earlier``, to be confirmed and credited as any orphan. False for anything else (a
        replay, a success recorded already)."""
        recorded = await store.provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, lock=True)
        if recorded is None or recorded.get("outcome") != "ignored":
            return False
        earlier = {k: recorded.get(k) for k in ("result_code", "result_desc")}
        await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, {**summary, "earlier": earlier})
        log.warning("STK success callback after a failure one, for a push we have no record of: kept")
        return True

    async def run(self, job: Job) -> None:
        """The ``mpesa.stk_orphan`` job: confirm the push by STK query, then credit it (or park it)."""
        checkout_id = str(job.payload.get("checkout_request_id", ""))
        async with self.engine.connect() as conn:
            event = await store.provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT)
            own = await store.find_by_provider_ref(conn, MPESA, checkout_id)
        if event is None:
            raise PermanentJobError("no STK callback is recorded for this push")
        if event.get("outcome") != "pending":
            return  # matched to its payment, or dealt with already
        if own is None and self.settings.confirm_stk_with_query and not await self._confirmed(checkout_id, job):
            return
        done = await self.credit(checkout_id)
        log.info("STK push with no record: %s", done)

    async def _confirmed(self, checkout_id: str, job: Job) -> bool:
        """Whether M-Pesa says the push succeeded; raises (the job is retried) while it cannot say."""
        daraja = self.providers.daraja
        if daraja is None:
            raise PermanentJobError("M-Pesa is not configured")
        try:
            answer = await daraja.stk_query(checkout_id)
            if answer.state is StkState.PENDING:
                raise PushStillPending("M-Pesa does not confirm the push yet")
        except ProviderError as exc:
            if not exc.retryable:
                # M-Pesa answered, and vouches for no such push (or refuses our question): a person looks.
                log.warning("STK query about a push we have no record of refused (%s): flagged", exc.code)
                await self._note(checkout_id, {"outcome": "unconfirmed",
                                               "needs_review": f"STK query refused: {exc}"[:200]})
                return False
            if job.is_last_attempt:
                await self._note(checkout_id, {"needs_review": "M-Pesa never answered about this push"})
            raise
        except PushStillPending:
            if job.is_last_attempt:
                await self._note(checkout_id, {"needs_review": "M-Pesa never confirmed this push"})
            raise
        if answer.state is StkState.SUCCEEDED:
            return True
        # The callback claimed a success and M-Pesa says otherwise: believe M-Pesa, credit nothing
        # (an earlier job's "never answered" is answered: nothing is left for a person).
        log.warning("an STK callback for a push we have no record of claimed a success M-Pesa denies")
        await self._note(checkout_id, {"outcome": "refuted", "query_result_code": answer.result_code}, unflag=True)
        return False

    async def credit(self, checkout_id: str) -> str:
        """Credit the push's money once (confirmed by the caller): to its payer's wallet, else to
        suspense. Returns ``credited``, ``suspense``, ``matched`` (a payment has the push after all),
        ``flagged`` (a person must look) or ``done`` (not pending any more)."""
        try:
            async with self.engine.begin() as conn:
                # IMPORTANT: the event row's lock serialises this with a payment's own credit (`Resolver`).
                event = await store.provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, lock=True)
                if event is None or event.get("outcome") != "pending":
                    return "done"
                # Confirmed (or not asked): an earlier job's "never answered" flag is answered; what
                # follows flags it again if a person must still look.
                await _unflag(conn, checkout_id)
                own = await store.find_by_provider_ref(conn, MPESA, checkout_id)
                if own is not None:
                    # Its push job recorded it after all: its own path credits it.
                    await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, {"outcome": "matched"},
                                                    payment_id=own.id)
                    return "matched"
                return await self._book(conn, checkout_id, event)
        except PaymentsError as exc:  # an amount no transfer may carry
            log.error("STK push with no record cannot be booked (%s): flagged for an operator", exc)
            await self._note(checkout_id, {"outcome": "unbookable", "needs_review": str(exc)[:200]})
            return "flagged"

    async def _book(self, conn: AsyncConnection, checkout_id: str, event: dict[str, Any]) -> str:
        receipt, phone = str(event.get("receipt") or ""), str(event.get("phone") or "")
        amount = Money(int(event.get("amount") or 0), Currency.KES)
        if not receipt or amount.minor <= 0:
            await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT,
                                            {"outcome": "unbookable", "needs_review": "no receipt or amount"})
            return "flagged"
        await lock_receipt(conn, receipt)  # against a booking by hand of the same receipt (`payments.c2b`)
        if await receipt_taken(conn, receipt) is not None:
            # That M-Pesa transaction was booked already (a forged or replayed callback): never twice.
            await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT,
                                            {"outcome": "receipt_booked", "needs_review": "receipt booked already"})
            return "flagged"
        owner = await wallet_owner_of(conn, phone)
        if owner is None:
            await self.money.park_in_suspense(conn, receipt, amount, kind="stk_orphan.suspense",
                                              seen={"payer": phone, "checkout": checkout_id})
            await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT,
                                            {"outcome": "suspense", "needs_review": "no wallet for the payer"})
            log.warning("STK push with no record paid from a number without a wallet: parked in suspense")
            return "suspense"
        new = store.NewPayment(
            payer_user_id=owner.id, idempotency_key=f"stk:{receipt}",
            request_hash=hashlib.sha256(f"stk:{receipt}:{amount.minor}".encode()).hexdigest(),
            kind=PaymentKind.DEPOSIT.value, channel=Channel.API.value, amount=amount, fee=Money.zero(Currency.KES),
            provider=MPESA, recipient_phone=owner.phone, provider_ref=receipt)
        payment = await store.insert_payment(conn, new, cause="stk_orphan")
        assert payment is not None  # the receipt is unused (checked above) and keys it
        moved = await self.money.credit_deposit(conn, payment)
        payment = await store.transition(
            conn, payment, S.SUCCEEDED, cause="stk_orphan",
            refs={"source": SOURCE, "receipt": receipt, "checkout_request_id": checkout_id},
            settle_transfer_id=moved.transfer_id)
        await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT,
                                        {"outcome": "credited", "payment": payment.public_id}, payment_id=payment.id)
        await self.resolver.receipts(conn, payment, "payer")
        return "credited"

    async def retry_parked(self, *, limit: int = 100) -> int:
        """Run a fresh ``mpesa.stk_orphan`` job for each orphan still ``pending`` whose last job was
        parked (its attempts ran out while M-Pesa could not confirm the push: Daraja down, the query
        still pending). Called by every recovery round; the new job's key names the parked one, so
        rounds that meet the same parked job enqueue it once. Returns how many were enqueued."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_PARKED_PENDING, {"kind": JOB_STK_ORPHAN, "limit": limit})).all()
            for row in rows:
                await enqueue(conn, JOB_STK_ORPHAN, {"checkout_request_id": row.checkout}, dedupe_key=row.next_key)
        if rows:
            log.warning("%d STK push(es) with no record still unconfirmed after their job gave up: asked again",
                        len(rows))
        return len(rows)

    async def _note(self, checkout_id: str, extra: dict[str, Any], *, unflag: bool = False) -> None:
        async with self.engine.begin() as conn:
            if unflag:
                await _unflag(conn, checkout_id)
            await store.note_provider_event(conn, MPESA, checkout_id, STK_ORPHAN_EVENT, extra)


#: Parked orphan jobs whose push is still ``pending`` and that no job followed yet (the follower's key
#: names the parked job: `retry_parked`). Through ``outbox_jobs_parked``, and the events' unique key.
_PARKED_PENDING = sql(
    "SELECT j.payload->>'checkout_request_id' AS checkout, "
    "  j.kind || ':' || (j.payload->>'checkout_request_id') || ':after:' || j.id AS next_key "
    "FROM outbox_jobs j JOIN provider_events e ON e.provider = 'mpesa' AND e.kind = 'stk_orphan' "
    "  AND e.event_key = j.payload->>'checkout_request_id' "
    "WHERE j.status = 'parked' AND j.kind = :kind AND e.payload->>'outcome' = 'pending' "
    "AND NOT EXISTS (SELECT 1 FROM outbox_jobs n WHERE n.dedupe_key = "
    "  j.kind || ':' || (j.payload->>'checkout_request_id') || ':after:' || j.id) "
    "ORDER BY j.id LIMIT :limit")


async def _unflag(conn: AsyncConnection, checkout_id: str) -> None:
    """Take the orphan's event out of the review queue (its flag answered)."""
    await conn.execute(sql(
        "UPDATE provider_events SET payload = payload - 'needs_review' "
        "WHERE provider = :pr AND event_key = :k AND kind = :kind AND payload ? 'needs_review'"),
        {"pr": MPESA, "k": checkout_id, "kind": STK_ORPHAN_EVENT})
