"""The payments tables (migration 0003) as Python: reading payments, recording them idempotently,
moving them through the state machine with an event per transition, and deduplicating provider
callbacks. Every function writes in the caller's open transaction (``conn``); none commits.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.accounts import AccountKind, owned_code_sql
from payments.local_time import day_and_month_start
from payments.money import Currency, Money
from payments.plain_text import CONTROL
from payments.references import ReferenceKind, payment_reference, read_reference
from payments.states import PaymentStatus, check_transition
from payments.webhook_events import enqueue_events

# Crockford's base32, lower case: no i, l, o, u, so ids survive being read aloud or typed.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_public_id() -> str:
    """``pay_`` + 26 characters: 48 bits of milliseconds then 80 random bits (a ULID), so ids sort by
    creation time. This is our id at the providers (Daraja OriginatorConversationID, Wave
    Idempotency-Key and client_reference)."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "pay_" + "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment as it stands."""

    id: int
    public_id: str
    payer_user_id: int
    idempotency_key: str
    request_hash: str
    kind: str
    channel: str
    amount: Money
    fee: Money
    status: PaymentStatus
    provider: str | None
    provider_ref: str | None
    recipient_phone: str | None
    recipient_user_id: int | None
    error_code: str | None
    error_message: str | None
    debit_transfer_id: int | None
    settle_transfer_id: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    provider_refs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    transcript: str | None = None
    confidence: Decimal | None = None
    voice_confirmed: bool = False
    #: The merchant side of a bill payment (paybill + account number) or a till purchase.
    paybill: str | None = None
    account_number: str | None = None
    till: str | None = None
    #: For a refund: the id (not public id) of the payment it undoes.
    refund_of: int | None = None
    #: The API key whose request made it (`payments.webhook_events` tells that key's endpoints how it ends).
    api_key_id: int | None = None

    @property
    def total(self) -> Money:
        return self.amount + self.fee

    @property
    def reference(self) -> str:
        """What people see, type and say for it (screens, SMS, voice): `payments.references`."""
        return payment_reference(self.id)


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    from_status: PaymentStatus | None
    to_status: PaymentStatus
    cause: str
    details: Mapping[str, Any]
    at: datetime


_COLUMNS = ("id, public_id, payer_user_id, idempotency_key, request_hash, kind, channel, amount, fee, currency, "
            "status, provider, provider_ref, recipient_phone, recipient_user_id, error_code, error_message, "
            "debit_transfer_id, settle_transfer_id, created_at, updated_at, finished_at, provider_refs, "
            "transcript, confidence, voice_confirmed, paybill, account_number, till, refund_of, api_key_id")


#: For reads elsewhere (`payments.payment_records`): the columns `payment_from_row` needs.
PAYMENT_COLUMNS = _COLUMNS


def _payment(row: Any) -> Payment:
    currency = Currency(row.currency)
    refs = row.provider_refs
    if isinstance(refs, str):
        refs = json.loads(refs)
    return Payment(
        id=row.id, public_id=row.public_id, payer_user_id=row.payer_user_id, idempotency_key=row.idempotency_key,
        request_hash=row.request_hash, kind=row.kind, channel=row.channel, amount=Money(row.amount, currency),
        fee=Money(row.fee, currency), status=PaymentStatus(row.status), provider=row.provider,
        provider_ref=row.provider_ref, recipient_phone=row.recipient_phone, recipient_user_id=row.recipient_user_id,
        error_code=row.error_code, error_message=row.error_message, debit_transfer_id=row.debit_transfer_id,
        settle_transfer_id=row.settle_transfer_id, created_at=row.created_at, updated_at=row.updated_at,
        finished_at=row.finished_at, provider_refs=dict(refs or {}), transcript=row.transcript,
        confidence=row.confidence, voice_confirmed=row.voice_confirmed, paybill=row.paybill,
        account_number=row.account_number, till=row.till, refund_of=row.refund_of, api_key_id=row.api_key_id)


payment_from_row = _payment


@dataclass(frozen=True, slots=True)
class NewPayment:
    """What `insert_payment` records."""

    payer_user_id: int
    idempotency_key: str
    request_hash: str
    kind: str
    channel: str
    amount: Money
    fee: Money
    provider: str | None = None
    recipient_phone: str | None = None
    recipient_user_id: int | None = None
    transcript: str | None = None
    confidence: Decimal | None = None
    voice_confirmed: bool = False
    paybill: str | None = None
    account_number: str | None = None
    till: str | None = None
    refund_of: int | None = None
    #: The provider's id, known at once for deliveries that create their payment (C2B's TransID).
    provider_ref: str | None = None
    api_key_id: int | None = None


# The row and its first event in one statement (one round trip); a key already used inserts neither.
_INSERT = sql(f"""
WITH inserted AS (
    INSERT INTO payments (public_id, payer_user_id, idempotency_key, request_hash, kind, channel, amount, fee,
                          currency, provider, recipient_phone, recipient_user_id, transcript, confidence,
                          voice_confirmed, paybill, account_number, till, refund_of, provider_ref, api_key_id)
    VALUES (:public_id, :payer, :key, :hash, :kind, :channel, :amount, :fee, :currency, :provider, :phone,
            :recipient, :transcript, :confidence, :voice_confirmed, :paybill, :account_number, :till, :refund_of,
            :provider_ref, :api_key_id)
    ON CONFLICT (payer_user_id, idempotency_key) DO NOTHING
    RETURNING {_COLUMNS}
), event AS (
    INSERT INTO payment_events (payment_id, from_status, to_status, cause, details)
    SELECT id, NULL, 'created', :cause, CAST('{{}}' AS jsonb) FROM inserted
)
SELECT {_COLUMNS} FROM inserted
""")


async def insert_payment(conn: AsyncConnection, new: NewPayment, *, cause: str) -> Payment | None:
    """Record a payment in `created`, with its first event. None when the payer already used the key
    (a concurrent insert with the same key is waited for, then counts as used)."""
    row = (await conn.execute(_INSERT, {
        "public_id": new_public_id(), "payer": new.payer_user_id, "key": new.idempotency_key,
        "hash": new.request_hash, "kind": new.kind, "channel": new.channel, "amount": new.amount.minor,
        "fee": new.fee.minor, "currency": new.amount.currency.value, "provider": new.provider,
        "phone": new.recipient_phone, "recipient": new.recipient_user_id, "transcript": new.transcript,
        "confidence": new.confidence, "voice_confirmed": new.voice_confirmed, "paybill": new.paybill,
        "account_number": new.account_number, "till": new.till, "refund_of": new.refund_of,
        "provider_ref": new.provider_ref, "api_key_id": new.api_key_id, "cause": cause})).first()
    return _payment(row) if row is not None else None


async def find_by_key(conn: AsyncConnection, payer_user_id: int, key: str) -> Payment | None:
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE payer_user_id = :p AND idempotency_key = :k"),
        {"p": payer_user_id, "k": key})).first()
    return _payment(row) if row else None


async def find_by_api_key(conn: AsyncConnection, api_key_id: int, key: str) -> Payment | None:
    """The payment API key ``api_key_id`` made under ``key``, whoever paid it (a platform key names
    the payer of each request: the same key for another payer is a conflict, not a second payment)."""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE api_key_id = :a AND idempotency_key = :k LIMIT 1"),
        {"a": api_key_id, "k": key})).first()
    return _payment(row) if row else None


@dataclass(frozen=True, slots=True)
class Parties:
    """Who a payment's receipts go to: the payer's number and registered name, and the payee's
    when the payee has a Sauti wallet (else None)."""

    payer_phone: str
    payer_name: str
    payee_phone: str | None
    payee_name: str | None
    #: The languages each chose (their receipts are written in it).
    payer_language: str = "en"
    payee_language: str = "en"
    #: Each one's wallet balance right after this payment moved their money (minor units, the
    #: payment's currency), as their wallet's posting in it says; None when it moved none of theirs.
    payer_balance_after: int | None = None
    payee_balance_after: int | None = None




def _balance_after(who: str) -> str:
    """A party's wallet balance right after the payment: its wallet's posting in the payment's own
    transfers. The wallet is found by its code (a unique index) and the posting by transfer
    (ix_postings_transfer_id): two index probes at any size of ledger. Wallets are never sharded,
    so one posting says it."""
    wallet = owned_code_sql(AccountKind.CUSTOMER_WALLET, who, "p.currency")
    return (f"(SELECT po.balance_after FROM postings po JOIN accounts a ON a.id = po.account_id AND a.code = {wallet} "
            "WHERE po.transfer_id IN (p.debit_transfer_id, p.settle_transfer_id) ORDER BY po.id DESC LIMIT 1)")


_PAYMENT_AND_PARTIES = sql(
    "SELECT p.*, payer.phone AS payer_phone, payer.display_name AS payer_name, payer.language AS payer_language, "
    "payee.phone AS payee_phone, payee.display_name AS payee_name, payee.language AS payee_language, "
    f"{_balance_after('p.payer_user_id')} AS payer_balance_after, "
    f"{_balance_after('p.recipient_user_id')} AS payee_balance_after "
    f"FROM (SELECT {_COLUMNS} FROM payments WHERE public_id = :p) p "
    "JOIN users payer ON payer.id = p.payer_user_id LEFT JOIN users payee ON payee.id = p.recipient_user_id")


async def get_payment_and_parties(conn: AsyncConnection, public_id: str) -> tuple[Payment, Parties] | None:
    """The payment with its `Parties`, in one statement (a receipt's job needs nothing else), or None."""
    row = (await conn.execute(_PAYMENT_AND_PARTIES, {"p": public_id})).first()
    if row is None:
        return None
    return _payment(row), Parties(row.payer_phone, row.payer_name, row.payee_phone, row.payee_name,
                                  row.payer_language, row.payee_language or "en", row.payer_balance_after,
                                  row.payee_balance_after)


async def get_payment(conn: AsyncConnection, public_id: str, *, lock: bool = False) -> Payment | None:
    """The payment, or None; ``lock`` takes its row lock until the transaction ends, so two
    deliveries about one payment are applied one after the other."""
    suffix = " FOR UPDATE" if lock else ""
    row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM payments WHERE public_id = :p{suffix}"),
                              {"p": public_id})).first()
    return _payment(row) if row else None


async def find_payment(conn: AsyncConnection, id_or_reference: str) -> Payment | None:
    """The payment a person or a client names: by its public id (``pay_…``) or its short reference
    (``K7Q2M9BXA4``, read leniently); None when it names none."""
    if CONTROL.search(id_or_reference):  # no id of ours holds one, and PostgreSQL cannot take a NUL
        return None
    if id_or_reference.startswith("pay_"):
        return await get_payment(conn, id_or_reference)
    named = read_reference(id_or_reference)
    if named is None or named[0] is not ReferenceKind.PAYMENT:
        return None
    return await get_payment_by_id(conn, named[1])


async def get_payment_by_id(conn: AsyncConnection, payment_id: int, *, lock: bool = False) -> Payment | None:
    """The payment with this row id (a refund's ``refund_of``), or None; ``lock`` as in `get_payment`."""
    suffix = " FOR UPDATE" if lock else ""
    row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM payments WHERE id = :i{suffix}"),
                              {"i": payment_id})).first()
    return _payment(row) if row else None


async def live_refund_of(conn: AsyncConnection, payment_id: int) -> Payment | None:
    """The refund of this payment that has not failed, if any (the database allows one at most)."""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE refund_of = :i AND status <> 'failed'"), {"i": payment_id})).first()
    return _payment(row) if row else None


async def refunds_of(conn: AsyncConnection, payment_id: int) -> list[Payment]:
    """Every refund of this payment, failed ones included, oldest first."""
    rows = await conn.execute(sql(f"SELECT {_COLUMNS} FROM payments WHERE refund_of = :i ORDER BY id"),
                              {"i": payment_id})
    return [_payment(r) for r in rows]


async def find_by_provider_ref(conn: AsyncConnection, provider: str, ref: str, *, lock: bool = False) -> Payment | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE provider = :pr AND provider_ref = :r{suffix}"),
        {"pr": provider, "r": ref})).first()
    return _payment(row) if row else None


async def holder_of_receipt(conn: AsyncConnection, provider: str, receipt: str, *, other_than: int,
                            failed_too: bool = True) -> str | None:
    """The public id of a payment other than ``other_than`` that holds ``receipt`` (as its provider
    reference or its receipt), if any: through `payments_provider_ref` and `payments_receipt`
    (migration 0012). No provider transaction may be given to two payments. Without ``failed_too``,
    failed payments do not count (a booking by hand that M-Pesa refused credited nothing: its
    receipt may be booked again)."""
    failed = "" if failed_too else "AND status <> 'failed' "
    return (await conn.execute(sql(
        "SELECT public_id FROM payments WHERE id <> :id "
        "AND ((provider = :pr AND provider_ref = :r) OR (provider = :pr AND provider_refs->>'receipt' = :r)) "
        f"{failed}LIMIT 1"), {"pr": provider, "r": receipt, "id": other_than})).scalar_one_or_none()


# Columns `transition` may set along with the status.
_SETTABLE = frozenset({"provider_ref", "error_code", "error_message", "debit_transfer_id", "settle_transfer_id",
                       "retry_count"})


async def transition(
    conn: AsyncConnection,
    payment: Payment,
    target: PaymentStatus,
    *,
    cause: str,
    details: Mapping[str, Any] | None = None,
    refs: Mapping[str, Any] | None = None,
    **columns: Any,
) -> Payment:
    """Move a payment (whose row the caller locked, or just inserted) to ``target``, recording the
    event. Raises `InvalidTransition` for a move the state machine forbids; callers check
    `is_replay` first for deliveries that may be duplicates."""
    check_transition(payment.status, target)
    unknown = set(columns) - _SETTABLE
    if unknown:
        raise ValueError(f"transition cannot set {sorted(unknown)}")
    sets = ", ".join(f"{name} = :{name}" for name in columns)
    # The change and its event in one statement (one round trip); a final state also finds there the
    # webhook endpoints that must hear of it, so a payment nobody subscribed to costs no statement more.
    hooks = {"received": target is PaymentStatus.SUCCEEDED} if target.is_final else {}
    row = (await conn.execute(sql(
        f"WITH changed AS (UPDATE payments SET status = :status, updated_at = now(), "
        f"finished_at = CASE WHEN :final THEN now() ELSE finished_at END, "
        f"provider_refs = provider_refs || CAST(:refs AS jsonb)"
        f"{', ' + sets if sets else ''} WHERE id = :id RETURNING {_COLUMNS}), "
        f"event AS (INSERT INTO payment_events (payment_id, from_status, to_status, cause, details) "
        f"SELECT id, :from_status, :status, :cause, CAST(:details AS jsonb) FROM changed)"
        f"{_HOOKS if hooks else ''} SELECT {_COLUMNS}{_HOOKS_SELECTED if hooks else ''} FROM changed"),
        {"status": target.value, "final": target.is_final, "refs": json.dumps(dict(refs or {}), default=str),
         "id": payment.id, "from_status": payment.status.value, "cause": cause,
         "details": json.dumps(dict(details or {}), default=str), **hooks, **columns})).one()
    changed = _payment(row)
    if hooks and row.hook_endpoints:
        # IMPORTANT: in this transaction, so the events exist exactly when the state they tell of does.
        await enqueue_events(conn, changed, list(zip(row.hook_endpoints, row.hook_own, strict=True)))
    return changed


# The endpoints that hear of a payment's final state, each once: those of the API key that made it
# (``own``), and, for a payment that reached a user's wallet, those of that user's keys. Endpoints of
# revoked keys, and disabled ones, hear nothing.
_HOOKS = """, hooks AS (
    SELECT DISTINCT ON (e.id) e.id AS endpoint, k.id IS NOT DISTINCT FROM c.api_key_id AS own
    FROM changed c
    JOIN api_keys k ON k.revoked_at IS NULL AND (k.id = c.api_key_id
        OR (:received AND c.kind <> 'refund' AND k.user_id = c.recipient_user_id))
    JOIN webhook_endpoints e ON e.api_key_id = k.id AND e.disabled_at IS NULL
    ORDER BY e.id, k.id IS NOT DISTINCT FROM c.api_key_id DESC)"""
_HOOKS_SELECTED = (", ARRAY(SELECT endpoint FROM hooks ORDER BY endpoint) AS hook_endpoints, "
                   "ARRAY(SELECT own FROM hooks ORDER BY endpoint) AS hook_own")


async def note(conn: AsyncConnection, payment: Payment, refs: Mapping[str, Any], **columns: Any) -> Payment:
    """Merge provider references (and ``provider_ref``) into a payment without changing its state:
    a late acceptance after the result, a flag for an operator (``needs_review``)."""
    unknown = set(columns) - {"provider_ref"}
    if unknown:
        raise ValueError(f"note cannot set {sorted(unknown)}")
    sets = "".join(f", {name} = :{name}" for name in columns)
    row = (await conn.execute(sql(
        f"UPDATE payments SET provider_refs = provider_refs || CAST(:refs AS jsonb), updated_at = now(){sets} "
        f"WHERE id = :id RETURNING {_COLUMNS}"),
        {"refs": json.dumps(dict(refs), default=str), "id": payment.id, **columns})).one()
    return _payment(row)


async def events_of(conn: AsyncConnection, payment_id: int) -> list[PaymentEvent]:
    rows = await conn.execute(sql(
        "SELECT from_status, to_status, cause, details, at FROM payment_events WHERE payment_id = :p ORDER BY id"),
        {"p": payment_id})
    return [PaymentEvent(PaymentStatus(r.from_status) if r.from_status else None, PaymentStatus(r.to_status),
                         r.cause, r.details if not isinstance(r.details, str) else json.loads(r.details), r.at)
            for r in rows]


async def record_provider_event(
    conn: AsyncConnection, provider: str, event_key: str, kind: str, summary: Mapping[str, Any],
    payment_id: int | None = None,
) -> bool:
    """Remember a callback or webhook; False when the same one (provider, its id, kind) was already
    recorded. IMPORTANT: call it in the transaction that applies the delivery, so a delivery is
    applied exactly when it is recorded."""
    row = (await conn.execute(sql(
        "INSERT INTO provider_events (provider, event_key, kind, payment_id, payload) "
        "VALUES (:pr, :k, :kind, :p, CAST(:payload AS jsonb)) ON CONFLICT (provider, event_key, kind) DO NOTHING "
        "RETURNING id"),
        {"pr": provider, "k": event_key, "kind": kind, "p": payment_id,
         "payload": json.dumps(dict(summary), default=str)})).first()
    return row is not None


async def note_provider_event(
    conn: AsyncConnection, provider: str, event_key: str, kind: str, extra: Mapping[str, Any],
    *, payment_id: int | None = None,
) -> None:
    """Add to a recorded delivery's summary (what became of it) and, when given, the payment it made."""
    await conn.execute(sql(
        "UPDATE provider_events SET payload = payload || CAST(:extra AS jsonb), "
        "payment_id = coalesce(:p, payment_id) WHERE provider = :pr AND event_key = :k AND kind = :kind"),
        {"extra": json.dumps(dict(extra), default=str), "p": payment_id, "pr": provider, "k": event_key,
         "kind": kind})


async def provider_event(
    conn: AsyncConnection, provider: str, event_key: str, kind: str, *, lock: bool = False,
) -> dict[str, Any] | None:
    """A recorded delivery's summary, or None; ``lock`` takes its row lock until the transaction
    ends, so two paths deciding on one delivery decide one after the other."""
    suffix = " FOR UPDATE" if lock else ""
    payload = (await conn.execute(sql(
        f"SELECT payload FROM provider_events WHERE provider = :pr AND event_key = :k AND kind = :kind{suffix}"),
        {"pr": provider, "k": event_key, "kind": kind})).scalar_one_or_none()
    if payload is None:
        return None
    return dict(json.loads(payload) if isinstance(payload, str) else payload)


async def outgoing_totals(conn: AsyncConnection, payer_user_id: int, currency: Currency, *, payer_phone: str,
                          now: datetime | None = None) -> tuple[Money, int]:
    """What the payer sent today (not counting failed payments) and how many payments they made this
    month: the inputs of the daily limit and the plan's monthly allowance. Deposits, refunds and
    cash-ins are not the payer's spending (a refund row names the original's payer, whoever asked for
    it; a cash-in's payer is the agent, paying from its float, not from its own wallet). Today and
    this month are the payer's, by their phone's country (`payments.local_time`), as of ``now``."""
    row = (await conn.execute(sql(_TOTALS), _totals_params(payer_user_id, currency, payer_phone, now))).one()
    return Money(int(row.today), currency), int(row.month)


async def find_by_key_with_totals(conn: AsyncConnection, payer_user_id: int, key: str, currency: Currency, *,
                                  payer_phone: str) -> tuple[Payment | None, Money, int]:
    """`find_by_key` and `outgoing_totals` in one statement: a command's first reads (the totals
    count only when the key is new)."""
    row = (await conn.execute(sql(
        f"SELECT t.today, t.month, k.* FROM ({_TOTALS}) t LEFT JOIN "
        f"(SELECT {_COLUMNS} FROM payments WHERE payer_user_id = :p AND idempotency_key = :k) k ON true"),
        {**_totals_params(payer_user_id, currency, payer_phone, None), "k": key})).one()
    return (_payment(row) if row.id is not None else None), Money(int(row.today), currency), int(row.month)


# The day and month start as parameters, worked out for the payer's zone: the month's bound is the
# index condition of `payments_payer_history` (payer, created_at), as `date_trunc(..., now())` was.
_TOTALS = ("SELECT coalesce(sum(amount) FILTER (WHERE created_at >= :day_start), 0) AS today, "
           "       count(*) AS month "
           "  FROM payments WHERE payer_user_id = :p AND currency = :c "
           "   AND kind NOT IN ('deposit', 'refund', 'cash_in') "
           "   AND status <> 'failed' AND created_at >= :month_start")


def _totals_params(payer_user_id: int, currency: Currency, payer_phone: str,
                   now: datetime | None) -> dict[str, Any]:
    day_start, month_start = day_and_month_start(payer_phone, now)
    return {"p": payer_user_id, "c": currency.value, "day_start": day_start, "month_start": month_start}


async def open_payments(conn: AsyncConnection, older_than_s: float, *, limit: int) -> list[Payment]:
    """Payments not yet final and untouched for ``older_than_s`` seconds, and not flagged for a
    person: what recovery looks at.

    IMPORTANT: flagged ones are left out, not just passed over by recovery: they are the oldest, and
    once a batch's worth of them waited for a person, no other stuck payment would ever be examined.
    (Still read through ``payments_open``, in ``updated_at`` order: the flag is a filter on its rows.)"""
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE status IN ('created', 'pending', 'processing') "
        "AND updated_at < now() - make_interval(secs => :s) AND NOT provider_refs ? 'needs_review' "
        "ORDER BY updated_at LIMIT :limit"),
        {"s": float(older_than_s), "limit": limit})
    return [_payment(r) for r in rows]


async def payment_of_provider_event(conn: AsyncConnection, provider: str, event_key: str, kind: str) -> Payment | None:
    """The payment a recorded provider event names: how an answer that only names our request (a
    Daraja status query's ConversationID) finds the payment the request was about."""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payments WHERE id = (SELECT payment_id FROM provider_events "
        "WHERE provider = :pr AND event_key = :k AND kind = :kind)"),
        {"pr": provider, "k": event_key, "kind": kind})).first()
    return _payment(row) if row else None


async def job_status(conn: AsyncConnection, dedupe_key: str) -> str | None:
    """The status of the outbox job a payment enqueued (by its dedupe key), or None."""
    return (await conn.execute(sql("SELECT status FROM outbox_jobs WHERE dedupe_key = :k"),
                               {"k": dedupe_key})).scalar_one_or_none()
