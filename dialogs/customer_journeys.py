"""The customer's journeys, as data: a new number registering, and the main menu with everything
under it (cash at an agent is `dialogs.agent_journeys`'s, "Requests to pay", shown while merchants
wait to be paid, `dialogs.intent_journeys`'s). Screen ids double as catalog keys
(`dialogs/catalogs/*.yml`). Draw them with ``sauti ussd graph``.

Every money movement follows one shape: its inputs, then ``quote`` (fee, total, the recipient's
registered name; limits and balance checked, sending the caller back to the input at fault with a
note), then ONE `Confirm` (the summary, PIN to confirm, ``0`` to cancel), then ``pay`` (PIN checked,
`Payments.handle`), then a result screen with the reference and the new balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dialogs.agent_journeys import CASH_IN_START, CASH_OUT_START
from dialogs.intent_journeys import INTENTS_START
from dialogs.screens import HOME, Action, Confirm, End, Input, Journey, Menu, Notice, Option, Screen
from dialogs.steps import Condition

LANGUAGE_OPTIONS = ("en", "sw", "fr", "wo")


def _is_mpesa(values: Mapping[str, Any]) -> bool:
    return values.get("currency") == "KES"


def _has_saved(values: Mapping[str, Any]) -> bool:
    return bool(values.get("_saved"))


def _has_intents(values: Mapping[str, Any]) -> bool:
    return int(values.get("_open_intents") or 0) > 0


#: Conditions on menu options: paybills, tills and pochi are M-Pesa's (Kenya) only; the send screen
#: lists saved contacts when the caller has some; "Requests to pay" shows while merchants' payment
#: intents await the caller (counted when they dialled: `dialogs.callers`).
CONDITIONS: dict[str, Condition] = {"mpesa": _is_mpesa, "saved": _has_saved,
                                    "no_saved": lambda values: not _has_saved(values), "intents": _has_intents}


REGISTRATION = Journey("register", "reg.language", (
    Menu("reg.language", "reg.language", tuple(
        Option(f"lang.{code}", "reg.name", sets=(("language", code),)) for code in LANGUAGE_OPTIONS)),
    Input("reg.name", "reg.name", field="name", validator="name", next="reg.pin"),
    Input("reg.pin", "reg.pin", field="pin", validator="new_pin", next="reg.hold_pin", secret=True),
    Action("reg.hold_pin", "", run="hold_pin", outcomes=(("ok", "reg.pin_again"),)),
    Input("reg.pin_again", "reg.pin_again", field="pin", validator="pin", next="reg.create", secret=True),
    Action("reg.create", "", run="register",
           outcomes=(("ok", "reg.welcome"), ("mismatch", "reg.pin"), ("exists", "reg.exists"))),
    End("reg.welcome", "reg.welcome"),
    End("reg.exists", "reg.exists"),
))


def payment(prefix: str, kind: str, inputs: tuple[Screen, ...], *, first_input: str, amount_input: str,
            results: Mapping[str, str]) -> tuple[Screen, ...]:
    """The screens of one kind of payment: ``inputs`` (ending at ``<prefix>.quote``), the quote,
    the confirmation, the payment, wired to the shared end screens and to ``results`` (the
    ``pay`` outcomes ``done``, ``pending_mpesa``, ``pending_wave`` → result screen ids)."""
    return (
        *inputs,
        Action(f"{prefix}.quote", "", run="quote", args=(("kind", kind),), outcomes=(
            ("ok", f"{prefix}.confirm"), ("fix_amount", amount_input), ("fix_recipient", first_input),
            ("refused", "pay.refused"))),
        Confirm(f"{prefix}.confirm", f"{prefix}.confirm", next=f"{prefix}.pay", cancel="pay.cancelled"),
        Action(f"{prefix}.pay", "", run="pay", args=(("kind", kind),), outcomes=(
            *results.items(), ("failed", "pay.failed"), ("wrong_pin", f"{prefix}.confirm"),
            ("locked", "pay.locked"), ("refused", "pay.refused"))),
    )


def _amount(screen_id: str, next_id: str) -> Input:
    return Input(screen_id, screen_id, field="typed_amount", validator="amount", next=next_id)


def _pin(screen_id: str, next_id: str) -> Input:
    return Input(screen_id, "acct.pin", field="pin", validator="pin", next=next_id, secret=True)


CUSTOMER = Journey("customer", "home", (
    Menu("home", "home", (
        Option("menu.send", "send.pick_to", when="saved"),
        Option("menu.send", "send.to", when="no_saved"),
        Option("menu.bill", "bill.number", when="mpesa"),
        Option("menu.goods", "goods.menu", when="mpesa"),
        Option("menu.withdraw", "wd.menu"),
        Option("menu.deposit", "dep.menu"),
        Option("menu.account", "acct.menu"),
        # Last, so that every other option keeps its number (and a dial code such as *384*1*6#
        # its meaning) whether or not a merchant is waiting to be paid.
        Option("menu.intents", INTENTS_START, when="intents"),
    )),
    # Send money: to a saved contact (the three the caller pays most, found when they dialled and
    # picked by 1-3) or any phone number; a Sauti wallet is paid inside Sauti, any other number by
    # M-Pesa (KES) or Wave (XOF).
    Input("send.pick_to", "send.pick_to", field="to_phone", validator="recipient", next="send.amount"),
    *payment("send", "send", (
        Input("send.to", "send.to", field="to_phone", validator="phone", next="send.amount"),
        _amount("send.amount", "send.quote"),
    ), first_input="send.to", amount_input="send.amount",
        results={"done": "send.done", "pending_mpesa": "send.pending", "pending_wave": "send.pending"}),
    End("send.done", "send.done"),
    End("send.pending", "send.pending"),
    # Pay bill (M-Pesa paybill and account number).
    *payment("bill", "bill", (
        Input("bill.number", "bill.number", field="paybill", validator="shortcode", next="bill.account"),
        Input("bill.account", "bill.account", field="account", validator="account", next="bill.amount"),
        _amount("bill.amount", "bill.quote"),
    ), first_input="bill.number", amount_input="bill.amount",
        results={"done": "bill.pending", "pending_mpesa": "bill.pending", "pending_wave": "bill.pending"}),
    End("bill.pending", "bill.pending"),
    # Buy goods: an M-Pesa till, or a merchant's Pochi la Biashara (their phone number).
    Menu("goods.menu", "goods.menu", (Option("goods.till", "till.number"), Option("goods.pochi", "pochi.number"))),
    *payment("till", "till", (
        Input("till.number", "till.number", field="till", validator="shortcode", next="till.amount"),
        _amount("till.amount", "till.quote"),
    ), first_input="till.number", amount_input="till.amount",
        results={"done": "till.pending", "pending_mpesa": "till.pending", "pending_wave": "till.pending"}),
    End("till.pending", "till.pending"),
    *payment("pochi", "pochi", (
        Input("pochi.number", "pochi.number", field="pochi_phone", validator="phone", next="pochi.amount"),
        _amount("pochi.amount", "pochi.quote"),
    ), first_input="pochi.number", amount_input="pochi.amount",
        results={"done": "pochi.pending", "pending_mpesa": "pochi.pending", "pending_wave": "pochi.pending"}),
    End("pochi.pending", "pochi.pending"),
    # Withdraw to my own M-Pesa / Wave, or cash at an agent (`dialogs.agent_journeys`).
    Menu("wd.menu", "menu.withdraw", (Option("wd.to_provider", "wd.amount"), Option("ca.at_agent", CASH_OUT_START))),
    *payment("wd", "withdraw", (_amount("wd.amount", "wd.quote"),), first_input="wd.amount", amount_input="wd.amount",
             results={"done": "wd.pending", "pending_mpesa": "wd.pending", "pending_wave": "wd.pending"}),
    End("wd.pending", "wd.pending"),
    # Deposit from my own M-Pesa (STK push: the M-Pesa PIN prompt) or Wave (a checkout link by SMS),
    # or cash at an agent (`dialogs.agent_journeys`).
    Menu("dep.menu", "menu.deposit", (Option("dep.from_provider", "dep.amount"), Option("ca.at_agent", CASH_IN_START))),
    *payment("dep", "deposit", (_amount("dep.amount", "dep.quote"),), first_input="dep.amount",
             amount_input="dep.amount",
             results={"done": "dep.mpesa", "pending_mpesa": "dep.mpesa", "pending_wave": "dep.wave"}),
    End("dep.mpesa", "dep.mpesa"),
    End("dep.wave", "dep.wave"),
    # How payments end when they do not go through.
    End("pay.cancelled", "pay.cancelled"),
    End("pay.refused", "pay.refused"),
    End("pay.failed", "pay.failed"),
    End("pay.locked", "pay.locked"),
    # My account.
    Menu("acct.menu", "acct.menu", (
        Option("acct.balance", "acct.bal.pin"),
        Option("acct.statement", "acct.stmt.pin"),
        Option("acct.change_pin", "acct.pin.old"),
        Option("acct.language", "acct.lang"),
        Option("acct.fees", "acct.fees.run"),
    )),
    Action("acct.fees.run", "", run="fee_plan", outcomes=(("ok", "acct.fees.show"),
                                                          ("unlimited", "acct.fees.unlimited"))),
    End("acct.fees.show", "acct.fees.show"),
    End("acct.fees.unlimited", "acct.fees.unlimited"),
    _pin("acct.bal.pin", "acct.bal.run"),
    Action("acct.bal.run", "", run="balance", outcomes=(
        ("ok", "acct.bal.show"), ("wrong_pin", "acct.bal.pin"), ("locked", "pay.locked"), ("refused", "pay.refused"))),
    End("acct.bal.show", "acct.bal.show"),
    _pin("acct.stmt.pin", "acct.stmt.run"),
    Action("acct.stmt.run", "", run="statement", outcomes=(
        ("ok", "acct.stmt.show"), ("empty", "acct.stmt.empty"), ("wrong_pin", "acct.stmt.pin"),
        ("locked", "pay.locked"), ("refused", "pay.refused"))),
    Notice("acct.stmt.show", "acct.stmt.show", items="lines", next=HOME),
    End("acct.stmt.empty", "acct.stmt.empty"),
    Input("acct.pin.old", "acct.pin.old", field="pin", validator="pin", next="acct.pin.check", secret=True),
    Action("acct.pin.check", "", run="check_pin", outcomes=(
        ("ok", "acct.pin.new"), ("wrong_pin", "acct.pin.old"), ("locked", "pay.locked"), ("refused", "pay.refused"))),
    Input("acct.pin.new", "acct.pin.new", field="pin", validator="new_pin", next="acct.pin.hold", secret=True),
    Action("acct.pin.hold", "", run="hold_pin", outcomes=(("ok", "acct.pin.again"),)),
    Input("acct.pin.again", "acct.pin.again", field="pin", validator="pin", next="acct.pin.change", secret=True),
    Action("acct.pin.change", "", run="change_pin", outcomes=(
        ("ok", "acct.pin.done"), ("mismatch", "acct.pin.new"), ("expired", "acct.pin.old"))),
    End("acct.pin.done", "acct.pin.done"),
    Menu("acct.lang", "acct.lang", tuple(
        Option(f"lang.{code}", "acct.lang.set", sets=(("language", code),)) for code in LANGUAGE_OPTIONS)),
    Action("acct.lang.set", "", run="set_language", outcomes=(("ok", "acct.lang.done"),)),
    End("acct.lang.done", "acct.lang.done"),
))
