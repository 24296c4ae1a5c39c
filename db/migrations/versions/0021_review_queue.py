"""The review queue's two new parts, each read through an index of its own.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03

(`payments.review.flagged`, `payments.review_flags`.)

- `payments_contradicted`: final payments a provider's late word contradicts (``provider_refs``
  key ``contradiction``: M-Pesa paid a B2C whose money had been given back, an STK push succeeded
  after its deposit failed). Such a flag used to be written as ``needs_review`` on the final payment,
  where no list looked; the ones already written (their text is ``provider said … while …`` or
  ``refund … succeeded while the payment was …``, written on final payments only) are copied to
  ``contradiction``, so they come to the queue now.
- `provider_events_orphans_flagged`: callbacks of STK pushes nobody recorded that a person must look
  at (`payments.stk_orphans`).

Both are partial and small: a flag a person closes leaves them.
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

#: Built in the migration's transaction, each holds up writes while it reads its table: on a large
#: live database build them first with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` (as 0011's).
INDEXES = (
    "payments_contradicted ON payments (id) WHERE provider_refs ? 'contradiction'",
    "provider_events_orphans_flagged ON provider_events (id) WHERE kind = 'stk_orphan' AND payload ? 'needs_review'",
)

EARLIER_FLAGS = r"""
UPDATE payments SET provider_refs = provider_refs || jsonb_build_object('contradiction', provider_refs->'needs_review')
WHERE status IN ('succeeded', 'failed', 'reversed', 'refunded') AND NOT provider_refs ? 'contradiction'
  AND (provider_refs->>'needs_review' LIKE 'provider said % while %'
       OR provider_refs->>'needs_review' LIKE 'refund % succeeded while the payment was %');
"""


def upgrade() -> None:
    run_script(create_indexes(INDEXES) + EARLIER_FLAGS)


def downgrade() -> None:
    run_script(drop_indexes(INDEXES))
