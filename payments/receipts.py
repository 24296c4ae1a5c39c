"""SMS receipts: what one receipt tells one party (`Receipt`), and who writes its words.

The outbox job that sends a receipt (`payments.provider_jobs`) knows the facts: the payment, its
short reference, the party and the party's language. The words belong to the channels' catalogs,
which live above this package (`dialogs.receipts` writes them in English, Swahili, French and
Wolof), so the composition root hands `Payments` a `ReceiptWriter`; without one (a payments-only
set-up, tests of this package) receipts are written in English by `english_receipt`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from payments.money import Money
from payments.states import PaymentStatus


@dataclass(frozen=True, slots=True)
class Receipt:
    """One SMS receipt's facts. ``party`` is ``payer`` or ``payee``. The counterpart is the other
    side as the reader knows it: for the payee, who sent the money; for the payer, who got it (a
    registered name when the number has a wallet, and the number), or the merchant's ``paybill``
    and ``account``, or ``till``. ``approve_url`` is set for a Wave deposit waiting for the payer's
    approval (the SMS carries the link). A receipt of money moved ends with the new ``balance``
    when there is one, as M-Pesa's do."""

    party: str
    kind: str
    status: PaymentStatus
    reference: str
    amount: Money
    fee: Money
    language: str
    counterpart: str = ""
    counterpart_phone: str | None = None
    paybill: str | None = None
    account: str | None = None
    till: str | None = None
    approve_url: str | None = None
    #: The party's wallet balance right after this payment, when it moved their wallet's money.
    balance: Money | None = None

    @property
    def situation(self) -> str:
        """Which receipt this is: ``received`` (the payee's), ``approve`` (a Wave deposit's link),
        ``succeeded`` or ``failed`` (the payer's)."""
        if self.party == "payee":
            return "received"
        if self.approve_url is not None:
            return "approve"
        return "succeeded" if self.status is PaymentStatus.SUCCEEDED else "failed"


ReceiptWriter = Callable[[Receipt], str]

_WHAT: Mapping[str, str] = MappingProxyType({
    "p2p": "Payment of", "send_to_phone": "Payment of", "withdraw": "Withdrawal of", "deposit": "Deposit of",
    "pay_bill": "Bill payment of", "buy_goods_till": "Payment of", "buy_goods_pochi": "Payment of",
    "refund": "Refund of", "cash_in": "Cash-in of", "cash_out": "Cash-out of",
})


def english_receipt(receipt: Receipt) -> str:
    """The receipt in English: the writer when no catalogs are given."""
    r = receipt
    what = _WHAT.get(r.kind, "Payment of")
    balance = f" New balance {r.balance}." if r.balance is not None else ""
    match r.situation:
        case "received":
            sender = " ".join(part for part in (r.counterpart, r.counterpart_phone) if part)
            return f"{r.reference} Confirmed. You received {r.amount} from {sender}.{balance}"
        case "approve":
            return f"Approve your deposit of {r.amount} in Wave: {r.approve_url}"
        case "succeeded":
            return f"{r.reference} Confirmed. {what} {r.amount} succeeded. Fee {r.fee}.{balance}"
        case _:
            return f"{r.reference} {what} {r.amount} failed. No money was taken."


@dataclass(frozen=True, slots=True)
class IntentNotice:
    """The SMS telling a customer that a merchant asks them to pay (`payments.intents`): who asks
    (``payee`` name and number), how much, for what, the intent's short ``code`` and until when
    (``expires_at``, written in the reader's local time)."""

    language: str
    payer_phone: str
    payee_name: str
    payee_phone: str
    amount: Money
    description: str
    code: str
    expires_at: datetime


IntentNoticeWriter = Callable[[IntentNotice], str]


def english_intent_notice(notice: IntentNotice) -> str:
    """The notice in English (UTC times): the writer when no catalogs are given."""
    n = notice
    what = f" for {n.description}" if n.description else ""
    who = f"{n.payee_name} {n.payee_phone}" if n.payee_name else n.payee_phone
    return (f"{who} asks you to pay {n.amount}{what}. Code {n.code}. Pay or decline in your Sauti menu, "
            f"Requests to pay, before {n.expires_at.astimezone(UTC):%d/%m %H:%M} UTC.")
