"""The `sauti` command: serve the gateway, migrate the database, check the ledger, and the
sub-commands of each capability. Settings come from `--config` (default ./config.yml) and the
environment; a bad setting stops the command with a message naming the key."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import redacted
from db.migrate import current_revision, head_revision, upgrade
from gateway.app import create_app
from gateway.commands.agents import agent
from gateway.commands.apikeys import apikey
from gateway.commands.database_work import configured_database, database_errors, run_with_database
from gateway.commands.mpesa import mpesa
from gateway.commands.nlu import nlu
from gateway.commands.payment_lookup import payment_group
from gateway.commands.payment_operator import payment_close_flag, payment_decide, payment_refund, payment_review
from gateway.commands.phone import phone
from gateway.commands.reconcile import reconcile_command
from gateway.commands.sandbox import sandbox
from gateway.commands.suspense import suspense_group
from gateway.commands.ussd import ussd
from gateway.commands.voice import voice
from gateway.commands.webhooks import webhook
from gateway.commands.worker import outbox_group, worker
from gateway.payments_resources import ProvidersUnavailable
from gateway.serve_processes import check_workers, listening_line, supervise
from gateway.settings import ConfigError, Settings, load_settings
from gateway.ussd_resources import UssdUnavailable
from payments.ledger_check import check_ledger

T = TypeVar("T")


def configure_logging(settings: Settings, *, process_id: bool = False) -> None:
    """Log lines to stderr; with ``process_id``, each names its process (`serve --workers`: the
    processes' lines interleave on one stream)."""
    where = " [%(process)d]" if process_id else ""
    logging.basicConfig(level=settings.logging.level, stream=sys.stderr, force=True,
                        format=f"%(asctime)s %(levelname)s{where} %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").disabled = True  # our access log redacts; aiohttp's does not
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def with_engine(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` with an engine on the configured (or embedded) database, then dispose of it (a
    database out of reach is the command's error, not a traceback: `run_with_database`)."""
    return run_with_database(settings, work)


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Settings file (default: $SAUTI_CONFIG or ./config.yml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Sauti: voice and USSD payments gateway."""
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    ctx.obj = {"settings": settings}
    configure_logging(settings)


@main.command()
@click.option("--host", default=None, help="Interface to listen on (default: server.host).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: server.port).")
@click.option("--workers", default=None, type=click.IntRange(1, 64),
              help="Gateway processes sharing the port (default: server.workers); above 1 needs redis.url.")
@click.option("--reuse-port", is_flag=True, hidden=True, help="Listen with SO_REUSEPORT (set for each of --workers).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, reuse_port: bool) -> None:
    """Start the gateway (the embedded PostgreSQL too, unless DATABASE_URL is set)."""
    settings = _settings(ctx)
    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers
    # The app must know where it listens: the sandboxes' callbacks are addressed to it.
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"host": host, "port": port})})
    try:
        # A database out of reach, refusing or migrated by a later release (at start-up's migration),
        # and a port another process holds, are said in one line, not a traceback.
        with database_errors(lambda: configured_database(settings)):
            check_workers(settings, workers)
            if workers > 1:
                sys.exit(asyncio.run(supervise(settings, host, port, workers,
                                               ctx.find_root().params.get("config_path"))))
            if reuse_port:
                configure_logging(settings, process_id=True)
            shown = f"gateway process {os.getpid()}" if reuse_port else "Sauti gateway"
            web.run_app(create_app(settings), host=host, port=port, access_log=None, reuse_port=reuse_port or None,
                        shutdown_timeout=settings.server.shutdown_timeout_s,
                        print=lambda _: click.echo(listening_line(shown, host, port)))
    except (ConfigError, ProvidersUnavailable, UssdUnavailable) as exc:  # a setting to fix, said plainly
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if exc.errno not in _CANNOT_LISTEN:
            raise
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another process "
                                   "holds the port, or the address is not this machine's: stop it, or pass "
                                   "--host / --port)") from None


#: What binding the gateway's port fails with: taken, not an address of this machine, not allowed.
_CANNOT_LISTEN = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply the Alembic migrations."""

    async def work(engine: AsyncEngine) -> str:
        click.echo(f"Migrating {redacted(engine.url.render_as_string(hide_password=False))} to {revision}…")
        return await upgrade(engine, revision)

    click.echo(f"Database at revision {with_engine(_settings(ctx), work)}.")


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the database's revision and the newest one this code knows."""
    current = with_engine(_settings(ctx), current_revision)
    click.echo(f"database: {current or 'empty'}; code: {head_revision()}")


@main.group()
def ledger() -> None:
    """The wallet ledger."""


@ledger.command("check")
@click.pass_context
def ledger_check(ctx: click.Context) -> None:
    """Verify every money invariant over the whole database; exit 1 on any violation."""

    report = with_engine(_settings(ctx), check_ledger)
    click.echo(report.render())
    if not report.ok:
        sys.exit(1)


main.add_command(sandbox)
main.add_command(worker)
main.add_command(outbox_group)
main.add_command(nlu)
main.add_command(ussd)
main.add_command(phone)
main.add_command(apikey)
main.add_command(webhook)
main.add_command(reconcile_command)
main.add_command(suspense_group)
main.add_command(mpesa)
main.add_command(agent)
payment_group.add_command(payment_review)
payment_group.add_command(payment_decide)
payment_group.add_command(payment_close_flag)
payment_group.add_command(payment_refund)
main.add_command(payment_group)
main.add_command(voice)


if __name__ == "__main__":
    main()
