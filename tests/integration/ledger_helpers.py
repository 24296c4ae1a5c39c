"""Helpers for ledger tests: open and fund wallets the way deposits will (from a provider
collection account, which mirrors money held outside Sauti)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from payments.accounts import AccountKind, open_account
from payments.identities import register_user
from payments.ledger import Ledger
from payments.money import Currency, Money
from payments.postings import TransferRequest, payment_legs
from payments.sandbox.outcomes import SUFFIXES


def random_kenyan_number() -> str:
    """A fresh Kenyan number the provider sandboxes treat as an ordinary customer's: none ending in a
    suffix that makes them fail, lag or rate-limit (`SUFFIXES`; 14 in 1,000 random numbers did)."""
    while (number := f"+2547{uuid.uuid4().int % 10**8:08d}")[-3:] in SUFFIXES:
        pass
    return number


async def new_wallet(engine: AsyncEngine, currency: Currency = Currency.KES, kind=AccountKind.CUSTOMER_WALLET) -> int:
    async with engine.begin() as conn:
        phone = random_kenyan_number() if currency is Currency.KES else f"+22177{uuid.uuid4().int % 10**7:07d}"
        user = await register_user(conn, phone)
        return (await open_account(conn, kind, currency, user.id)).id


async def system_account(engine: AsyncEngine, kind: AccountKind, currency: Currency = Currency.KES,
                         owner: str = "sauti") -> int:
    async with engine.begin() as conn:
        return (await open_account(conn, kind, currency, owner)).id


async def fund(ledger: Ledger, engine: AsyncEngine, account_id: int, amount: Money) -> None:
    collection = await system_account(engine, AccountKind.PROVIDER_COLLECTION, amount.currency, "mpesa")
    await ledger.transfer(TransferRequest(f"fund-{uuid.uuid4()}", payment_legs(collection, account_id, amount),
                                          kind="deposit"))
