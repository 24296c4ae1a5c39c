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
from dataclasses import dataclass
from decimal import Decimal

from payments.errors import InvalidRequest
from payments.money import Money
from payments.postings import MAX_KEY_LENGTH


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


@dataclass(frozen=True)
class _Command:
    idempotency_key: str
    payer_user_id: int
    amount: Money
    channel: Channel

    def _check(self) -> None:
        key = self.idempotency_key
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
            raise InvalidRequest(f"an idempotency key is 1 to {MAX_KEY_LENGTH} characters")
        if not isinstance(self.amount, Money) or self.amount.minor <= 0:
            raise InvalidRequest("the amount must be more than zero")
        try:
            object.__setattr__(self, "channel", Channel(self.channel))
        except ValueError:
            raise InvalidRequest(f"unknown channel {self.channel!r}") from None

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


Command = SendToWallet | SendToPhone | Withdraw | Deposit
