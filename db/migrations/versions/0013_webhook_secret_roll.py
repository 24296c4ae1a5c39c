"""Webhook endpoints' signing secrets can be rolled, the previous one kept for a while.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

- `webhook_endpoints.previous_secret` / `previous_secret_expires_at`: the secret an endpoint signed
  with before its last roll, and until when deliveries still carry a signature under it too
  (`payments.webhook_endpoints.roll_secret`), so a receiver can take the new secret into use without
  refusing a delivery meanwhile. Both set or neither.
"""

from db.migration_scripts import run_script

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UP = r"""
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD CONSTRAINT webhook_endpoints_previous_secret
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL)
               AND (previous_secret IS NULL OR previous_secret ~ '^whsec_[A-Za-z0-9_-]{43}$'));
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script("ALTER TABLE webhook_endpoints DROP CONSTRAINT IF EXISTS webhook_endpoints_previous_secret, "
               "DROP COLUMN IF EXISTS previous_secret, DROP COLUMN IF EXISTS previous_secret_expires_at;")
