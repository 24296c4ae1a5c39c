"""Running one piece of a command's work against the database: an engine made for it and disposed
after, and the domain's refusals (`PaymentsError`, a bad phone number or amount) shown as the
command's error message rather than a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from gateway.resources import database_url
from gateway.settings import Settings
from payments.errors import PaymentsError
from payments.money import MoneyError
from payments.phones import InvalidPhoneNumber

T = TypeVar("T")


def run_with_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]], *, pool_size: int = 2) -> T:
    async def run() -> T:
        engine = create_engine(await database_url(settings), pool_size=pool_size)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (PaymentsError, InvalidPhoneNumber, MoneyError) as exc:
        raise click.ClickException(str(exc)) from None
