"""Agents: who they are, the cash-in and cash-out requests customers raise at them, and the account
that pays their commission.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

- `agents`: a user with the ``agent`` role gets a row here with its **agent number** (what customers
  type: digits, unique), a business name and a status. `agent_stores`: the store numbers of an
  agent's outlets (optional, unique).
- `cash_requests`: one row per cash-in or cash-out at an agent, raised by a customer (or, for a
  direct cash-in, by the agent), pending until the agent confirms or rejects it, the customer cancels
  it or it expires. A cash-out reserves the customer's money with a ledger hold (``hold_id``) while
  it is pending; a confirmed request names the payment that moved the money (``payment_id``).
  IMPORTANT: a caller's idempotency key is unique per caller, for raising (``requested_by_user_id``)
  and for resolving (``resolved_by_user_id``) alike.
- accounts of kind ``commission_expense``: Sauti's own account that pays agents' commissions (it may
  go negative: it is what the commissions cost Sauti, covered by fee revenue).
- payments of kinds ``cash_in`` and ``cash_out``.

The downgrade refuses (the constraints fail) once commission accounts or cash payments exist:
accounts and postings are never deleted.
"""

from db.migration_scripts import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OLD_ACCOUNT_KINDS = ("'customer_wallet', 'agent_float', 'agent_commission', 'fee_revenue', 'provider_collection', "
                      "'provider_clearing', 'provider_settlement', 'suspense'")
_OLD_PAYMENT_KINDS = ("'p2p', 'send_to_phone', 'pay_bill', 'buy_goods_till', 'buy_goods_pochi', 'withdraw', "
                      "'deposit', 'refund'")

UP = rf"""
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ({_OLD_ACCOUNT_KINDS}, 'commission_expense'));
ALTER TABLE payments DROP CONSTRAINT payments_kind_check;
ALTER TABLE payments ADD CONSTRAINT payments_kind_check CHECK (kind IN ({_OLD_PAYMENT_KINDS}, 'cash_in', 'cash_out'));

CREATE TABLE agents (
    user_id bigint PRIMARY KEY REFERENCES users(id),
    agent_number text NOT NULL UNIQUE CHECK (agent_number ~ '^[0-9]{{4,10}}$'),
    business_name text NOT NULL DEFAULT '' CHECK (length(business_name) <= 60),
    currency varchar(3) NOT NULL CHECK (currency IN ('KES', 'XOF')),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_stores (
    store_number text PRIMARY KEY CHECK (store_number ~ '^[0-9]{{4,10}}$'),
    agent_user_id bigint NOT NULL REFERENCES agents(user_id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_agent_stores_agent_user_id ON agent_stores (agent_user_id);

CREATE TABLE cash_requests (
    id bigserial PRIMARY KEY,
    public_id text NOT NULL UNIQUE CHECK (public_id ~ '^cr_[0-9a-z]{{26}}$'),
    kind text NOT NULL CHECK (kind IN ('cash_in', 'cash_out')),
    channel text NOT NULL CHECK (channel IN ('ussd', 'voice', 'app', 'api')),
    customer_user_id bigint NOT NULL REFERENCES users(id),
    agent_user_id bigint NOT NULL REFERENCES agents(user_id),
    amount bigint NOT NULL CHECK (amount > 0),
    fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    commission bigint NOT NULL DEFAULT 0 CHECK (commission >= 0),
    currency varchar(3) NOT NULL CHECK (currency IN ('KES', 'XOF')),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'rejected', 'cancelled',
        'expired')),
    requested_by_user_id bigint NOT NULL REFERENCES users(id),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    request_hash text NOT NULL,
    hold_id bigint REFERENCES holds(id),
    payment_id bigint REFERENCES payments(id),
    expires_at timestamptz NOT NULL,
    resolved_by_user_id bigint REFERENCES users(id),
    resolution_key text CHECK (length(resolution_key) BETWEEN 1 AND 200),
    reason text CHECK (length(reason) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT cash_requests_requester_key UNIQUE (requested_by_user_id, idempotency_key),
    -- IMPORTANT: an agent never serves itself (its own commission for its own money).
    CONSTRAINT cash_requests_not_to_self CHECK (customer_user_id <> agent_user_id),
    -- A cash-out reserves the customer's money from the start; a cash-in moves nothing until confirmed.
    CONSTRAINT cash_requests_cash_out_held CHECK ((kind = 'cash_out') = (hold_id IS NOT NULL)),
    CONSTRAINT cash_requests_confirmed_paid CHECK (status <> 'confirmed' OR payment_id IS NOT NULL),
    CONSTRAINT cash_requests_resolved_iff_final CHECK ((status = 'pending') = (resolved_at IS NULL))
);
-- What an agent serves: its pending requests, newest first.
CREATE INDEX cash_requests_agent_pending ON cash_requests (agent_user_id, kind, id) WHERE status = 'pending';
-- What the expiry sweep looks at.
CREATE INDEX cash_requests_pending_expiry ON cash_requests (expires_at) WHERE status = 'pending';
CREATE INDEX ix_cash_requests_customer_user_id ON cash_requests (customer_user_id);
-- A resolving caller's key is used once (a confirm retried with it replays; elsewhere it conflicts).
CREATE UNIQUE INDEX cash_requests_resolution_key ON cash_requests (resolved_by_user_id, resolution_key)
    WHERE resolution_key IS NOT NULL;
"""

DOWN = rf"""
DROP TABLE IF EXISTS cash_requests, agent_stores, agents;
ALTER TABLE payments DROP CONSTRAINT payments_kind_check;
ALTER TABLE payments ADD CONSTRAINT payments_kind_check CHECK (kind IN ({_OLD_PAYMENT_KINDS}));
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ({_OLD_ACCOUNT_KINDS}));
"""


def upgrade() -> None:
    run_script(UP)


def downgrade() -> None:
    run_script(DOWN)
