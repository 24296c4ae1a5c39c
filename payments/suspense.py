"""Money parked in suspense, and its release by an operator.

M-Pesa money that came into our paybill for no wallet of ours is never refused after the fact: a
C2B payment whose account number names no wallet (`payments.c2b`), or an STK push we never recorded
from a number without a wallet (`payments.stk_orphans`), moves from provider collection to the
M-Pesa suspense account (`Settlement.park_in_suspense`, transfer ``suspense:<receipt>``). It waits
there for a person, who finds whose it is (the customer calls with the receipt; the account number
was mistyped) and releases it once, one of two ways:

- **credited** to the wallet it was meant for: a ``deposit`` payment of its own, with the receipt as
  its provider reference (the same unique reference a confirmation takes). As for a payment booked
  by hand (`C2BReceiver.book_missed`), M-Pesa is asked first: Daraja signs no confirmation, so the
  one that parked the money may have been forged. The deposit waits in ``processing`` (the amount
  out of the list of what waits) while a transaction status query asks whether that receipt exists
  for that amount; the answer moves the money from suspense to the wallet (`Settlement.credit_deposit`,
  with its SMS receipt) or fails the deposit and puts the amount back on the list. Its debit
  transfer is the parking and its settle transfer the release, so reconciliation matches the
  statement's line with it and finds provider collection moved by exactly its amount; it is refunded
  like any M-Pesa deposit (a ``TransactionReversal`` of the receipt).
- **returned** to the payer: the operator reversed it at M-Pesa (the organisation portal's
  reversal; Daraja has nothing to ask for money that is not a payment of ours) and records that
  here: the amount goes from suspense back to provider collection, which the reversal emptied.

What waits is kept in `suspense_waiting` (a row added with the parking, taken out by a release or a
credit being confirmed), so the operators' list and count never read what was released; `sauti
ledger check` proves that table is exactly the parks with no release and no credit in progress, and
that the suspense accounts hold exactly its sum and what is being credited.

IMPORTANT: a parked amount is released at most once. A release deletes the waiting row first, which
queues a concurrent release of the same receipt behind it until it commits (then that one finds no
row and is answered from the first: the same request gets the same result, another is refused);
both ways also move the money with the same ledger key, ``release:<receipt>``, which the ledger
would refuse a second time; and no other path books a receipt parked here (`Settlement.parked_receipt`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.sql import sql
from payments import payment_store as store
from payments.c2b import CONFIRMATION, wallet_owner_of
from payments.commands import Channel, PaymentKind, mpesa_receipt
from payments.errors import InvalidRequest, PaymentsError
from payments.identities import audit
from payments.money import Currency, Money
from payments.outbox import enqueue
from payments.payment_settings import (
    BOOKED_BY,
    JOB_STATUS_QUERY,
    MPESA,
    PARKED_BY,
    STK_ORPHAN_EVENT,
    PaymentSettings,
)
from payments.payment_store import Payment
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.postings import TransferRequest, payment_legs
from payments.resolution import Resolver
from payments.settlement import Settlement
from payments.states import PaymentStatus

PARKED_KEY, RELEASE_KEY = "suspense:{}", "release:{}"
#: What became of a parked amount (`Parked.state`): waiting for a person; being credited (M-Pesa
#: asked whether the receipt is real); credited; returned to its payer.
OPEN, CONFIRMING, CREDITED, RETURNED = "open", "confirming", "credited", "returned"
#: The release transfers' kinds, which say which way the money went.
CREDIT_KIND, RETURN_KIND = "deposit.release", "suspense.return"


class NotInSuspense(PaymentsError):
    """No money is parked under this receipt."""

    code = "not_in_suspense"


class AlreadyReleased(PaymentsError):
    """The money parked under this receipt was credited or returned before."""

    code = "already_released"


@dataclass(frozen=True, slots=True)
class Parked:
    """An amount parked in suspense, and what became of it."""

    receipt: str
    amount: Money
    parked_at: datetime
    #: ``c2b`` (a paybill payment naming no wallet) or ``stk_orphan`` (an unrecorded push).
    source: str
    #: What M-Pesa told us of the payer and what they typed (the account number), where known.
    account: str | None
    payer: str | None
    payer_name: str | None
    state: str
    #: An STK push's CheckoutRequestID, whose delivery (`payments.stk_orphans`) parked it.
    checkout: str | None = None
    released_at: datetime | None = None
    #: The deposit it became (``credited``).
    payment: str | None = None
    #: Who released it, why, and (``returned``) the reversal's receipt on the statement.
    released_by: str | None = None
    reason: str | None = None
    reversal: str | None = None


_COLUMNS = (
    "SELECT t.id, t.reference, t.kind, t.metadata, t.created_at, pp.amount, pp.currency, e.payload AS event, ")
_PARKING = (
    "JOIN postings pp ON pp.transfer_id = t.id AND pp.amount > 0 "
    "LEFT JOIN provider_events e ON e.provider = 'mpesa' AND e.event_key = t.reference AND e.kind = :confirmation ")
#: Every parked amount, released or not, through the partial index transfers_parked (same predicate),
#: with its release and the deposit crediting it, if any (through their unique keys).
_ALL = (_COLUMNS + "r.kind AS released_kind, r.metadata AS released_meta, r.created_at AS released_at, "
        "pay.public_id AS deposit, pay.status AS deposit_status, pay.provider_refs AS deposit_refs "
        "FROM transfers t " + _PARKING +
        "LEFT JOIN transfers r ON r.idempotency_key = 'release:' || t.reference "
        "LEFT JOIN payments pay ON pay.provider = 'mpesa' AND pay.provider_ref = t.reference "
        "AND pay.provider_refs ? 'parked_by' "
        "WHERE t.idempotency_key LIKE 'suspense:%' ")
#: Those still waiting, from `suspense_waiting`: never reading what was released.
_WAITING = (_COLUMNS + "NULL AS released_kind, NULL AS released_meta, NULL AS released_at, NULL AS deposit, "
            "NULL AS deposit_status, NULL AS deposit_refs "
            "FROM suspense_waiting w JOIN transfers t ON t.id = w.transfer_id " + _PARKING + "WHERE true ")


def _parked(row: Any) -> Parked:
    meta, event, released = dict(row.metadata or {}), dict(row.event or {}), dict(row.released_meta or {})
    deposit = dict(row.deposit_refs or {})
    if row.released_kind is not None:
        state = CREDITED if row.released_kind == CREDIT_KIND else RETURNED
    else:
        state = CONFIRMING if row.deposit is not None and row.deposit_status in ("created", "pending",
                                                                                "processing") else OPEN
    by_deposit = state in (CONFIRMING, CREDITED)
    return Parked(
        receipt=row.reference, amount=Money(row.amount, Currency(row.currency)), parked_at=row.created_at,
        source="stk_orphan" if row.kind.startswith("stk_orphan") else "c2b",
        account=meta.get("account") or event.get("bill_ref"), payer=meta.get("payer"),
        payer_name=meta.get("payer_name"), state=state, checkout=meta.get("checkout"), released_at=row.released_at,
        payment=row.deposit if by_deposit else None,
        released_by=deposit.get(BOOKED_BY) if by_deposit else released.get("by"),
        reason=deposit.get("reason") if by_deposit else released.get("reason"), reversal=released.get("reversal"))


async def parked_money(conn: AsyncConnection, *, open_only: bool = True, limit: int = 50,
                       before: int | None = None) -> list[tuple[int, Parked]]:
    """Parked amounts, newest first, each with its parking transfer's id (``before`` pages on it);
    ``open_only``: only those still waiting for a person."""
    query = (_WAITING if open_only else _ALL) + ("AND t.id < :before " if before is not None else "")
    rows = await conn.execute(sql(query + "ORDER BY t.id DESC LIMIT :n"),
                              {"confirmation": CONFIRMATION, "n": limit, "before": before})
    return [(row.id, _parked(row)) for row in rows]


def receipt_typed(text: object) -> str:
    """A receipt as a person types it: what was parked under it is found as typed or upper-cased
    (M-Pesa's own are ten capitals and digits; a delivery may have brought anything)."""
    receipt = text.strip() if isinstance(text, str) else ""
    if not receipt or len(receipt) > 64 or not receipt.isprintable() or "/" in receipt:
        raise InvalidRequest(f"a receipt is 1 to 64 printable characters, not {str(text)[:30]!r}")
    return receipt


async def parked(conn: AsyncConnection, receipt: str) -> Parked | None:
    """The amount parked under ``receipt`` (as typed, or upper-cased), whatever became of it; None
    if none was."""
    row = (await conn.execute(sql(_ALL + "AND t.idempotency_key IN (:key, :upper) "
                                  "ORDER BY t.idempotency_key = :key DESC LIMIT 1"),
                              {"confirmation": CONFIRMATION, "key": PARKED_KEY.format(receipt),
                               "upper": PARKED_KEY.format(receipt.upper())})).first()
    return None if row is None else _parked(row)


async def parked_many(conn: AsyncConnection, receipts: Sequence[str]) -> dict[str, Parked]:
    """What was parked under each of ``receipts`` (exactly as given) and what became of it, for
    those under which anything was (reconciliation's look-up: one statement)."""
    if not receipts:
        return {}
    rows = await conn.execute(sql(_ALL + "AND t.idempotency_key = ANY(:keys)"),
                              {"confirmation": CONFIRMATION, "keys": [PARKED_KEY.format(r) for r in receipts]})
    return {row.reference: _parked(row) for row in rows}


async def open_total(conn: AsyncConnection) -> tuple[int, Money | None]:
    """How many parked amounts wait for a person, and their sum (None when none do; all are
    M-Pesa's, in shillings)."""
    row = (await conn.execute(sql(
        "SELECT count(*) AS n, coalesce(sum(pp.amount), 0) AS total, min(pp.currency) AS currency "
        "FROM suspense_waiting w JOIN postings pp ON pp.transfer_id = w.transfer_id AND pp.amount > 0"))).one()
    return int(row.n), (Money(int(row.total), Currency(row.currency)) if row.n else None)


class SuspenseDesk:
    """Releases parked money, once (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, resolver: Resolver, money: Settlement, settings: PaymentSettings) -> None:
        self.engine = engine
        self.resolver = resolver
        self.money = money
        self.settings = settings

    async def credit(self, receipt: str, phone: str, *, reason: str, by: str) -> tuple[Payment, bool]:
        """Credit the money parked under ``receipt`` to the wallet of ``phone`` (any local form of
        an active Kenyan wallet's number), within that wallet's limits, once M-Pesa confirms the
        receipt for that amount. Returns the deposit (``processing`` until M-Pesa answers), and
        whether this call made it: asking again for the same wallet gives the same deposit (the
        receipt is the command's key). Raises `NotInSuspense`, `AlreadyReleased` (credited or
        being credited to another wallet, or returned), `InvalidRequest` (no such wallet, no
        reason) or the limits' refusal."""
        receipt, (reason, by) = receipt_typed(receipt), _checked(reason, by)
        if not isinstance(phone, str):
            raise InvalidRequest("name the wallet to credit by its phone number")
        async with self.engine.begin() as conn:
            owner = await wallet_owner_of(conn, phone)
            if owner is None:
                raise InvalidRequest(f"{phone.strip()[:20]!r} is not the number of an active Kenyan wallet: "
                                     "nothing credited")
            parking_id, held = await self._take(conn, receipt)
            if parking_id is None:
                done = await store.get_payment(conn, held.payment) if held.payment else None
                if done is not None and done.payer_user_id == owner.id:
                    return done, False
                raise AlreadyReleased(_released(held))
            holder = await store.holder_of_receipt(conn, MPESA, held.receipt, other_than=0)
            if holder is not None:
                # Another payment's receipt (a push's, a payout's): the parking came from a forged or
                # replayed delivery. Never booked twice: record it as returned once the statement says so.
                raise AlreadyReleased(f"receipt {held.receipt} is payment {holder}'s already: nothing credited")
            self.settings.limits.check(held.amount, kyc_tier=owner.kyc_tier, spent_today=Money.zero(Currency.KES))
            try:
                payer_phone: str | None = parse_msisdn(held.payer or "", "KE")
            except InvalidPhoneNumber:
                payer_phone = None  # Safaricom may mask or hash the payer's number
            # A key of its own per try: a credit M-Pesa did not confirm leaves the receipt free again.
            new = store.NewPayment(
                payer_user_id=owner.id, idempotency_key=f"suspense:{held.receipt}:{secrets.token_hex(4)}",
                request_hash=hashlib.sha256(f"suspense:{held.receipt}:{held.amount.minor}".encode()).hexdigest(),
                kind=PaymentKind.DEPOSIT.value, channel=Channel.API.value, amount=held.amount,
                fee=Money.zero(Currency.KES), provider=MPESA, recipient_phone=payer_phone,
                provider_ref=held.receipt)
            try:
                async with conn.begin_nested():
                    payment = await store.insert_payment(conn, new, cause="credit_from_suspense")
            except IntegrityError:
                holder = await store.find_by_provider_ref(conn, MPESA, held.receipt)
                raise AlreadyReleased(f"receipt {held.receipt} is booked by payment "
                                      f"{holder.public_id if holder else 'another'}: nothing credited") from None
            assert payment is not None  # a fresh key
            # Source "c2b": the status query and recovery treat it as a payment to our paybill.
            payment = await store.transition(
                conn, payment, PaymentStatus.PROCESSING, cause="credit_from_suspense",
                refs={"source": "c2b", "receipt": held.receipt, "bill_ref": (held.account or "")[:40],
                      PARKED_BY: parking_id, BOOKED_BY: by, "reason": reason})
            await enqueue(conn, JOB_STATUS_QUERY, {"payment": payment.public_id},
                          dedupe_key=f"{JOB_STATUS_QUERY}:{payment.public_id}:c2b")
            await audit(conn, actor=by, action="suspense.credit", subject=payment.public_id,
                        details={"receipt": held.receipt, "amount": held.amount.minor, "wallet": owner.phone,
                                 "reason": reason})
            await _note_delivery(conn, held, "being credited from suspense", payment.id)
            return payment, True

    async def mark_returned(self, receipt: str, *, reason: str, by: str,
                            reversal: str | None = None) -> tuple[Parked, bool]:
        """Record that the money parked under ``receipt`` went back to its payer (reversed at M-Pesa,
        ``reversal`` the reversal's receipt when known): from suspense back to provider collection.
        Returns it, and whether this call recorded it (asking again changes nothing)."""
        receipt, (reason, by) = receipt_typed(receipt), _checked(reason, by)
        reversal = mpesa_receipt(reversal) if reversal and reversal.strip() else None
        async with self.engine.begin() as conn:
            parking_id, held = await self._take(conn, receipt)
            if parking_id is None:
                if held.state == RETURNED:
                    return held, False
                raise AlreadyReleased(_released(held))
            collection = await self.money.accounts.collection(conn, MPESA, Currency.KES)
            suspense = await self.money.accounts.suspense(conn, MPESA, held.amount.currency)
            meta = {"by": by, "reason": reason, **({"reversal": reversal} if reversal else {})}
            await self.money.ledger.transfer(TransferRequest(
                RELEASE_KEY.format(held.receipt), payment_legs(suspense, collection, held.amount), kind=RETURN_KIND,
                reference=held.receipt, metadata=meta), conn=conn)
            await audit(conn, actor=by, action="suspense.return", subject=held.receipt,
                        details={"amount": held.amount.minor, "reversal": reversal, "reason": reason})
            await _note_delivery(conn, held, "returned to the payer", None)
            found = await parked(conn, held.receipt)
        assert found is not None
        return found, True

    async def _take(self, conn: AsyncConnection, receipt: str) -> tuple[int | None, Parked]:
        """Take the receipt's waiting row (deleted: released, or being credited, in this
        transaction) and what is parked: its parking transfer's id, or None when it was taken
        before (what became of it is in the `Parked`). `NotInSuspense` when nothing was parked."""
        # IMPORTANT: the row's lock queues concurrent releases of one receipt; the second finds the
        # row gone once the first commits, and is answered from the first's.
        found = await parked(conn, receipt)  # as typed, else upper-cased: one receipt, exactly
        if found is None:
            raise NotInSuspense(f"no money is parked in suspense under the receipt {receipt}")
        row = (await conn.execute(sql("DELETE FROM suspense_waiting WHERE receipt = :r RETURNING transfer_id"),
                                  {"r": found.receipt})).first()
        held = await parked(conn, found.receipt)  # after the row: what a release before this one did
        assert held is not None
        if (row is None) == (held.state == OPEN):  # taken yet open, or waiting yet released: see `ledger check`
            raise AlreadyReleased(f"the money of {held.receipt} is {held.state}, and "
                                  f"{'not ' if row is None else ''}waiting: run `sauti ledger check`")
        return (None if row is None else int(row.transfer_id)), held


async def _note_delivery(conn: AsyncConnection, held: Parked, outcome: str, payment_id: int | None) -> None:
    """What became of it, on the delivery that parked it (a C2B confirmation, or an STK push's)."""
    event = (held.receipt, CONFIRMATION) if held.source == "c2b" else (held.checkout, STK_ORPHAN_EVENT)
    if event[0]:
        await store.note_provider_event(conn, MPESA, event[0], event[1],
                                        {"outcome": outcome, "needs_review": False}, payment_id=payment_id)


def _released(held: Parked) -> str:
    if held.state == CREDITED:
        return f"the money of {held.receipt} was credited already, as {held.payment}: nothing changed"
    if held.state == CONFIRMING:
        return (f"the money of {held.receipt} is being credited, as {held.payment}, once M-Pesa confirms it: "
                "nothing changed")
    return f"the money of {held.receipt} was returned to its payer already: nothing changed"


REASON_MAX = 500


def _checked(reason: object, by: object) -> tuple[str, str]:
    """The reason and who releases, checked: printable only (both go into jsonb: no NUL, no lone
    surrogate)."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text or len(text) > REASON_MAX or not text.isprintable():
        raise InvalidRequest(f"say why (the customer's call, the statement's line): 1 to {REASON_MAX} printable "
                             "characters")
    if not isinstance(by, str) or not by.strip() or not by.isprintable():
        raise InvalidRequest("say who releases it")
    return text, by.strip()
