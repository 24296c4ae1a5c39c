"""What payments tests read and arrange through the database, for any test world that has an
``engine`` and a ``ledger`` (the orchestrator's `PaymentsWorld`, the e2e `Gateway`): users with
wallets whose numbers pick the sandbox's behaviour, funded wallets, balances, payments, and the
ledger's invariants."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from payments.accounts import AccountKind, account_by_code, account_code, balance, open_account
from payments.errors import UnknownAccount
from payments.identities import User, register_user
from payments.ledger import Ledger
from payments.ledger_check import check_ledger
from payments.money import Currency, Money
from payments.payment_store import Payment, find_payment
from payments.postings import TransferRequest, payment_legs
from tests.numbers import unique_digits


class LedgerViews:
    engine: AsyncEngine
    ledger: Ledger

    async def user(self, currency: Currency = Currency.KES, *, suffix: str = "123", name: str = "") -> User:
        """A registered user with a wallet; ``suffix`` picks the sandbox's behaviour for their number."""
        async with self.engine.begin() as conn:
            if currency is Currency.KES:
                phone = f"+2547{unique_digits(5)}{suffix}"
            else:
                phone = f"+22177{unique_digits(4)}{suffix}"
            user = await register_user(conn, phone, display_name=name)
            await open_account(conn, AccountKind.CUSTOMER_WALLET, currency, user.id)
            return user

    async def fund(self, user: User, amount: Money) -> None:
        """Put money in a wallet as a settled deposit would (from provider collection)."""
        async with self.engine.begin() as conn:
            provider = "mpesa" if amount.currency is Currency.KES else "wave"
            source = (await open_account(conn, AccountKind.PROVIDER_COLLECTION, amount.currency, provider)).id
            wallet = (await open_account(conn, AccountKind.CUSTOMER_WALLET, amount.currency, user.id)).id
            await self.ledger.transfer(TransferRequest(f"fund-{uuid.uuid4()}", payment_legs(source, wallet, amount),
                                                       kind="deposit"), conn=conn)

    async def balance(self, kind: AccountKind, currency: Currency, owner: int | str) -> Money:
        """The account's balance; zero for an account not opened yet."""
        async with self.engine.connect() as conn:
            try:
                account = await account_by_code(conn, account_code(kind, currency, owner))
            except UnknownAccount:
                return Money.zero(currency)
            return await balance(conn, account.id)

    async def wallet(self, user: User, currency: Currency = Currency.KES) -> Money:
        return await self.balance(AccountKind.CUSTOMER_WALLET, currency, user.id)

    async def payment(self, public_id: str) -> Payment:
        """The payment a public id or a short reference names (as people see it on screens)."""
        async with self.engine.connect() as conn:
            found = await find_payment(conn, public_id)
        assert found is not None
        return found

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar_one()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def assert_ledger_ok(self) -> None:
        report = await check_ledger(self.engine)
        assert report.ok, report.render()
