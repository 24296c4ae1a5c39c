"""The payment intents table (migration 0017) as Python: a merchant's request that a customer pay it,
recorded idempotently and ended once.

Every function works in the caller's open transaction (``conn``); none commits. The rules (who may
ask whom for what, paying, declining, cancelling, expiry) are `payments.intents`'s.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.money import Currency, Money
from payments.payment_store import new_public_id


class IntentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    #: Succeeded, then its payment was refunded (migration 0020): it names the refund.
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    DECLINED = "declined"
    EXPIRED = "expired"


#: What an intent's public id looks like: anything else names none, and is not looked up.
_PUBLIC_ID = re.compile(r"pi_[0-9a-hjkmnp-tv-z]{26}")


def is_intent_id(text: str) -> bool:
    return isinstance(text, str) and _PUBLIC_ID.fullmatch(text) is not None


def new_intent_id() -> str:
    """``pi_`` + 26 characters, sortable by creation time like payment ids."""
    return "pi_" + new_public_id().removeprefix("pay_")


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    """One request to pay, as recorded. ``payee_*`` is the merchant paid, ``payer_*`` the customer
    asked; ``payment_id`` names the payment that paid it (a succeeded intent only)."""

    id: int
    public_id: str
    api_key_id: int
    payee_user_id: int
    payer_user_id: int
    amount: Money
    description: str
    merchant_reference: str | None
    status: IntentStatus
    idempotency_key: str
    request_hash: str
    payment_id: int | None
    expires_at: datetime
    created_at: datetime
    resolved_at: datetime | None
    #: The public id of the payment that paid it (``payment_id``'s).
    payment_public_id: str | None = None
    #: A refunded one's: the refund of that payment (row id, public id) and when it gave the money back.
    refund_id: int | None = None
    refund_public_id: str | None = None
    refunded_at: datetime | None = None

    @property
    def code(self) -> str:
        """A short code the customer can read out or find in a list (display only)."""
        return self.public_id[-6:].upper()


@dataclass(frozen=True, slots=True)
class IntentParties:
    """The numbers and names of an intent's two sides, and what the customer reads and writes in."""

    payee_phone: str
    payee_name: str
    payer_phone: str
    payer_name: str
    payer_language: str
    #: The API key that asked was revoked since, or the merchant's account closed: the intent is no
    #: longer paid (`payments.intents`), nor listed, nor counted.
    key_revoked: bool = False
    payee_closed: bool = False

    @property
    def unpayable(self) -> bool:
        return self.key_revoked or self.payee_closed


_TABLE_COLUMNS = ("id, public_id, api_key_id, payee_user_id, payer_user_id, amount, currency, description, "
                  "merchant_reference, status, idempotency_key, request_hash, payment_id, expires_at, created_at, "
                  "resolved_at, refund_id, refunded_at")
#: The paying payment's public id, read with the intent (what its JSON shows), not looked up after;
#: and its refund's, for a refunded one.
_PAID_BY = ("(SELECT p.public_id FROM payments p WHERE p.id = {prefix}payment_id) AS payment_public_id, "
            "(SELECT r.public_id FROM payments r WHERE r.id = {prefix}refund_id) AS refund_public_id")
_COLUMNS = f"{_TABLE_COLUMNS}, {_PAID_BY.format(prefix='')}"
_PREFIXED = ", ".join(f"i.{c}" for c in _TABLE_COLUMNS.split(", ")) + ", " + _PAID_BY.format(prefix="i.")
_PARTIES = ("pe.phone AS payee_phone, pe.display_name AS payee_name, pr.phone AS payer_phone, "
            "pr.display_name AS payer_name, pr.language AS payer_language, k.revoked_at IS NOT NULL AS key_revoked, "
            "pe.status = 'closed' AS payee_closed")
_PARTIES_JOIN = ("JOIN users pe ON pe.id = i.payee_user_id JOIN users pr ON pr.id = i.payer_user_id "
                 "JOIN api_keys k ON k.id = i.api_key_id")
#: An intent (``i``, joined to its key ``k`` and merchant ``pe`` as `PAYABLE_JOINS` does) that its
#: customer may still pay: pending, not past its expiry, its key not revoked, its merchant not closed.
#: What the USSD list shows, the dial counts (`payments.contacts.read_caller`) and the cap counts.
PAYABLE = ("i.status = 'pending' AND i.expires_at > now() AND k.revoked_at IS NULL AND pe.status <> 'closed'")
PAYABLE_JOINS = "JOIN api_keys k ON k.id = i.api_key_id JOIN users pe ON pe.id = i.payee_user_id"


def _intent(row: Any) -> PaymentIntent:
    return PaymentIntent(
        id=row.id, public_id=row.public_id, api_key_id=row.api_key_id, payee_user_id=row.payee_user_id,
        payer_user_id=row.payer_user_id, amount=Money(row.amount, Currency(row.currency)),
        description=row.description, merchant_reference=row.merchant_reference, status=IntentStatus(row.status),
        idempotency_key=row.idempotency_key, request_hash=row.request_hash, payment_id=row.payment_id,
        expires_at=row.expires_at, created_at=row.created_at, resolved_at=row.resolved_at,
        payment_public_id=row.payment_public_id, refund_id=row.refund_id, refund_public_id=row.refund_public_id,
        refunded_at=row.refunded_at)


def _parties(row: Any) -> IntentParties:
    return IntentParties(row.payee_phone, row.payee_name, row.payer_phone, row.payer_name, row.payer_language,
                         bool(row.key_revoked), bool(row.payee_closed))


@dataclass(frozen=True, slots=True)
class NewIntent:
    """What `insert_intent` records."""

    api_key_id: int
    payee_user_id: int
    payer_user_id: int
    amount: Money
    description: str
    merchant_reference: str | None
    idempotency_key: str
    request_hash: str
    expires_in_s: float


async def insert_intent(conn: AsyncConnection, new: NewIntent) -> PaymentIntent | None:
    """Record a pending intent expiring ``expires_in_s`` from now (the database's clock); None when
    the key already used its idempotency key."""
    row = (await conn.execute(sql(
        "INSERT INTO payment_intents (public_id, api_key_id, payee_user_id, payer_user_id, amount, currency, "
        "description, merchant_reference, idempotency_key, request_hash, expires_at) "
        "VALUES (:public_id, :key_id, :payee, :payer, :amount, :currency, :description, :reference, :key, :hash, "
        "now() + make_interval(secs => :expires)) "
        f"ON CONFLICT (api_key_id, idempotency_key) DO NOTHING RETURNING {_COLUMNS}"),
        {"public_id": new_intent_id(), "key_id": new.api_key_id, "payee": new.payee_user_id,
         "payer": new.payer_user_id, "amount": new.amount.minor, "currency": new.amount.currency.value,
         "description": new.description, "reference": new.merchant_reference, "key": new.idempotency_key,
         "hash": new.request_hash, "expires": float(new.expires_in_s)})).first()
    return _intent(row) if row else None


async def find_by_key(conn: AsyncConnection, api_key_id: int, key: str) -> PaymentIntent | None:
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM payment_intents WHERE api_key_id = :a AND idempotency_key = :k"),
        {"a": api_key_id, "k": key})).first()
    return _intent(row) if row else None


async def get_intent(conn: AsyncConnection, public_id: str, *,
                     lock: bool = False) -> tuple[PaymentIntent, IntentParties, bool] | None:
    """The intent, its parties and whether it has lapsed (pending past its expiry, by the database's
    clock), or None; ``lock`` holds its row until the transaction ends, so that paying, declining,
    cancelling and expiring one intent queue behind each other."""
    if not is_intent_id(public_id):
        return None
    suffix = " FOR UPDATE OF i" if lock else ""
    row = (await conn.execute(sql(
        f"SELECT {_PREFIXED}, {_PARTIES}, i.status = 'pending' AND i.expires_at <= now() AS lapsed "
        f"FROM payment_intents i {_PARTIES_JOIN} WHERE i.public_id = :p{suffix}"), {"p": public_id})).first()
    return (_intent(row), _parties(row), bool(row.lapsed)) if row else None


async def resolve(conn: AsyncConnection, intent: PaymentIntent, status: IntentStatus, *,
                  payment_id: int | None = None) -> PaymentIntent:
    """End a pending intent (whose row the caller locked)."""
    assert intent.status is IntentStatus.PENDING and status is not IntentStatus.PENDING
    row = (await conn.execute(sql(
        "UPDATE payment_intents SET status = :s, payment_id = :payment, resolved_at = now() "
        f"WHERE id = :i AND status = 'pending' RETURNING {_COLUMNS}"),
        {"s": status.value, "payment": payment_id, "i": intent.id})).one()
    return _intent(row)


async def mark_refunded(conn: AsyncConnection, payment_id: int, refund_id: int) -> PaymentIntent | None:
    """The succeeded intent that payment ``payment_id`` paid becomes ``refunded`` by the refund
    ``refund_id``, in the refund's transaction (the UPDATE holds its row until then); None when the
    payment paid no intent. An intent is refunded once: its payment is, once."""
    row = (await conn.execute(sql(
        "UPDATE payment_intents SET status = 'refunded', refund_id = :r, refunded_at = now() "
        f"WHERE payment_id = :p AND status = 'succeeded' RETURNING {_COLUMNS}"),
        {"p": payment_id, "r": refund_id})).first()
    return _intent(row) if row else None


@dataclass(frozen=True, slots=True)
class AskedCounts:
    """What the caps on asking one customer count (`asked_counts`)."""

    #: Intents this merchant made for the customer in the last 24 hours, ended ones too.
    asked_today: int
    #: The customer's open intents, anyone's.
    open_now: int
    #: The customer's open intents this merchant made.
    open_from_payee: int


async def asked_counts(conn: AsyncConnection, payer_user_id: int, payee_user_id: int) -> AskedCounts:
    """How many intents ``payee_user_id`` made for the customer in the last 24 hours (ended ones
    too), how many of anyone's are open for the customer now, and how many of those are its own."""
    row = (await conn.execute(sql(
        "SELECT count(*) FILTER (WHERE i.payee_user_id = :payee AND i.created_at > now() - interval '1 day') AS today, "
        # What the customer may still pay: a revoked key's intents, never paid, hold no place.
        f"count(*) FILTER (WHERE {PAYABLE}) AS open, "
        f"count(*) FILTER (WHERE {PAYABLE} AND i.payee_user_id = :payee) AS open_from_payee "
        f"FROM payment_intents i {PAYABLE_JOINS} "
        "WHERE i.payer_user_id = :payer AND (i.status = 'pending' OR "
        "(i.payee_user_id = :payee AND i.created_at > now() - interval '1 day'))"),
        {"payer": payer_user_id, "payee": payee_user_id})).one()
    return AskedCounts(int(row.today), int(row.open), int(row.open_from_payee))


async def pending_for_payer(conn: AsyncConnection, payer_user_id: int, *, limit: int,
                            before_id: int | None = None) -> list[tuple[PaymentIntent, IntentParties]]:
    """The customer's open intents, newest first, ``limit`` of them from before row ``before_id``."""
    rows = await conn.execute(sql(
        f"SELECT {_PREFIXED}, {_PARTIES} FROM payment_intents i {_PARTIES_JOIN} "
        f"WHERE i.payer_user_id = :u AND {PAYABLE} "
        "AND (CAST(:before AS bigint) IS NULL OR i.id < :before) ORDER BY i.id DESC LIMIT :n"),
        {"u": payer_user_id, "before": before_id, "n": limit})
    return [(_intent(r), _parties(r)) for r in rows]


async def intents_of_key(conn: AsyncConnection, api_key_id: int, *, status: IntentStatus | None, limit: int,
                         before_id: int | None = None) -> list[tuple[PaymentIntent, IntentParties, bool]]:
    """The intents a key made, newest first, each with whether it lapsed (pending past its expiry,
    not yet closed: it counts as ``expired``, never as ``pending``, for the ``status`` asked)."""
    rows = await conn.execute(sql(
        f"SELECT {_PREFIXED}, {_PARTIES}, i.status = 'pending' AND i.expires_at <= now() AS lapsed "
        f"FROM payment_intents i {_PARTIES_JOIN} "
        "WHERE i.api_key_id = :a AND i.id < :before AND (CAST(:status AS text) IS NULL "
        "OR (CASE WHEN i.status = 'pending' AND i.expires_at <= now() THEN 'expired' ELSE i.status END) = :status) "
        "ORDER BY i.id DESC LIMIT :n"),
        {"a": api_key_id, "status": status.value if status else None, "before": before_id or 2**63 - 1, "n": limit})
    return [(_intent(r), _parties(r), bool(r.lapsed)) for r in rows]


async def lapsed_ids(conn: AsyncConnection, *, limit: int) -> list[str]:
    """Pending intents whose expiry passed: what the expiry sweep closes."""
    return list((await conn.execute(sql(
        "SELECT public_id FROM payment_intents WHERE status = 'pending' AND expires_at <= now() "
        "ORDER BY expires_at LIMIT :n"), {"n": limit})).scalars())
