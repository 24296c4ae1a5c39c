"""Outbox: the jobs (provider calls, SMS) written in the same transaction as the state change that
needs them, and run afterwards by `sauti worker` (or the worker inside `sauti serve`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

A job is `pending` until a worker claims it (`FOR UPDATE SKIP LOCKED`, so concurrent workers never
claim the same row), `running` while a worker holds its lease (`locked_by`, `locked_until`), then
`done`, or `parked` with its reason in `last_error` when it failed too often, failed for good, or has
no handler. A lease that expires (the worker died) puts the job back to `pending`.
"""

from db.migration_scripts import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = r"""
CREATE TABLE outbox_jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind <> ''),
    payload jsonb NOT NULL DEFAULT '{}',
    -- Enqueueing the same key twice yields the first job (NULL: no de-duplication).
    dedupe_key text UNIQUE,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'parked')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer CHECK (max_attempts >= 1),  -- NULL: the worker's setting (outbox.max_attempts)
    run_after timestamptz NOT NULL DEFAULT now(),
    locked_by text,
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- IMPORTANT: a running job always has a lease (else a dead worker's job would never come back),
    -- and only running jobs have one.
    CONSTRAINT outbox_jobs_lease_iff_running CHECK ((status = 'running') = (locked_until IS NOT NULL)),
    CONSTRAINT outbox_jobs_finished_iff_final CHECK ((status IN ('done', 'parked')) = (finished_at IS NOT NULL))
);
-- What workers claim, oldest due first. Partial: done jobs (nearly all rows, eventually) are not in it.
CREATE INDEX outbox_jobs_claimable ON outbox_jobs (run_after, id) WHERE status = 'pending';
-- What the lease sweep scans for expired leases.
CREATE INDEX outbox_jobs_leased ON outbox_jobs (locked_until) WHERE status = 'running';
"""

DROP = """
DROP TABLE IF EXISTS outbox_jobs;
"""


def upgrade() -> None:
    run_script(TABLES)


def downgrade() -> None:
    run_script(DROP)
