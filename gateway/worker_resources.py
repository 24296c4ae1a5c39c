"""The outbox worker's wiring: the handlers for each job kind (the payment orchestrator's), a worker
built from the `outbox:` settings, and the cleanup context that runs one inside `sauti serve`
(``outbox.run_in_serve``). `sauti worker` builds its worker here too, so both run the same handlers
the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.keys import DB_ENGINE, PAYMENTS, SETTINGS
from gateway.settings import Settings
from payments.orchestrator import Payments
from payments.outbox import Lane, RetryPolicy
from payments.webhook_events import WEBHOOK_KINDS, WEBHOOK_LANE
from payments.worker import Handler, OutboxWorker

log = logging.getLogger(__name__)

OUTBOX_WORKER = web.AppKey("outbox_worker", OutboxWorker)
WEBHOOK_WORKER = web.AppKey("webhook_worker", OutboxWorker)


def default_handlers(payments: Payments | None) -> dict[str, Handler]:
    """The handler of each job kind payments/ enqueues (``mpesa.b2c``, ``mpesa.stk_push``, …): the
    orchestrator's (`Payments.register_handlers`). A job whose kind is missing here is parked with
    that reason; so is every job of a worker without ``payments`` (a bare app, as in some tests)."""
    return payments.register_handlers() if payments is not None else {}


def build_workers(
    settings: Settings,
    engine: AsyncEngine,
    handlers: Mapping[str, Handler],
    *,
    concurrency: int | None = None,
) -> tuple[OutboxWorker, OutboxWorker]:
    """The process's two outbox workers, with the same handlers: one for every kind but webhooks
    (``outbox.concurrency`` at once), and one for webhooks alone (``webhooks.concurrency``). The
    API's callers' servers are not ours: one that is slow or gone takes a webhook worker's slots for
    up to ``webhooks.timeout_s`` a try, never those of payouts and receipts."""
    s = settings.outbox
    common = {"poll_interval": s.poll_interval_s, "lease_s": s.lease_s, "max_attempts": s.max_attempts,
              "retry": RetryPolicy(base_s=s.backoff_base_s, max_s=s.backoff_max_s)}
    main = OutboxWorker(engine, handlers, concurrency=concurrency or s.concurrency,
                        lane=Lane(skip=WEBHOOK_KINDS), **common)
    webhooks = OutboxWorker(engine, handlers, concurrency=settings.webhooks.concurrency,
                            worker_id=f"{main.worker_id}:webhooks", lane=WEBHOOK_LANE, **common)
    return main, webhooks


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the in-process outbox worker stopped on an error; jobs wait for `sauti worker` or a restart",
                  exc_info=task.exception())


async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run an outbox worker for the app's lifetime; on shutdown let in-flight jobs finish (within
    ``server.shutdown_timeout_s``; jobs still running then are cancelled and, their leases expiring,
    run again elsewhere). Goes after `database_ctx` (the engine) and `payments_ctx` (the handlers)
    in ``cleanup_ctx``, so it stops before the provider clients close."""
    settings = app[SETTINGS]
    if not settings.outbox.run_in_serve:
        log.info("outbox worker not started in this process (outbox.run_in_serve is false)")
        yield
        return
    engine = app[DB_ENGINE]
    workers = build_workers(settings, engine, default_handlers(app.get(PAYMENTS)))
    tasks = [asyncio.create_task(w.run_forever(), name=f"outbox-worker-{n}") for n, w in enumerate(workers)]
    for task in tasks:
        task.add_done_callback(_report_crash)
    app[OUTBOX_WORKER], app[WEBHOOK_WORKER] = workers
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()
        _, pending = await asyncio.wait(tasks, timeout=settings.server.shutdown_timeout_s)
        if pending:
            log.warning("outbox worker: in-flight jobs outlasted the shutdown grace period; cancelled "
                        "(they run again when their leases expire)")
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
