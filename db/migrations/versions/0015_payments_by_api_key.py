"""An API key's payments, newest first: ``GET /v1/payments`` for a platform key.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

`payments_api_key`: the payments an API key's requests made (`payments.payment_records.search_payments`
with ``api_key_id``). Partial: USSD and voice payments name no key and cost it nothing.
"""

from db.migration_scripts import run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, it holds up payments while it reads the table: on a large
#: live database build it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = ("payments_api_key ON payments (api_key_id, id) WHERE api_key_id IS NOT NULL",)


def upgrade() -> None:
    run_script("".join(f"CREATE INDEX IF NOT EXISTS {index};\n" for index in INDEXES))


def downgrade() -> None:
    run_script("".join(f"DROP INDEX IF EXISTS {index.split()[0]};\n" for index in INDEXES))
