"""The relational schema, as SQLAlchemy Core tables.

The migrations under `db/migrations/versions/` create these tables (with the constraints, triggers and
the ledger's SQL functions that SQLAlchemy cannot express); `tests/integration/test_schema.py` checks
that this module and the migrated database agree.

IMPORTANT: the money invariants are enforced here, in the database, not only in Python:
- `accounts.balance - accounts.held >= 0` for every account that may not go negative;
- postings and transfers are append-only, accounts are never deleted (triggers refuse it);
- idempotency keys are unique per table.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

USER_STATUSES = ("active", "locked", "closed")
ROLES = ("customer", "agent", "merchant", "admin")
LANGUAGES = ("en", "sw", "fr", "wo")
CURRENCIES = ("KES", "XOF")
ACCOUNT_KINDS = (
    "customer_wallet",
    "agent_float",
    "agent_commission",
    "fee_revenue",
    "provider_collection",
    "provider_clearing",
    "provider_settlement",
    "suspense",
    "commission_expense",  # migration 0007: what agents' commissions cost Sauti
)
HOLD_STATUSES = ("pending", "posted", "voided")

users = Table(
    "users",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("phone", String(16), nullable=False, unique=True),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("language", String(2), nullable=False, server_default="en"),
    Column("roles", ARRAY(Text), nullable=False, server_default="{customer}"),
    Column("kyc_tier", SmallInteger, nullable=False, server_default="0"),
    Column("status", Text, nullable=False, server_default="active"),
    Column("pin_hash", Text),
    Column("pin_check", Text),  # keyed check value of the PIN (migration 0009); NULL until derived
    Column("failed_pin_attempts", Integer, nullable=False, server_default="0"),
    Column("last_pin_attempt", Text),  # 0019: the hop whose wrong PIN was counted last (copies count once)
    Column("locked_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

user_locks = Table(
    "user_locks",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("locked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("locked_until", DateTime(timezone=True), nullable=False),
    Column("unlocked_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default="{}"),
    Index("audit_log_subject", "subject", "id"),  # migration 0011: a payment's page lists what was done to it
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text, nullable=False, unique=True),
    Column("owner_user_id", BigInteger, ForeignKey("users.id")),
    Column("kind", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("may_go_negative", Boolean, nullable=False),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("shard_of", BigInteger, ForeignKey("accounts.id")),
    Column("shards", ARRAY(BigInteger)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("may_go_negative OR balance - held >= 0", name="accounts_no_overdraft"),
    postgresql_with={"fillfactor": 70},
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("request_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reference", Text),
    Column("reverses_transfer_id", BigInteger, ForeignKey("transfers.id")),
    Column("hold_id", BigInteger),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("transfers_reversed_once", "reverses_transfer_id", unique=True,
          postgresql_where=text("reverses_transfer_id IS NOT NULL")),
    # Migration 0011: a payment's transfers carry its public id (its page lists them).
    Index("transfers_reference", "reference", postgresql_where=text("reference IS NOT NULL")),
    # Migration 0012: the few transfers that parked money in suspense, for the operators' list.
    Index("transfers_parked", "id", postgresql_where=text("idempotency_key LIKE 'suspense:%'")),
)

postings = Table(
    "postings",
    metadata,
    Column("id", BigInteger, primary_key=True),
    # No foreign keys here on purpose (speed; see the 0001 migration); `ledger check` verifies them.
    Column("transfer_id", BigInteger, nullable=False, index=True),
    Column("account_id", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("postings_account_history", "account_id", "id"),
)

holds = Table(
    "holds",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("request_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reference", Text),
    Column("legs", JSONB, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("transfer_id", BigInteger, ForeignKey("transfers.id")),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
)

JOB_STATUSES = ("pending", "running", "done", "parked")

# The transactional outbox (migration 0002): jobs written with the state change that needs them and
# run afterwards by a worker. A running job always holds a lease (locked_by, locked_until).
outbox_jobs = Table(
    "outbox_jobs",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("payload", JSONB, nullable=False, server_default="{}"),
    Column("dedupe_key", Text, unique=True),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer),  # NULL: the worker's outbox.max_attempts
    Column("run_after", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("locked_by", Text),
    Column("locked_until", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("(status = 'running') = (locked_until IS NOT NULL)", name="outbox_jobs_lease_iff_running"),
    CheckConstraint("(status IN ('done', 'parked')) = (finished_at IS NOT NULL)",
                    name="outbox_jobs_finished_iff_final"),
    Index("outbox_jobs_claimable", "run_after", "id", postgresql_where=text("status = 'pending'")),
    Index("outbox_jobs_leased", "locked_until", postgresql_where=text("status = 'running'")),
    # Migration 0011: a payment's jobs, for its page (provider calls and SMS name it; webhook events carry it).
    Index("outbox_jobs_parked", "id", postgresql_where=text("status = 'parked'")),
    Index("outbox_jobs_payment",
          text("(coalesce(payload ->> 'payment', payload #>> '{event,data,payment,public_id}'))")),
    # Migration 0016: an endpoint's webhook deliveries, newest first; and those not done yet.
    Index("outbox_jobs_webhook_endpoint", text("(payload ->> 'endpoint')"), "id",
          postgresql_where=text("kind = 'webhook.deliver'")),
    Index("outbox_jobs_webhook_endpoint_open", text("(payload ->> 'endpoint')"), "id",
          postgresql_where=text("kind = 'webhook.deliver' AND status <> 'done'")),
)

PAYMENT_KINDS = ("p2p", "send_to_phone", "pay_bill", "buy_goods_till", "buy_goods_pochi", "withdraw", "deposit",
                 "refund", "cash_in", "cash_out")
PAYMENT_CHANNELS = ("ussd", "voice", "app", "api")
PAYMENT_STATUSES = ("created", "pending", "processing", "succeeded", "failed", "reversed", "refunded")
PAYMENT_PROVIDERS = ("mpesa", "wave")

# Payments (migration 0003): what was asked, where it stands, and the provider's ids for it.
# IMPORTANT: (payer_user_id, idempotency_key) is unique; `request_hash` tells a replay from a conflict.
payments = Table(
    "payments",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),
    Column("payer_user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False),
    Column("recipient_phone", String(16)),
    Column("recipient_user_id", BigInteger, ForeignKey("users.id")),
    Column("till", Text),
    Column("paybill", Text),
    Column("account_number", Text),
    Column("agent_number", Text),
    Column("store_number", Text),
    Column("bank_code", Text),
    Column("status", Text, nullable=False, server_default="created"),
    Column("provider", Text),
    Column("provider_ref", Text),
    Column("provider_refs", JSONB, nullable=False, server_default="{}"),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("transcript", Text),
    Column("confidence", Numeric(4, 3)),
    Column("voice_confirmed", Boolean, nullable=False, server_default="false"),
    Column("debit_transfer_id", BigInteger, ForeignKey("transfers.id")),
    Column("settle_transfer_id", BigInteger, ForeignKey("transfers.id")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    # Migration 0004: the payment a refund undoes (set exactly when kind is 'refund').
    Column("refund_of", BigInteger, ForeignKey("payments.id")),
    # Migration 0010: the API key whose request made it (its webhook endpoints hear how it ends).
    Column("api_key_id", BigInteger, ForeignKey("api_keys.id")),
    UniqueConstraint("payer_user_id", "idempotency_key", name="payments_payer_idempotency_key"),
    Index("payments_provider_ref", "provider", "provider_ref", unique=True),
    Index("payments_open", "updated_at", postgresql_where=text("status IN ('created', 'pending', 'processing')")),
    Index("payments_payer_history", "payer_user_id", "created_at"),
    Index("payments_refunded_once", "refund_of", unique=True,
          postgresql_where=text("refund_of IS NOT NULL AND status <> 'failed'")),
    Index("payments_refunds", "refund_of", postgresql_where=text("refund_of IS NOT NULL")),  # 0011: failed too
    Index("payments_recipient_phone", "recipient_phone", "id",  # 0011: operators find a number's payments
          postgresql_where=text("recipient_phone IS NOT NULL")),
    Index("payments_payer_newest", "payer_user_id", "id"),  # 0011: the payer's side, newest first
    # 0012: a payment by its provider's receipt (every booking of a receipt asks who holds it).
    Index("payments_receipt", "provider", text("(provider_refs ->> 'receipt')")),
    # 0014: reconciliation's read of a period's payments, and of those a statement names.
    Index("payments_provider_created", "provider", "created_at", postgresql_where=text("provider IS NOT NULL")),
    # Not partial: the planner reads the value statistics of a full expression index only (0014's docstring).
    Index("payments_transaction_id", "provider", text("(provider_refs ->> 'transaction_id')")),
    # 0015: an API key's payments, and a user's received ones, newest first (GET /v1/payments).
    Index("payments_api_key", "api_key_id", "id", postgresql_where=text("api_key_id IS NOT NULL")),
    # 0018: a key's payment by its idempotency key, whoever paid (the same key, another payer: a conflict).
    Index("payments_api_key_idempotency", "api_key_id", "idempotency_key",
          postgresql_where=text("api_key_id IS NOT NULL")),
    Index("payments_recipient_user", "recipient_user_id", "id", postgresql_where=text("recipient_user_id IS NOT NULL")),
    # 0021: final payments a provider's late word contradicts (the review queue, `payments.review_flags`).
    Index("payments_contradicted", "id", postgresql_where=text("provider_refs ? 'contradiction'")),
)

# One row per transition of a payment, with its cause.
payment_events = Table(
    "payment_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), nullable=False, index=True),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default="{}"),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Callbacks and webhooks accepted, unique on the provider's own id: duplicates change nothing.
provider_events = Table(
    "provider_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("event_key", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("payment_id", BigInteger, ForeignKey("payments.id")),
    Column("payload", JSONB, nullable=False, server_default="{}"),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("provider", "event_key", "kind", name="provider_events_once"),
    Index("provider_events_payment", "payment_id", postgresql_where=text("payment_id IS NOT NULL")),  # 0011
    # 0021: unrecorded STK pushes flagged for a person (the review queue, `payments.review_flags`).
    Index("provider_events_orphans_flagged", "id",
          postgresql_where=text("kind = 'stk_orphan' AND payload ? 'needs_review'")),
)

# Callers of the JSON payments API (migration 0004): only a hash of each secret is kept.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("prefix", Text, nullable=False, unique=True),
    Column("secret_hash", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("user_id", BigInteger, ForeignKey("users.id")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    # Migration 0011: "caller" (the payments API), "operator" (/v1/ops and /ops) or "support" (the
    # same, reading only); staff keys are never a wallet's.
    Column("role", Text, nullable=False, server_default="caller"),
    Index("api_keys_of_user", "user_id", postgresql_where=text("user_id IS NOT NULL")),
    CheckConstraint("role IN ('caller', 'operator', 'support')", name="api_keys_role"),
    CheckConstraint("role = 'caller' OR user_id IS NULL", name="api_keys_operator_has_no_user"),
)

# Money parked in suspense that no operator has released yet (migration 0012, `payments.suspense`):
# added with the parking transfer, deleted with the release.
suspense_waiting = Table(
    "suspense_waiting",
    metadata,
    Column("receipt", Text, primary_key=True),
    Column("transfer_id", BigInteger, ForeignKey("transfers.id"), nullable=False, unique=True),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Who is signed in to the operator dashboard (migration 0011): only a hash of each cookie's token is kept.
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("api_key_id", BigInteger, ForeignKey("api_keys.id"), nullable=False),
    Column("csrf_token", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=False),
    Index("operator_sessions_expiry", "expires_at"),
)

# Where an API key's owner hears of its payments (migration 0010); deliveries are outbox jobs.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),
    Column("api_key_id", BigInteger, ForeignKey("api_keys.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("disabled_at", DateTime(timezone=True)),
    # Migration 0013: the secret before the last roll, still signing deliveries until it expires.
    Column("previous_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Index("webhook_endpoints_of_key", "api_key_id", postgresql_where=text("disabled_at IS NULL")),
    CheckConstraint("url ~ '^https?://' AND length(url) <= 2000"),
    CheckConstraint("secret ~ '^whsec_[A-Za-z0-9_-]{43}$'"),
    CheckConstraint("(previous_secret IS NULL) = (previous_secret_expires_at IS NULL) AND "
                    "(previous_secret IS NULL OR previous_secret ~ '^whsec_[A-Za-z0-9_-]{43}$')",
                    name="webhook_endpoints_previous_secret"),
)

# How each USSD session ended (migration 0006): completed, or dropped at which screen.
ussd_sessions = Table(
    "ussd_sessions",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("session_id", Text, nullable=False, unique=True),
    Column("phone", Text, nullable=False),
    Column("service_code", Text, nullable=False, server_default=""),
    Column("network_code", Text, nullable=False, server_default=""),
    Column("outcome", Text, nullable=False),
    Column("at_status", Text),
    Column("last_screen", Text),
    Column("journey", Text),
    Column("hops", Integer),
    Column("duration_ms", BigInteger),
    Column("error_message", Text),
    Column("ended_at", DateTime(timezone=True), nullable=False, server_default=func.now(), index=True),
)

# Agents (migration 0007): a user with the agent role, the number customers type, its outlets' store
# numbers, and the cash-in / cash-out requests customers raise at it (`payments.cash_requests`).
AGENT_STATUSES = ("active", "suspended")
CASH_REQUEST_KINDS = ("cash_in", "cash_out")
CASH_REQUEST_STATUSES = ("pending", "confirmed", "rejected", "cancelled", "expired")

agents = Table(
    "agents",
    metadata,
    Column("user_id", BigInteger, ForeignKey("users.id"), primary_key=True),
    Column("agent_number", Text, nullable=False, unique=True),
    Column("business_name", Text, nullable=False, server_default=""),
    Column("currency", String(3), nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

agent_stores = Table(
    "agent_stores",
    metadata,
    Column("store_number", Text, primary_key=True),
    Column("agent_user_id", BigInteger, ForeignKey("agents.user_id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# IMPORTANT: an idempotency key is unique per caller, for raising a request and for resolving one.
cash_requests = Table(
    "cash_requests",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("customer_user_id", BigInteger, ForeignKey("users.id"), nullable=False, index=True),
    Column("agent_user_id", BigInteger, ForeignKey("agents.user_id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False, server_default="0"),
    Column("commission", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("requested_by_user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("hold_id", BigInteger, ForeignKey("holds.id")),
    Column("payment_id", BigInteger, ForeignKey("payments.id")),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by_user_id", BigInteger, ForeignKey("users.id")),
    Column("resolution_key", Text),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    UniqueConstraint("requested_by_user_id", "idempotency_key", name="cash_requests_requester_key"),
    Index("cash_requests_agent_pending", "agent_user_id", "kind", "id", postgresql_where=text("status = 'pending'")),
    Index("cash_requests_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
    Index("cash_requests_resolution_key", "resolved_by_user_id", "resolution_key", unique=True,
          postgresql_where=text("resolution_key IS NOT NULL")),
)

# Contacts (migration 0008): the people a user pays, saved by hand or added by a successful send,
# with what was sent to them (`payments.contacts`). Money sent is one column per currency, in minor
# units: the migration says why, and holds the CHECKs (phone format, names, counters never negative).
contacts = Table(
    "contacts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("nickname", Text),
    Column("phone", String(16), nullable=False),
    Column("favourite", Boolean, nullable=False, server_default="false"),
    Column("times_paid", Integer, nullable=False, server_default="0"),
    Column("total_sent_kes", BigInteger, nullable=False, server_default="0"),
    Column("total_sent_xof", BigInteger, nullable=False, server_default="0"),
    Column("last_payment_id", BigInteger, ForeignKey("payments.id")),
    Column("last_paid_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("user_id", "phone", name="contacts_user_phone"),
    Index("contacts_address_book", "user_id", "favourite", "times_paid"),
)

# Payment intents (migration 0017): a merchant's request that a customer pay an amount into its wallet,
# pending until paid (once: the payment it names), cancelled, declined or expired (`payments.intents`);
# a paid one is refunded when its payment is (migration 0020).
# The migration holds the CHECKs (statuses, lengths, a paid one names its payment, never oneself).
payment_intents = Table(
    "payment_intents",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("public_id", Text, nullable=False, unique=True),
    Column("api_key_id", BigInteger, ForeignKey("api_keys.id"), nullable=False),
    Column("payee_user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("payer_user_id", BigInteger, ForeignKey("users.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("merchant_reference", Text),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("idempotency_key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("payment_id", BigInteger, ForeignKey("payments.id"), unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("resolved_at", DateTime(timezone=True)),
    # Migration 0020: a refunded one (its payment was refunded) names the refund and when.
    Column("refund_id", BigInteger, ForeignKey("payments.id"), unique=True),
    Column("refunded_at", DateTime(timezone=True)),
    UniqueConstraint("api_key_id", "idempotency_key", name="payment_intents_api_key_key"),
    Index("payment_intents_payer_pending", "payer_user_id", "id", postgresql_where=text("status = 'pending'")),
    Index("payment_intents_pending_expiry", "expires_at", postgresql_where=text("status = 'pending'")),
    Index("payment_intents_api_key", "api_key_id", "id"),
)
