"""The actions of the agent journeys (`dialogs.agent_journeys`): the agent's menu and the customer's
cash at an agent. Each takes a `dialogs.steps.Step` and returns an outcome the journey maps to a
screen; every rule (who may serve what, float, fees, expiry, idempotency) is `payments.agents`'s.

Idempotency: what a confirmation makes (a direct cash-in, a cash-out, the agent's confirmation or
rejection of a request) is keyed once, by the hop that shows that confirmation (`CONFIRM_KEY`), and a
customer's cash-in request by the hop that asks its amount (`CASH_IN_KEY`): a hop retried, or typed
again in a session resumed after its answer or its save was lost, replays the command instead of
making a second one.

PINs: the PIN typed in this hop (``step.secret``) goes to `AgentService` with the command and is never
stored. A page of requests is kept in the session (``_picks``: their ids; ``_next``: where the next
page starts; ``_pages``: where each page shown so far started, for ``0`` to go back one) between the
hop that lists it and the one that picks from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dialogs.catalog import Catalogs
from dialogs.display import clock_text, money_text, phone_text
from dialogs.paged_lists import first_page, turn
from dialogs.render import list_page
from dialogs.steps import ActionSpec, Invalid, Step, Validator
from payments.agent_commands import (
    CashRequestClosed,
    ConfirmCashRequest,
    CustomerAccountClosed,
    DirectCashIn,
    FloatTooLow,
    NotAnAgent,
    OwnAgent,
    RejectCashRequest,
    RequestCashIn,
    RequestCashOut,
    TooManyPending,
    UnknownAgent,
    UnknownCashRequest,
    commission_of,
)
from payments.agents import AgentService
from payments.cash_requests import Agent, PendingLine
from payments.commands import Channel, PaymentKind
from payments.errors import (
    AccountClosed,
    AccountLocked,
    AmountOutOfRange,
    InsufficientFunds,
    InvalidRequest,
    PaymentsError,
    UnknownUser,
    WrongPin,
)
from payments.fees import LimitExceeded
from payments.money import Currency, Money

#: Requests on one screen: three lines of name and amount fit under the text in every language.
PAGE = 3
#: A customer's name in a list line is cut to this many characters (fewer with the largest amounts).
_NAME_IN_LIST = 14
#: The texts a page of requests is shown in.
_PICK_TEXTS = ("ag.in.pick", "ag.out.pick")

_KINDS = {"cash_in": PaymentKind.CASH_IN, "cash_out": PaymentKind.CASH_OUT}

#: The session value holding the idempotency key of what the confirmation on screen makes, set by the
#: hop that shows it (`direct_check`, `quote_cash_out`, `choose`).
CONFIRM_KEY = "_confirm_key"
#: The session value holding the key of the customer's cash-in request, set by the hop that asks
#: its amount (`cash_in_key`).
CASH_IN_KEY = "_cash_in_key"


def agent_number(typed: str, values: Mapping[str, Any]) -> str:
    """An agent (or store) number: 4 to 10 digits."""
    digits = typed.replace(" ", "")
    if not (digits.isascii() and digits.isdigit() and 4 <= len(digits) <= 10):
        raise Invalid("err.agent_number")
    return digits


def pick(typed: str, values: Mapping[str, Any]) -> str:
    """A line number of the list on screen, ``98`` for the next page or ``0`` for the one before."""
    if not (typed.isascii() and typed.isdigit() and len(typed) <= 2):
        raise Invalid("note.invalid_choice")
    return typed


def agent_validators() -> dict[str, Validator]:
    return {"agent_number": agent_number, "pick": pick}


def _agent_shown(agent: Agent, number: str) -> str:
    return f"{agent.name} {number}" if agent.name != number else number


class AgentActions:
    """The actions by name (`table`). ``agents`` may be None to draw or check the journeys."""

    def __init__(self, agents: AgentService | None, catalogs: Catalogs) -> None:
        self._agents = agents
        self.catalogs = catalogs

    @property
    def agents(self) -> AgentService:
        assert self._agents is not None, "actions need the agent service to run"
        return self._agents

    def table(self) -> dict[str, ActionSpec]:
        pin_outcomes = frozenset({"wrong_pin", "locked", "refused"})
        return {
            "agent_requests": ActionSpec(self.requests, frozenset({"ok", "empty", "refused"})),
            "agent_choose": ActionSpec(self.choose, frozenset({"ok", "more", "again", "empty", "back"})),
            "agent_confirm": ActionSpec(self.confirm, pin_outcomes | {"done", "float_low", "gone"}),
            "agent_reject": ActionSpec(self.reject, frozenset({"ok", "gone", "refused"})),
            "agent_direct_check": ActionSpec(self.direct_check,
                                             frozenset({"ok", "fix_recipient", "fix_amount", "refused"})),
            "agent_direct": ActionSpec(self.direct, pin_outcomes | {"done", "float_low", "fix_recipient"}),
            "agent_float": ActionSpec(self.float, pin_outcomes | {"ok"}),
            "agent_commission": ActionSpec(self.commission, pin_outcomes | {"ok"}),
            "cash_in_key": ActionSpec(self.cash_in_key, frozenset({"ok"})),
            "raise_cash_in": ActionSpec(self.raise_cash_in, frozenset({"ok", "fix_agent", "fix_amount", "refused"})),
            "quote_cash_out": ActionSpec(self.quote_cash_out,
                                         frozenset({"ok", "fix_agent", "fix_amount", "refused"})),
            "raise_cash_out": ActionSpec(self.raise_cash_out,
                                         pin_outcomes | {"ok", "fix_agent", "fix_amount", "failed"}),
        }

    # -- shared ------------------------------------------------------------------------------------

    @staticmethod
    def _amount(step: Step) -> Money:
        return Money.of(step.values["typed_amount"], Currency(step.values["currency"]))

    @staticmethod
    def _pin_failure(step: Step, exc: WrongPin | AccountLocked) -> str:
        if isinstance(exc, WrongPin):
            step.say_wrong_pin(exc.attempts_left)
            return "wrong_pin"
        step.values["until"] = clock_text(exc.until, step.phone)
        return "locked"

    @staticmethod
    def _once(step: Step, name: str) -> str:
        """The key kept under ``name`` by the hop that showed the confirmation (this hop's in a
        session saved before there was one)."""
        return step.values.get(name) or step.idempotency_key

    def _minutes(self) -> str:
        return str(max(1, round(self.agents.settings.request_expiry_s / 60)))

    # -- the agent's lists ---------------------------------------------------------------------------

    def _show_page(self, step: Step, lines: list[PendingLine], next_before: int | None) -> None:
        rows, picks = [], []
        for line in lines:
            rows.append((line.customer_name or phone_text(line.customer_phone), money_text(line.request.amount)))
            picks.append([line.request.public_id, line.customer_name or "", phone_text(line.customer_phone),
                          money_text(line.request.amount), line.request.code, money_text(line.request.commission),
                          money_text(line.request.fee)])
        # Numbered lines, "98 More" when a next page follows, and the navigation the engine's own
        # lists end with ("0 Back  00 Home": the page before, or the menu from the first).
        shown = list_page(self.catalogs, step.language, _PICK_TEXTS, "requests", rows, more=next_before is not None,
                          width=_NAME_IN_LIST)
        step.values.update(requests=shown, _picks=picks, _next=next_before)

    async def _load_page(self, step: Step, before: int | None) -> bool:
        """The page of the agent's requests of one kind from before request ``before``; False when
        there are none (left)."""
        page = await self.agents.pending_for_agent(step.user_id, _KINDS[step.args["kind"]], limit=PAGE, before=before)
        if not page.lines:
            return False
        self._show_page(step, page.lines, page.next_before)
        return True

    async def requests(self, step: Step) -> str:
        """The first page of the agent's requests of one kind."""
        try:
            shown = await first_page(step.values, "_pages", lambda before: self._load_page(step, before))
        except NotAnAgent:
            step.say("err.not_agent")
            return "refused"
        return "ok" if shown else "empty"

    async def choose(self, step: Step) -> str:
        """A line picked (its request's details on the confirmation), ``98``: the next page, or
        ``0``: the page before (``back`` from the first: the agent's menu)."""
        typed = step.values.pop("pick", "")
        turned = await turn(step.values, "_pages", "_next", typed, lambda before: self._load_page(step, before))
        if turned is not None:
            return turned
        picks = step.values.get("_picks") or []
        if not (typed.isdigit() and 1 <= int(typed) <= len(picks)):
            step.say("note.invalid_choice")
            return "again"
        public_id, name, phone, amount, code, commission, fee = picks[int(typed) - 1]
        step.values.update(_request=public_id, name=name or phone, customer=phone, amount=amount, code=code,
                           commission=commission, fee=fee)
        # IMPORTANT: what this confirmation does (confirm, or reject) is keyed here, once: confirmed
        # by a hop whose save was lost, and confirmed again from a resumed session, it is replayed.
        step.values[CONFIRM_KEY] = step.idempotency_key
        return "ok"

    async def confirm(self, step: Step) -> str:
        command = ConfirmCashRequest(self._once(step, CONFIRM_KEY), step.user_id, step.values.get("_request", ""),
                                     Channel.USSD)
        try:
            done = await self.agents.confirm(command, pin=step.secret or "")
        except (WrongPin, AccountLocked) as exc:
            return self._pin_failure(step, exc)
        except FloatTooLow as exc:
            step.values["float"] = money_text(exc.available)
            return "float_low"
        except CustomerAccountClosed:
            # The request is closed with it: "this account is closed", then "no longer waiting".
            step.say("err.closed")
            return "gone"
        except (CashRequestClosed, UnknownCashRequest):
            return "gone"
        except NotAnAgent:
            step.say("err.not_agent")
            return "refused"
        except AccountClosed:
            step.say("err.closed")  # the agent's own account (the customer's is CustomerAccountClosed)
            return "refused"
        except PaymentsError:
            step.say("err.busy")
            return "refused"
        step.values["ref"] = done.payment.reference if done.payment else done.request.reference
        step.values["float"] = money_text(await self.agents.float_balance(step.user_id))
        return "done"

    async def reject(self, step: Step) -> str:
        try:
            # Its own key (the confirmation's, marked): a request confirmed by a hop whose answer was
            # lost is "no longer waiting", not a conflict of keys.
            await self.agents.reject(RejectCashRequest(f"{self._once(step, CONFIRM_KEY)}:reject", step.user_id,
                                                       step.values.get("_request", "")))
        except (CashRequestClosed, UnknownCashRequest):
            return "gone"
        except PaymentsError:
            step.say("err.busy")
            return "refused"
        return "ok"

    # -- direct cash-in ----------------------------------------------------------------------------

    def _direct_refusal(self, step: Step, exc: Exception) -> str:
        if isinstance(exc, OwnAgent):
            step.say("err.agent_self")
            return "fix_recipient"
        if isinstance(exc, UnknownUser):
            step.say("err.no_wallet")
            return "fix_recipient"
        if isinstance(exc, InvalidRequest | AccountClosed) and not isinstance(exc, AmountOutOfRange):
            step.say("err.recipient")
            return "fix_recipient"
        if isinstance(exc, FloatTooLow):
            step.values["float"] = money_text(exc.available)
            step.say("err.float_low")
            return "fix_amount"
        if isinstance(exc, AmountOutOfRange | LimitExceeded):
            step.say("err.amount_max")
            return "fix_amount"
        if isinstance(exc, NotAnAgent):
            step.say("err.not_agent")
        else:
            step.say("err.busy")
        return "refused"

    async def direct_check(self, step: Step) -> str:
        """Who gets the cash-in (their registered name on the confirmation), checked before the PIN."""
        amount = self._amount(step)
        try:
            customer = await self.agents.check_direct_cash_in(step.user_id, step.values["customer_phone"], amount)
        except PaymentsError as exc:
            return self._direct_refusal(step, exc)
        step.values.update(name=customer.display_name or phone_text(customer.phone),
                           customer=phone_text(customer.phone), amount=money_text(amount),
                           commission=money_text(commission_of(amount, self.agents.settings.cash_in_commission_bp)))
        # IMPORTANT: the cash-in this confirmation makes is keyed here, once (as a customer's payment
        # is by `CustomerActions.quote`): a PIN hop whose cash-in committed but whose answer or save
        # was lost leaves the session on the confirmation; resumed, its PIN must replay that cash-in.
        step.values[CONFIRM_KEY] = step.idempotency_key
        return "ok"

    async def direct(self, step: Step) -> str:
        command = DirectCashIn(self._once(step, CONFIRM_KEY), step.user_id, step.values["customer_phone"],
                               self._amount(step), Channel.USSD)
        try:
            done = await self.agents.direct_cash_in(command, pin=step.secret or "")
        except (WrongPin, AccountLocked) as exc:
            return self._pin_failure(step, exc)
        except FloatTooLow as exc:
            step.values["float"] = money_text(exc.available)
            return "float_low"
        except PaymentsError as exc:
            outcome = self._direct_refusal(step, exc)
            return outcome if outcome in ("fix_recipient", "refused") else "refused"
        assert done.payment is not None
        step.values["ref"] = done.payment.reference
        step.values["float"] = money_text(await self.agents.float_balance(step.user_id))
        return "done"

    # -- float and commission ------------------------------------------------------------------------

    async def float(self, step: Step) -> str:
        try:
            await self.agents.verify_pin(step.user_id, step.secret or "")
            step.values["float"] = money_text(await self.agents.float_balance(step.user_id))
            step.values["commission"] = money_text(await self.agents.commission_balance(step.user_id))
        except (WrongPin, AccountLocked) as exc:
            return self._pin_failure(step, exc)
        except AccountClosed:
            step.say("err.closed")
            return "refused"
        except PaymentsError:
            step.say("err.not_agent")
            return "refused"
        return "ok"

    async def commission(self, step: Step) -> str:
        try:
            await self.agents.verify_pin(step.user_id, step.secret or "")
            earned = await self.agents.commission_earned(step.user_id)
        except (WrongPin, AccountLocked) as exc:
            return self._pin_failure(step, exc)
        except AccountClosed:
            step.say("err.closed")
            return "refused"
        except PaymentsError:
            step.say("err.not_agent")
            return "refused"
        step.values.update(today=money_text(earned.today), month=money_text(earned.this_month),
                           all_time=money_text(earned.all_time))
        return "ok"

    # -- the customer's side -------------------------------------------------------------------------

    @staticmethod
    def _customer_refusal(step: Step, exc: PaymentsError) -> str:
        if isinstance(exc, OwnAgent):
            step.say("err.agent_self")
            return "fix_agent"
        if isinstance(exc, UnknownAgent) or (isinstance(exc, InvalidRequest)
                                             and not isinstance(exc, AmountOutOfRange)):
            step.say("err.agent_unknown")
            return "fix_agent"
        if isinstance(exc, AmountOutOfRange):
            step.say("err.amount_max")
            return "fix_amount"
        if isinstance(exc, LimitExceeded):
            step.say("err.limit")
            return "fix_amount"
        if isinstance(exc, TooManyPending):
            step.say("err.too_many")
        elif isinstance(exc, AccountClosed):
            step.say("err.closed")
        else:
            step.say("err.busy")
        return "refused"

    async def cash_in_key(self, step: Step) -> str:
        """Key the cash-in request before its amount is asked (nothing else happens here)."""
        # IMPORTANT: the request is raised by the hop that takes the amount: raised, but its answer
        # or save lost, the session is left on the amount; resumed and the same amount typed again,
        # it must replay that request, not raise a second one. Another amount is another request.
        step.values[CASH_IN_KEY] = step.idempotency_key
        return "ok"

    async def raise_cash_in(self, step: Step) -> str:
        """The customer's cash-in request, sent to the agent (nothing moves until the agent confirms)."""
        number, amount = step.values["agent_number"], self._amount(step)
        key = f"{self._once(step, CASH_IN_KEY)}:{amount.minor}"
        try:
            raised = await self.agents.request_cash_in(RequestCashIn(key, step.user_id, number, amount, Channel.USSD))
            agent = await self.agents.find_agent(number)
        except PaymentsError as exc:
            return self._customer_refusal(step, exc)
        step.values.update(recipient=_agent_shown(agent, number) if agent else number, amount=money_text(amount),
                           code=raised.request.code, minutes=self._minutes())
        return "ok"

    async def quote_cash_out(self, step: Step) -> str:
        """The one confirmation's figures: amount, fee, total, the agent's name; refused early when
        the wallet cannot cover it."""
        number, amount = step.values["agent_number"], self._amount(step)
        try:
            agent, priced = await self.agents.quote_cash_out(step.user_id, number, amount)
            available = await self.agents.wallet_available(step.user_id, amount.currency)
        except PaymentsError as exc:
            return self._customer_refusal(step, exc)
        step.values.update(recipient=_agent_shown(agent, number), amount=money_text(priced.amount),
                           fee=money_text(priced.fee), total=money_text(priced.total))
        if available < priced.total:
            step.say("err.no_funds", balance=money_text(available), total=money_text(priced.total))
            return "fix_amount"
        # IMPORTANT: the cash-out this confirmation raises (and the money it holds) is keyed here, once:
        # confirmed by a hop whose save was lost, and confirmed again from a resumed session, it is
        # replayed, not raised (and held) a second time.
        step.values[CONFIRM_KEY] = step.idempotency_key
        return "ok"

    async def raise_cash_out(self, step: Step) -> str:
        number, amount = step.values["agent_number"], self._amount(step)
        command = RequestCashOut(self._once(step, CONFIRM_KEY), step.user_id, number, amount, Channel.USSD)
        try:
            raised = await self.agents.request_cash_out(command, pin=step.secret or "")
        except (WrongPin, AccountLocked) as exc:
            return self._pin_failure(step, exc)
        except InsufficientFunds:
            step.say("err.no_funds_short")
            return "failed"
        except PaymentsError as exc:
            return self._customer_refusal(step, exc)
        step.values.update(code=raised.request.code, minutes=self._minutes(),
                           ref=raised.payment.reference if raised.payment else raised.request.reference)
        return "ok"
