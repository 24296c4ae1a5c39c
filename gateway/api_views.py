"""The payments API's answers (`gateway.payments_api`) as JSON: payments with their events, quotes,
wallet statement lines. Every amount is given as a decimal string in major units (what requests
use), as an integer of minor units (``…_minor``), and for people as a display string."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from payments.accounts import StatementLine
from payments.fees import Quote
from payments.money import Money
from payments.payment_store import Payment, PaymentEvent


def _decimal(money: Money) -> str:
    return f"{money.major:.{money.currency.exponent}f}"


def amounts(name: str, money: Money) -> dict[str, Any]:
    return {name: _decimal(money), f"{name}_minor": money.minor}


def _iso(moment: datetime | None) -> str | None:
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
        "created_at": _iso(payment.created_at),
        "updated_at": _iso(payment.updated_at),
        "finished_at": _iso(payment.finished_at),
    }


def _recipient_json(payment: Payment) -> dict[str, Any] | None:
    """Who receives it: a phone (a wallet or a mobile-money account), or a merchant's paybill and
    account number, or till."""
    fields = {"phone": payment.recipient_phone, "paybill": payment.paybill, "account_number": payment.account_number,
              "till": payment.till}
    return {name: value for name, value in fields.items() if value} or None


def event_json(event: PaymentEvent) -> dict[str, Any]:
    return {"from": event.from_status.value if event.from_status else None, "to": event.to_status.value,
            "cause": event.cause, "at": _iso(event.at)}


def quote_json(priced: Quote, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "currency": priced.amount.currency.value,
        **amounts("amount", priced.amount),
        **amounts("fee", priced.fee),
        **amounts("total", priced.total),
        "display": {"amount": priced.amount.format(), "fee": priced.fee.format(), "total": priced.total.format()},
        "plan": priced.plan,
        "recipient_name": priced.recipient_name,
    }


def statement_line_json(line: StatementLine) -> dict[str, Any]:
    counterparty: dict[str, Any] | None = None
    if line.counterparty_phone:
        counterparty = {"phone": line.counterparty_phone, "name": line.counterparty_name or None}
    elif line.counterparty_code:
        # Sauti's own accounts (``provider_clearing:mpesa:KES``): say which kind and whose.
        kind, _, rest = line.counterparty_code.partition(":")
        counterparty = {"account": kind, "owner": rest.rpartition(":")[0] or None}
    return {
        "id": line.posting_id,
        "at": _iso(line.at),
        **amounts("amount", line.amount),
        **amounts("balance_after", line.balance_after),
        "kind": line.kind,
        "payment": line.reference,
        "payment_reference": line.payment_reference,
        "counterparty": counterparty,
    }
