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
from payments.payment_settings import PROVIDER_NAMES
from payments.states import PaymentStatus


@dataclass(frozen=True, slots=True)
class Receipt:
    """One SMS receipt's facts. ``party`` is ``payer`` or ``payee``. The counterpart is the other
    side as the reader knows it: for the payee, who sent the money; for the payer, who got it (a
    registered name when the number has a wallet, and the number), or the merchant's ``paybill``
    and ``account``, or ``till``. ``approve_url`` is set for a Wave deposit waiting for the payer's
    approval (the SMS carries the link); ``retry_until`` for a Wave deposit whose payment attempt
    failed while its link stays open (the payer may try again with it until then). A receipt of
    money moved ends with the new ``balance`` when there is one, as M-Pesa's do.

    A refund's receipts also name the payment it undid (``original``, its short reference, and
    ``original_kind``): its payer reads what came back (the amount and ``returned_fee``, the fee of
    a payout or a wallet payment, which comes back with it), or for a deposit that its money went
    back to the ``provider`` (``mpesa``, ``wave``); the payee of a wallet payment, whose wallet gave
    the amount back, reads that it was reversed.

    ``unconfirmed``: a failed M-Pesa deposit whose push may have been paid (its answer was lost, so
    M-Pesa could not be asked): its payer must not read that nothing was taken, but that a payment
    made will reach the wallet (`payments.stk_orphans` credits it)."""

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
    retry_until: datetime | None = None
    #: The party's wallet balance right after this payment, when it moved their wallet's money.
    balance: Money | None = None
    #: A refund's: the payment it undid (see above).
    original: str | None = None
    original_kind: str | None = None
    returned_fee: Money | None = None
    provider: str | None = None
    unconfirmed: bool = False

    @property
    def total_returned(self) -> Money:
        """What a refund gave back to its payer's wallet: the amount and the fee that came with it."""
        return self.amount + self.returned_fee if self.returned_fee is not None else self.amount

    @property
    def situation(self) -> str:
        """Which receipt this is: ``received`` (the payee's), ``approve`` (a Wave deposit's link),
        ``declined`` (a Wave deposit's failed attempt, its link still open), ``succeeded`` or
        ``failed`` (the payer's), ``unconfirmed`` (a failed deposit that may have been paid); for a
        succeeded refund, ``refunded`` (its payer got the money back),
        ``deposit_reversed`` (its payer's deposit went back to the provider) or ``reversed`` (the
        payee gave the money back)."""
        if self.kind == "refund" and self.original is not None and self.status is PaymentStatus.SUCCEEDED:
            if self.party == "payee":
                return "reversed"
            return "deposit_reversed" if self.original_kind == "deposit" else "refunded"
        if self.party == "payee":
            return "received"
        if self.retry_until is not None:
            return "declined"
        if self.approve_url is not None:
            return "approve"
        if self.status is PaymentStatus.SUCCEEDED:
            return "succeeded"
        return "unconfirmed" if self.unconfirmed else "failed"


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
        case "declined" if r.retry_until is not None:
            return (f"{r.reference} Deposit of {r.amount}: the Wave payment was declined, nothing was taken. "
                    f"You can try again with the same link until {r.retry_until.astimezone(UTC):%H:%M} UTC.")
        case "refunded" if r.returned_fee is not None and r.returned_fee.minor:
            return (f"{r.reference} Confirmed. Payment {r.original} reversed: {r.total_returned} returned to your "
                    f"wallet ({r.amount} + fee {r.returned_fee}).{balance}")
        case "refunded":
            return (f"{r.reference} Confirmed. Payment {r.original} reversed: {r.amount} returned to your "
                    f"wallet.{balance}")
        case "deposit_reversed":
            where = PROVIDER_NAMES.get(r.provider or "", "mobile money")
            return (f"{r.reference} Confirmed. Deposit {r.original} of {r.amount} reversed: the money went back "
                    f"to your {where} account.{balance}")
        case "reversed":
            sender = " ".join(part for part in (r.counterpart, r.counterpart_phone) if part)
            return (f"{r.reference} Confirmed. Payment {r.original} from {sender} reversed: {r.amount} taken back "
                    f"from your wallet.{balance}")
        case "succeeded":
            return f"{r.reference} Confirmed. {what} {r.amount} succeeded. Fee {r.fee}.{balance}"
        case "unconfirmed":
            return (f"{r.reference} {what} {r.amount}: we could not confirm it yet. If you paid, the money will "
                    "reach your wallet.")
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
