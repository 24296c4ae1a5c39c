"""Ledger accounts: their kinds, opening them, and reading balances, statements and history.

Each account belongs to one currency. Accounts that hold people's money (customer wallets, agent
floats, agent commission) and the in-flight clearing account may never go negative; the accounts that
mirror the outside world (provider collection and settlement, suspense) may, so that every currency's
balances always sum to zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from db.sql import sql
from payments.errors import InvalidRequest, UnknownAccount
from payments.money import Currency, Money
from payments.references import payment_reference


class AccountKind(enum.StrEnum):
    CUSTOMER_WALLET = "customer_wallet"
    AGENT_FLOAT = "agent_float"
    AGENT_COMMISSION = "agent_commission"
    FEE_REVENUE = "fee_revenue"
    PROVIDER_COLLECTION = "provider_collection"  # money in from M-Pesa / Wave
    PROVIDER_CLEARING = "provider_clearing"  # money on its way out, awaiting the provider's result
    PROVIDER_SETTLEMENT = "provider_settlement"  # money the provider confirmed paid out
    SUSPENSE = "suspense"  # unexplained money, parked until an operator resolves it
    #: What agents' commissions cost Sauti (`payments.agents`): it pays every commission, so it runs
    #: negative by what was paid; fee revenue is what covers it.
    COMMISSION_EXPENSE = "commission_expense"

    @property
    def may_go_negative(self) -> bool:
        return self in _MAY_GO_NEGATIVE

    @property
    def owned(self) -> bool:
        """Kinds that belong to a user rather than to Sauti itself."""
        return self in (AccountKind.CUSTOMER_WALLET, AccountKind.AGENT_FLOAT, AccountKind.AGENT_COMMISSION)


_MAY_GO_NEGATIVE = frozenset(
    {AccountKind.PROVIDER_COLLECTION, AccountKind.PROVIDER_SETTLEMENT, AccountKind.SUSPENSE,
     AccountKind.COMMISSION_EXPENSE})


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    code: str
    kind: AccountKind
    currency: Currency
    owner_user_id: int | None
    balance: int
    held: int
    may_go_negative: bool
    shard_of: int | None = None
    shards: tuple[int, ...] = ()

    @property
    def available(self) -> Money:
        """What can be spent now: the balance less what pending holds reserve."""
        return Money(self.balance - self.held, self.currency)


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One posting on an account, with what a person needs to recognise it."""

    posting_id: int
    transfer_id: int
    at: datetime
    amount: Money
    balance_after: Money
    kind: str
    reference: str | None
    counterparty_code: str | None
    counterparty_phone: str | None
    counterparty_name: str | None
    #: The payment that moved it, when one did (not a float top-up or a suspense correction).
    payment_id: int | None = None

    @property
    def payment_reference(self) -> str | None:
        """The payment's short reference, as its screens and SMS showed it (`payments.references`)."""
        return payment_reference(self.payment_id) if self.payment_id else None


def account_code(kind: AccountKind, currency: Currency, owner: int | str | None) -> str:
    """Stable unique code: ``customer_wallet:42:KES``, ``fee_revenue:sauti:KES``, ``provider_collection:mpesa:KES``."""
    if kind.owned and not isinstance(owner, int):
        raise InvalidRequest(f"a {kind} account belongs to a user id")
    return f"{kind.value}:{owner if owner is not None else 'sauti'}:{currency.value}"


def owned_code_sql(kind: AccountKind, owner: str, currency: str) -> str:
    """`account_code` as a SQL expression over an ``owner`` and a ``currency`` column: for a statement
    that finds a user's account by its unique code before it knows the user."""
    return f"'{kind.value}:' || {owner} || ':' || {currency}"


_COLUMNS = "id, code, kind, currency, owner_user_id, balance, held, may_go_negative, shard_of, shards"


def _account(row) -> Account:
    return Account(row.id, row.code, AccountKind(row.kind), Currency(row.currency), row.owner_user_id,
                   row.balance, row.held, row.may_go_negative, row.shard_of, tuple(row.shards or ()))


async def open_account(
    conn: AsyncConnection, kind: AccountKind, currency: Currency, owner: int | str | None = None
) -> Account:
    """Open the account (or return the existing one: opening is idempotent on its code)."""
    code = account_code(kind, currency, owner)
    owner_id = owner if kind.owned else None
    await conn.execute(sql(
        "INSERT INTO accounts (code, owner_user_id, kind, currency, may_go_negative) "
        "VALUES (:code, :owner, :kind, :cur, :neg) ON CONFLICT (code) DO NOTHING"),
        {"code": code, "owner": owner_id, "kind": kind.value, "cur": currency.value, "neg": kind.may_go_negative})
    return await account_by_code(conn, code)


async def account_by_code(conn: AsyncConnection, code: str) -> Account:
    row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM accounts WHERE code = :c"), {"c": code})).first()
    if row is None:
        raise UnknownAccount(code)
    return _account(row)


async def get_account(conn: AsyncConnection, account_id: int) -> Account:
    row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM accounts WHERE id = :i"), {"i": account_id})).first()
    if row is None:
        raise UnknownAccount(account_id)
    return _account(row)


async def accounts_of(conn: AsyncConnection, user_id: int) -> list[Account]:
    rows = await conn.execute(
        sql(f"SELECT {_COLUMNS} FROM accounts WHERE owner_user_id = :u ORDER BY id"), {"u": user_id})
    return [_account(r) for r in rows]


#: An account's balance with its shards', in one statement. The shards are found by primary key (the
#: parent lists them): `shard_of` has no index.
_BALANCE = ("SELECT a.currency, a.balance + coalesce((SELECT sum(s.balance) FROM accounts s "
            "WHERE s.id = ANY(a.shards)), 0) AS total FROM accounts a WHERE a.{key} = :k")
_BALANCE_BY = {key: _BALANCE.format(key=key) for key in ("id", "code")}


async def _balance_where(conn: AsyncConnection, key: str, value: int | str) -> Money:
    row = (await conn.execute(sql(_BALANCE_BY[key]), {"k": value})).first()
    if row is None:
        raise UnknownAccount(value)
    return Money(int(row.total), Currency(row.currency))


async def balance(conn: AsyncConnection, account_id: int) -> Money:
    """The account's balance; for a sharded account, its own plus all its shards'."""
    return await _balance_where(conn, "id", account_id)


async def balance_by_code(conn: AsyncConnection, code: str) -> Money:
    """`balance` of the account with this code (a wallet's balance on a USSD screen: the hot path);
    `UnknownAccount` when there is none."""
    return await _balance_where(conn, "code", code)


async def shard_account(conn: AsyncConnection, account_id: int, count: int) -> Account:
    """Split a hot account (fee revenue, provider collection or settlement: every payment of a kind
    touches one) into ``count`` shards. Credits to it then land on one of its shards
    (`payments.shard_routing`), and so do debits when it may go negative, so concurrent batches stop
    queueing on one row; `balance()` sums them and `Ledger.consolidate_shards` sweeps them back.
    Only accounts nobody owns can be sharded, once (idempotent for the same count). An account that
    may not go negative and is debited (provider clearing) must not be: its debits would go to the
    parent, which holds none of the money its shards took."""
    if not 2 <= count <= 64:
        raise InvalidRequest("an account is split into 2 to 64 shards")
    parent = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM accounts WHERE id = :i FOR UPDATE"),
                                 {"i": account_id})).first()
    if parent is None:
        raise UnknownAccount(account_id)
    account = _account(parent)
    if account.kind.owned or account.shard_of is not None:
        raise InvalidRequest("only Sauti's own, unsharded accounts can be sharded")
    if account.shards:
        if len(account.shards) != count:
            raise InvalidRequest(f"account {account_id} already has {len(account.shards)} shards")
        return account
    ids = []
    for n in range(1, count + 1):
        ids.append((await conn.execute(sql(
            "INSERT INTO accounts (code, kind, currency, may_go_negative, shard_of) "
            "VALUES (:code, :kind, :cur, :neg, :parent) RETURNING id"),
            {"code": f"{account.code}#{n}", "kind": account.kind.value, "cur": account.currency.value,
             "neg": account.may_go_negative, "parent": account_id})).scalar_one())
    await conn.execute(sql("UPDATE accounts SET shards = :s WHERE id = :i"), {"s": ids, "i": account_id})
    return await get_account(conn, account_id)


async def shard_balances(conn: AsyncConnection, account_id: int) -> list[tuple[int, int]]:
    """(id, balance) of the account and of each of its shards, the largest balance first."""
    rows = await conn.execute(sql(
        "SELECT id, balance FROM accounts WHERE id IN (SELECT CAST(:i AS bigint) "
        "UNION ALL SELECT unnest(shards) FROM accounts WHERE id = :i) ORDER BY balance DESC, id"),
        {"i": account_id})
    return [(row.id, row.balance) for row in rows]


_STATEMENT = sql("""
SELECT p.id, p.transfer_id, p.created_at, p.amount, p.balance_after, p.currency, t.kind, t.reference,
       cp.code AS cp_code, cu.phone AS cp_phone, cu.display_name AS cp_name, pay.id AS payment_id
  FROM postings p
  JOIN transfers t ON t.id = p.transfer_id
  LEFT JOIN payments pay ON pay.public_id = t.reference  -- a payment's transfers carry its public id
  LEFT JOIN LATERAL (
        SELECT a.code, a.owner_user_id FROM postings q JOIN accounts a ON a.id = q.account_id
         WHERE q.transfer_id = p.transfer_id AND sign(q.amount) = -sign(p.amount)
         ORDER BY abs(q.amount) DESC, q.id LIMIT 1) cp ON true
  LEFT JOIN users cu ON cu.id = cp.owner_user_id
 WHERE p.account_id = :account AND (CAST(:before AS bigint) IS NULL OR p.id < :before)
 ORDER BY p.id DESC
 LIMIT :limit
""")


async def statement(
    conn: AsyncConnection, account_id: int, *, limit: int = 5, before_posting_id: int | None = None
) -> list[StatementLine]:
    """The account's postings, newest first, each with its counterparty (the main opposite leg:
    for a send with a fee, the recipient rather than the fee account). Page with ``before_posting_id``."""
    if not 1 <= limit <= 1000:
        raise InvalidRequest("a statement has 1 to 1000 lines")
    rows = await conn.execute(_STATEMENT, {"account": account_id, "before": before_posting_id, "limit": limit})
    lines = []
    for r in rows:
        cur = Currency(r.currency)
        lines.append(StatementLine(r.id, r.transfer_id, r.created_at, Money(r.amount, cur),
                                   Money(r.balance_after, cur), r.kind, r.reference, r.cp_code, r.cp_phone, r.cp_name,
                                   r.payment_id))
    return lines


@dataclass(frozen=True, slots=True)
class WalletStatement:
    """A customer's wallet in one currency as its owner (the payments API) or an operator sees it:
    the balance, what of it is held (cash-outs waiting for their agent), and a page of lines."""

    currency: Currency
    balance: Money
    held: Money
    lines: tuple[StatementLine, ...]

    @property
    def available(self) -> Money:
        return self.balance - self.held


async def wallet_statement(conn: AsyncConnection, user_id: int, currency: Currency, *, limit: int,
                           before_posting_id: int | None = None) -> WalletStatement:
    """The user's wallet in ``currency``: an empty one when the user has none in it yet."""
    try:
        account = await account_by_code(conn, account_code(AccountKind.CUSTOMER_WALLET, currency, user_id))
    except UnknownAccount:
        return WalletStatement(currency, Money.zero(currency), Money.zero(currency), ())
    lines = await statement(conn, account.id, limit=limit, before_posting_id=before_posting_id)
    return WalletStatement(currency, await balance(conn, account.id), Money(account.held, currency), tuple(lines))


async def history(conn: AsyncConnection, account_id: int, *, page_size: int = 100):
    """Every posting of the account, newest first, fetched page by page (an async iterator)."""
    before = None
    while True:
        page = await statement(conn, account_id, limit=page_size, before_posting_id=before)
        for line in page:
            yield line
        if len(page) < page_size:
            return
        before = page[-1].posting_id
