"""API keys for callers of the JSON payments API, and refunds that point at what they refund.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

- `api_keys`: one row per key. Only a hash of the secret is kept (the caller sees it once); the
  `prefix` (its first characters, not secret) finds the row and shows in logs and listings.
- `payments.refund_of`: a refund or reversal is a payment of kind `refund` that names the payment it
  undoes. IMPORTANT: at most one refund per payment that has not failed.
"""

from db.migration_scripts import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE api_keys (
    id bigserial PRIMARY KEY,
    prefix text NOT NULL UNIQUE CHECK (length(prefix) BETWEEN 8 AND 32),
    secret_hash text NOT NULL,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The wallet owner the key acts for; null: a platform key that may act for any payer.
    user_id bigint REFERENCES users(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

ALTER TABLE payments ADD COLUMN refund_of bigint REFERENCES payments(id);
ALTER TABLE payments ADD CONSTRAINT payments_refund_names_original CHECK ((kind = 'refund') = (refund_of IS NOT NULL));
CREATE UNIQUE INDEX payments_refunded_once ON payments (refund_of) WHERE refund_of IS NOT NULL AND status <> 'failed';
"""

DOWN = """
DROP INDEX IF EXISTS payments_refunded_once;
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_refund_names_original;
ALTER TABLE payments DROP COLUMN IF EXISTS refund_of;
DROP TABLE IF EXISTS api_keys;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
