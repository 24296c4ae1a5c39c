"""Payment intents, the customer's side, as a journey (data only; the actions are
`dialogs.intent_actions`).

A merchant asks a customer to pay it (`payments.intents`); the customer gets an SMS naming
"Requests to pay", which the main menu shows while some are open. There: the open requests, newest
first, a page of three at a time (``98`` for more, ``0`` for the page before, or the menu from the
first, ``00`` home), each line the merchant's name and the amount;
one picked is priced like any payment (fee, total; a wallet that cannot cover it is told so before
any PIN is asked) and confirmed on ONE screen with the PIN, or ``0``: decline it, or keep it to pay
later. Paid: the reference and the new balance. A request that ended meanwhile (cancelled by the
merchant, expired, paid elsewhere) says so and moves nothing.

Screen ids double as catalog keys (`dialogs/catalogs/*.yml`).
"""

from __future__ import annotations

from dialogs.screens import BACK, HOME, Action, Confirm, End, Input, Journey, Menu, Notice, Option

#: Where the main menu's "Requests to pay" leads (`dialogs.customer_journeys`).
INTENTS_START = "pi.load"

INTENTS = Journey("intents", INTENTS_START, (
    Action(INTENTS_START, "", run="intent_requests", outcomes=(("ok", "pi.pick"), ("empty", "pi.none"))),
    Notice("pi.none", "pi.none", next=HOME),
    Input("pi.pick", "pi.pick", field="pick", validator="pick", next="pi.choose", paged=True),
    Action("pi.choose", "", run="intent_choose", outcomes=(
        ("ok", "pi.quote"), ("more", "pi.pick"), ("again", "pi.pick"), ("empty", "pi.none"), ("back", BACK))),
    # Priced before the confirmation: a wallet that cannot cover it goes straight to "decline or
    # keep it" with the balance and the total needed, never to a PIN that could only fail.
    Action("pi.quote", "", run="intent_quote", outcomes=(
        ("ok", "pi.confirm"), ("no_funds", "pi.keep"), ("refused", "pay.refused"))),
    Confirm("pi.confirm", "pi.confirm", next="pi.pay", cancel="pi.keep"),
    Action("pi.pay", "", run="intent_pay", outcomes=(
        ("done", "pi.done"), ("failed", "pay.failed"), ("gone", "pi.gone"), ("wrong_pin", "pi.confirm"),
        ("locked", "pay.locked"), ("refused", "pay.refused"))),
    End("pi.done", "pi.done"),
    # Keeping it first: a reflexive "1" after "0" must not decline for good.
    Menu("pi.keep", "pi.keep", (Option("pi.wait", HOME), Option("pi.decline", "pi.decline.run"))),
    Action("pi.decline.run", "", run="intent_decline", outcomes=(
        ("ok", "pi.declined"), ("paid", "pi.done"), ("gone", "pi.gone"), ("refused", "pay.refused"))),
    End("pi.declined", "pi.declined"),
    End("pi.gone", "pi.gone"),
))
