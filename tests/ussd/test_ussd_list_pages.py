"""Lists that page a few lines at a time, through ``POST /ussd`` exactly as Africa's Talking sends it
(both session stores): an agent's cash-in and cash-out requests and a customer's requests to pay
show ``98`` more, ``0`` back and ``00`` home in the caller's language, as every long list does;
``0`` goes back a page (from the first, back to the menu), ``00`` home."""

from __future__ import annotations

import uuid

import pytest

from gateway.keys import PINS
from payments.agent_commands import RequestCashIn
from payments.agents import AgentService
from payments.money import Currency, Money
from tests.e2e.gateway_payments_world import Gateway
from tests.ussd.test_ussd_agents import AG, agent
from tests.ussd.test_ussd_intents import REQUESTS, ask, merchant
from tests.ussd.ussd_world import CATALOGS, Continues, Dial, See, Shows, Type, customer, run

KES = Currency.KES
LANGUAGES = ("en", "sw", "fr", "wo")


def navigation(language: str) -> str:
    return f"{CATALOGS.text(language, 'nav.back')}  {CATALOGS.text(language, 'nav.home')}"


async def raise_requests(gw: Gateway, number: str, how_many: int) -> None:
    """``how_many`` customers each ask the agent to take their cash (``Mteja A`` Ksh 100 first)."""
    service = AgentService(gw.payments, gw.app[PINS])
    for n in range(how_many):
        person = await customer(gw, name=f"Mteja {chr(65 + n)}")
        await service.request_cash_in(RequestCashIn(f"rq-{uuid.uuid4().hex[:12]}", person.id, number,
                                                    Money.of(100 + n, KES)))


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_agent_pages_through_its_requests_forward_back_and_home(gw, phone_for, language):
    agent_user, number = await agent(gw, language=language)
    await raise_requests(gw, number, 7)  # three pages, newest first: G F E, D C B, A
    more = CATALOGS.text(language, "nav.more")
    phone = phone_for(agent_user.phone)
    await run(phone, [Dial(), Type(AG["cash_in"]), See("ag.in.pick"), Shows("1. Mteja G Ksh 106"), Shows(more),
                      Shows(navigation(language))], language)
    first = phone.screen
    await run(phone, [Type("98"), Shows("1. Mteja D Ksh 103"), Shows(more), Shows(navigation(language))], language)
    second = phone.screen
    await run(phone, [Type("98"), Shows("1. Mteja A Ksh 100"), Shows(navigation(language))], language)
    assert more not in phone.screen and "2." not in phone.screen
    # 0 goes back a page at a time, then from the first page to the agent's menu.
    assert await phone.type("0") == second
    assert await phone.type("0") == first
    await run(phone, [Type("0"), See("ag.home"), Continues()], language)
    # 00 from any page: home. Then a pick from a later page is that page's line.
    await run(phone, [Type(AG["cash_in"]), Type("98"), Type("00"), See("ag.home"), Type(AG["cash_in"]),
                      Type("98"), Type("98"), Type("0"), Type("2"), See("ag.in.confirm"), Shows("Mteja C"),
                      Continues()], language)


async def test_cash_out_requests_page_back_too(gw, phone_for):
    agent_user, number = await agent(gw, float_=0)
    for n in range(4):
        person = await customer(gw, name=f"Mteja {n}", funds=1000)
        await run(phone_for(person.phone), [Dial(), Type("4"), Type("2"), Type(number), Type(str(100 + n)),
                                            Type("2580"), See("ca.out.done")])
    phone = phone_for(agent_user.phone)
    await run(phone, [Dial(), Type(AG["cash_out"]), See("ag.out.pick"), Shows("1. Mteja 3 Ksh 103"),
                      Shows(navigation("en"))])
    first = phone.screen
    await run(phone, [Type("98"), Shows("1. Mteja 0 Ksh 100")])
    assert await phone.type("0") == first


async def test_requests_to_pay_page_back_and_home(gw, phone_for):
    shop, other = await merchant(gw, name="Soko la Mama"), await merchant(gw, name="Jua Kali Hardware")
    payer = await customer(gw, funds=1000)
    for n in range(4):
        await ask(gw, shop if n % 2 == 0 else other, payer, 100 + n)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), See("pi.pick"), Shows("1. Jua Kali Har.. Ksh 103"),
                      Shows(CATALOGS.text("en", "nav.more")), Shows(navigation("en"))])
    first = phone.screen
    await run(phone, [Type("98"), Shows("1. Soko la Mama Ksh 100"), Shows(navigation("en"))])
    assert await phone.type("0") == first
    await run(phone, [Type("0"), See("home"), Continues()])
    await run(phone, [Type(REQUESTS["KE"]), Type("98"), Type("00"), See("home"), Continues()])
