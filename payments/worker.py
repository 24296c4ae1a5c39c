"""The outbox worker: claims due jobs (`payments.outbox`) and runs each with the handler registered
for its kind, a plain ``async def handler(job) -> None`` routed by a dict.

A handler that returns finished the job; one that raises failed this attempt (retried with backoff,
parked after the job's last attempt); a `PermanentJobError` parks it at once; a kind with no handler
is parked with that reason. Each job runs under a timeout shorter than its lease, so a worker that is
alive never loses a job it is running to another worker.

Any number of workers, in any number of processes, may run at once: claims use
``FOR UPDATE SKIP LOCKED``. A worker sleeps until PostgreSQL notifies it of a new job (LISTEN on a
pooled connection) or, as the fallback, for ``poll_interval`` seconds. Stopping is graceful: no new
claims, in-flight jobs finish.

Logs say one line per job outcome: its id, kind, attempt, duration and the error's type, never the
payload (it may hold phone numbers) nor the error text (it is in ``outbox_jobs.last_error``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from types import MappingProxyType
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payments import outbox
from payments.outbox import Job, Lane, PermanentJobError, RetryPolicy

log = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[None]]

# A job's timeout is this share of its lease: the rest covers the claim-to-start delay and recording
# the outcome, so a live worker's lease never expires under it (`gateway.settings` checks that the
# HTTP timeouts a job waits on fit in the share).
TIMEOUT_SHARE_OF_LEASE = 0.8
# After a database error the loop waits, doubling up to this, instead of spinning.
_MAX_ERROR_PAUSE_S = 30.0
# What a database outage or restart raises (SQLAlchemy wraps the driver's errors, but not every path
# goes through SQLAlchemy: the LISTEN connection is asyncpg's own).
_DATABASE_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def default_worker_id() -> str:
    """Host, process and a random suffix: unique per worker, readable in `locked_by`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class OutboxWorker:
    """Runs outbox jobs with ``handlers`` (kind → handler), ``concurrency`` at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        lease_s: float = 60.0,
        worker_id: str | None = None,
        retry: RetryPolicy | None = None,
        max_attempts: int = outbox.DEFAULT_MAX_ATTEMPTS,
        job_timeout_s: float | None = None,
        sweep_interval_s: float | None = None,
        listen: bool = True,
        lane: Lane | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if poll_interval <= 0 or lease_s <= 0:
            raise ValueError("poll_interval and lease_s must be positive")
        timeout = lease_s * TIMEOUT_SHARE_OF_LEASE if job_timeout_s is None else job_timeout_s
        if not 0 < timeout < lease_s:
            raise ValueError(f"a job's timeout ({timeout}s) must be shorter than its lease ({lease_s}s)")
        self.engine = engine
        self.handlers: Mapping[str, Handler] = MappingProxyType(dict(handlers))
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease_s = lease_s
        self.job_timeout_s = timeout
        self.worker_id = worker_id or default_worker_id()
        self.retry = retry or RetryPolicy()
        self.max_attempts = max_attempts  # for jobs enqueued without their own
        # Expired leases are looked for a few times per lease: a dead worker's job waits at most
        # about a lease and a quarter before it runs again.
        self.sweep_interval_s = sweep_interval_s if sweep_interval_s is not None else max(lease_s / 4, 0.05)
        self.listen = listen
        #: The kinds of jobs this worker claims, and where it listens (`outbox.Lane`): every kind unless told.
        self.lane = lane or Lane()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Whether the last claim found fewer due jobs than it asked for: then a slot freed by a
        # finished job needs no claim of its own (a new job notifies; a retry's backoff ends on the
        # poll), which spared the statement that half of all claims were under a steady load.
        self._drained = False
        self._next_sweep = 0.0
        self._listener: AsyncConnection | None = None
        self._driver: Any = None

    # -- control ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run_forever` to return: it claims nothing more and waits for in-flight jobs."""
        self._stop.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        """Claim and run jobs until `stop()` is called (or ``stop`` is set), then finish the jobs in
        flight and return. If cancelled instead, in-flight jobs are cancelled too: their leases
        expire and another worker runs them again."""
        relay = asyncio.create_task(self._relay_stop(stop)) if stop is not None else None
        log.info("outbox worker %s started: %d at a time, lease %.0fs, %s", self.worker_id, self.concurrency,
                 self.lease_s, "LISTEN + polling" if self.listen else "polling")
        error_pause = self.poll_interval
        try:
            while not self._stop.is_set():
                # Cleared before claiming: a notification (or a finished job, while more may be
                # due) arriving meanwhile sets it again, and the wait below returns at once.
                self._wake.clear()
                try:
                    if self.listen:
                        await self._ensure_listener()
                    await self._sweep_if_due()
                    free = self.concurrency - len(self._in_flight)
                    if free > 0:
                        self._drained = False  # unknown until this claim answers: a job ending meanwhile wakes us
                        claimed = await self._claim(free)
                        self._drained = len(claimed) < free
                        self._start(claimed)
                    error_pause = self.poll_interval
                except _DATABASE_ERRORS as exc:
                    error_pause = await self._pause_after_error(exc, error_pause)
                    continue
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            if self._in_flight:
                log.info("outbox worker %s stopping: waiting for %d job(s) in flight", self.worker_id,
                         len(self._in_flight))
                await asyncio.gather(*self._in_flight, return_exceptions=True)
        finally:
            for task in list(self._in_flight):
                task.cancel()
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            if relay is not None:
                relay.cancel()
            await self._close_listener()
            log.info("outbox worker %s stopped", self.worker_id)

    async def run_once(self) -> int:
        """Claim up to `concurrency` due jobs, run them, wait for them; returns how many ran. For tests
        and `sauti worker --once`."""
        await self._requeue_expired()
        jobs = await self._claim(self.concurrency)
        await asyncio.gather(*(self._run(job) for job in jobs))
        return len(jobs)

    async def drain(self, *, max_batches: int | None = None) -> int:
        """Run batches until no job is due; returns how many jobs ran. Jobs waiting out a backoff are
        not waited for."""
        total = batches = 0
        while max_batches is None or batches < max_batches:
            ran = await self.run_once()
            if ran == 0:
                break
            total += ran
            batches += 1
        return total

    # -- the loop's parts -----------------------------------------------------------------------

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    async def _claim(self, free: int) -> list[Job]:
        if free < 1 or self._stop.is_set():
            return []
        return await outbox.claim(self.engine, self.worker_id, limit=free, lease_s=self.lease_s,
                                  default_max_attempts=self.max_attempts, lane=self.lane)

    def _start(self, jobs: list[Job]) -> None:
        for job in jobs:
            task = asyncio.create_task(self._run(job), name=f"outbox-job-{job.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not self._drained:
            self._wake.set()  # a slot is free and jobs may be waiting: claim without waiting for the poll

    async def _sweep_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval_s
        await self._requeue_expired()

    async def _requeue_expired(self) -> None:
        """Sweep expired leases (dead workers' jobs) back into the queue, saying what moved."""
        requeued, parked = await outbox.requeue_expired_leases(self.engine, default_max_attempts=self.max_attempts)
        if requeued or parked:
            log.warning("outbox: %d job(s) requeued and %d parked after their worker's lease expired",
                        requeued, parked)

    async def _pause_after_error(self, exc: Exception, pause: float) -> float:
        log.warning("outbox worker %s: database unavailable (%s); retrying in %.1fs", self.worker_id,
                    type(exc).__name__, pause)
        await self._close_listener()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), pause)
        return min(pause * 2, _MAX_ERROR_PAUSE_S)

    # -- LISTEN/NOTIFY: a faster wake-up; polling still works without it -------------------------

    async def _ensure_listener(self) -> None:
        if self._driver is not None and not self._driver.is_closed():
            return
        await self._close_listener()
        conn = await self.engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            await driver.add_listener(self.lane.channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        self._listener, self._driver = conn, driver

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _close_listener(self) -> None:
        conn, driver = self._listener, self._driver
        self._listener = self._driver = None
        if conn is None:
            return
        with suppress(Exception):
            if not driver.is_closed():
                await driver.remove_listener(self.lane.channel, self._notified)
        with suppress(Exception):
            await conn.close()

    # -- one job ------------------------------------------------------------------------------

    async def _run(self, job: Job) -> None:
        """Run one claimed job and record its outcome. Never raises (but lets cancellation through):
        a failure to record an outcome leaves the lease to expire, and the job runs again."""
        try:
            await self._run_and_record(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("outbox job %d (%s): could not record its outcome (%s); it runs again when its lease "
                      "expires", job.id, job.kind, type(exc).__name__)

    async def _run_and_record(self, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        if handler is None:
            reason = f"no handler for job kind {job.kind!r} (this worker knows: {', '.join(sorted(self.handlers))})"
            if await outbox.park_claimed(self.engine, job, self.worker_id, reason):
                log.error("outbox job %d (%s) parked: no handler for its kind", job.id, job.kind)
            else:
                self._lost_lease(job)
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.job_timeout_s) as deadline:
                await handler(job)
        except PermanentJobError as exc:
            await self._failed(job, exc, started, permanent=True)
        except TimeoutError as exc:
            # Ours (the job's timeout) or the handler's own (an HTTP timeout, say): both are retried.
            ours = TimeoutError(f"the handler ran past the job timeout of {self.job_timeout_s:g}s")
            await self._failed(job, ours if deadline.expired() else exc, started, permanent=False)
        except Exception as exc:
            await self._failed(job, exc, started, permanent=False)
        else:
            if await outbox.complete(self.engine, job, self.worker_id):
                log.info("outbox job %d (%s) done in %.3fs (attempt %d/%d)", job.id, job.kind,
                         time.monotonic() - started, job.attempts, job.max_attempts)
            else:
                self._lost_lease(job)

    async def _failed(self, job: Job, exc: Exception, started: float, *, permanent: bool) -> None:
        outcome = await outbox.fail(self.engine, job, self.worker_id, outbox.describe_error(exc),
                                    policy=self.retry, permanent=permanent)
        took = time.monotonic() - started
        if not outcome.applied:
            self._lost_lease(job)
        elif outcome.parked:
            why = "permanent error" if permanent else "out of attempts"
            log.error("outbox job %d (%s) parked after %.3fs (attempt %d/%d, %s): %s", job.id, job.kind, took,
                      job.attempts, job.max_attempts, why, type(exc).__name__)
        else:
            log.warning("outbox job %d (%s) failed after %.3fs (attempt %d/%d): %s; retry in %.1fs", job.id,
                        job.kind, took, job.attempts, job.max_attempts, type(exc).__name__, outcome.retry_in_s)

    def _lost_lease(self, job: Job) -> None:
        log.warning("outbox job %d (%s): lease lost before its outcome was recorded (attempt %d); "
                    "its next owner decides", job.id, job.kind, job.attempts)

