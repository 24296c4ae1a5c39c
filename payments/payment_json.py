"""A payment (and a payment intent) as the outside world sees it, in JSON: what `GET /v1/payments/{id}` answers (through
`gateway.api_views`) and what a webhook event carries (`payments.webhook_events`), so that both say
the same thing the same way. Every amount is given as a decimal string in major units (what requests
use), as an integer of minor units (``…_minor``), and for people as a display string. Operators'
notes in ``provider_refs`` (``needs_review``, …) stay inside."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from payments.money import Money
from payments.references import payment_reference

if TYPE_CHECKING:
    from payments.intent_store import IntentParties, PaymentIntent
    from payments.payment_store import Payment


def _decimal(money: Money) -> str:
    return f"{money.major:.{money.currency.exponent}f}"


def amounts(name: str, money: Money) -> dict[str, Any]:
    return {name: _decimal(money), f"{name}_minor": money.minor}


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def payment_json(payment: Payment, payer_phone: str | None) -> dict[str, Any]:
    refs = payment.provider_refs
    provider = None
    if payment.provider:
        # What a caller can use: the provider's reference and receipt, and for a Wave deposit the
        # link the payer opens to approve it. Operator notes (needs_review…) stay inside.
        provider = {"name": payment.provider, "reference": payment.provider_ref, "receipt": refs.get("receipt"),
                    "checkout_url": refs.get("wave_launch_url")}
    error = {"code": payment.error_code, "message": payment.error_message} if payment.error_code else None
    return {
        "public_id": payment.public_id,
        "reference": payment.reference,
        "kind": payment.kind,
        "status": payment.status.value,
        "channel": payment.channel,
        "currency": payment.amount.currency.value,
        **amounts("amount", payment.amount),
        **amounts("fee", payment.fee),
        **amounts("total", payment.total),
        "display": {"amount": payment.amount.format(), "fee": payment.fee.format(), "total": payment.total.format()},
        "payer": payer_phone,
        "recipient": _recipient_json(payment),
        "provider": provider,
        "error": error,
        "created_at": iso(payment.created_at),
        "updated_at": iso(payment.updated_at),
        "finished_at": iso(payment.finished_at),
    }


def _recipient_json(payment: Payment) -> dict[str, Any] | None:
    """Who receives it: a phone (a wallet or a mobile-money account), or a merchant's paybill and
    account number, or till."""
    fields = {"phone": payment.recipient_phone, "paybill": payment.paybill, "account_number": payment.account_number,
              "till": payment.till}
    return {name: value for name, value in fields.items() if value} or None


def intent_json(intent: PaymentIntent, parties: IntentParties) -> dict[str, Any]:
    """A payment intent as ``GET /v1/payment_intents/{id}`` answers it and its webhook events carry
    it: who asks whom for what, its state, the payment that paid it (``payment``, a succeeded or
    refunded intent's) and, once that payment was refunded, the refund (``refund``: its public id,
    short reference and when it gave the money back)."""
    refund = None
    if intent.refund_id is not None:
        refund = {"payment": intent.refund_public_id, "reference": payment_reference(intent.refund_id),
                  "refunded_at": iso(intent.refunded_at)}
    return {
        "public_id": intent.public_id,
        "code": intent.code,
        "status": intent.status.value,
        "currency": intent.amount.currency.value,
        **amounts("amount", intent.amount),
        "display": {"amount": intent.amount.format()},
        "description": intent.description,
        "reference": intent.merchant_reference,
        "payer": parties.payer_phone,
        "payee": {"phone": parties.payee_phone, "name": parties.payee_name or None},
        "payment": intent.payment_public_id,
        "refund": refund,
        "expires_at": iso(intent.expires_at),
        "created_at": iso(intent.created_at),
        "resolved_at": iso(intent.resolved_at),
    }
