"""An endpoint's webhook deliveries, newest first, and those not delivered yet, through indexes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

`outbox_jobs_webhook_endpoint`: the ``webhook.deliver`` jobs of one endpoint
(`payments.webhook_events.deliveries`, behind ``GET /v1/webhook_endpoints/{id}/deliveries`` and
``sauti webhook deliveries --endpoint``). Done jobs are kept, and SMS receipts outnumber webhook
deliveries: without it, an endpoint's list walked the whole outbox backwards. Partial: other jobs
do not write it. `outbox_jobs_webhook_endpoint_open`: the same, for those not done yet (waiting,
being sent, parked): what waits is found without reading every delivery that was made.
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, each holds up the outbox while it reads the table: on a large
#: live database build them first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = (
    "outbox_jobs_webhook_endpoint ON outbox_jobs ((payload ->> 'endpoint'), id) WHERE kind = 'webhook.deliver'",
    "outbox_jobs_webhook_endpoint_open ON outbox_jobs ((payload ->> 'endpoint'), id) "
    "WHERE kind = 'webhook.deliver' AND status <> 'done'",
)


def upgrade() -> None:
    run_script(create_indexes(INDEXES))


def downgrade() -> None:
    run_script(drop_indexes(INDEXES))
