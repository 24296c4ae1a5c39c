"""The actions of the customer journeys: the only code of the dialogs with side effects.

Each is a method taking a `dialogs.steps.Step` and returning an outcome name that the journey maps to
a screen. Money moves only through `Payments.handle` with the hop's idempotency key (a retried hop
replays the payment instead of repeating it), after `PinService.verify` in a transaction of its own
(so a wrong PIN is counted, and the lock-out applies, even though nothing else happens).

PINs: the PIN typed in this hop is ``step.secret`` and is never stored. Confirming a new PIN (at
registration, or when changing it) needs the first entry one hop later: only its argon2 hash (what
the users table holds anyway, peppered) is kept in the session meanwhile, under ``_pin_hash``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import autocommit
from dialogs.display import clock_text, money_text, phone_text, statement_line
from dialogs.steps import PIN_HASH, PIN_OK, ActionSpec, Step
from payments.accounts import AccountKind, account_by_code, account_code, balance_by_code, open_account, statement
from payments.commands import (
    BuyGoods,
    Channel,
    Command,
    Deposit,
    InvalidAccountNumber,
    PayBill,
    PaymentKind,
    PayPochi,
    SendToPhone,
    Withdraw,
    bill_account_number,
)
from payments.errors import (
    AccountClosed,
    AccountLocked,
    AmountOutOfRange,
    InsufficientFunds,
    InvalidRequest,
    PaymentsError,
    RecipientCurrencyMismatch,
    UnknownAccount,
    UserExists,
    WrongPin,
)
from payments.fees import LimitExceeded
from payments.identities import PinService, find_user_by_phone, register_user, set_language
from payments.money import Currency, Money
from payments.orchestrator import Payments
from payments.payment_settings import MPESA
from payments.phones import region_of
from payments.states import PaymentStatus

QUOTE_OUTCOMES = frozenset({"ok", "fix_amount", "fix_recipient", "refused"})
PAY_OUTCOMES = frozenset({"done", "pending_mpesa", "pending_wave", "failed", "wrong_pin", "locked", "refused"})
PIN_OUTCOMES = frozenset({"ok", "wrong_pin", "locked", "refused"})

#: Payment kinds of the journeys: the orchestrator's kind, and the value naming a phone to pay (for
#: the recipient's registered name on the confirmation).
KINDS: dict[str, tuple[PaymentKind, str | None]] = {
    "send": (PaymentKind.SEND_TO_PHONE, "to_phone"),
    "bill": (PaymentKind.PAY_BILL, None),
    "till": (PaymentKind.BUY_GOODS_TILL, None),
    "pochi": (PaymentKind.BUY_GOODS_POCHI, "pochi_phone"),
    "withdraw": (PaymentKind.WITHDRAW, None),
    "deposit": (PaymentKind.DEPOSIT, None),
}


#: Where each currency's mobile money pays: M-Pesa in Kenya, Wave in Senegal and Côte d'Ivoire.
_REGIONS = {Currency.KES: frozenset({"KE"}), Currency.XOF: frozenset({"SN", "CI"})}


#: The session value holding the idempotency key of the payment a confirmation makes (see `quote`).
PAY_KEY = "_pay_key"


@dataclass(frozen=True)
class Services:
    """What the actions work with (the gateway builds it once)."""

    engine: AsyncEngine
    payments: Payments
    pins: PinService


def channel_fields(step: Step) -> dict[str, Any]:
    """The channel a payment is made on and, for a spoken command, what was heard: the fields every
    payment command of a step takes (shared with the payment intents' actions)."""
    if step.spoken is None:
        return {"channel": Channel.USSD}
    # A spoken command: confirmed by the PIN just verified, never by voice.
    return {"channel": Channel(step.spoken["channel"]), "transcript": step.spoken["transcript"],
            "confidence": step.spoken["confidence"], "voice_confirmed": True}


def _command(kind: str, step: Step, amount: Money) -> Command:
    # The quote's key (`CustomerActions.quote`), not this hop's: every confirmation of one quote is
    # one payment, whichever hop or session (a resumed one) types the PIN.
    common: dict[str, Any] = {"idempotency_key": step.values.get(PAY_KEY) or step.idempotency_key,
                              "payer_user_id": step.user_id, "amount": amount, **channel_fields(step)}
    v = step.values
    if kind == "send":
        return SendToPhone(**common, recipient_phone=v["to_phone"])
    if kind == "bill":
        return PayBill(**common, paybill=v["paybill"], account_number=v["account"])
    if kind == "till":
        return BuyGoods(**common, till=v["till"])
    if kind == "pochi":
        return PayPochi(**common, phone=v["pochi_phone"])
    if kind == "withdraw":
        return Withdraw(**common)
    return Deposit(**common)


def payment_refused(step: Step, exc: PaymentsError) -> str:
    """The outcome, and the note on screen, of a payment the orchestrator refused: over a limit, a
    closed account, a wallet that could not cover it (``failed``), or anything else (``refused``)."""
    if isinstance(exc, LimitExceeded | AmountOutOfRange):
        step.say("err.limit")
    elif isinstance(exc, AccountClosed):
        step.say("err.closed")
    elif isinstance(exc, InsufficientFunds):
        step.say("err.no_funds_short")
        return "failed"
    else:
        step.say("err.busy")
    return "refused"


class CustomerActions:
    """The actions by name (`table`). ``services`` may be None to draw or check the journeys."""

    def __init__(self, services: Services | None) -> None:
        self._services = services

    @property
    def services(self) -> Services:
        assert self._services is not None, "actions need services to run"
        return self._services

    def table(self) -> dict[str, ActionSpec]:
        return {
            "hold_pin": ActionSpec(self.hold_pin, frozenset({"ok"})),
            "register": ActionSpec(self.register, frozenset({"ok", "mismatch", "exists"})),
            "quote": ActionSpec(self.quote, QUOTE_OUTCOMES),
            "pay": ActionSpec(self.pay, PAY_OUTCOMES),
            "balance": ActionSpec(self.balance, PIN_OUTCOMES),
            "statement": ActionSpec(self.statement, PIN_OUTCOMES | {"empty"}),
            "check_pin": ActionSpec(self.check_pin, PIN_OUTCOMES),
            "change_pin": ActionSpec(self.change_pin, frozenset({"ok", "mismatch", "expired"})),
            "set_language": ActionSpec(self.set_language, frozenset({"ok"})),
            "fee_plan": ActionSpec(self.fee_plan, frozenset({"ok", "unlimited"})),
        }

    # -- PINs ------------------------------------------------------------------------------------

    async def verify_pin(self, step: Step) -> str | None:
        """Check the hop's PIN; None when right, else the outcome (``wrong_pin``, ``locked``, or
        ``refused`` with "this account is closed": closed while its owner was in the menus).
        (Shared with the payment intents' actions, `dialogs.intent_actions`.)"""
        failure: PaymentsError | None = None
        # The count and the lock are committed before these are raised; no connection is held
        # while the PIN is hashed.
        try:
            # A USSD hop's key names the try: copies of one hop a network sent twice count once. A
            # spoken command's key is the command's, the same for every try: each of those counts.
            attempt = step.idempotency_key if step.spoken is None else None
            await self.services.pins.check(self.services.engine, step.user_id, step.secret or "", attempt=attempt)
        except (WrongPin, AccountLocked, AccountClosed) as exc:
            failure = exc
        if isinstance(failure, AccountClosed):
            step.say("err.closed")
            return "refused"
        if isinstance(failure, WrongPin):
            step.say_wrong_pin(failure.attempts_left)
            return "wrong_pin"
        if isinstance(failure, AccountLocked):
            step.values["until"] = clock_text(failure.until, step.phone)
            return "locked"
        return None

    async def _same_pin(self, digest: str, pin: str) -> bool:
        return await self.services.pins.matches(digest, pin)

    async def hold_pin(self, step: Step) -> str:
        """The first entry of a new PIN: keep only its hash until the second entry."""
        step.values[PIN_HASH] = await self.services.pins.hash(step.secret or "")
        return "ok"

    async def register(self, step: Step) -> str:
        digest = step.values.pop(PIN_HASH, None)
        if digest is None or not await self._same_pin(digest, step.secret or ""):
            step.say("err.pin_mismatch")
            return "mismatch"
        currency = Currency(step.values["currency"])
        async with self.services.engine.begin() as conn:
            try:
                user = await register_user(conn, step.phone, display_name=step.values.get("name", ""),
                                           language=step.language)
            except UserExists:
                return "exists"  # registered meanwhile (a twin hop, another session): nothing to undo
            await open_account(conn, AccountKind.CUSTOMER_WALLET, currency, user.id)
            await self.services.pins.set_pin(conn, user.id, step.secret or "")
        step.new_user_id = user.id
        step.values["roles"] = sorted(r.value for r in user.roles)
        return "ok"

    async def check_pin(self, step: Step) -> str:
        """The current PIN, before a change: verified now (it counts towards the lock-out)."""
        if (failed := await self.verify_pin(step)) is not None:
            return failed
        step.values[PIN_OK] = "1"
        return "ok"

    async def change_pin(self, step: Step) -> str:
        digest = step.values.pop(PIN_HASH, None)
        if not step.values.pop(PIN_OK, None) or digest is None:
            step.say("err.pin_expired")
            return "expired"
        if not await self._same_pin(digest, step.secret or ""):
            step.values[PIN_OK] = "1"  # the current PIN was right: only the new one is typed again
            step.say("err.pin_mismatch")
            return "mismatch"
        async with self.services.engine.begin() as conn:
            # The hash was made by PinService.hash from this very PIN (checked just above).
            await self.services.pins.replace_verified(conn, step.user_id, digest, channel="ussd")
        return "ok"

    # -- money -----------------------------------------------------------------------------------

    async def wallet_balance(self, user_id: int, currency: Currency) -> Money:
        """The wallet's balance, zero when it has none yet (one statement, no transaction; shared
        with `dialogs.intent_actions`)."""
        async with autocommit(self.services.engine).connect() as conn:
            try:
                return await balance_by_code(conn, account_code(AccountKind.CUSTOMER_WALLET, currency, user_id))
            except UnknownAccount:
                return Money.zero(currency)

    async def wallet_available(self, user_id: int, currency: Currency) -> tuple[Money, Money]:
        """What the wallet can spend now (its balance less what pending holds reserve: a cash-out
        waiting for its agent) and what is held; zero and zero when it has none yet (one statement,
        no transaction; shared with `dialogs.intent_actions`)."""
        async with autocommit(self.services.engine).connect() as conn:
            try:
                wallet = await account_by_code(conn, account_code(AccountKind.CUSTOMER_WALLET, currency, user_id))
            except UnknownAccount:
                return Money.zero(currency), Money.zero(currency)
        return wallet.available, Money(wallet.held, currency)

    async def _unpayable(self, phone: str, currency: Currency, *, wallet_ok: bool) -> str | None:
        """Why money in ``currency`` cannot reach ``phone`` (the note to show), or None when it can:
        its country's mobile money is the currency's provider (M-Pesa for KES, Wave for XOF), and so
        is its Sauti wallet's currency, if it has one. A wallet holds its number's currency
        (`payments.phones.wallet_currency`, which the payment checks again): with ``wallet_ok``
        (a send), a number of another country that has a wallet is told apart from one without."""
        if region_of(phone) in _REGIONS[currency]:
            return None
        if not wallet_ok:
            return "err.recipient"
        async with self.services.engine.connect() as conn:
            found = await find_user_by_phone(conn, phone) is not None
        return "err.recipient_currency" if found else "err.recipient"

    async def quote(self, step: Step) -> str:
        """Price the payment for the one confirmation screen, and refuse early what cannot go through."""
        kind = step.args["kind"]
        payment_kind, recipient_field = KINDS[kind]
        currency = Currency(step.values["currency"])
        amount = Money.of(step.values["typed_amount"], currency)
        recipient = step.values.get(recipient_field) if recipient_field else None
        if kind == "send" and recipient == step.phone:
            step.say("err.self")
            return "fix_recipient"
        if kind == "bill":
            # A USSD screen checked it as typed; a spoken command brings whatever was heard, so it is
            # refused here, before any PIN, rather than by the payment.
            try:
                bill_account_number(step.values.get("account"))
            except InvalidAccountNumber:
                step.say("err.account")
                return "refused"
        if recipient is not None and (
                unpayable := await self._unpayable(recipient, currency, wallet_ok=kind == "send")) is not None:
            step.say(unpayable)
            return "fix_recipient"
        try:
            priced = await self.services.payments.quote(step.user_id, amount, recipient_phone=recipient,
                                                        kind=payment_kind)
        except LimitExceeded:
            step.say("err.limit")
            return "fix_amount"
        except AmountOutOfRange:
            step.say("err.amount_max")
            return "fix_amount"
        except AccountClosed:
            step.say("err.closed")
            return "refused"
        except RecipientCurrencyMismatch:
            step.say("err.recipient_currency")
            return "fix_recipient"
        except InvalidRequest:
            # The number cannot be paid (not a mobile number of the payer's provider), or the amount
            # cannot (M-Pesa moves whole shillings).
            step.say("err.recipient" if recipient_field else "err.amount")
            return "fix_recipient" if recipient_field else "fix_amount"
        step.values.update(amount=money_text(priced.amount), fee=money_text(priced.fee),
                           total=money_text(priced.total))
        if recipient is not None:
            # Who receives it as the payer knows them: the registered name when there is one.
            shown = phone_text(recipient)
            step.values["recipient"] = f"{priced.recipient_name} {shown}" if priced.recipient_name else shown
        if payment_kind is not PaymentKind.DEPOSIT:
            # What the wallet can spend, not its balance: money held for a cash-out is not (the
            # payment would fail at the PIN).
            available, _ = await self.wallet_available(step.user_id, currency)
            if available < priced.total:
                step.say("err.no_funds", balance=money_text(available), total=money_text(priced.total))
                return "fix_amount"
        # IMPORTANT: the payment this confirmation makes is keyed here, once. A PIN hop whose payment
        # committed but whose answer or session save was lost leaves the session on the confirmation;
        # resumed, its PIN must replay that payment, not make a second one under a new hop's key.
        step.values[PAY_KEY] = step.idempotency_key
        return "ok"

    async def pay(self, step: Step) -> str:
        if (failed := await self.verify_pin(step)) is not None:
            return failed
        kind = step.args["kind"]
        currency = Currency(step.values["currency"])
        command = _command(kind, step, Money.of(step.values["typed_amount"], currency))
        try:
            payment = await self.services.payments.handle(command)
        except PaymentsError as exc:
            if isinstance(exc, InvalidAccountNumber):
                step.say("err.account")
                return "refused"
            if isinstance(exc, RecipientCurrencyMismatch):
                step.say("err.recipient_currency")
                return "refused"
            if isinstance(exc, InvalidRequest) and not isinstance(exc, AmountOutOfRange):
                step.say("err.recipient" if KINDS[kind][1] else "err.amount")
                return "refused"
            return payment_refused(step, exc)
        step.values["ref"] = payment.reference
        step.values["balance"] = money_text(await self.wallet_balance(step.user_id, currency))
        if payment.status is PaymentStatus.FAILED:
            step.say("err.no_funds_short" if payment.error_code == InsufficientFunds.code else "err.busy")
            return "failed"
        if payment.status is PaymentStatus.SUCCEEDED or payment.provider is None:
            return "done"
        return "pending_mpesa" if payment.provider == MPESA else "pending_wave"

    # -- my account ------------------------------------------------------------------------------

    async def balance(self, step: Step) -> str:
        """What the wallet can spend (shared by USSD and spoken commands). Money held for a cash-out
        waiting for its agent is not spendable: left out, and said above the balance when there is any."""
        if (failed := await self.verify_pin(step)) is not None:
            return failed
        available, held = await self.wallet_available(step.user_id, Currency(step.values["currency"]))
        step.values["balance"] = money_text(available)
        if held.minor:
            step.say("acct.bal.held", held=money_text(held))
        return "ok"

    async def statement(self, step: Step) -> str:
        """The last five movements of the wallet, newest first."""
        if (failed := await self.verify_pin(step)) is not None:
            return failed
        currency = Currency(step.values["currency"])
        async with self.services.engine.connect() as conn:
            try:
                account = await account_by_code(conn, account_code(AccountKind.CUSTOMER_WALLET, currency,
                                                                   step.user_id))
            except UnknownAccount:
                return "empty"
            lines = await statement(conn, account.id, limit=5)
        if not lines:
            return "empty"
        step.values["lines"] = [statement_line(line, step.phone) for line in lines]
        return "ok"

    async def fee_plan(self, step: Step) -> str:
        """The caller's fee plan: its percentage, and what is left of its monthly allowance."""
        plan, used = await self.services.payments.fee_plan(step.user_id, Currency(step.values["currency"]))
        step.values.update(plan=plan.name.title(), percent=f"{plan.basis_points / 100:g}%", used=str(used),
                           allowance=str(plan.monthly_allowance))
        return "unlimited" if plan.monthly_allowance is None else "ok"

    async def set_language(self, step: Step) -> str:
        language = step.values["language"]
        async with self.services.engine.begin() as conn:
            await set_language(conn, step.user_id, language)
        step.new_language = language
        return "ok"
