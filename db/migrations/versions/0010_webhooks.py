"""Webhooks for the payments API's callers: endpoints each API key registers, and which key made
each payment.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

- `webhook_endpoints`: a URL an API key's owner gave us, with the secret its deliveries are signed
  with (kept as is, not hashed: we must sign with it; it is shown to the key's owner once, at
  creation). Disabling is final, like revoking a key; deliveries already queued for a disabled
  endpoint are dropped when their turn comes.
- `payments.api_key_id`: the key whose request made the payment (NULL for USSD, voice, agents, C2B
  and operators). Its endpoints hear of the payment's final states; the endpoints of a user key also
  hear of payments that reach that user's wallet.
- Deliveries are outbox jobs (``webhook.deliver``), retried with the outbox's backoff.
"""

from db.migration_scripts import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE webhook_endpoints (
    id          bigserial PRIMARY KEY,
    public_id   text NOT NULL UNIQUE,
    api_key_id  bigint NOT NULL REFERENCES api_keys (id),
    url         text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    secret      text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9_-]{43}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
CREATE INDEX webhook_endpoints_of_key ON webhook_endpoints (api_key_id) WHERE disabled_at IS NULL;
-- A payment's final transition looks for the endpoints of the recipient's user keys.
CREATE INDEX api_keys_of_user ON api_keys (user_id) WHERE user_id IS NOT NULL;
ALTER TABLE payments ADD COLUMN api_key_id bigint REFERENCES api_keys (id);
"""

DOWN = """
ALTER TABLE payments DROP COLUMN IF EXISTS api_key_id;
DROP INDEX IF EXISTS api_keys_of_user;
DROP TABLE IF EXISTS webhook_endpoints;
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
