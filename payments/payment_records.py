"""What operators look at (the operator API, `gateway.ops_api`, and dashboard, `gateway.ops_dashboard`):
payments found by what a person knows of them, and one payment's whole record.

- `search_payments`: newest first, filtered by status, kind, provider, channel, a phone number (the
  payer's or the recipient's), flagged for review or not, and paged by id (``before``).
- `payment_record`: the payment with its transitions, the ledger transfers that moved its money (with
  every posting and the account it touched), the provider's callbacks for it, its outbox jobs
  (provider calls, SMS receipts, webhook deliveries) and what operators did to it (the audit log).
  Each part is found through an index (migration 0011), never by reading a whole table.

Reading only: what operators *do* (verdicts, refunds, retries) goes through `payments.review`,
`payments.refunds` and `payments.outbox`, as the CLI's commands do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.schema import PAYMENT_CHANNELS, PAYMENT_KINDS, PAYMENT_PROVIDERS, PAYMENT_STATUSES
from db.sql import sql
from payments import payment_store as store
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.outbox import DEFAULT_MAX_ATTEMPTS, Job, jobs_of_payment
from payments.payment_store import Payment, PaymentEvent
from payments.phones import InvalidPhoneNumber, parse_msisdn
from payments.review_flags import review_reason


@dataclass(frozen=True, slots=True)
class PaymentFilter:
    """Which payments to list: every field given must hold (None: any). ``phone`` is the payer's
    or the recipient's number, in any form `payments.phones` reads. ``party_user_id`` is a user who
    made or received them (what that user's API key may read: `GET /v1/payments/{id}`), and
    ``api_key_id`` the API key whose requests made them."""

    status: str | None = None
    kind: str | None = None
    provider: str | None = None
    channel: str | None = None
    phone: str | None = None
    needs_review: bool = False
    party_user_id: int | None = None
    api_key_id: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("status", PAYMENT_STATUSES), ("kind", PAYMENT_KINDS),
                              ("provider", PAYMENT_PROVIDERS), ("channel", PAYMENT_CHANNELS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise InvalidRequest(f"{name} is one of {', '.join(allowed)}")
        if self.phone is not None:
            try:
                object.__setattr__(self, "phone", parse_msisdn(self.phone))
            except InvalidPhoneNumber as exc:
                raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True, slots=True)
class Listed:
    """A payment in a list, with its payer's number (what a list shows beside it)."""

    payment: Payment
    payer_phone: str


async def search_payments(conn: AsyncConnection, wanted: PaymentFilter, *, limit: int,
                          before: int | None = None) -> list[Listed]:
    """Payments as ``wanted``, newest first; ``before`` is a payment's row id (the last of the
    previous page: `Payment.id`), for the next page."""
    where, params = ["p.id < :before"], {"before": before or 2**63 - 1, "limit": limit}
    for name in ("status", "kind", "provider", "channel"):
        if (value := getattr(wanted, name)) is not None:
            where.append(f"p.{name} = :{name}")
            params[name] = value
    if wanted.needs_review:
        # Each side through its own index (``payments_open``; ``payments_contradicted``, migration 0021).
        where.append("((p.status IN ('created', 'pending', 'processing') AND p.provider_refs ? 'needs_review') "
                     "OR p.provider_refs ? 'contradiction')")
    if wanted.api_key_id is not None:  # through payments_api_key (api_key_id, id)
        where.append("p.api_key_id = :api_key_id")
        params["api_key_id"] = wanted.api_key_id
    sides: tuple[str, str] | None = None
    if wanted.phone is not None:
        params["phone"] = wanted.phone
        sides = ("p.payer_user_id = (SELECT id FROM users WHERE phone = :phone)", "p.recipient_phone = :phone")
    elif wanted.party_user_id is not None:
        params["party"] = wanted.party_user_id
        sides = ("p.payer_user_id = :party", "p.recipient_user_id = :party")
    if sides is not None:
        # Either side, each read newest first through its own index ((payer_user_id, id), and
        # (recipient_phone, id) or (recipient_user_id, id)) and cut to the page before they are
        # merged: one statement with "payer OR recipient" lets the planner walk every payment
        # backwards instead, when it guesses the number is common (it read all of a 20,000-row
        # table so). The sides hold every condition: the outer statement only merges them.
        common = " AND ".join(where)
        where = ["p.id IN (" + " UNION ALL ".join(
            f"(SELECT p.id FROM payments p WHERE {common} AND {side} ORDER BY p.id DESC LIMIT :limit)"
            for side in sides) + ")"]
    columns = ", ".join(f"p.{c.strip()}" for c in store.PAYMENT_COLUMNS.split(","))
    rows = await conn.execute(sql(
        f"SELECT {columns}, u.phone AS payer_phone FROM payments p JOIN users u ON u.id = p.payer_user_id "
        f"WHERE {' AND '.join(where)} ORDER BY p.id DESC LIMIT :limit"), params)
    return [Listed(store.payment_from_row(row), row.payer_phone) for row in rows]


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One leg of a transfer: the account (by its code, `payments.accounts`) and what it moved."""

    account_code: str
    amount: Money
    balance_after: Money


@dataclass(frozen=True, slots=True)
class TransferLine:
    """A ledger transfer that moved the payment's money (``kind`` is ``<payment kind>.<step>``)."""

    id: int
    kind: str
    idempotency_key: str
    reverses_transfer_id: int | None
    created_at: datetime
    postings: tuple[PostingLine, ...]


@dataclass(frozen=True, slots=True)
class ProviderCallback:
    """A callback or webhook the provider sent about the payment (deduplicated on its own id)."""

    provider: str
    kind: str
    event_key: str
    received_at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    details: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """Everything known about one payment, for the person looking into it."""

    payment: Payment
    payer_phone: str
    events: tuple[PaymentEvent, ...]
    refund_of: Payment | None
    refunds: tuple[Payment, ...]
    transfers: tuple[TransferLine, ...]
    callbacks: tuple[ProviderCallback, ...]
    jobs: tuple[Job, ...]
    audit: tuple[AuditEntry, ...]

    @property
    def needs_review(self) -> str | None:
        return review_reason(self.payment)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def payment_record(conn: AsyncConnection, payment: Payment, *,
                         default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> PaymentRecord:
    """The whole record of ``payment`` (see the module's docstring)."""
    payer = (await conn.execute(sql("SELECT phone FROM users WHERE id = :u"), {"u": payment.payer_user_id})).scalar()
    refund_of = await store.get_payment_by_id(conn, payment.refund_of) if payment.refund_of else None
    refunds = await store.refunds_of(conn, payment.id)
    return PaymentRecord(
        payment=payment, payer_phone=payer, events=tuple(await store.events_of(conn, payment.id)),
        refund_of=refund_of, refunds=tuple(refunds), transfers=await _transfers(conn, payment),
        callbacks=await _callbacks(conn, payment.id),
        jobs=tuple(await jobs_of_payment(conn, payment.public_id, default_max_attempts=default_max_attempts)),
        audit=await _audit(conn, payment.public_id))


async def _transfers(conn: AsyncConnection, payment: Payment) -> tuple[TransferLine, ...]:
    rows = (await conn.execute(sql(
        "SELECT t.id, t.kind, t.idempotency_key, t.reverses_transfer_id, t.created_at, "
        "a.code, p.amount, p.currency, p.balance_after "
        "FROM transfers t JOIN postings p ON p.transfer_id = t.id JOIN accounts a ON a.id = p.account_id "
        "WHERE t.reference = :ref OR t.id = ANY(:ids) ORDER BY t.id, p.id"),
        {"ref": payment.public_id,
         "ids": [i for i in (payment.debit_transfer_id, payment.settle_transfer_id) if i is not None]})).all()
    lines: dict[int, TransferLine] = {}
    for r in rows:
        currency = Currency(r.currency)
        posting = PostingLine(r.code, Money(r.amount, currency), Money(r.balance_after, currency))
        known = lines.get(r.id)
        lines[r.id] = (TransferLine(r.id, r.kind, r.idempotency_key, r.reverses_transfer_id, r.created_at, (posting,))
                       if known is None else
                       TransferLine(known.id, known.kind, known.idempotency_key, known.reverses_transfer_id,
                                    known.created_at, (*known.postings, posting)))
    return tuple(lines.values())


async def _callbacks(conn: AsyncConnection, payment_id: int) -> tuple[ProviderCallback, ...]:
    rows = await conn.execute(sql(
        "SELECT provider, kind, event_key, received_at, payload FROM provider_events WHERE payment_id = :p "
        "ORDER BY id"), {"p": payment_id})
    return tuple(ProviderCallback(r.provider, r.kind, r.event_key, r.received_at, _json(r.payload)) for r in rows)


async def _audit(conn: AsyncConnection, public_id: str) -> tuple[AuditEntry, ...]:
    rows = await conn.execute(sql(
        "SELECT at, actor, action, details FROM audit_log WHERE subject = :s ORDER BY id"), {"s": public_id})
    return tuple(AuditEntry(r.at, r.actor, r.action, _json(r.details)) for r in rows)
