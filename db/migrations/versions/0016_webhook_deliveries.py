"""An endpoint's webhook deliveries, newest first, through an index.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01

`outbox_jobs_webhook_endpoint`: the ``webhook.deliver`` jobs of one endpoint
(`payments.webhook_events.deliveries`, behind ``GET /v1/webhook_endpoints/{id}/deliveries`` and
``sauti webhook deliveries --endpoint``). Done jobs are kept, and SMS receipts outnumber webhook
deliveries: without it, an endpoint's list walked the whole outbox backwards. Partial: other jobs
do not write it.
"""

from db.migration_scripts import run_script

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, it holds up the outbox while it reads the table: on a large
#: live database build it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = ("outbox_jobs_webhook_endpoint ON outbox_jobs ((payload ->> 'endpoint'), id) "
           "WHERE kind = 'webhook.deliver'",)


def upgrade() -> None:
    run_script("".join(f"CREATE INDEX IF NOT EXISTS {index};\n" for index in INDEXES))


def downgrade() -> None:
    run_script("".join(f"DROP INDEX IF EXISTS {index.split()[0]};\n" for index in INDEXES))
