"""Reconciliation finds a period's payments, and those a statement names, through indexes.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01

`payments.reconcile.our_payments` reads a provider's payments made in a period, or named by a
statement line by one of our ids. Without these two, one of its arms had no index and the whole
read went through every payment that provider ever had (0.4 s at a million payments, growing with
the table; now a few milliseconds, `bench.ops`):

- `payments_provider_created`: a provider's payments by when they were made;
- `payments_transaction_id`: a payment by the transaction id its provider gave it (Wave's checkouts),
  as `payments_receipt` (0012) finds one by its M-Pesa receipt.

The first holds payments through a provider only (reconciliation asks for one provider's): payments
inside Sauti, such as the p2p sends most USSD sessions make, do not write it. The second holds every
payment, as `payments_receipt` does: the planner reads the statistics of an expression index's values
only when the index is not partial (a partial one's describe some rows, not the table), and without
them it guessed a statement's thousand ids would match a third of the table and read every M-Pesa
payment again (0.27 s at a million).
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, each holds up payments while it reads the table: on a large
#: live database build them first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = (
    "payments_provider_created ON payments (provider, created_at) WHERE provider IS NOT NULL",
    "payments_transaction_id ON payments (provider, (provider_refs ->> 'transaction_id'))",
)


def upgrade() -> None:
    run_script(create_indexes(INDEXES))


def downgrade() -> None:
    run_script(drop_indexes(INDEXES))
