"""A payment intent whose payment was refunded says so.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02

`payment_intents.status` may be ``refunded``: the payment that paid the intent was refunded
(`payments.intents.intent_refunded`, in the refund's transaction), from ``succeeded`` only. Such an
intent still names the payment that paid it, and names its refund (`refund_id`, a payment of kind
``refund``; a refund undoes one payment, so one intent at most) and when the money went back
(`refunded_at`).
"""

from db.migration_scripts import run_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UP = r"""
ALTER TABLE payment_intents
    ADD COLUMN IF NOT EXISTS refund_id bigint UNIQUE REFERENCES payments (id),
    ADD COLUMN IF NOT EXISTS refunded_at timestamptz;
ALTER TABLE payment_intents
    DROP CONSTRAINT IF EXISTS payment_intents_status_check,
    ADD CONSTRAINT payment_intents_status_check
        CHECK (status IN ('pending', 'succeeded', 'refunded', 'cancelled', 'declined', 'expired')),
    DROP CONSTRAINT IF EXISTS payment_intents_paid,
    ADD CONSTRAINT payment_intents_paid CHECK ((status IN ('succeeded', 'refunded')) = (payment_id IS NOT NULL)),
    ADD CONSTRAINT payment_intents_refunded
        CHECK ((status = 'refunded') = (refund_id IS NOT NULL) AND (refund_id IS NULL) = (refunded_at IS NULL));
"""

# A refunded intent goes back to ``succeeded`` (its refund stays in `payments`, naming what it undid).
DOWN = r"""
ALTER TABLE payment_intents DROP CONSTRAINT IF EXISTS payment_intents_refunded;
UPDATE payment_intents SET status = 'succeeded' WHERE status = 'refunded';
ALTER TABLE payment_intents
    DROP CONSTRAINT IF EXISTS payment_intents_status_check,
    ADD CONSTRAINT payment_intents_status_check
        CHECK (status IN ('pending', 'succeeded', 'cancelled', 'declined', 'expired')),
    DROP CONSTRAINT IF EXISTS payment_intents_paid,
    ADD CONSTRAINT payment_intents_paid CHECK ((status = 'succeeded') = (payment_id IS NOT NULL)),
    DROP COLUMN IF EXISTS refunded_at,
    DROP COLUMN IF EXISTS refund_id;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
