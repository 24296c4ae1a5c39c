"""An account closed while its owner is in the menus, through ``POST /ussd`` exactly as Africa's
Talking sends it (both session stores): the PIN typed next is answered "this account is closed" on a
screen that ends the session, never the generic error screen (nor a traceback in the logs), and
nothing moves."""

from __future__ import annotations

import logging

import pytest

from payments.money import Currency, Money
from tests.e2e.gateway_payments_world import Gateway
from tests.ussd.test_ussd_agents import AG, agent, floats
from tests.ussd.test_ussd_intents import REQUESTS, ask, merchant
from tests.ussd.ussd_world import PIN, Dial, Ends, See, Type, customer, run

KES = Currency.KES
LANGUAGES = ("en", "sw", "fr", "wo")


async def close(gw: Gateway, user_id: int) -> None:
    async with gw.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE users SET status = 'closed' WHERE id = $1", (user_id,))


#: Where a customer types a PIN: the balance, the mini statement, the current PIN before a change, and
#: the confirmation of a send (``PAYEE``: the payee's number).
PIN_PROMPTS = {"balance": ["6", "1"], "statement": ["6", "2"], "change_pin": ["6", "3"],
               "send": ["1", "PAYEE", "500"]}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("prompt", PIN_PROMPTS)
async def test_a_pin_typed_after_the_account_closed_says_it_is_closed(gw, phone_for, caplog, prompt, language):
    payer = await customer(gw, funds=2000, language=language)
    payee = await customer(gw, name="Juma Mwangi")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), *(Type("0" + payee.phone[4:] if typed == "PAYEE" else typed)
                                for typed in PIN_PROMPTS[prompt])], language)
    await close(gw, payer.id)
    with caplog.at_level(logging.ERROR):
        await run(phone, [Type(PIN), See("err.closed"), See("pay.refused"), Ends()], language)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert await gw.wallet(payer) == Money.of(2000, KES) and await gw.wallet(payee) == Money.zero(KES)


async def test_a_request_to_pay_confirmed_after_the_account_closed_says_it_is_closed(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    await ask(gw, shop, payer, 250)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm")])
    await close(gw, payer.id)
    await run(phone, [Type(PIN), See("err.closed"), See("pay.refused"), Ends()])
    assert await gw.wallet(payer) == Money.of(1000, KES) and await gw.wallet(shop[0]) == Money.zero(KES)


async def test_an_agent_whose_account_closed_is_told_so_at_its_pin(gw, phone_for):
    agent_user, _ = await agent(gw)
    phone = phone_for(agent_user.phone)
    await run(phone, [Dial(), Type(AG["float"]), See("acct.pin")])
    await close(gw, agent_user.id)
    await run(phone, [Type(PIN), See("err.closed"), See("pay.refused"), Ends()])
    assert await floats(gw, agent_user) == (Money.of(5000, KES), Money.zero(KES))
