"""What ``GET /v1/payments`` lists, newest first, each through an index of its own.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01

(`payments.payment_records.search_payments` with ``api_key_id`` or ``party_user_id``.)

- `payments_api_key`: the payments an API key's requests made (a platform key's list). Partial: USSD
  and voice payments name no key and cost it nothing.
- `payments_recipient_user`: the payments a user received into their wallet (a user key's list holds
  what its user made, through `payments_payer_newest`, and received). By number
  (`payments_recipient_phone`) it would also walk every payment that names the user's number for
  no wallet of theirs: their own deposits and withdrawals, Pochi payments to the number.
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, each holds up payments while it reads the table: on a large
#: live database build them first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = (
    "payments_api_key ON payments (api_key_id, id) WHERE api_key_id IS NOT NULL",
    "payments_recipient_user ON payments (recipient_user_id, id) WHERE recipient_user_id IS NOT NULL",
)


def upgrade() -> None:
    run_script(create_indexes(INDEXES))


def downgrade() -> None:
    run_script(drop_indexes(INDEXES))
