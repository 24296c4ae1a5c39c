"""What the payment orchestrator is configured with: its policy (`PaymentSettings`), the provider
clients it talks to (`ProviderClients`), and the names it shares with the worker and the gateway
(providers, outbox job kinds)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from payments.fees import DEFAULT_LIMITS, DEFAULT_PLANS, FeePlan, Limits
from payments.money import Currency
from payments.providers.daraja import DarajaClient
from payments.providers.sms import SmsSender
from payments.providers.wave import WaveClient

MPESA, WAVE = "mpesa", "wave"
#: The providers as their customers know them (receipts, screens).
PROVIDER_NAMES = MappingProxyType({MPESA: "M-Pesa", WAVE: "Wave"})
#: Which provider pays out (and collects) each currency.
PROVIDER_FOR: Mapping[Currency, str] = MappingProxyType({Currency.KES: MPESA, Currency.XOF: WAVE})
#: Outbox job kinds, one per external effect.
JOB_B2C, JOB_WAVE_PAYOUT, JOB_STK_PUSH, JOB_SMS = "mpesa.b2c", "wave.payout", "mpesa.stk_push", "sms.receipt"
JOB_WAVE_CHECKOUT = "wave.checkout"
JOB_B2B, JOB_REVERSAL, JOB_STATUS_QUERY = "mpesa.b2b", "mpesa.reversal", "mpesa.status_query"
JOB_WAVE_REFUND, JOB_WAVE_REVERSE = "wave.checkout_refund", "wave.payout_reverse"
#: Ask Wave to expire a deposit's checkout session before the deposit may fail (`payments.wave_deposits`).
JOB_WAVE_EXPIRE = "wave.checkout_expire"
#: Confirm and credit an STK push whose CheckoutRequestID we never recorded (`payments.stk_orphans`).
JOB_STK_ORPHAN = "mpesa.stk_orphan"
#: The `provider_events` kind of such a push's callback, keyed by its CheckoutRequestID.
STK_ORPHAN_EVENT = "stk_orphan"
#: The provider-refs key of a C2B payment an operator booked by hand from the statement
#: (`payments.c2b.C2BReceiver.book_missed`): who did, and why.
BOOKED_BY = "booked_by"
#: `provider_refs` of a deposit credited from suspense (`payments.suspense`): the transfer that parked its money.
PARKED_BY = "parked_by"
#: What the orchestrator appends to ``callback_base_url`` for each Daraja callback; the gateway
#: routes the same paths (`gateway.callbacks`), so the two cannot drift apart. IMPORTANT: Safaricom
#: refuses URLs holding "M-Pesa", "Safaricom", "exec", "cmd", "sql" or "query" in any spelling, so
#: the paths name only the API.
CALLBACK_STK, CALLBACK_B2C_RESULT, CALLBACK_B2C_TIMEOUT = "/stk", "/b2c/result", "/b2c/timeout"
CALLBACK_B2B_RESULT, CALLBACK_B2B_TIMEOUT = "/b2b/result", "/b2b/timeout"
CALLBACK_REVERSAL_RESULT, CALLBACK_REVERSAL_TIMEOUT = "/reversal/result", "/reversal/timeout"
CALLBACK_STATUS_RESULT, CALLBACK_STATUS_TIMEOUT = "/status/result", "/status/timeout"
CALLBACK_C2B_VALIDATION, CALLBACK_C2B_CONFIRMATION = "/c2b/validation", "/c2b/confirmation"


@dataclass(frozen=True)
class PaymentSettings:
    """The orchestrator's policy. ``callback_base_url`` is where providers reach us (it should carry
    a secret path segment: Daraja signs nothing); the orchestrator appends the ``CALLBACK_*`` paths
    above (``/stk``, ``/b2c/result``, ``/b2b/result``, ``/status/result``, …).
    ``confirm_stk_with_query`` governs C2B confirmations too: Daraja signs neither."""

    callback_base_url: str = "http://127.0.0.1:8080/callbacks"
    #: Confirm an STK success callback with an STK query before crediting (DESIGN: Daraja signs nothing).
    confirm_stk_with_query: bool = True
    fee_plans: Mapping[str, FeePlan] = field(default_factory=lambda: DEFAULT_PLANS)
    #: The plan of users without one of their own (users carry no plan yet).
    default_plan: str = "basic"
    limits: Limits = DEFAULT_LIMITS
    stk_account_reference: str = "Sauti"
    stk_description: str = "Sauti deposit"
    b2c_remarks: str = "Sauti payout"
    #: Where Wave sends the payer's browser after a checkout (the webhook, not this, credits the wallet).
    wave_success_url: str = "https://sauti.example/wave/success"
    wave_error_url: str = "https://sauti.example/wave/error"
    #: Send SMS receipts (jobs are enqueued either way when an SMS sender is configured).
    sms_receipts: bool = True
    #: Shards of each hot account (fee revenue, provider collection and settlement) when first
    #: used; 1: none (`payments.settlement.AccountBook`).
    hot_account_shards: int = 8
    #: How long the callback of an STK push nobody recorded waits before it is taken for an orphan
    #: (`payments.stk_orphans`): longer than any run of the push job, which records the push's id
    #: (the gateway uses twice the outbox lease, past which a job run is cut short).
    stk_orphan_grace_s: float = 120.0
    #: Contacts a user keeps (`payments.contacts`): adding one more by hand is refused, and a send
    #: to a new number past it adds no contact.
    max_contacts_per_user: int = 500
    #: Payment intents (`payments.intents`): how long one waits for its customer unless its merchant
    #: says, how many one customer may have open at once, and how often the expired are closed.
    intent_expiry_s: float = 900.0
    max_pending_intents: int = 10
    #: How many of those one merchant may hold: the rest stay free for other merchants to ask.
    max_pending_intents_per_merchant: int = 3
    #: How many intents one merchant may make for one customer in 24 hours, ended ones counted (each
    #: sends an SMS: cancelling and asking again must not flood anyone).
    max_intents_per_day: int = 20
    intent_sweep_interval_s: float = 30.0


@dataclass(frozen=True)
class ProviderClients:
    """Started clients; any may be None when that provider is not configured."""

    daraja: DarajaClient | None = None
    wave: WaveClient | None = None
    sms: SmsSender | None = None
