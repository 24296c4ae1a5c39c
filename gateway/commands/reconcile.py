"""``sauti reconcile``: match a period's payments, and the ledger transfers that settled them, against
the providers' statements (`payments.reconcile`); exit 1 when anything does not match.

Where each statement comes from:

- Wave: its transactions API, with the configured (or sandbox) credentials.
- M-Pesa: Daraja has no statement API. Pass the organisation statement downloaded from the M-Pesa
  portal as CSV (``--mpesa-statement FILE``; columns in `payments.provider_statements`); in sandbox
  mode the sandbox's books are read instead when no file is given (``providers.sandbox.port_base``
  must say where the sandboxes run).

Exit status: 0 all matched, 1 discrepancies found (listed), 2 the reconciliation could not run.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.commands.database_work import run_with_database
from gateway.payments_resources import ProvidersUnavailable, open_payments
from gateway.reconciliation import moment, statement_sources
from gateway.resources import build_ledger
from gateway.settings import Settings
from payments.errors import InvalidRequest, PaymentsError
from payments.provider_statements import MPESA, WAVE, MpesaCsvStatement
from payments.providers.errors import ProviderError
from payments.reconcile import reconcile
from payments.reconcile_report import ReconcileReport


class CannotReconcile(click.ClickException):
    exit_code = 2


class _Moment(click.ParamType):
    """An ISO 8601 date or date and time; without an offset it is UTC (`gateway.reconciliation.moment`)."""

    name = "ISO-8601"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return moment(value)
        except InvalidRequest as exc:
            self.fail(str(exc), param, ctx)


@click.command("reconcile")
@click.option("--from", "start", type=_Moment(), required=True, help="Start of the period (included).")
@click.option("--to", "end", type=_Moment(), default=None, help="End of the period (excluded; default: now).")
@click.option("--provider", type=click.Choice([MPESA, WAVE]), default=None,
              help="One provider only (default: every provider with a statement to read).")
@click.option("--mpesa-statement", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="M-Pesa organisation statement, CSV (Receipt No., Completion Time, Paid In, Withdrawn, …).")
@click.option("--grace-minutes", type=click.IntRange(0, 7 * 24 * 60), default=60, show_default=True,
              help="How far outside the period a payment's other side may fall and still match.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.pass_context
def reconcile_command(ctx: click.Context, start: datetime, end: datetime | None, provider: str | None,
                      mpesa_statement: Path | None, grace_minutes: int, as_json: bool) -> None:
    """Match payments against the providers' statements; exit 1 when anything does not match."""
    settings: Settings = ctx.obj["settings"]
    end = end or datetime.now(UTC)
    if provider == WAVE and mpesa_statement is not None:
        raise click.UsageError("--mpesa-statement goes with M-Pesa, not --provider wave")
    grace = timedelta(minutes=grace_minutes)

    async def work(engine: AsyncEngine) -> ReconcileReport:
        try:
            return await _reconcile(settings, engine, start, end, provider, mpesa_statement, grace)
        except (ProvidersUnavailable, ProviderError, PaymentsError) as exc:
            raise CannotReconcile(str(exc)) from None

    try:
        report = run_with_database(settings, work)
    except CannotReconcile:
        raise
    except click.ClickException as exc:  # the database out of reach or refusing: it could not run either
        raise CannotReconcile(exc.message) from None
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.render())
    if not report.ok:
        sys.exit(1)


async def _reconcile(settings: Settings, engine: AsyncEngine, start: datetime, end: datetime, provider: str | None,
                     mpesa_statement: Path | None, grace: timedelta) -> ReconcileReport:
    async with open_payments(settings, engine, build_ledger(engine, settings), serving=False) as runtime:
        given = MpesaCsvStatement(mpesa_statement) if mpesa_statement is not None else None
        sources, skipped = statement_sources(runtime, provider, given, mpesa_how="pass --mpesa-statement FILE")
        if provider is not None and skipped:
            raise CannotReconcile(skipped[0])
        for reason in skipped:
            click.echo(f"skipped {reason}", err=True)
        if not sources:
            raise CannotReconcile("no provider statement to reconcile against")
        return await reconcile(engine, sources, start, end, grace=grace)
