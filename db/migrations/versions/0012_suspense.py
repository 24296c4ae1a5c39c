"""Money parked in suspense, and what of it still waits for an operator.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01

- `suspense_waiting`: the parked amounts not released yet (`payments.suspense`): a row is added in
  the transaction that parks the money (transfer ``suspense:<receipt>``) and deleted in the one that
  releases it (``release:<receipt>``), so what waits is read, and counted, without reading what was
  released. Filled here from the ledger. `sauti ledger check` proves it: exactly the parks with no
  release, and the suspense accounts hold exactly its sum.
- `transfers_parked`: every transfer that parked money, released or not (a handful among
  millions), for the operators' list of all of them.
- `payments_receipt`: a payment by the M-Pesa receipt its provider gave it (STK pushes, payouts):
  every path that books or parks a receipt first asks whether a payment holds it
  (`payment_store.holder_of_receipt`), and reconciliation finds payments by the receipts on a
  statement.
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE suspense_waiting (
    receipt      text PRIMARY KEY,
    transfer_id  bigint NOT NULL UNIQUE REFERENCES transfers (id),
    parked_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO suspense_waiting (receipt, transfer_id, parked_at)
SELECT t.reference, t.id, t.created_at FROM transfers t
 WHERE t.idempotency_key LIKE 'suspense:%'
   AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.idempotency_key = 'release:' || t.reference);
"""

#: Built in the migration's transaction, it holds up ledger writes while it reads the transfers: on a
#: large live database build it first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = (
    "transfers_parked ON transfers (id) WHERE idempotency_key LIKE 'suspense:%'",
    "payments_receipt ON payments (provider, (provider_refs ->> 'receipt'))",
)


def upgrade() -> None:
    # The index first: the backfill finds the parks through it.
    run_script(create_indexes(INDEXES) + UP)


def downgrade() -> None:
    run_script("DROP TABLE IF EXISTS suspense_waiting;\n" + drop_indexes(INDEXES))
