"""The transactional outbox and its worker against a real PostgreSQL: jobs live and die with the
caller's transaction, de-duplicate, run exactly once under concurrent workers, retry with backoff,
park with their reason, survive a dead worker, and stop gracefully; plus the gateway's wiring
(`worker_ctx`, `sauti worker --once`, `sauti outbox`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from aiohttp import web
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from gateway.commands.worker import outbox_group
from gateway.commands.worker import worker as worker_command
from gateway.keys import DB_ENGINE, SETTINGS
from gateway.settings import Settings, load_settings
from gateway.worker_resources import OUTBOX_WORKER, worker_ctx
from payments import outbox
from payments.outbox import Job, PermanentJobError, RetryPolicy
from payments.worker import OutboxWorker
from tests.statements import statements

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(base_s=0.05, max_s=0.2)


@pytest.fixture(scope="module")
async def outbox_db(new_database) -> str:
    """A database of this module's own: workers claim every due job in a database, so no other
    test's jobs may be there."""
    return await new_database()


@pytest.fixture(scope="module")
async def db(outbox_db) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(outbox_db, pool_size=20, max_overflow=20)
    async with engine.begin() as conn:
        # What handlers did: one row per execution, written by the handler itself.
        await conn.execute(text("CREATE TABLE job_runs (job_id bigint NOT NULL, worker text NOT NULL, "
                                "attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"))
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def empty_outbox(db) -> None:
    async with db.begin() as conn:
        await conn.execute(text("TRUNCATE outbox_jobs, job_runs"))


async def add_job(engine: AsyncEngine, kind: str, payload: dict | None = None, **options) -> int:
    async with engine.begin() as conn:
        return await outbox.enqueue(conn, kind, payload or {}, **options)


def recorder(engine: AsyncEngine, worker: str = "w") -> Callable[[Job], Awaitable[None]]:
    async def record(job: Job) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO job_runs (job_id, worker, attempt) VALUES (:j, :w, :a)"),
                               {"j": job.id, "w": worker, "a": job.attempts})
    return record


async def runs_of(engine: AsyncEngine, job_id: int) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM job_runs WHERE job_id = :j"), {"j": job_id})).scalar_one()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def status_of(engine: AsyncEngine, job_id: int) -> str:
    job = await outbox.get_job(engine, job_id)
    assert job is not None
    return job.status


def worker(engine: AsyncEngine, handlers, **options) -> OutboxWorker:
    defaults = {"concurrency": 4, "poll_interval": 0.05, "lease_s": 5.0, "retry": FAST}
    return OutboxWorker(engine, handlers, **{**defaults, **options})


# -- enqueue --------------------------------------------------------------------------------------


async def test_a_rolled_back_transaction_leaves_no_job(db):
    async with db.connect() as conn:
        tx = await conn.begin()
        job_id = await outbox.enqueue(conn, "sms.send", {"to": "+254700000001"})
        await tx.rollback()
    assert await outbox.get_job(db, job_id) is None
    assert await outbox.count_by_status(db) == {"pending": 0, "running": 0, "done": 0, "parked": 0}

    committed = await add_job(db, "sms.send", {"to": "+254700000001"})
    job = await outbox.get_job(db, committed)
    assert job is not None and job.status == "pending" and job.attempts == 0
    assert dict(job.payload) == {"to": "+254700000001"}


async def test_enqueue_refuses_to_write_outside_a_transaction_and_non_json_payloads(db):
    async with db.connect() as conn:
        with pytest.raises(ValueError, match="caller's transaction"):
            await outbox.enqueue(conn, "sms.send", {})
    async with db.begin() as conn:
        with pytest.raises(ValueError, match="JSON"):
            await outbox.enqueue(conn, "sms.send", {"at": datetime.now(UTC)})


async def test_the_same_dedupe_key_yields_the_same_job(db):
    first = await add_job(db, "payout.send", {"payment": 1}, dedupe_key="payout:1")
    again = await add_job(db, "payout.send", {"payment": 1}, dedupe_key="payout:1")
    async with db.begin() as conn:  # twice in one transaction, too
        other = await outbox.enqueue(conn, "payout.send", {"payment": 2}, dedupe_key="payout:2")
        other_again = await outbox.enqueue(conn, "payout.send", {"payment": 2}, dedupe_key="payout:2")
    assert first == again and other == other_again and first != other
    assert (await outbox.count_by_status(db))["pending"] == 2


async def test_concurrent_enqueues_of_one_key_make_one_job(db):
    ids = await asyncio.gather(*(add_job(db, "payout.send", {}, dedupe_key="same") for _ in range(10)))
    assert len(set(ids)) == 1
    assert (await outbox.count_by_status(db))["pending"] == 1


async def test_enqueue_many_writes_its_jobs_at_once_and_skips_keys_used_already(db):
    await add_job(db, "sms.send", {"n": 0}, dedupe_key="sms:0")
    async with db.begin() as conn:
        written = await outbox.enqueue_many(conn, [
            outbox.NewJob("sms.send", {"n": 0}, "sms:0"),  # used already: nothing written
            outbox.NewJob("sms.send", {"n": 1}, "sms:1"),
            outbox.NewJob("payout.send", {"n": 2}, "payout:2"),
            outbox.NewJob("sms.send", {"n": 1}, "sms:1"),  # twice in one call: once
        ])
        assert await outbox.enqueue_many(conn, []) == 0
    assert written == 2
    async with db.connect() as conn:
        rows = (await conn.execute(text("SELECT kind, payload, dedupe_key, status FROM outbox_jobs ORDER BY id"))).all()
    assert [tuple(r) for r in rows] == [("sms.send", {"n": 0}, "sms:0", "pending"),
                                        ("sms.send", {"n": 1}, "sms:1", "pending"),
                                        ("payout.send", {"n": 2}, "payout:2", "pending")]
    async with db.begin() as conn:  # all or nothing with the caller's transaction
        assert await outbox.enqueue_many(conn, [outbox.NewJob("sms.send", {}, "sms:3")]) == 1
        await conn.rollback()
    assert (await outbox.count_by_status(db))["pending"] == 3


async def test_enqueue_many_refuses_to_write_outside_a_transaction_and_jobs_without_keys(db):
    async with db.connect() as conn:
        with pytest.raises(ValueError, match="caller's transaction"):
            await outbox.enqueue_many(conn, [outbox.NewJob("sms.send", {}, "k")])
    async with db.begin() as conn:
        with pytest.raises(ValueError, match="dedupe key"):
            await outbox.enqueue_many(conn, [outbox.NewJob("sms.send", {}, "")])
        with pytest.raises(ValueError, match="JSON"):
            await outbox.enqueue_many(conn, [outbox.NewJob("sms.send", {"at": datetime.now(UTC)}, "k")])


# -- running jobs ---------------------------------------------------------------------------------


async def test_four_workers_run_each_of_800_jobs_exactly_once(outbox_db, db):
    async with db.begin() as conn:
        ids = [await outbox.enqueue(conn, "test.record", {"n": n}) for n in range(800)]
    # Each worker with its own engine, as separate processes would have.
    engines = [create_engine(outbox_db, pool_size=12) for _ in range(4)]
    workers = [worker(e, {"test.record": recorder(e, f"w{i}")}, concurrency=8, worker_id=f"w{i}")
               for i, e in enumerate(engines)]
    tasks = [asyncio.create_task(w.run_forever()) for w in workers]
    try:
        await eventually(lambda: _all_done(db, 800), within_s=25)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        for e in engines:
            await e.dispose()
    async with db.connect() as conn:
        runs, distinct_jobs, busy_workers = (await conn.execute(text(
            "SELECT count(*), count(DISTINCT job_id), count(DISTINCT worker) FROM job_runs"))).one()
        min_id, max_id = (await conn.execute(text("SELECT min(job_id), max(job_id) FROM job_runs"))).one()
    assert (runs, distinct_jobs) == (800, 800)
    assert (min_id, max_id) == (min(ids), max(ids))
    assert busy_workers > 1, "the jobs were not shared among the workers"


async def _all_done(engine: AsyncEngine, n: int) -> bool:
    return (await outbox.count_by_status(engine))["done"] == n


async def test_concurrent_claims_never_hand_out_a_job_twice(db):
    async with db.begin() as conn:
        for n in range(300):
            await outbox.enqueue(conn, "test.claim", {"n": n})

    async def claim_all(name: str) -> list[int]:
        got: list[int] = []
        while batch := await outbox.claim(db, name, limit=7, lease_s=30):
            got += [job.id for job in batch]
        return got

    claimed = await asyncio.gather(*(claim_all(f"c{i}") for i in range(6)))
    every = [job_id for ids in claimed for job_id in ids]
    assert len(every) == len(set(every)) == 300
    assert sum(1 for ids in claimed if ids) > 1


async def test_a_failing_job_is_retried_after_a_backoff_then_succeeds(db):
    calls: list[int] = []

    async def flaky(job: Job) -> None:
        calls.append(job.attempts)
        if job.attempts < 3:
            raise RuntimeError(f"provider unavailable (attempt {job.attempts})")

    job_id = await add_job(db, "test.flaky")
    # Backoffs long enough that a busy machine does not reach the next try between two statements.
    w = worker(db, {"test.flaky": flaky}, retry=RetryPolicy(base_s=0.6, max_s=1.2))

    assert await w.run_once() == 1
    job = await outbox.get_job(db, job_id)
    assert job is not None and (job.status, job.attempts) == ("pending", 1)
    assert "RuntimeError: provider unavailable (attempt 1)" in (job.last_error or "")
    # Backed off: not due again at once (attempt 1 waits 300-600 ms with this policy).
    assert job.run_after > datetime.now(UTC) - timedelta(milliseconds=5)
    assert await w.run_once() == 0

    await eventually(lambda: _ran_once_more(w))
    await eventually(lambda: _ran_once_more(w))
    job = await outbox.get_job(db, job_id)
    assert job is not None and (job.status, job.attempts) == ("done", 3)
    assert calls == [1, 2, 3]


async def _ran_once_more(w: OutboxWorker) -> bool:
    return await w.run_once() == 1


async def test_a_poison_job_is_parked_with_its_reason_after_max_attempts(db, caplog):
    async def poison(job: Job) -> None:
        await recorder(db)(job)
        raise ValueError("malformed provider answer")

    job_id = await add_job(db, "test.poison", {"phone": "+254711222333"}, max_attempts=3)
    w = worker(db, {"test.poison": poison})
    with caplog.at_level(logging.INFO, logger="payments.worker"):
        await eventually(lambda: _drained_until(w, db, job_id, "parked"))
    job = await outbox.get_job(db, job_id)
    assert job is not None and job.attempts == 3 and job.locked_by is None
    assert "ValueError: malformed provider answer" in (job.last_error or "")
    assert await runs_of(db, job_id) == 3
    assert await w.drain() == 0  # parked jobs never run again by themselves
    # One line per outcome, naming the job; the payload (a phone number) never appears.
    outcomes = [r.getMessage() for r in caplog.records if f"job {job_id} " in r.getMessage()]
    assert len(outcomes) == 3 and "parked" in outcomes[-1]
    assert "+254711222333" not in caplog.text and "254711222333" not in caplog.text


async def _status_is(engine: AsyncEngine, job_id: int, status: str) -> bool:
    return await status_of(engine, job_id) == status


async def test_max_attempts_defaults_to_the_workers_setting(db):
    async def poison(job: Job) -> None:
        raise RuntimeError("down")

    job_id = await add_job(db, "test.poison")
    w = worker(db, {"test.poison": poison}, max_attempts=2)
    await eventually(lambda: _drained_until(w, db, job_id, "parked"))
    job = await outbox.get_job(db, job_id, default_max_attempts=2)
    assert job is not None and (job.attempts, job.max_attempts) == (2, 2)


async def _drained_until(w: OutboxWorker, engine: AsyncEngine, job_id: int, status: str) -> bool:
    await w.drain()
    return await status_of(engine, job_id) == status


async def test_a_permanent_error_parks_at_once(db):
    async def refuse(job: Job) -> None:
        await recorder(db)(job)
        raise PermanentJobError("the provider rejected the account number")

    job_id = await add_job(db, "test.refused", max_attempts=5)
    await worker(db, {"test.refused": refuse}).drain()
    job = await outbox.get_job(db, job_id)
    assert job is not None and (job.status, job.attempts) == ("parked", 1)
    assert "the provider rejected the account number" in (job.last_error or "")
    assert await runs_of(db, job_id) == 1


async def test_a_job_of_an_unknown_kind_is_parked_with_a_clear_reason(db):
    job_id = await add_job(db, "sms.sned")
    await worker(db, {"sms.send": recorder(db)}).drain()
    job = await outbox.get_job(db, job_id)
    assert job is not None and job.status == "parked"
    assert "no handler for job kind 'sms.sned'" in (job.last_error or "") and "sms.send" in job.last_error


async def test_a_job_running_past_its_timeout_fails_and_is_retried(db):
    async def slow(job: Job) -> None:
        if job.attempts == 1:
            await asyncio.sleep(5)

    job_id = await add_job(db, "test.slow")
    w = worker(db, {"test.slow": slow}, lease_s=1.0, job_timeout_s=0.2)
    assert await w.run_once() == 1
    job = await outbox.get_job(db, job_id)
    assert job is not None and job.status == "pending"
    assert "job timeout of 0.2s" in (job.last_error or "")
    await eventually(lambda: _drained_until(w, db, job_id, "done"))


async def test_a_dead_workers_job_runs_again_elsewhere_and_its_late_outcome_is_ignored(db):
    job_id = await add_job(db, "test.record")
    # A worker claims the job, then "dies": it never completes it.
    (dead_claim,) = await outbox.claim(db, "dead-worker", limit=1, lease_s=0.3)
    assert dead_claim.id == job_id and dead_claim.attempts == 1

    survivor = worker(db, {"test.record": recorder(db, "survivor")}, lease_s=5.0)
    assert await survivor.run_once() == 0  # the lease still holds: nobody else may run it
    await asyncio.sleep(0.4)
    assert await survivor.run_once() == 1  # the lease expired: swept back and run
    job = await outbox.get_job(db, job_id)
    assert job is not None and (job.status, job.attempts) == ("done", 2)
    assert "lease of dead-worker expired during attempt 1" in (job.last_error or "")

    # The dead worker wakes up: its outcome is fenced off, the job stays done.
    assert await outbox.complete(db, dead_claim, "dead-worker") is False
    outcome = await outbox.fail(db, dead_claim, "dead-worker", "late", policy=FAST)
    assert not outcome.applied
    assert await status_of(db, job_id) == "done"


async def test_a_job_that_kills_its_worker_on_every_attempt_is_parked(db):
    job_id = await add_job(db, "test.record", max_attempts=1)
    await outbox.claim(db, "dead-worker", limit=1, lease_s=0.1)
    await asyncio.sleep(0.2)
    assert await outbox.requeue_expired_leases(db) == (0, 1)
    job = await outbox.get_job(db, job_id)
    assert job is not None and job.status == "parked" and "expired" in (job.last_error or "")


async def test_graceful_stop_finishes_in_flight_jobs_and_claims_no_more(db):
    started = asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.4)
        await recorder(db)(job)

    first = await add_job(db, "test.slow")
    w = worker(db, {"test.slow": slow}, concurrency=1)
    task = asyncio.create_task(w.run_forever())
    await asyncio.wait_for(started.wait(), 5)
    second = await add_job(db, "test.slow")
    stopped_at = time.monotonic()
    w.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - stopped_at > 0.2  # it waited for the job instead of abandoning it
    assert await status_of(db, first) == "done" and await runs_of(db, first) == 1
    assert await status_of(db, second) == "pending"


async def test_run_forever_returns_when_its_stop_event_is_set(db):
    stop = asyncio.Event()
    w = worker(db, {})
    task = asyncio.create_task(w.run_forever(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_new_job_wakes_a_listening_worker_before_its_poll_interval(db):
    w = worker(db, {"test.record": recorder(db)}, poll_interval=30.0)
    task = asyncio.create_task(w.run_forever())
    try:
        await asyncio.sleep(0.3)  # the worker is now waiting for a notification (or 30 s)
        job_id = await add_job(db, "test.record")
        await eventually(lambda: _status_is(db, job_id, "done"), within_s=5)
        async with db.begin() as conn:  # jobs written together wake it too
            await outbox.enqueue_many(conn, [outbox.NewJob("test.record", {}, "together")])
        async with db.connect() as conn:
            together = (await conn.execute(text("SELECT id FROM outbox_jobs WHERE dedupe_key = 'together'"))
                        ).scalar_one()
        await eventually(lambda: _status_is(db, together, "done"), within_s=5)
    finally:
        w.stop()
        await asyncio.wait_for(task, 5)


async def test_a_finished_job_claims_again_only_while_more_may_be_due(db):
    """A worker whose last claim emptied the queue does not claim again for each job it finishes (a
    new job notifies it); one whose claim came back full claims as soon as a slot frees."""
    w = worker(db, {"test.record": recorder(db)}, concurrency=2, poll_interval=30.0)
    task = asyncio.create_task(w.run_forever())
    try:
        await asyncio.sleep(0.3)  # started, claimed nothing, waiting for a notification (or 30 s)
        with statements(db) as seen:
            job_id = await add_job(db, "test.record")
            await eventually(lambda: _status_is(db, job_id, "done"), within_s=5)
            await asyncio.sleep(0.3)
        claims = [sql for sql, _ in seen if "SKIP LOCKED" in sql and "SET status = 'running'" in sql]
        assert len(claims) == 1, "claimed again after the job that emptied the queue finished"
        # Five jobs for two slots: each freed slot takes the next at once, not at the 30-s poll.
        async with db.begin() as conn:
            await outbox.enqueue_many(conn, [outbox.NewJob("test.record", {}, f"five-{n}") for n in range(5)])
        await eventually(lambda: _count_done(db, 6), within_s=5)
    finally:
        w.stop()
        await asyncio.wait_for(task, 5)


async def _count_done(engine: AsyncEngine, n: int) -> bool:
    return (await outbox.count_by_status(engine)).get("done", 0) == n


async def test_operators_park_and_retry_jobs(db):
    pending = await add_job(db, "test.record")
    assert await outbox.park(db, pending, "customer asked to cancel")
    assert not await outbox.park(db, pending, "twice")
    w = worker(db, {"test.record": recorder(db)})
    assert await w.drain() == 0
    assert await outbox.count_by_status(db) == {"pending": 0, "running": 0, "done": 0, "parked": 1}

    assert await outbox.retry_parked(db, pending)
    assert not await outbox.retry_parked(db, pending)  # pending now, not parked
    job = await outbox.get_job(db, pending)
    assert job is not None and (job.status, job.attempts) == ("pending", 0)
    assert await w.drain() == 1
    assert await status_of(db, pending) == "done"


async def test_an_operator_cannot_park_a_job_a_worker_is_running(outbox_db, db):
    """Parking a running job only changed its row: the worker's provider request (a B2C) went on, and
    a verdict that then gave the payer the money back paid it twice. A live lease is refused, saying
    to wait; a lease that ran out (the worker is gone) is not."""
    job_id = await add_job(db, "test.record")
    (claimed,) = await outbox.claim(db, "w-live", limit=1, lease_s=60)
    with pytest.raises(outbox.JobRunning, match=rf"job {job_id} is running \(attempt 1, worker w-live.*Wait for"):
        await outbox.park(db, job_id, "decided by hand")
    refused = await asyncio.to_thread(_sauti, "outbox", "park", str(job_id), "--reason", "decided", url=outbox_db)
    assert refused.exit_code != 0 and f"job {job_id} is running" in refused.output
    assert "Traceback" not in refused.output
    assert await status_of(db, job_id) == "running"
    assert await outbox.complete(db, claimed, "w-live")  # the worker still owns its attempt

    dead = await add_job(db, "test.record")
    await outbox.claim(db, "w-dead", limit=1, lease_s=0.05)
    await asyncio.sleep(0.1)
    assert await outbox.park(db, dead, "its worker died")
    assert await status_of(db, dead) == "parked"


# -- gateway wiring -------------------------------------------------------------------------------


def _app(engine: AsyncEngine, **outbox_settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = Settings.model_validate({"outbox": {"poll_interval_s": 0.05, **outbox_settings}})
    app[DB_ENGINE] = engine
    return app


async def test_serve_runs_a_worker_in_process_and_stops_it_on_shutdown(db):
    app = _app(db)
    context = worker_ctx(app)
    await anext(context)
    running = app[OUTBOX_WORKER]
    # No handlers are registered yet: the in-process worker parks an unknown kind, which shows it runs.
    job_id = await add_job(db, "sms.send")
    await eventually(lambda: _status_is(db, job_id, "parked"), within_s=5)
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    assert running.in_flight == 0
    later = await add_job(db, "sms.send")
    await asyncio.sleep(0.2)
    assert await status_of(db, later) == "pending"  # stopped: nobody claims any more


async def test_serve_can_leave_the_jobs_to_worker_processes(db):
    app = _app(db, run_in_serve=False)
    context = worker_ctx(app)
    await anext(context)
    assert OUTBOX_WORKER not in app
    with pytest.raises(StopAsyncIteration):
        await anext(context)


#: Live providers (credentials that reach nobody: no job here calls them), so that `sauti worker`
#: claims every kind: in sandbox mode with no ``port_base`` it would leave all but webhooks to serve's.
LIVE = {"SAUTI__PROVIDERS__MODE": "live", "SAUTI__PAYMENTS__CALLBACK_BASE_URL": "https://pay.example.com",
        "SAUTI__PAYMENTS__CALLBACK_SECRET": "outbox-test-callback-secret-0123456789",
        **{f"SAUTI__PROVIDERS__MPESA__{k.upper()}": v for k, v in {
            "consumer_key": "k", "consumer_secret": "s", "shortcode": "600000", "passkey": "p",
            "initiator_name": "api", "security_credential": "pre-made-credential"}.items()}}


def _sauti(*args: str, url: str) -> Result:
    """Run one of this module's commands as `sauti` would, in a thread (they call asyncio.run)."""

    @click.group()
    @click.pass_context
    def sauti(ctx: click.Context) -> None:
        ctx.obj = {"settings": load_settings(ROOT / "config.yml", env={"DATABASE_URL": url, **LIVE})}

    sauti.add_command(worker_command)
    sauti.add_command(outbox_group)
    return CliRunner().invoke(sauti, list(args))


async def test_sauti_worker_once_and_the_outbox_commands(outbox_db, db, caplog):
    job_id = await add_job(db, "no.such.kind", {"phone": "+221771234567"})
    with caplog.at_level(logging.INFO, logger="payments.worker"):
        ran = await asyncio.to_thread(_sauti, "worker", "--once", url=outbox_db)
    assert ran.exit_code == 0, ran.output
    assert "ran 1 job(s)" in ran.output and "1 parked" in ran.output
    assert f"outbox job {job_id} (no.such.kind) parked" in caplog.text
    assert "+221771234567" not in ran.output + caplog.text

    retried = await asyncio.to_thread(_sauti, "outbox", "retry", str(job_id), url=outbox_db)
    assert retried.exit_code == 0 and f"job {job_id} is pending again" in retried.output
    status = await asyncio.to_thread(_sauti, "outbox", "status", url=outbox_db)
    assert "pending  1" in status.output
    again = await asyncio.to_thread(_sauti, "outbox", "retry", str(job_id), url=outbox_db)
    assert again.exit_code != 0 and "is not parked" in again.output
    parked = await asyncio.to_thread(_sauti, "outbox", "park", str(job_id), "--reason", "duplicate", url=outbox_db)
    assert parked.exit_code == 0
    job = await outbox.get_job(db, job_id)
    assert job is not None and job.last_error == "parked by an operator: duplicate"


async def audit_lines(engine: AsyncEngine, job_id: int) -> list[tuple]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT actor, action, details FROM audit_log WHERE subject = :s ORDER BY id"),
                                  {"s": f"outbox_job:{job_id}"})
        return [tuple(row) for row in rows]


async def test_outbox_retry_and_park_are_audited_with_who_and_why(outbox_db, db):
    """As the operator API's retry is (`outbox.retry`): the CLI's retry and park wrote no audit line."""
    parked = await add_job(db, "no.such.kind", max_attempts=1)
    pending = await add_job(db, "no.such.kind", run_after=datetime.now(UTC) + timedelta(hours=1))
    async with db.begin() as conn:
        await conn.execute(text("UPDATE outbox_jobs SET status = 'parked', last_error = 'boom', finished_at = now() "
                                "WHERE id = :id"), {"id": parked})

    retried = await asyncio.to_thread(_sauti, "outbox", "retry", str(parked), "--by", "Alice Wanjiru",
                                      "--reason", "M-Pesa is back", url=outbox_db)
    assert retried.exit_code == 0, retried.output
    done = await asyncio.to_thread(_sauti, "outbox", "park", str(pending), "--by", "Baraka", "--reason",
                                   "paid by hand", url=outbox_db)
    assert done.exit_code == 0, done.output
    assert await audit_lines(db, parked) == [("Alice Wanjiru", "outbox.retry", {"reason": "M-Pesa is back"})]
    assert await audit_lines(db, pending) == [("Baraka", "outbox.park", {"reason": "paid by hand"})]

    # Refused: nothing changes, and nothing is audited.
    again = await asyncio.to_thread(_sauti, "outbox", "retry", str(parked), "--by", "Alice", url=outbox_db)
    assert again.exit_code == 1 and "is not parked" in again.output
    nobody = await asyncio.to_thread(_sauti, "outbox", "park", str(parked), "--by", " ", "--reason", "x",
                                     url=outbox_db)
    assert nobody.exit_code == 1 and "--by" in nobody.output
    (claimed,) = await outbox.claim(db, "w-live", limit=1, lease_s=60)  # the one pending again
    running = await asyncio.to_thread(_sauti, "outbox", "park", str(claimed.id), "--reason", "x", url=outbox_db)
    assert running.exit_code == 1 and "is running" in running.output
    assert len(await audit_lines(db, parked)) == 1 and len(await audit_lines(db, pending)) == 1
    job = await outbox.get_job(db, claimed.id)
    assert job is not None and job.status == "running"
