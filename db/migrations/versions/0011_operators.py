"""Operators through the API and the dashboard: operator keys, and a payment's outbox jobs found
without reading the whole outbox.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

- `api_keys.role`: ``caller`` (the payments API's apps and merchants, as before), ``operator`` (the
  operator API under ``/v1/ops`` and the dashboard under ``/ops``; never the payments API) or
  ``support`` (the same, reading only: no refund, verdict or retry). Staff keys belong to a person,
  not to a wallet: they have no user.
- `operator_sessions`: who is signed in to the dashboard. The browser holds a random token in a
  cookie; only its SHA-256 is kept, with the operator key it was opened with (a revoked key's
  sessions end with it), when it expires, and the token that forms must carry (CSRF).
- A payment's whole record for its page, each found by an index rather than by reading a table:
  `outbox_jobs_payment` (provider calls and SMS name the payment as ``payload.payment``; webhook
  deliveries carry it inside their event), `transfers_reference` (a payment's ledger transfers carry
  its public id), `provider_events_payment` (its callbacks), `payments_refunds` (its refunds, the
  failed ones too) and `audit_log_subject` (operators' verdicts and refunds name it); and
  `payments_recipient_phone` and `payments_payer_newest`, so that a page of a number's payments
  reads that page only; `outbox_jobs_parked` for the parked jobs (done jobs are kept for good).
"""

from db.migration_scripts import create_indexes, drop_indexes, run_script

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UP = r"""
ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'caller'
    CONSTRAINT api_keys_role CHECK (role IN ('caller', 'operator', 'support'));
ALTER TABLE api_keys ADD CONSTRAINT api_keys_operator_has_no_user CHECK (role = 'caller' OR user_id IS NULL);
CREATE TABLE operator_sessions (
    token_hash  text PRIMARY KEY,
    api_key_id  bigint NOT NULL REFERENCES api_keys (id),
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX operator_sessions_expiry ON operator_sessions (expires_at);
"""

#: IMPORTANT: built in the migration's transaction, each holds up the writes to its table (every
#: payment's) while it is built. On a large live database, build them first, one at a time, with
#: ``CREATE INDEX CONCURRENTLY IF NOT EXISTS <each>`` (the README's "Operators" says how); the
#: migration then finds them made.
INDEXES = (
    """outbox_jobs_payment ON outbox_jobs
       ((coalesce(payload ->> 'payment', payload #>> '{event,data,payment,public_id}')))""",
    "outbox_jobs_parked ON outbox_jobs (id) WHERE status = 'parked'",
    "transfers_reference ON transfers (reference) WHERE reference IS NOT NULL",
    "provider_events_payment ON provider_events (payment_id) WHERE payment_id IS NOT NULL",
    "payments_refunds ON payments (refund_of) WHERE refund_of IS NOT NULL",
    "payments_recipient_phone ON payments (recipient_phone, id) WHERE recipient_phone IS NOT NULL",
    "payments_payer_newest ON payments (payer_user_id, id)",
    "audit_log_subject ON audit_log (subject, id)",
)

DOWN = """
DROP TABLE IF EXISTS operator_sessions;
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_operator_has_no_user;
ALTER TABLE api_keys DROP COLUMN IF EXISTS role;
"""


def upgrade() -> None:
    run_script(UP + create_indexes(INDEXES))


def downgrade() -> None:
    run_script(drop_indexes(INDEXES) + DOWN)
