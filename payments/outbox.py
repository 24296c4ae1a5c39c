"""The transactional outbox: jobs (provider calls, SMS) written in the same transaction as the state
change that needs them, then claimed and run by workers (`payments.worker`).

Life of a job (table `outbox_jobs`, migration 0002):

- `enqueue` inserts it in the CALLER's transaction: if that transaction rolls back, the job never
  existed; if it commits, the job will run. It also `pg_notify`s, delivered on commit, to wake workers.
- `claim` takes due `pending` jobs with ``FOR UPDATE SKIP LOCKED`` (concurrent workers, in any
  process, skip each other's rows instead of waiting or double-claiming), counts the attempt and
  gives the worker a lease.
- `complete` marks it `done`; `fail` puts it back to `pending` after an exponential, jittered
  backoff, or parks it with the reason once it has used its attempts (or at once, for a
  `PermanentJobError`).
- `requeue_expired_leases` returns the jobs of dead workers to `pending` (or parks them when that
  was their last attempt, so a job that kills its worker every time cannot loop forever).

IMPORTANT: delivery is at least once. A worker can die after the handler's effect and before
`complete`; handlers must be idempotent (provider calls carry our own idempotency ids).
Every state change after the claim is fenced on (worker, attempt), so a worker that lost its lease
cannot overwrite what the job's next owner did.
"""

from __future__ import annotations

import json
import random
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import autocommit
from db.schema import JOB_STATUSES
from db.sql import sql

# Workers LISTEN here (those of a `Lane` with a channel of its own, there); `enqueue` and
# `retry_parked` notify it (payload-free, so PostgreSQL folds the
# notifications of one transaction into one).
NOTIFY_CHANNEL = "sauti_outbox"
# Attempts of a job enqueued without its own max_attempts, when the worker is not told otherwise
# (the gateway passes outbox.max_attempts).
DEFAULT_MAX_ATTEMPTS = 10
# last_error holds a reason for people, not a log: keep rows small.
_MAX_ERROR_CHARS = 2000


class PermanentJobError(Exception):
    """Raised by a handler when retrying cannot help (a rejected request, a closed account): the job
    is parked at once with this message as its reason."""


class JobRunning(Exception):
    """An operator asked to park a job a worker is running now, under a live lease: its request may
    be on its way to the provider, so parking the row would stop nothing. Wait for the attempt to
    end (it is done, parked, or pending again, and may be parked then)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed outbox job, as its handler sees it. ``attempts`` counts this run (1 on the first)."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    attempts: int
    max_attempts: int
    dedupe_key: str | None
    status: str
    run_after: datetime
    locked_by: str | None
    locked_until: datetime | None
    last_error: str | None
    created_at: datetime

    @property
    def is_last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped: after failed attempt n the job waits a random time in
    [d/2, d], d = min(max_s, base_s * 2**(n-1)). The jitter spreads out retries of jobs that failed
    together (a provider outage) so they do not all come back in the same instant."""

    base_s: float = 2.0
    max_s: float = 600.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.max_s >= self.base_s):
            raise ValueError(f"backoff needs 0 < base_s <= max_s (got base_s={self.base_s}, max_s={self.max_s})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after failed attempt ``attempt`` (1-based)."""
        # The exponent is bounded so huge attempt counts cannot overflow a float; 2**64 is past any cap.
        exponent = min(max(attempt, 1) - 1, 64)
        return min(self.max_s, self.base_s * 2.0**exponent)

    def delay(self, attempt: int, unit: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``. ``unit`` in [0, 1] picks the point in the
        jitter range (random when omitted; given by tests)."""
        u = random.random() if unit is None else min(max(unit, 0.0), 1.0)
        top = self.ceiling(attempt)
        return top / 2 + u * top / 2


@dataclass(frozen=True, slots=True)
class Lane:
    """A share of the outbox for one worker: the kinds of jobs it claims (those in ``only``, every
    kind when None, less those in ``skip``) and the channel it LISTENs on, which whoever enqueues
    them notifies. Workers in lanes of their own keep a slow kind (webhooks to the API's callers'
    servers) from taking the slots of the others (payouts, receipts), and are not woken by each
    other's jobs."""

    only: frozenset[str] | None = None
    skip: frozenset[str] = frozenset()
    channel: str = NOTIFY_CHANNEL


@dataclass(frozen=True, slots=True)
class FailOutcome:
    """What `fail` did: put the job back for a retry in ``retry_in_s`` seconds, or parked it."""

    applied: bool
    parked: bool
    retry_in_s: float | None = None


# A job enqueued without its own max_attempts (NULL) gets the worker's; read with this default.
_COLUMNS = ("id, kind, payload, attempts, coalesce(max_attempts, :default_max) AS max_attempts, dedupe_key, "
            "status, run_after, locked_by, locked_until, last_error, created_at")

_ENQUEUE = sql(f"""
WITH inserted AS (
    INSERT INTO outbox_jobs (kind, payload, dedupe_key, max_attempts, run_after)
    VALUES (:kind, CAST(:payload AS jsonb), :dedupe_key, :max_attempts,
            coalesce(CAST(:run_after AS timestamptz), now()))
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('{NOTIFY_CHANNEL}', '') FROM inserted
""")

_EXISTING = sql("SELECT id FROM outbox_jobs WHERE dedupe_key = :dedupe_key")

# Several jobs in one statement (one round trip, one notification), whatever their number: the rows
# come as arrays, so the statement's text, and its prepared plan, stay the same.
_ENQUEUE_MANY = sql("""
WITH inserted AS (
    INSERT INTO outbox_jobs (kind, payload, dedupe_key, max_attempts, run_after)
    SELECT kind, payload, dedupe_key, max_attempts, now()
      FROM unnest(CAST(:kinds AS text[]), CAST(:payloads AS jsonb[]), CAST(:dedupe_keys AS text[]),
                  CAST(:max_attempts AS int[]))
           AS j(kind, payload, dedupe_key, max_attempts)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
)
SELECT count(*) AS written, pg_notify(:channel, '') FROM inserted HAVING count(*) > 0
""")

# IMPORTANT: SKIP LOCKED is what lets any number of workers claim concurrently: a row another
# transaction is claiming is skipped, never waited for and never claimed twice. The attempt is
# counted here, at the claim, so a job that kills its worker every time still runs out of attempts.
_CLAIM = sql(f"""
WITH picked AS (
    SELECT id AS picked_id FROM outbox_jobs
     WHERE status = 'pending' AND run_after <= now()
       AND (CAST(:only_kinds AS text[]) IS NULL OR kind = ANY(CAST(:only_kinds AS text[])))
       AND kind <> ALL(CAST(:skip_kinds AS text[]))
     ORDER BY run_after, id
     LIMIT :limit
     FOR UPDATE SKIP LOCKED
)
UPDATE outbox_jobs j
   SET status = 'running', attempts = j.attempts + 1, locked_by = :worker,
       locked_until = now() + make_interval(secs => :lease_s), updated_at = now()
  FROM picked
 WHERE j.id = picked.picked_id
RETURNING {_COLUMNS}
""")

# The fence: only the worker that holds this attempt's lease may finish it.
_FENCE = "id = :id AND status = 'running' AND locked_by = :worker AND attempts = :attempts"

_COMPLETE = sql(f"""
UPDATE outbox_jobs SET status = 'done', locked_by = NULL, locked_until = NULL,
       finished_at = now(), updated_at = now()
 WHERE {_FENCE}
""")

_RETRY_LATER = sql(f"""
UPDATE outbox_jobs SET status = 'pending', locked_by = NULL, locked_until = NULL, last_error = :error,
       run_after = now() + make_interval(secs => :delay_s), updated_at = now()
 WHERE {_FENCE}
""")

_PARK_CLAIMED = sql(f"""
UPDATE outbox_jobs SET status = 'parked', locked_by = NULL, locked_until = NULL, last_error = :error,
       finished_at = now(), updated_at = now()
 WHERE {_FENCE}
""")

_REQUEUE_EXPIRED = sql("""
WITH expired AS (
    SELECT id AS expired_id FROM outbox_jobs
     WHERE status = 'running' AND locked_until < now()
     ORDER BY locked_until
     LIMIT :limit
     FOR UPDATE SKIP LOCKED
)
UPDATE outbox_jobs j
   SET status = CASE WHEN j.attempts >= coalesce(j.max_attempts, :default_max) THEN 'parked' ELSE 'pending' END,
       finished_at = CASE WHEN j.attempts >= coalesce(j.max_attempts, :default_max) THEN now() END,
       last_error = format('lease of %s expired during attempt %s of %s (worker stopped or job hung)',
                           j.locked_by, j.attempts, coalesce(j.max_attempts, :default_max)),
       locked_by = NULL, locked_until = NULL, run_after = now(), updated_at = now()
  FROM expired
 WHERE j.id = expired.expired_id
RETURNING j.status
""")

# IMPORTANT: never a job running under a live lease. Its worker may be in the middle of a provider
# request (a B2C); parking only the row would let `payments.review` give the payer the money back
# while that request still pays out. A running job whose lease expired (its worker died; its
# handler's timeout is shorter than the lease) may be parked.
_PARK = sql("""
UPDATE outbox_jobs SET status = 'parked', locked_by = NULL, locked_until = NULL, last_error = :reason,
       finished_at = now(), updated_at = now()
 WHERE id = :id AND (status = 'pending' OR (status = 'running' AND locked_until < now()))
""")

_LEASE = sql("SELECT status, locked_by, locked_until, attempts FROM outbox_jobs "
             "WHERE id = :id AND status = 'running' AND locked_until >= now()")

_RETRY_PARKED = sql(f"""
WITH revived AS (
    UPDATE outbox_jobs SET status = 'pending', attempts = 0, run_after = now(), finished_at = NULL,
           updated_at = now()
     WHERE id = :id AND status = 'parked'
    RETURNING id
)
SELECT id, pg_notify('{NOTIFY_CHANNEL}', '') FROM revived
""")


def _payload_json(payload: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        # Fail in the caller's code path, before its transaction commits something unrunnable.
        raise ValueError(f"outbox payload must be JSON (str, int, bool, None, lists, dicts): {exc}") from None


def _job(row: Mapping[str, Any]) -> Job:
    payload = row["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return Job(id=row["id"], kind=row["kind"], payload=MappingProxyType(payload), attempts=row["attempts"],
               max_attempts=row["max_attempts"], dedupe_key=row["dedupe_key"], status=row["status"],
               run_after=row["run_after"], locked_by=row["locked_by"], locked_until=row["locked_until"],
               last_error=row["last_error"], created_at=row["created_at"])


def _fence(job: Job, worker_id: str) -> dict[str, Any]:
    return {"id": job.id, "worker": worker_id, "attempts": job.attempts}


def describe_error(exc: BaseException) -> str:
    """The reason stored in ``last_error``: the exception and where it was raised (no locals, no
    payload), bounded in size."""
    reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        reason += f" (at {last.filename}:{last.lineno} in {last.name})"
    return reason[:_MAX_ERROR_CHARS]


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    dedupe_key: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
) -> int:
    """Write a job in ``conn``'s open transaction; returns its id. With a ``dedupe_key`` already
    used, nothing is written and the existing job's id comes back. ``run_after`` (timezone-aware)
    delays the first run; ``max_attempts`` left out means the worker's setting (outbox.max_attempts)."""
    if not kind:
        raise ValueError("an outbox job needs a kind")
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if run_after is not None and run_after.tzinfo is None:
        raise ValueError("run_after must be timezone-aware")
    _in_callers_transaction(conn, "enqueue")
    params = {"kind": kind, "payload": _payload_json(payload), "dedupe_key": dedupe_key,
              "max_attempts": max_attempts, "run_after": run_after}
    row = (await conn.execute(_ENQUEUE, params)).first()
    if row is not None:
        return row.id
    # The key exists (committed, or committed by a concurrent transaction we waited for).
    return (await conn.execute(_EXISTING, {"dedupe_key": dedupe_key})).scalar_one()


def _in_callers_transaction(conn: AsyncConnection, writer: str) -> None:
    if not conn.in_transaction():
        # Without a transaction the job would commit on its own, apart from the state change it
        # belongs to: exactly what the outbox exists to prevent.
        raise ValueError(f"{writer} writes in the caller's transaction: call it inside conn.begin()")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job for `enqueue_many`: its kind, payload and dedupe key (runs at once, with its own
    ``max_attempts`` or, left out, the worker's)."""

    kind: str
    payload: Mapping[str, Any]
    dedupe_key: str
    max_attempts: int | None = None


async def enqueue_many(conn: AsyncConnection, jobs: Sequence[NewJob], *, channel: str = NOTIFY_CHANNEL) -> int:
    """`enqueue` several jobs in one statement, in ``conn``'s open transaction, notifying ``channel``
    (their workers' `Lane`'s); returns how many were written (a dedupe key already used writes
    nothing, as with `enqueue`)."""
    if not jobs:
        return 0
    if not all(job.kind and job.dedupe_key for job in jobs):
        raise ValueError("enqueue_many takes jobs with a kind and a dedupe key")
    if any(job.max_attempts is not None and job.max_attempts < 1 for job in jobs):
        raise ValueError("max_attempts must be at least 1")
    _in_callers_transaction(conn, "enqueue_many")
    params = {"kinds": [job.kind for job in jobs], "payloads": [_payload_json(job.payload) for job in jobs],
              "dedupe_keys": [job.dedupe_key for job in jobs], "max_attempts": [job.max_attempts for job in jobs],
              "channel": channel}
    return (await conn.execute(_ENQUEUE_MANY, params)).scalar() or 0


async def claim(engine: AsyncEngine, worker_id: str, *, limit: int, lease_s: float,
                default_max_attempts: int = DEFAULT_MAX_ATTEMPTS, lane: Lane | None = None) -> list[Job]:
    """Claim up to ``limit`` due jobs (of ``lane``'s kinds) for ``worker_id`` with a lease of
    ``lease_s`` seconds, in a single statement (its own transaction: `db.engine.autocommit`); oldest
    due first."""
    if limit < 1:
        return []
    lane = lane or Lane()
    params = {"limit": limit, "worker": worker_id, "lease_s": float(lease_s), "default_max": default_max_attempts,
              "only_kinds": sorted(lane.only) if lane.only is not None else None, "skip_kinds": sorted(lane.skip)}
    async with autocommit(engine).connect() as conn:
        rows = await conn.execute(_CLAIM, params)
        jobs = [_job(r) for r in rows.mappings()]
    return sorted(jobs, key=lambda j: j.id)


async def complete(engine: AsyncEngine, job: Job, worker_id: str) -> bool:
    """Mark a claimed job done. False when this worker no longer held it (its lease expired and the
    job was requeued or parked meanwhile). One statement, its own transaction."""
    async with autocommit(engine).connect() as conn:
        return (await conn.execute(_COMPLETE, _fence(job, worker_id))).rowcount == 1


async def fail(
    engine: AsyncEngine,
    job: Job,
    worker_id: str,
    error: str,
    *,
    policy: RetryPolicy,
    permanent: bool = False,
    unit: float | None = None,
) -> FailOutcome:
    """Record a failed attempt: retry after `policy`'s backoff, or park the job with ``error`` as
    its reason when it was its last attempt or ``permanent``."""
    error = error[:_MAX_ERROR_CHARS]
    async with engine.begin() as conn:
        if permanent or job.is_last_attempt:
            applied = (await conn.execute(_PARK_CLAIMED, {**_fence(job, worker_id), "error": error})).rowcount == 1
            return FailOutcome(applied=applied, parked=True)
        delay = policy.delay(job.attempts, unit)
        params = {**_fence(job, worker_id), "error": error, "delay_s": delay}
        applied = (await conn.execute(_RETRY_LATER, params)).rowcount == 1
        return FailOutcome(applied=applied, parked=False, retry_in_s=delay)


async def park_claimed(engine: AsyncEngine, job: Job, worker_id: str, reason: str) -> bool:
    """Park a job this worker claimed (no handler for its kind, say); False if it lost the lease."""
    async with engine.begin() as conn:
        params = {**_fence(job, worker_id), "error": reason[:_MAX_ERROR_CHARS]}
        return (await conn.execute(_PARK_CLAIMED, params)).rowcount == 1


async def requeue_expired_leases(engine: AsyncEngine, *, limit: int = 500,
                                 default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> tuple[int, int]:
    """Return jobs whose lease expired to `pending`, or park those that were on their last attempt.
    Returns (requeued, parked). Safe to run from every worker at once (SKIP LOCKED)."""
    params = {"limit": limit, "default_max": default_max_attempts}
    async with engine.begin() as conn:
        statuses = (await conn.execute(_REQUEUE_EXPIRED, params)).scalars().all()
    parked = sum(1 for s in statuses if s == "parked")
    return len(statuses) - parked, parked


async def park(engine: AsyncEngine, job_id: int, reason: str) -> bool:
    """Operator action: park a pending job with ``reason`` (or a running one whose lease expired: its
    worker is gone). False if it is neither; `JobRunning` if a worker is running it now."""
    async with engine.begin() as conn:
        return await park_in(conn, job_id, reason)


async def park_in(conn: AsyncConnection, job_id: int, reason: str) -> bool:
    """`park` in the caller's transaction (an operator's action, audited in the same one)."""
    if (await conn.execute(_PARK, {"id": job_id, "reason": reason[:_MAX_ERROR_CHARS]})).rowcount == 1:
        return True
    running = (await conn.execute(_LEASE, {"id": job_id})).first()
    if running is not None:
        raise JobRunning(f"job {job_id} is running (attempt {running.attempts}, worker {running.locked_by}, "
                         f"leased until {running.locked_until:%Y-%m-%d %H:%M:%S%z}): its request may be on its way "
                         "to the provider. Wait for this attempt to end, then park it if it is pending again")
    return False


async def retry_parked(engine: AsyncEngine, job_id: int) -> bool:
    """Operator action: run a parked job again, with a fresh set of attempts (its last error is
    kept until it next finishes or fails). False if the job is not parked."""
    async with engine.begin() as conn:
        return await retry_parked_in(conn, job_id)


async def retry_parked_in(conn: AsyncConnection, job_id: int) -> bool:
    """`retry_parked` in the caller's transaction (an operator's action, audited in the same one)."""
    return (await conn.execute(_RETRY_PARKED, {"id": job_id})).first() is not None


async def get_job(engine: AsyncEngine, job_id: int, *, default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job | None:
    """One job as it stands (for operators and tests), or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(sql(f"SELECT {_COLUMNS} FROM outbox_jobs WHERE id = :id"),
                                  {"id": job_id, "default_max": default_max_attempts})).mappings().first()
    return _job(row) if row is not None else None


#: The payment a job is for, as migration 0011's ``outbox_jobs_payment`` index spells it.
_PAYMENT_OF_JOB = "coalesce(payload ->> 'payment', payload #>> '{event,data,payment,public_id}')"


async def jobs_of_payment(conn: AsyncConnection, public_id: str, *,
                          default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[Job]:
    """Every job for one payment (provider calls, SMS receipts, webhook deliveries), oldest first."""
    rows = await conn.execute(sql(f"SELECT {_COLUMNS} FROM outbox_jobs WHERE {_PAYMENT_OF_JOB} = :p ORDER BY id"),
                              {"p": public_id, "default_max": default_max_attempts})
    return [_job(row) for row in rows.mappings()]


async def latest_job_of_payment(conn: AsyncConnection, public_id: str, kind: str, *,
                                default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Job | None:
    """The newest job of ``kind`` for one payment (through the ``outbox_jobs_payment`` index), or None."""
    row = (await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM outbox_jobs WHERE {_PAYMENT_OF_JOB} = :p AND kind = :k ORDER BY id DESC LIMIT 1"),
        {"p": public_id, "k": kind, "default_max": default_max_attempts})).mappings().first()
    return _job(row) if row is not None else None


async def jobs_in_status(conn: AsyncConnection, status: str, *, limit: int, before: int | None = None,
                         default_max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[Job]:
    """Jobs in ``status`` (parked ones, for operators), newest first; ``before`` a job id, to page."""
    if status not in JOB_STATUSES:
        raise ValueError(f"a job's status is one of {', '.join(JOB_STATUSES)}")
    rows = await conn.execute(sql(
        f"SELECT {_COLUMNS} FROM outbox_jobs WHERE status = :s AND id < :before ORDER BY id DESC LIMIT :limit"),
        {"s": status, "before": before or 2**63 - 1, "limit": limit, "default_max": default_max_attempts})
    return [_job(row) for row in rows.mappings()]


async def count_open(conn: AsyncConnection) -> dict[str, int]:
    """Jobs pending, running and parked, each counted through its own partial index (done jobs are
    kept for good: counting them reads the whole outbox, which `count_by_status` does)."""
    row = (await conn.execute(sql(
        "SELECT (SELECT count(*) FROM outbox_jobs WHERE status = 'pending') AS pending, "
        "(SELECT count(*) FROM outbox_jobs WHERE status = 'running') AS running, "
        "(SELECT count(*) FROM outbox_jobs WHERE status = 'parked') AS parked"))).one()
    return {"pending": row.pending, "running": row.running, "parked": row.parked}


async def count_by_status(engine: AsyncEngine) -> dict[str, int]:
    """How many jobs are in each status (every status listed, zeros included)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sql("SELECT status, count(*) FROM outbox_jobs GROUP BY status"))).all()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts
