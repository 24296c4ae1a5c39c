"""Cash at an agent, as journeys (data only; the actions are `dialogs.agent_actions`).

- ``agent``: the agent's menu, where callers with the agent role start. Cash-in and cash-out
  requests waiting for the agent (a page of three at a time: ``98`` for more, ``0`` for the page
  before, or the menu from the first, ``00`` home), each picked by its number, shown with the
  customer's registered name, amount and code, confirmed with the PIN (``0`` offers to reject it); a
  direct cash-in to a number; the float; the commission earned; and the agent's own wallet (the
  customer menu).
- ``agent_cash``: the customer's side, under Deposit and Withdraw in the customer menu: raise a
  cash-in request (agent number, amount: the agent takes the cash and confirms), or a cash-out
  (agent number, amount, the one confirmation with fee and total, PIN: the money is reserved until
  the agent hands the cash over).

Screen ids double as catalog keys (`dialogs/catalogs/*.yml`).
"""

from __future__ import annotations

from dialogs.intent_journeys import INTENTS_START
from dialogs.screens import BACK, HOME, Action, Confirm, End, Input, Journey, Menu, Notice, Option

#: How the agent's confirmations end when they do not go through (shared with the customer menu).
_REFUSALS = (("wrong_pin", None), ("locked", "pay.locked"), ("refused", "pay.refused"))


def _pin(screen_id: str, next_id: str) -> Input:
    return Input(screen_id, "acct.pin", field="pin", validator="pin", next=next_id, secret=True)


def _requests(prefix: str, kind: str) -> tuple:
    """The screens serving one kind of request: load a page, pick one, confirm it with the PIN (or
    reject it), done."""
    confirm = f"{prefix}.confirm"
    return (
        Action(f"{prefix}.load", "", run="agent_requests", args=(("kind", kind),), outcomes=(
            ("ok", f"{prefix}.pick"), ("empty", f"{prefix}.none"), ("refused", "pay.refused"))),
        Notice(f"{prefix}.none", f"{prefix}.none", next=HOME),
        Input(f"{prefix}.pick", f"{prefix}.pick", field="pick", validator="pick", next=f"{prefix}.choose",
              paged=True),
        Action(f"{prefix}.choose", "", run="agent_choose", args=(("kind", kind),), outcomes=(
            ("ok", confirm), ("more", f"{prefix}.pick"), ("again", f"{prefix}.pick"),
            ("empty", f"{prefix}.none"), ("back", BACK))),
        Confirm(confirm, confirm, next=f"{prefix}.pay", cancel=f"{prefix}.keep"),
        Action(f"{prefix}.pay", "", run="agent_confirm", outcomes=(
            ("done", f"{prefix}.done"), ("float_low", "ag.float_low"), ("gone", "ag.gone"),
            *((o, t or confirm) for o, t in _REFUSALS))),
        End(f"{prefix}.done", f"{prefix}.done"),
        Menu(f"{prefix}.keep", "ag.keep", (Option("ag.reject", f"{prefix}.reject"), Option("ag.wait", HOME))),
        Action(f"{prefix}.reject", "", run="agent_reject", outcomes=(
            ("ok", "ag.rejected"), ("gone", "ag.gone"), ("refused", "pay.refused"))),
    )


AGENT = Journey("agent", "ag.home", (
    Menu("ag.home", "ag.home", (
        Option("ag.menu.cash_in", "ag.in.load"),
        Option("ag.menu.direct", "ag.direct.phone"),
        Option("ag.menu.cash_out", "ag.out.load"),
        Option("ag.menu.float", "ag.float.pin"),
        Option("ag.menu.commission", "ag.comm.pin"),
        Option("ag.menu.wallet", "home"),
        # Last, and only while some are open (as in the customer menu): no other option moves.
        Option("menu.intents", INTENTS_START, when="intents"),
    )),
    *_requests("ag.in", "cash_in"),
    *_requests("ag.out", "cash_out"),
    End("ag.rejected", "ag.rejected"),
    End("ag.gone", "ag.gone"),
    End("ag.float_low", "ag.float_low"),
    # Direct cash-in: the customer stands at the counter with the cash.
    Input("ag.direct.phone", "ag.direct.phone", field="customer_phone", validator="phone", next="ag.direct.amount"),
    Input("ag.direct.amount", "ag.direct.amount", field="typed_amount", validator="amount", next="ag.direct.check"),
    Action("ag.direct.check", "", run="agent_direct_check", outcomes=(
        ("ok", "ag.direct.confirm"), ("fix_recipient", "ag.direct.phone"), ("fix_amount", "ag.direct.amount"),
        ("refused", "pay.refused"))),
    Confirm("ag.direct.confirm", "ag.direct.confirm", next="ag.direct.pay", cancel="pay.cancelled"),
    Action("ag.direct.pay", "", run="agent_direct", outcomes=(
        ("done", "ag.direct.done"), ("float_low", "ag.float_low"), ("fix_recipient", "ag.direct.phone"),
        *((o, t or "ag.direct.confirm") for o, t in _REFUSALS))),
    End("ag.direct.done", "ag.direct.done"),
    # Float and commission, behind the PIN.
    _pin("ag.float.pin", "ag.float.run"),
    Action("ag.float.run", "", run="agent_float", outcomes=(
        ("ok", "ag.float.show"), ("wrong_pin", "ag.float.pin"), ("locked", "pay.locked"), ("refused", "pay.refused"))),
    End("ag.float.show", "ag.float.show"),
    _pin("ag.comm.pin", "ag.comm.run"),
    Action("ag.comm.run", "", run="agent_commission", outcomes=(
        ("ok", "ag.comm.show"), ("wrong_pin", "ag.comm.pin"), ("locked", "pay.locked"), ("refused", "pay.refused"))),
    End("ag.comm.show", "ag.comm.show"),
))

AGENT_CASH = Journey("agent_cash", "ca.in.agent", (
    # Cash in: the request goes to the agent, who takes the cash and confirms it. Keyed before its
    # amount is asked: the hop that takes the amount raises it (`AgentActions.cash_in_key`).
    Input("ca.in.agent", "ca.agent", field="agent_number", validator="agent_number", next="ca.in.key"),
    Action("ca.in.key", "", run="cash_in_key", outcomes=(("ok", "ca.in.amount"),)),
    Input("ca.in.amount", "ca.in.amount", field="typed_amount", validator="amount", next="ca.in.raise"),
    Action("ca.in.raise", "", run="raise_cash_in", outcomes=(
        ("ok", "ca.in.done"), ("fix_agent", "ca.in.agent"), ("fix_amount", "ca.in.amount"),
        ("refused", "pay.refused"))),
    End("ca.in.done", "ca.in.done"),
    # Cash out: priced and confirmed like any payment; the money is reserved until the agent pays it.
    Input("ca.out.agent", "ca.agent", field="agent_number", validator="agent_number", next="ca.out.amount"),
    Input("ca.out.amount", "ca.out.amount", field="typed_amount", validator="amount", next="ca.out.quote"),
    Action("ca.out.quote", "", run="quote_cash_out", outcomes=(
        ("ok", "ca.out.confirm"), ("fix_agent", "ca.out.agent"), ("fix_amount", "ca.out.amount"),
        ("refused", "pay.refused"))),
    Confirm("ca.out.confirm", "ca.out.confirm", next="ca.out.raise", cancel="pay.cancelled"),
    Action("ca.out.raise", "", run="raise_cash_out", outcomes=(
        ("ok", "ca.out.done"), ("fix_agent", "ca.out.agent"), ("fix_amount", "ca.out.amount"),
        ("failed", "pay.failed"), *((o, t or "ca.out.confirm") for o, t in _REFUSALS))),
    End("ca.out.done", "ca.out.done"),
))

#: The options the customer menu's Deposit and Withdraw lead to (`dialogs.customer_journeys`).
CASH_IN_START, CASH_OUT_START = "ca.in.agent", "ca.out.agent"
