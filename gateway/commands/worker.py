"""``sauti worker``: run outbox jobs (provider calls, SMS) until stopped, or once with ``--once``;
and ``sauti outbox``: what operators need to see and steer the outbox (counts, retry, park).

Any number of `sauti worker` processes may run beside `sauti serve` (whose in-process worker is
``outbox.run_in_serve``): jobs are claimed with ``FOR UPDATE SKIP LOCKED``, never twice at once.
The worker runs the payment orchestrator's handlers with the provider clients `sauti serve` uses
(`gateway.payments_resources.open_payments`); in sandbox mode it reaches the sandboxes at
``providers.sandbox.port_base`` and never starts its own (a sandbox's state lives in its process);
without a port_base it claims no provider job (they are left to serve's in-process worker) and still
sends webhooks.
Webhook deliveries have a worker of their own beside it (`gateway.worker_resources.build_workers`).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from db.migrate import upgrade
from gateway.commands.database_work import run_with_database
from gateway.commands.payment_operator import operator_name
from gateway.ops_actions import park_outbox_job, retry_outbox_job
from gateway.payments_resources import ProvidersUnavailable, open_payments
from gateway.resources import build_ledger
from gateway.settings import Settings
from gateway.worker_resources import build_workers, default_handlers
from payments import outbox
from payments.worker import Handler

#: An outbox job's id: a PostgreSQL bigint.
JOB_ID = click.IntRange(1, 2**63 - 1)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None,
              help="Jobs run at once (default: outbox.concurrency).")
@click.option("--once", is_flag=True, help="Run the jobs that are due now, then exit.")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, once: bool) -> None:
    """Run outbox jobs until Ctrl-C / SIGTERM (in-flight jobs finish first)."""
    settings = _settings(ctx)
    concurrency = concurrency or settings.outbox.concurrency
    # One value for the worker and what sizes itself by it (the SMS sender's threads).
    settings = settings.model_copy(update={"outbox": settings.outbox.model_copy(update={"concurrency": concurrency})})
    # A claim, an outcome per job in flight (webhook deliveries' too), the LISTEN connections, and
    # headroom for the handlers.
    pool_size = min(concurrency + settings.webhooks.concurrency + 5, 200)
    # A database out of reach, or migrated by a later release, is said in one line (`database_errors`).
    run_with_database(settings, lambda engine: _work(settings, engine, concurrency, once), pool_size=pool_size)


async def _work(settings: Settings, engine: AsyncEngine, concurrency: int, once: bool) -> None:
    if settings.database.migrate_on_start:
        await upgrade(engine)
    try:
        async with open_payments(settings, engine, build_ledger(engine, settings), serving=False) as runtime:
            # Out of the sandboxes' reach, this process claims no provider job at all: a claim costs
            # the job one of its attempts and a backoff, and a job whose every claim fell here was
            # parked although serve's worker could have run it. Webhooks go to the API's callers,
            # not to the sandboxes: they are sent all the same.
            await _run_worker(settings, engine, default_handlers(runtime.payments), concurrency, once,
                              webhooks_only=not runtime.providers_reachable)
    except ProvidersUnavailable as exc:
        raise click.ClickException(str(exc)) from None


async def _run_worker(settings: Settings, engine: AsyncEngine, handlers: Mapping[str, Handler], concurrency: int,
                      once: bool, *, webhooks_only: bool = False) -> None:
    main, webhooks = build_workers(settings, engine, handlers, concurrency=concurrency)
    runners = (webhooks,) if webhooks_only else (main, webhooks)
    if once:
        ran = sum(await asyncio.gather(*(runner.drain() for runner in runners)))
        counts = await outbox.count_by_status(engine)
        click.echo(f"ran {ran} job(s); now " + ", ".join(f"{n} {status}" for status, n in counts.items()))
        return
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for runner in runners:
            runner.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop)
        except (NotImplementedError, RuntimeError):  # platforms without loop signal handlers
            pass
    jobs = "no provider jobs (out of the sandboxes' reach)" if webhooks_only else f"{concurrency} job(s) at a time"
    click.echo(f"outbox worker {main.worker_id}: {jobs}, and {settings.webhooks.concurrency} webhook deliveries "
               "(Ctrl-C to stop)")
    await asyncio.gather(*(runner.run_forever() for runner in runners))
    click.echo("outbox worker stopped")


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: jobs waiting, running, done and parked."""


@outbox_group.command("status")
@click.pass_context
def outbox_status(ctx: click.Context) -> None:
    """How many jobs are in each status."""
    counts = run_with_database(_settings(ctx), outbox.count_by_status)
    for status, n in counts.items():
        click.echo(f"{status:8} {n}")


def _operator(by: str) -> str:
    who = by.strip()
    if not who or not who.isprintable():
        raise click.ClickException("say who does it (--by)")
    return who


@outbox_group.command("retry")
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", default=None, help="Why (kept in the audit log).")
@click.option("--by", default=operator_name, show_default="your user name", help="Who runs it again.")
@click.pass_context
def outbox_retry(ctx: click.Context, job_id: int, reason: str | None, by: str) -> None:
    """Run a parked job again, with a fresh set of attempts (audited as `outbox.retry`, as the operator
    API's retry is)."""
    who = _operator(by)
    why = (reason or "").strip()

    if not run_with_database(_settings(ctx), lambda engine: retry_outbox_job(engine, job_id, who, why)):
        raise click.ClickException(f"job {job_id} is not parked")
    click.echo(f"job {job_id} is pending again")


@outbox_group.command("park")
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", required=True, help="Why (kept in the job's last_error and the audit log).")
@click.option("--by", default=operator_name, show_default="your user name", help="Who parks it.")
@click.pass_context
def outbox_park(ctx: click.Context, job_id: int, reason: str, by: str) -> None:
    """Stop a pending job from running (again). A job a worker is running now is refused: its request
    may already be on its way to the provider. Audited as `outbox.park`."""
    who = _operator(by)
    why = reason.strip()
    if not why:
        raise click.ClickException("say why (--reason)")

    try:
        parked = run_with_database(_settings(ctx), lambda engine: park_outbox_job(engine, job_id, who, why))
    except outbox.JobRunning as exc:
        raise click.ClickException(str(exc)) from None
    if not parked:
        raise click.ClickException(f"job {job_id} is neither pending nor running")
    click.echo(f"job {job_id} parked")
