"""Payments: one row per payment with its state, every state change it went through, and every
provider callback or webhook we accepted (so that duplicates change nothing).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

- `payments`: what was asked (kind, channel, payer, amount, fee, recipient), where it stands
  (`status`, one of the seven states of `payments.states`), and how it reached the provider
  (`public_id` is our id at the provider: Daraja OriginatorConversationID, Wave Idempotency-Key and
  client_reference; `provider_ref` is the provider's id for it: CheckoutRequestID, ConversationID,
  Wave payout id). A payer's idempotency key is unique; `request_hash` tells a replay from a conflict.
- `payment_events`: one row for EVERY transition, with its cause: a payment's history reads as a story.
- `provider_events`: callbacks and webhooks, unique on the provider's own id and the event kind. A
  duplicate delivery fails to insert here, in the same transaction as the state change it would make.
"""

from db.migration_scripts import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = r"""
CREATE TABLE payments (
    id bigserial PRIMARY KEY,
    public_id text NOT NULL UNIQUE CHECK (public_id ~ '^pay_[0-9a-z]{26}$'),
    payer_user_id bigint NOT NULL REFERENCES users(id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    request_hash text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('p2p', 'send_to_phone', 'pay_bill', 'buy_goods_till', 'buy_goods_pochi',
        'withdraw', 'deposit', 'refund')),
    channel text NOT NULL CHECK (channel IN ('ussd', 'voice', 'app', 'api')),
    amount bigint NOT NULL CHECK (amount > 0),
    fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    currency varchar(3) NOT NULL CHECK (currency IN ('KES', 'XOF')),
    -- The other side: a phone outside Sauti (payout recipient, or the M-Pesa number a deposit is
    -- pulled from), a Sauti user, or a merchant's numbers.
    recipient_phone varchar(16),
    recipient_user_id bigint REFERENCES users(id),
    till text,
    paybill text,
    account_number text,
    agent_number text,
    store_number text,
    bank_code text,
    status text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'pending', 'processing', 'succeeded',
        'failed', 'reversed', 'refunded')),
    provider text CHECK (provider IN ('mpesa', 'wave')),
    provider_ref text,
    provider_refs jsonb NOT NULL DEFAULT '{}',
    error_code text,
    error_message text,
    retry_count integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    transcript text,
    confidence numeric(4, 3) CHECK (confidence BETWEEN 0 AND 1),
    voice_confirmed boolean NOT NULL DEFAULT false,
    debit_transfer_id bigint REFERENCES transfers(id),
    settle_transfer_id bigint REFERENCES transfers(id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT payments_payer_idempotency_key UNIQUE (payer_user_id, idempotency_key),
    -- IMPORTANT: a payment is finished exactly when it is in a final state.
    CONSTRAINT payments_finished_iff_final CHECK (
        (status IN ('succeeded', 'failed', 'reversed', 'refunded')) = (finished_at IS NOT NULL))
);
-- Callbacks find their payment by the provider's id for it.
CREATE UNIQUE INDEX payments_provider_ref ON payments (provider, provider_ref);
-- What recovery sweeps: payments not yet final (partial: finished ones are nearly all rows, eventually).
CREATE INDEX payments_open ON payments (updated_at) WHERE status IN ('created', 'pending', 'processing');
-- Limits: what a payer sent today and this month.
CREATE INDEX payments_payer_history ON payments (payer_user_id, created_at);

CREATE TABLE payment_events (
    id bigserial PRIMARY KEY,
    payment_id bigint NOT NULL REFERENCES payments(id),
    from_status text,
    to_status text NOT NULL,
    cause text NOT NULL,
    details jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_payment_events_payment_id ON payment_events (payment_id);

CREATE TABLE provider_events (
    id bigserial PRIMARY KEY,
    provider text NOT NULL,
    event_key text NOT NULL,
    kind text NOT NULL,
    payment_id bigint REFERENCES payments(id),
    -- A summary (codes, receipt, amount), never the whole payload: it may hold names and numbers.
    payload jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provider_events_once UNIQUE (provider, event_key, kind)
);
"""

DROP = """
DROP TABLE IF EXISTS provider_events, payment_events, payments;
"""


def upgrade() -> None:
    run_script(TABLES)


def downgrade() -> None:
    run_script(DROP)
