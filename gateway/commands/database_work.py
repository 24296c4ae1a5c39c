"""Running one piece of a command's work against the database (and, for `run_with_payments`, the
payments service with its provider clients, as `sauti worker` opens it): an engine made for it and
disposed after, and the domain's refusals (`PaymentsError`, a bad phone number or amount, providers
out of reach) and a database out of reach, refusing, migrated by a later release or named by a URL
that cannot be read shown as the command's error message rather than a traceback (`database_errors`,
which `sauti serve` uses too)."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import BadDatabaseUrl, create_engine, redacted
from db.migrate import MigrationError
from gateway.payments_resources import ProvidersUnavailable, open_payments
from gateway.resources import build_ledger, database_url
from gateway.settings import Settings
from payments.errors import PaymentsError
from payments.money import MoneyError
from payments.orchestrator import Payments
from payments.phones import InvalidPhoneNumber

T = TypeVar("T")


def run_with_database(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]], *, pool_size: int = 2) -> T:
    """``work`` with an engine of ``pool_size`` connections on the configured (or embedded) database,
    disposed after; its failures as the command's error message (see the module's docstring)."""
    where: list[str] = []

    async def run() -> T:
        url = await database_url(settings)
        where.append(redacted(url))
        engine = create_engine(url, pool_size=pool_size)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    with database_errors(lambda: where[0] if where else configured_database(settings)):
        try:
            return asyncio.run(run())
        except (PaymentsError, InvalidPhoneNumber, MoneyError) as exc:
            raise click.ClickException(str(exc)) from None


def configured_database(settings: Settings) -> str:
    """The database as an error message names it, its passwords hidden."""
    url = settings.database.url
    return redacted(url) if url else f"the embedded PostgreSQL ({settings.database.embedded_dir})"


@contextmanager
def database_errors(where: Callable[[], str]) -> Iterator[None]:
    """A database out of reach, refusing, ahead of the code's migrations, or named by a URL that cannot
    be read, as the command's error message (``where()`` names it) rather than a traceback."""
    try:
        yield
    except (MigrationError, BadDatabaseUrl) as exc:
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:  # a database that is not there, or that refused what was asked
        reason = str(exc.orig or exc).splitlines()[0]
        raise click.ClickException(f"the database at {where()} refused: {reason}") from None
    except OSError as exc:
        if not _unreachable(exc):
            raise
        raise click.ClickException(f"cannot reach the database at {where()}: {exc}") from None


#: What connecting to an address that does not answer raises besides ConnectionError and TimeoutError.
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ETIMEDOUT})


def _unreachable(exc: OSError) -> bool:
    """No server there, or no answer: not a file or a port of ours (`serve` says those itself)."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        # A Unix socket that is not there (no server in that directory: ``?host=/run/postgresql``);
        # a file of ours that is missing names itself.
        return True
    # asyncio tries each address of a name (localhost: ::1 and 127.0.0.1) and raises a bare OSError
    # saying "Multiple exceptions: …" when all of them fail.
    return exc.errno in _NO_ROUTE or (exc.errno is None and str(exc).startswith("Multiple exceptions"))


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
