"""Payment intents: a merchant asks a Sauti customer for an amount, and the customer pays or declines.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

(`payments.intent_store` reads and writes it; the rules are `payments.intents`'.)

- `payment_intents`: one request to pay, made by an API key (`api_key_id`) for the wallet that is
  paid (`payee_user_id`), asking one customer (`payer_user_id`). It is ``pending`` until it ends,
  once: ``succeeded`` (with the payment that paid it, which only a succeeded one names),
  ``cancelled`` by the merchant, ``declined`` by the customer, or ``expired``. Each key's
  idempotency keys are its own; a payment pays one intent at most.
- `payment_intents_payer_pending`: what a customer is asked to pay (the USSD list), newest first,
  without reading what ended. `payment_intents_pending_expiry`: what the expiry sweep closes.
  `payment_intents_api_key`: a key's intents, newest first (``GET /v1/payment_intents``).
"""

from db.migration_scripts import run_script

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UP = r"""
CREATE TABLE payment_intents (
    id bigserial PRIMARY KEY,
    public_id text NOT NULL UNIQUE CHECK (public_id ~ '^pi_[0-9a-hjkmnp-tv-z]{26}$'),
    api_key_id bigint NOT NULL REFERENCES api_keys (id),
    payee_user_id bigint NOT NULL REFERENCES users (id),
    payer_user_id bigint NOT NULL REFERENCES users (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency varchar(3) NOT NULL CHECK (currency IN ('KES', 'XOF')),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 40),
    merchant_reference text CHECK (length(merchant_reference) BETWEEN 1 AND 64),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'cancelled', 'declined', 'expired')),
    idempotency_key text NOT NULL,
    request_hash text NOT NULL,
    payment_id bigint UNIQUE REFERENCES payments (id),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT payment_intents_api_key_key UNIQUE (api_key_id, idempotency_key),
    CONSTRAINT payment_intents_not_self CHECK (payer_user_id <> payee_user_id),
    CONSTRAINT payment_intents_paid CHECK ((status = 'succeeded') = (payment_id IS NOT NULL)),
    CONSTRAINT payment_intents_resolved CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX payment_intents_payer_pending ON payment_intents (payer_user_id, id) WHERE status = 'pending';
CREATE INDEX payment_intents_pending_expiry ON payment_intents (expires_at) WHERE status = 'pending';
CREATE INDEX payment_intents_api_key ON payment_intents (api_key_id, id);
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script("DROP TABLE IF EXISTS payment_intents;")
