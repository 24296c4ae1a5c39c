"""Running one piece of a command's work against the database (and, for `run_with_payments`, the
payments service with its provider clients, as `sauti worker` opens it): an engine made for it and
disposed after, and the domain's refusals (`PaymentsError`, a bad phone number or amount, providers
out of reach) and a database out of reach or refusing shown as the command's error message rather
than a traceback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine, redacted
from gateway.payments_resources import ProvidersUnavailable, open_payments
from gateway.resources import build_ledger, database_url
from gateway.settings import Settings
from payments.errors import PaymentsError
from payments.money import MoneyError
from payments.orchestrator import Payments
from payments.phones import InvalidPhoneNumber

T = TypeVar("T")


def run_with_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]], *, pool_size: int = 2) -> T:
    where: list[str] = []

    async def run() -> T:
        url = await database_url(settings)
        where.append(redacted(url))
        engine = create_engine(url, pool_size=pool_size)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (PaymentsError, InvalidPhoneNumber, MoneyError) as exc:
        raise click.ClickException(str(exc)) from None
    except (ConnectionError, TimeoutError, socket.gaierror) as exc:  # no server there, or no answer
        raise click.ClickException(f"cannot reach the database at {_where(where)}: {exc}") from None
    except DBAPIError as exc:  # a database that is not there, or that refused what was asked
        reason = str(exc.orig or exc).splitlines()[0]
        raise click.ClickException(f"the database at {_where(where)} refused: {reason}") from None


def _where(where: list[str]) -> str:
    return where[0] if where else "the configured URL"


def run_with_payments(settings: Settings, act: Callable[[Payments], Awaitable[T]]) -> T:
    """`run_with_database` with `Payments` opened as `sauti worker` opens it (its provider clients;
    what it enqueues, the worker runs)."""

    async def work(engine: AsyncEngine) -> T:
        try:
            async with open_payments(settings, engine, build_ledger(engine, settings), serving=False) as runtime:
                return await act(runtime.payments)
        except ProvidersUnavailable as exc:
            raise click.ClickException(str(exc)) from None

    return run_with_database(settings, work, pool_size=4)
