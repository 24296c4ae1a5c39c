"""An API key's payment by its idempotency key, whoever paid it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01

`payments_api_key_idempotency`: keys are scoped to the API key (`gateway.payments_api`), and a
platform key names a payer in each request; the same key with another payer is another request, a
conflict, found through this index before anything is paid (`payments.payment_store.find_by_api_key`).
Not unique: a database where a platform key already reused one key for two payers still migrates.
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, it holds up payments while it reads the table: on a large live
#: database build it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = ("payments_api_key_idempotency ON payments (api_key_id, idempotency_key) WHERE api_key_id IS NOT NULL",)


def upgrade() -> None:
    run_script(create_indexes(INDEXES))


def downgrade() -> None:
    run_script(drop_indexes(INDEXES))
