"""Commands: what a caller (a USSD journey, a voice confirmation, the API) asks the orchestrator to do.

Small immutable values with imperative names, handled by `payments.orchestrator.Payments.handle`.
Each carries the caller's idempotency key: the same key with the same request gives back the same
payment, the same key with a different request is an `IdempotencyConflict`. The PIN is checked
before a command is built (`PinService.verify`) and is never part of one.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal

from payments.errors import InvalidRequest
from payments.money import Money
from payments.postings import MAX_KEY_LENGTH, check_key


class Channel(enum.StrEnum):
    USSD = "ussd"
    VOICE = "voice"
    APP = "app"
    API = "api"


class PaymentKind(enum.StrEnum):
    P2P = "p2p"
    SEND_TO_PHONE = "send_to_phone"
    PAY_BILL = "pay_bill"
    BUY_GOODS_TILL = "buy_goods_till"
    BUY_GOODS_POCHI = "buy_goods_pochi"
    WITHDRAW = "withdraw"
    DEPOSIT = "deposit"
    REFUND = "refund"
    #: Cash handed over at an agent (`payments.agents`): the agent's float pays the customer's wallet
    #: (cash_in, paid by the agent) or the customer's wallet pays the float (cash_out).
    CASH_IN = "cash_in"
    CASH_OUT = "cash_out"


#: Kinds that M-Pesa pays by B2B (to a paybill or a till) ...
B2B_KINDS = frozenset({PaymentKind.PAY_BILL, PaymentKind.BUY_GOODS_TILL})
#: ... and every kind that pays out through a provider when the payment has one (B2C or a Wave
#: payout for the others; a send_to_phone without a provider stayed inside Sauti).
PAYOUT_KINDS = B2B_KINDS | {PaymentKind.SEND_TO_PHONE, PaymentKind.WITHDRAW, PaymentKind.BUY_GOODS_POCHI}
#: The payouts M-Pesa makes by B2C (to a phone) when their provider is M-Pesa.
B2C_KINDS = PAYOUT_KINDS - B2B_KINDS


def check_amount(amount: object) -> None:
    """What any command moves: an amount of money above zero."""
    if not isinstance(amount, Money) or amount.minor <= 0:
        raise InvalidRequest("the amount must be more than zero")


def channel_of(value: object) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise InvalidRequest(f"unknown channel {value!r}") from None


@dataclass(frozen=True)
class _Command:
    idempotency_key: str
    payer_user_id: int
    amount: Money
    channel: Channel
    #: The API key whose request this is (its webhook endpoints hear how the payment ends); None elsewhere.
    api_key_id: int | None = None

    def _check(self) -> None:
        check_key(self.idempotency_key)
        check_amount(self.amount)
        object.__setattr__(self, "channel", channel_of(self.channel))

    def request_hash(self, kind: PaymentKind, **recipient: object) -> str:
        """What "the same request" means: kind, amount, currency and recipient (not the channel or
        the transcript: a USSD retry of a voice request is the same payment)."""
        body = {"kind": kind.value, "amount": self.amount.minor, "currency": self.amount.currency.value,
                **{k: v for k, v in recipient.items() if v is not None}}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Spoken:
    """What the voice channel adds: the words heard and how sure the recogniser was."""

    transcript: str | None = None
    confidence: Decimal | None = None
    voice_confirmed: bool = False


@dataclass(frozen=True)
class SendToWallet(_Spoken, _Command):
    """Pay another Sauti user's wallet (p2p), named by user id or by phone number."""

    recipient_user_id: int | None = None
    recipient_phone: str | None = None

    def __post_init__(self) -> None:
        self._check()
        if (self.recipient_user_id is None) == (self.recipient_phone is None):
            raise InvalidRequest("name the recipient by user id or by phone number, not both")


@dataclass(frozen=True)
class SendToPhone(_Spoken, _Command):
    """Send to a phone number: a Sauti wallet when the number has one, else the number's mobile money
    (M-Pesa B2C for KES, a Wave payout for XOF)."""

    recipient_phone: str = ""

    def __post_init__(self) -> None:
        self._check()
        if not self.recipient_phone:
            raise InvalidRequest("a recipient phone number is needed")


@dataclass(frozen=True)
class Withdraw(_Spoken, _Command):
    """Move money from the wallet to the payer's own M-Pesa (KES) or Wave (XOF) account; to their
    registered number unless ``phone`` says otherwise."""

    phone: str | None = None

    def __post_init__(self) -> None:
        self._check()


@dataclass(frozen=True)
class Deposit(_Spoken, _Command):
    """Pull money into the wallet: from the payer's M-Pesa by STK push (KES), or through a Wave
    checkout the payer approves in the Wave app (XOF); from their registered number unless ``phone``
    says otherwise."""

    phone: str | None = None

    def __post_init__(self) -> None:
        self._check()


def _digits(value: str, what: str, lengths: range) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text.isdigit() or not text.isascii() or len(text) not in lengths:
        raise InvalidRequest(f"a {what} is {lengths.start} to {lengths.stop - 1} digits, not {value!r}")
    return text


#: M-Pesa shortcodes (paybills) and till numbers are 5 to 7 digits.
_SHORTCODE_LENGTHS = range(5, 8)
#: Daraja's B2B AccountReference holds at most 13 characters (`DarajaClient.b2b_payment`).
ACCOUNT_NUMBER_MAX = 13
#: What M-Pesa takes as a bill's account number (AccountReference, BillRefNumber): letters and digits
#: ("Alpha-Numeric" in Daraja's rules), ASCII. Also what keeps the SMS receipt naming it one GSM-7
#: SMS: every such character is one septet, where ``€ [ ] { } ~ ^ \ |`` take two and anything outside
#: GSM-7 would turn the receipt into UCS-2 (`dialogs.receipts`).
_ACCOUNT_NUMBER = re.compile(f"[A-Za-z0-9]{{1,{ACCOUNT_NUMBER_MAX}}}")


class InvalidAccountNumber(InvalidRequest):
    """A paybill account number M-Pesa would not take."""

    code = "invalid_account_number"


def bill_account_number(value: object) -> str:
    """A paybill account number as the payer typed it (spaces around it dropped), checked against
    what M-Pesa takes: 1 to 13 letters and digits. The one rule for every way in (USSD, the payments
    API, a spoken command)."""
    account = value.strip() if isinstance(value, str) else ""
    if not _ACCOUNT_NUMBER.fullmatch(account):
        raise InvalidAccountNumber(f"an account number is 1 to {ACCOUNT_NUMBER_MAX} letters (A-Z) and digits, "
                                   f"as M-Pesa takes it, not {str(value)[:30]!r}")
    return account


@dataclass(frozen=True)
class PayBill(_Spoken, _Command):
    """Pay an M-Pesa paybill (a business shortcode) with the account number the business gave the
    payer: a Daraja B2B ``BusinessPayBill`` from our shortcode, KES only."""

    paybill: str = ""
    account_number: str = ""

    def __post_init__(self) -> None:
        self._check()
        object.__setattr__(self, "paybill", _digits(self.paybill, "paybill number", _SHORTCODE_LENGTHS))
        object.__setattr__(self, "account_number", bill_account_number(self.account_number))


@dataclass(frozen=True)
class BuyGoods(_Spoken, _Command):
    """Pay an M-Pesa till (Buy Goods): a Daraja B2B ``BusinessBuyGoods`` from our shortcode, KES only."""

    till: str = ""

    def __post_init__(self) -> None:
        self._check()
        object.__setattr__(self, "till", _digits(self.till, "till number", _SHORTCODE_LENGTHS))


@dataclass(frozen=True)
class PayPochi(_Spoken, _Command):
    """Pay a merchant's Pochi la Biashara, an M-Pesa wallet on the merchant's own phone number: a B2C
    payment to that number (even when the number also has a Sauti wallet), KES only."""

    phone: str = ""

    def __post_init__(self) -> None:
        self._check()
        if not self.phone:
            raise InvalidRequest("the pochi's phone number is needed")


REFUND_KEY_PREFIX = "refund:"
#: M-Pesa receipts (TransIDs) are 10 characters today; room for a longer format.
RECEIPT_MAX = 20


def mpesa_receipt(value: object) -> str:
    """An M-Pesa receipt (TransID) as a person types it from a statement, checked and upper-cased."""
    receipt = value.strip() if isinstance(value, str) else ""
    if not receipt or len(receipt) > RECEIPT_MAX or not receipt.isalnum() or not receipt.isascii():
        raise InvalidRequest(f"an M-Pesa receipt is 1 to {RECEIPT_MAX} letters and digits, not {str(value)[:30]!r}")
    return receipt.upper()


@dataclass(frozen=True)
class Refund:
    """Undo a succeeded payment, named by its public id, for an operator or an API caller
    (`payments.refunds` says how each kind is undone). Always the whole payment: at most one refund
    per payment that has not failed. ``idempotency_key`` is scoped to the payment's payer;
    ``requested_by`` says who asked (an operator's name, an API key's prefix), for the history."""

    idempotency_key: str
    payment_id: str
    reason: str
    requested_by: str = "operator"
    channel: Channel = Channel.API
    #: Operators only: the M-Pesa receipt, read on the statement, of a deposit credited without one
    #: (recovery confirmed its push by an STK query, which names no receipt); a reversal needs it.
    receipt: str | None = None
    #: The API key whose request this is (its webhook endpoints hear how the refund ends).
    api_key_id: int | None = None

    def __post_init__(self) -> None:
        key = self.idempotency_key
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH - len(REFUND_KEY_PREFIX):
            raise InvalidRequest(f"an idempotency key is 1 to {MAX_KEY_LENGTH - len(REFUND_KEY_PREFIX)} characters")
        if not isinstance(self.payment_id, str) or not self.payment_id.strip():
            raise InvalidRequest("name the payment to refund")
        # IMPORTANT: printable only: the reason and who asked go into jsonb, which holds no NUL and
        # no lone surrogate (both made 500s once).
        if not isinstance(self.reason, str) or not self.reason.strip() or len(self.reason) > 500 \
                or not self.reason.isprintable():
            raise InvalidRequest("a refund needs a reason: at most 500 printable characters (no control characters)")
        if not isinstance(self.requested_by, str) or not self.requested_by.strip() \
                or not self.requested_by.isprintable():
            raise InvalidRequest("say who asks for the refund")
        try:
            object.__setattr__(self, "channel", Channel(self.channel))
        except ValueError:
            raise InvalidRequest(f"unknown channel {self.channel!r}") from None
        if self.receipt is not None:
            object.__setattr__(self, "receipt", mpesa_receipt(self.receipt))

    @property
    def stored_key(self) -> str:
        """The key as recorded on the refund (whose payer is the original's payer): prefixed, so an
        operator's key can never collide with one the customer used for a payment of their own."""
        return REFUND_KEY_PREFIX + self.idempotency_key

    def request_hash(self) -> str:
        """The same refund: the same payment (the reason and the caller are notes, not the request)."""
        body = {"kind": PaymentKind.REFUND.value, "of": self.payment_id.strip()}
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


Command = SendToWallet | SendToPhone | Withdraw | Deposit | PayBill | BuyGoods | PayPochi | Refund
