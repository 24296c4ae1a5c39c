"""The agents tables (migration 0007) as Python: agents and their store numbers, and the cash-in /
cash-out requests raised at them, recorded idempotently and resolved once.

Every function works in the caller's open transaction (``conn``); none commits. The rules (who may
raise, confirm or reject what, and the money each step moves) are `payments.agents`'s.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.commands import PaymentKind
from payments.money import Currency, Money
from payments.payment_store import new_public_id
from payments.references import cash_request_reference


class CashRequestStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class AgentStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


def new_request_id() -> str:
    """``cr_`` + 26 characters, sortable by creation time like payment ids."""
    return "cr_" + new_public_id().removeprefix("pay_")


def request_hash(kind: PaymentKind, **fields: object) -> str:
    """What "the same request" means for an idempotency key: the kind and the given fields."""
    body = {"kind": kind.value, **{k: v for k, v in fields.items() if v is not None}}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Agent:
    """An agent as customers and the agent menu see it."""

    user_id: int
    agent_number: str
    business_name: str
    currency: Currency
    status: AgentStatus
    phone: str
    display_name: str
    store_numbers: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """What a customer is shown: the business name, else the agent's registered name."""
        return self.business_name or self.display_name or self.agent_number


@dataclass(frozen=True, slots=True)
class CashRequest:
    id: int
    public_id: str
    kind: PaymentKind
    channel: str
    customer_user_id: int
    agent_user_id: int
    amount: Money
    fee: Money
    commission: Money
    status: CashRequestStatus
    requested_by_user_id: int
    idempotency_key: str
    request_hash: str
    hold_id: int | None
    payment_id: int | None
    expires_at: datetime
    resolved_by_user_id: int | None
    resolution_key: str | None
    reason: str | None
    created_at: datetime
    resolved_at: datetime | None

    @property
    def code(self) -> str:
        """A short code the customer can read out and the agent find in its list (display only)."""
        return self.public_id[-6:].upper()

    @property
    def reference(self) -> str:
        """What people see for the request before it has a payment (`payments.references`)."""
        return cash_request_reference(self.id)

    @property
    def total(self) -> Money:
        """What the customer's wallet gives (cash-out: amount and fee) or gets (cash-in: the amount)."""
        return self.amount + self.fee


@dataclass(frozen=True, slots=True)
class PendingLine:
    """A request in an agent's list, with the customer's registered name and number."""

    request: CashRequest
    customer_name: str
    customer_phone: str


_AGENT_COLUMNS = ("a.user_id, a.agent_number, a.business_name, a.currency, a.status, u.phone, u.display_name, "
                  "ARRAY(SELECT s.store_number FROM agent_stores s WHERE s.agent_user_id = a.user_id "
                  "ORDER BY s.store_number) AS stores")


def _agent(row: Any) -> Agent:
    return Agent(row.user_id, row.agent_number, row.business_name, Currency(row.currency), AgentStatus(row.status),
                 row.phone, row.display_name, tuple(row.stores or ()))


async def insert_agent(conn: AsyncConnection, user_id: int, agent_number: str, business_name: str,
                       currency: Currency) -> bool:
    """Record the agent; False when the user already is one or the number is taken (nothing written)."""
    row = (await conn.execute(sql(
        "INSERT INTO agents (user_id, agent_number, business_name, currency) VALUES (:u, :n, :b, :c) "
        "ON CONFLICT DO NOTHING RETURNING user_id"),
        {"u": user_id, "n": agent_number, "b": business_name, "c": currency.value})).first()
    return row is not None


async def insert_store(conn: AsyncConnection, agent_user_id: int, store_number: str) -> bool:
    """Give the agent a store number; False when the number is taken (by this agent or another)."""
    row = (await conn.execute(sql(
        "INSERT INTO agent_stores (store_number, agent_user_id) VALUES (:s, :a) ON CONFLICT DO NOTHING "
        "RETURNING store_number"), {"s": store_number, "a": agent_user_id})).first()
    return row is not None


async def agent_by_user(conn: AsyncConnection, user_id: int) -> Agent | None:
    row = (await conn.execute(sql(
        f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN users u ON u.id = a.user_id WHERE a.user_id = :u"),
        {"u": user_id})).first()
    return _agent(row) if row else None


async def agent_by_number(conn: AsyncConnection, number: str) -> Agent | None:
    """The agent with this agent number, or the agent one of whose stores has it."""
    row = (await conn.execute(sql(
        f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN users u ON u.id = a.user_id "
        "WHERE a.agent_number = :n OR a.user_id = (SELECT agent_user_id FROM agent_stores WHERE store_number = :n)"),
        {"n": number})).first()
    return _agent(row) if row else None


async def set_agent_status(conn: AsyncConnection, user_id: int, status: AgentStatus) -> bool:
    result = await conn.execute(sql("UPDATE agents SET status = :s WHERE user_id = :u"),
                                {"s": status.value, "u": user_id})
    return result.rowcount > 0


_COLUMNS = ("id, public_id, kind, channel, customer_user_id, agent_user_id, amount, fee, commission, currency, "
            "status, requested_by_user_id, idempotency_key, request_hash, hold_id, payment_id, expires_at, "
            "resolved_by_user_id, resolution_key, reason, created_at, resolved_at")


def _request(row: Any) -> CashRequest:
    cur = Currency(row.currency)
    return CashRequest(
        id=row.id, public_id=row.public_id, kind=PaymentKind(row.kind), channel=row.channel,
        customer_user_id=row.customer_user_id, agent_user_id=row.agent_user_id, amount=Money(row.amount, cur),
        fee=Money(row.fee, cur), commission=Money(row.commission, cur), status=CashRequestStatus(row.status),
        requested_by_user_id=row.requested_by_user_id, idempotency_key=row.idempotency_key,
        request_hash=row.request_hash, hold_id=row.hold_id, payment_id=row.payment_id, expires_at=row.expires_at,
        resolved_by_user_id=row.resolved_by_user_id, resolution_key=row.resolution_key, reason=row.reason,
        created_at=row.created_at, resolved_at=row.resolved_at)


@dataclass(frozen=True, slots=True)
class NewCashRequest:
    """What `insert_request` records."""

    public_id: str
    kind: PaymentKind
    channel: str
    customer_user_id: int
    agent_user_id: int
    amount: Money
    fee: Money
    commission: Money
    requested_by_user_id: int
    idempotency_key: str
    request_hash: str
    expires_in_s: float
    hold_id: int | None = None
    payment_id: int | None = None


async def insert_request(conn: AsyncConnection, new: NewCashRequest) -> CashRequest | None:
    """Record a pending request expiring ``expires_in_s`` from now (the database's clock); None when
    the requester already used the key."""
    row = (await conn.execute(sql(
        "INSERT INTO cash_requests (public_id, kind, channel, customer_user_id, agent_user_id, amount, fee, "
        "commission, currency, requested_by_user_id, idempotency_key, request_hash, hold_id, payment_id, expires_at) "
        "VALUES (:public_id, :kind, :channel, :customer, :agent, :amount, :fee, :commission, :currency, :by, :key, "
        ":hash, :hold, :payment, now() + make_interval(secs => :expires)) "
        f"ON CONFLICT (requested_by_user_id, idempotency_key) DO NOTHING RETURNING {_COLUMNS}"),
        {"public_id": new.public_id, "kind": new.kind.value, "channel": new.channel, "customer": new.customer_user_id,
         "agent": new.agent_user_id, "amount": new.amount.minor, "fee": new.fee.minor,
         "commission": new.commission.minor, "currency": new.amount.currency.value, "by": new.requested_by_user_id,
         "key": new.idempotency_key, "hash": new.request_hash, "hold": new.hold_id, "payment": new.payment_id,
         "expires": float(new.expires_in_s)})).first()
    return _request(row) if row else None


async def find_by_key(conn: AsyncConnection, requested_by_user_id: int, key: str) -> CashRequest | None:
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM cash_requests WHERE requested_by_user_id = :u AND idempotency_key = :k"),
        {"u": requested_by_user_id, "k": key})).first()
    return _request(row) if row else None


async def find_by_resolution_key(conn: AsyncConnection, resolved_by_user_id: int, key: str) -> CashRequest | None:
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM cash_requests WHERE resolved_by_user_id = :u AND resolution_key = :k"),
        {"u": resolved_by_user_id, "k": key})).first()
    return _request(row) if row else None


async def get_request(conn: AsyncConnection, public_id: str, *, lock: bool = False) -> tuple[CashRequest, bool] | None:
    """The request and whether it has lapsed (its expiry passed, by the database's clock), or None;
    ``lock`` holds its row until the transaction ends, so two resolutions of one request queue."""
    return await _get(conn, "public_id = :p", {"p": public_id}, lock)


async def get_request_by_id(conn: AsyncConnection, request_id: int, *,
                            lock: bool = False) -> tuple[CashRequest, bool] | None:
    """As `get_request`, by row id."""
    return await _get(conn, "id = :i", {"i": request_id}, lock)


async def _get(conn: AsyncConnection, where: str, params: dict[str, Any],
               lock: bool) -> tuple[CashRequest, bool] | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS}, expires_at <= now() AS lapsed FROM cash_requests WHERE {where}{suffix}"), params)).first()
    return (_request(row), bool(row.lapsed)) if row else None


async def resolve(conn: AsyncConnection, request: CashRequest, status: CashRequestStatus, *,
                  by_user_id: int | None, key: str | None = None, reason: str | None = None,
                  payment_id: int | None = None) -> CashRequest:
    """Close a pending request (whose row the caller locked). The unique index on the resolver's key
    raises `IntegrityError` when the key already resolved another request."""
    assert request.status is CashRequestStatus.PENDING and status is not CashRequestStatus.PENDING
    row = (await conn.execute(sql(
        "UPDATE cash_requests SET status = :s, resolved_by_user_id = :by, resolution_key = :key, reason = :reason, "
        "payment_id = coalesce(:payment, payment_id), resolved_at = now() "
        f"WHERE id = :i AND status = 'pending' RETURNING {_COLUMNS}"),
        {"s": status.value, "by": by_user_id, "key": key, "reason": reason, "payment": payment_id,
         "i": request.id})).one()
    return _request(row)


async def pending_count(conn: AsyncConnection, customer_user_id: int) -> int:
    """The customer's requests still open (pending and not lapsed)."""
    return (await conn.execute(sql(
        "SELECT count(*) FROM cash_requests WHERE customer_user_id = :c AND status = 'pending' "
        "AND expires_at > now()"), {"c": customer_user_id})).scalar_one()


async def pending_for_agent(conn: AsyncConnection, agent_user_id: int, kind: PaymentKind, *, limit: int,
                            before_id: int | None = None) -> list[PendingLine]:
    """The agent's open requests of ``kind``, newest first, ``limit`` of them from before ``before_id``."""
    rows = await conn.execute(sql(
        f"SELECT {', '.join('r.' + c for c in _COLUMNS.split(', '))}, u.display_name AS customer_name, "
        "u.phone AS customer_phone FROM cash_requests r JOIN users u ON u.id = r.customer_user_id "
        "WHERE r.agent_user_id = :a AND r.kind = :k AND r.status = 'pending' AND r.expires_at > now() "
        "AND (CAST(:before AS bigint) IS NULL OR r.id < :before) ORDER BY r.id DESC LIMIT :n"),
        {"a": agent_user_id, "k": kind.value, "before": before_id, "n": limit})
    return [PendingLine(_request(r), r.customer_name, r.customer_phone) for r in rows]


async def pending_of_customer(conn: AsyncConnection, customer_user_id: int) -> list[CashRequest]:
    """The customer's open requests, newest first."""
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM cash_requests WHERE customer_user_id = :c AND status = 'pending' "
        "AND expires_at > now() ORDER BY id DESC"), {"c": customer_user_id})
    return [_request(r) for r in rows]


async def lapsed_ids(conn: AsyncConnection, *, limit: int) -> list[int]:
    """Pending requests whose expiry passed: what the expiry sweep closes."""
    return list((await conn.execute(sql(
        "SELECT id FROM cash_requests WHERE status = 'pending' AND expires_at <= now() ORDER BY expires_at LIMIT :n"),
        {"n": limit})).scalars())


async def note_agent_on_payment(conn: AsyncConnection, payment_id: int, agent_number: str) -> None:
    """Record on the payment the agent number it was made at (the payments table has the column;
    `payment_store.NewPayment` does not carry it)."""
    await conn.execute(sql("UPDATE payments SET agent_number = :n WHERE id = :i"),
                       {"n": agent_number, "i": payment_id})


async def commission_credits(conn: AsyncConnection, account_id: int, *, day_start: datetime,
                             month_start: datetime) -> tuple[int, int, int]:
    """Commission credited to the account since ``day_start``, since ``month_start``, and ever (minor units)."""
    row = (await conn.execute(sql(
        "SELECT coalesce(sum(amount) FILTER (WHERE created_at >= :d), 0) AS today, "
        "       coalesce(sum(amount) FILTER (WHERE created_at >= :m), 0) AS month, "
        "       coalesce(sum(amount), 0) AS ever "
        "  FROM postings WHERE account_id = :a AND amount > 0"),
        {"a": account_id, "d": day_start, "m": month_start})).one()
    return int(row.today), int(row.month), int(row.ever)
