"""The payments API's answers (`gateway.payments_api`) as JSON: payments (`payments.payment_json`,
shared with the webhooks' events) with their events, quotes, wallet statement lines. Every amount
is given as a decimal string in major units (what requests use), as an integer of minor units
(``…_minor``), and for people as a display string."""

from __future__ import annotations

from typing import Any

from payments.accounts import StatementLine, WalletStatement
from payments.fees import Quote
from payments.payment_json import amounts, iso, payment_json
from payments.payment_store import PaymentEvent

__all__ = ["amounts", "event_json", "payment_json", "quote_json", "statement_line_json", "wallet_json"]


def event_json(event: PaymentEvent) -> dict[str, Any]:
    return {"from": event.from_status.value if event.from_status else None, "to": event.to_status.value,
            "cause": event.cause, "at": iso(event.at)}


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
        "at": iso(line.at),
        **amounts("amount", line.amount),
        **amounts("balance_after", line.balance_after),
        "kind": line.kind,
        "payment": line.reference,
        "payment_reference": line.payment_reference,
        "counterparty": counterparty,
    }


def wallet_json(wallet: WalletStatement, limit: int) -> dict[str, Any]:
    """A wallet's balance and a page of its statement (``limit`` lines asked: a full page has a
    ``next_before``, the ``before`` of the next, older page)."""
    return {
        "currency": wallet.currency.value,
        **amounts("balance", wallet.balance),
        **amounts("available", wallet.available),
        "display": {"balance": wallet.balance.format(), "available": wallet.available.format()},
        "lines": [statement_line_json(line) for line in wallet.lines],
        "next_before": wallet.lines[-1].posting_id if len(wallet.lines) == limit else None,
    }
