"""The actions of the payment intents journey (`dialogs.intent_journeys`): the customer lists what
merchants ask them to pay, pays one with the PIN, or declines it. Each takes a `dialogs.steps.Step`
and returns an outcome the journey maps to a screen; every rule (who may pay what, expiry, the one
payment, idempotency) is `payments.intents`'s, and paying carries the hop's idempotency key, so a
retried hop replays the payment instead of repeating it.

PINs: checked as every customer payment's are (`CustomerActions.verify_pin`), with the PIN typed in
this hop, never stored. A page of intents is kept in the session (``_intent_picks``: what each line
needs to be priced and paid; ``_intent_next``: where the next page starts; ``_intent_pages``: where
each page shown so far started, for ``0`` to go back one) between the hop that lists it and the one
that picks from it.
"""

from __future__ import annotations

from typing import Any

from dialogs.catalog import Catalogs
from dialogs.customer_actions import CustomerActions, channel_fields, payment_refused
from dialogs.display import money_text, phone_text
from dialogs.paged_lists import first_page, turn
from dialogs.render import list_page
from dialogs.steps import ActionSpec, Step
from payments.commands import PaymentKind
from payments.errors import AccountClosed, AmountOutOfRange, InsufficientFunds, PaymentsError
from payments.fees import LimitExceeded
from payments.intent_store import IntentParties, IntentStatus
from payments.intents import IntentClosed, IntentView, PayIntent, PaymentIntents, UnknownIntent, payment_key
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.states import PaymentStatus

#: Intents on one screen: three lines of name and amount fit under the text in every language.
PAGE = 3
#: A merchant's name in a list line is cut to this many characters (fewer with the largest amounts).
_NAME_IN_LIST = 14

PAY_OUTCOMES = frozenset({"done", "failed", "gone", "wrong_pin", "locked", "refused"})


def merchant_name(parties: IntentParties) -> str:
    """The merchant as the customer knows it: its registered name, else its number."""
    return parties.payee_name or phone_text(parties.payee_phone)


def pick_of(view: IntentView) -> list[Any]:
    """What a listed intent needs, kept in the session until one is picked (`take`): its id, the
    merchant (its name, and its number when it has a name), amount, currency, description and the
    merchant's user."""
    intent, name = view.intent, merchant_name(view.parties)
    number = phone_text(view.parties.payee_phone) if view.parties.payee_name else ""
    return [intent.public_id, [name, number], intent.amount.minor, intent.amount.currency.value,
            intent.description, intent.payee_user_id]


def take(step: Step, pick: list[Any]) -> None:
    """The picked intent into the step's values, for its quote, confirmation and payment."""
    public_id, merchant, minor, currency, description, payee_user_id = pick
    # IMPORTANT: the confirmation shows the number always (a name is whatever its owner registered,
    # "Safaricom Customer Care" too), as the SMS does: a long name is shortened to fit the screen,
    # the number never. A page listed before the number was kept apart has the two in one string.
    name, number = merchant if isinstance(merchant, list) else (merchant, "")
    step.values.update(_intent=public_id, _intent_amount=[minor, currency], _payee=payee_user_id, name=name,
                       number=f" {number}" if number else "",
                       amount=money_text(Money(minor, Currency(currency))),
                       # The description in brackets, as the SMS shows it; nothing when there is none.
                       about=f" ({description})" if description else "")


class IntentActions:
    """The actions by name (`table`). They pay and check PINs through the customer's actions
    (``customer``), whose services may be None to draw or check the journeys."""

    def __init__(self, customer: CustomerActions, catalogs: Catalogs) -> None:
        self.customer = customer
        self.catalogs = catalogs

    @property
    def intents(self) -> PaymentIntents:
        return self.customer.services.payments.intents

    def table(self) -> dict[str, ActionSpec]:
        return {
            "intent_requests": ActionSpec(self.requests, frozenset({"ok", "empty"})),
            "intent_choose": ActionSpec(self.choose, frozenset({"ok", "more", "again", "empty", "back"})),
            "intent_quote": ActionSpec(self.quote, frozenset({"ok", "no_funds", "refused"})),
            "intent_pay": ActionSpec(self.pay, PAY_OUTCOMES),
            "intent_decline": ActionSpec(self.decline, frozenset({"ok", "paid", "gone", "refused"})),
        }

    # -- the list ------------------------------------------------------------------------------------

    def _show_page(self, step: Step, views: list[IntentView], next_before: int | None) -> None:
        # Numbered lines (names cut as the screen counts them: GSM-7, an extension character takes
        # two), "98 More" when a next page follows, and the navigation the engine's own lists end
        # with ("0 Back  00 Home": the page before, or the menu from the first).
        rows = [(merchant_name(view.parties), money_text(view.intent.amount)) for view in views]
        shown = list_page(self.catalogs, step.language, ("pi.pick",), "intents", rows, more=next_before is not None,
                          width=_NAME_IN_LIST)
        step.values.update(intents=shown, _intent_picks=[pick_of(view) for view in views], _intent_next=next_before)

    async def _load_page(self, step: Step, before_id: int | None) -> bool:
        """A page of the caller's open intents, newest first, from before row ``before_id``; False
        when there are none (left)."""
        # One more than a page says whether there is a next one.
        views = await self.intents.pending_for_payer(step.user_id, limit=PAGE + 1, before_id=before_id)
        if not views:
            return False
        page = views[:PAGE]
        self._show_page(step, page, page[-1].intent.id if len(views) > PAGE else None)
        return True

    async def requests(self, step: Step) -> str:
        """The first page of what the caller is asked to pay."""
        shown = await first_page(step.values, "_intent_pages", lambda before: self._load_page(step, before))
        return "ok" if shown else "empty"

    async def choose(self, step: Step) -> str:
        """A line picked (the intent's merchant, amount and description for its confirmation),
        ``98``: the next page, or ``0``: the page before (``back`` from the first: the menu)."""
        typed = step.values.pop("pick", "")
        turned = await turn(step.values, "_intent_pages", "_intent_next", typed,
                            lambda before: self._load_page(step, before))
        if turned is not None:
            return turned
        picks = step.values.get("_intent_picks") or []
        if not (typed.isdigit() and 1 <= int(typed) <= len(picks)):
            step.say("note.invalid_choice")
            return "again"
        take(step, picks[int(typed) - 1])
        return "ok"

    # -- paying ------------------------------------------------------------------------------------

    @staticmethod
    def _amount(step: Step) -> Money:
        minor, currency = step.values["_intent_amount"]
        return Money(minor, Currency(currency))

    async def quote(self, step: Step) -> str:
        """Fee and total for the one confirmation, as any payment to a wallet; a wallet that cannot
        cover them is told so here, before any PIN."""
        amount = self._amount(step)
        try:
            priced = await self.customer.services.payments.quote(
                step.user_id, amount, recipient_user_id=step.values["_payee"], kind=PaymentKind.P2P)
        except LimitExceeded:
            step.say("err.limit")
            return "refused"
        except AmountOutOfRange:
            step.say("err.amount_max")
            return "refused"
        except AccountClosed:
            step.say("err.closed")
            return "refused"
        except PaymentsError:
            step.say("err.busy")
            return "refused"
        step.values.update(fee=money_text(priced.fee), total=money_text(priced.total))
        # What the wallet can spend: money held for a cash-out is not.
        available, _ = await self.customer.wallet_available(step.user_id, amount.currency)
        if available < priced.total:
            step.say("err.no_funds", balance=money_text(available), total=money_text(priced.total))
            return "no_funds"
        return "ok"

    async def pay(self, step: Step) -> str:
        if (failed := await self.customer.verify_pin(step)) is not None:
            return failed
        command = PayIntent(step.idempotency_key, step.user_id, step.values.get("_intent", ""), **channel_fields(step))
        try:
            view = await self.intents.pay(command)
        except (UnknownIntent, IntentClosed):
            return "gone"
        except PaymentsError as exc:
            return payment_refused(step, exc)
        payment = view.payment
        if payment is None or (payment.idempotency_key != payment_key(command.idempotency_key, view.intent)
                               and payment.payer_user_id != step.user_id):
            return "gone"
        # This hop's payment, or one the caller made already (an answer lost on the way, the
        # session resumed at the confirmation; or from the app): "paid", with its reference.
        await self._paid(step, payment)
        if payment.status is PaymentStatus.FAILED or view.intent.status is not IntentStatus.SUCCEEDED:
            # The wallet could not cover it after all (spent since the confirmation): the intent
            # stays open, to pay once topped up.
            step.say("err.no_funds_short" if payment.error_code == InsufficientFunds.code else "err.busy")
            return "failed"
        return "done"

    async def _paid(self, step: Step, payment: Payment) -> None:
        step.values["ref"] = payment.reference
        step.values["balance"] = money_text(await self.customer.wallet_balance(step.user_id, payment.amount.currency))

    async def decline(self, step: Step) -> str:
        try:
            await self.intents.decline(step.values.get("_intent", ""), payer_user_id=step.user_id)
        except UnknownIntent:
            return "gone"
        except IntentClosed as closed:
            # Paid meanwhile (from the app, or a lost answer's hop): say so, with its reference,
            # never "no money was taken".
            payment = await self.intents.payment_of(closed.intent)
            if payment is None or payment.status is not PaymentStatus.SUCCEEDED:
                return "gone"
            await self._paid(step, payment)
            return "paid"
        except PaymentsError:
            step.say("err.busy")
            return "refused"
        return "ok"
