"""Sessions resumed by a redial, through ``POST /ussd`` exactly as Africa's Talking sends it (both
session stores): what a hop did is never done twice when its answer or its session's save was lost
and the caller continues from a new dial (an agent's direct cash-in, a customer's cash-out and
cash-in request, an agent confirming a request); what a PIN opened (a mini statement) is never shown
to a redial without the PIN; and the end of a dropped session that a redial continued is recorded at
the screen the caller left it on, not at "moved". Money is checked where it lands, and the ledger
after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from gateway.keys import USSD_SESSIONS
from payments.money import Currency, Money
from tests.e2e.gateway_payments_world import Gateway
from tests.ussd.test_ussd_agents import AG, DEPOSIT, WITHDRAW, agent, floats, latest_request
from tests.ussd.ussd_world import CATALOGS, PIN, Continues, Dial, Ends, See, Shows, Type, customer, run

KES = Currency.KES


@asynccontextmanager
async def saves_lost(gw: Gateway) -> AsyncIterator[list[str]]:
    """Every session save fails meanwhile (the store timed out, the process died after the action
    committed): the hop's action ran, its session stayed where it was, the caller got the error
    screen. Yields the sessions whose save was lost."""
    store = gw.app[USSD_SESSIONS]
    save, lost = store.save, []

    async def fails(state, **kwargs):
        lost.append(state.session_id)
        raise ConnectionError("the session store timed out")

    store.save = fails
    try:
        yield lost
    finally:
        store.save = save


async def count(gw: Gateway, sql: str, **values) -> int:
    return await gw.scalar(sql, **values)


async def test_a_direct_cash_in_resumed_after_its_pin_hop_paid_pays_no_second_time(gw, phone_for):
    agent_user, _ = await agent(gw, float_=5000)
    baraka = await customer(gw, name="Baraka Mwangi")
    first = phone_for(agent_user.phone)
    await run(first, [Dial(), Type(AG["direct"]), Type("0" + baraka.phone[4:]), Type("500"),
                      See("ag.direct.confirm")])
    async with saves_lost(gw) as lost:
        await first.type(PIN)
    assert lost and first.screen == CATALOGS.text("en", "sys.error")
    assert await gw.wallet(baraka) == Money.of(500, KES)  # committed before the save was lost

    again = phone_for(agent_user.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("ag.direct.confirm"), Type(PIN),
                      See("ag.direct.done"), Shows("Ksh 4,500"), Ends()])
    # The PIN replayed that cash-in: one payment, the float and the commission moved once.
    assert await gw.wallet(baraka) == Money.of(500, KES)
    assert await floats(gw, agent_user) == (Money.of(4500, KES), Money.of(10, KES))
    assert await count(gw, "SELECT count(*) FROM cash_requests WHERE agent_user_id = :a", a=agent_user.id) == 1
    _, status, public_id = await latest_request(gw, baraka)
    assert status == "confirmed" and again.reference() == (await gw.payment(public_id)).reference


async def test_a_cash_out_resumed_after_its_pin_hop_raised_it_holds_the_money_once(gw, phone_for):
    _, number = await agent(gw, float_=0)
    amina = await customer(gw, funds=3000, name="Amina Otieno")
    first = phone_for(amina.phone)
    await run(first, [Dial(), Type(WITHDRAW), Type("2"), Type(number), Type("1000"), See("ca.out.confirm")])
    async with saves_lost(gw):
        await first.type(PIN)

    again = phone_for(amina.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("ca.out.confirm"), Type(PIN), See("ca.out.done"),
                      Ends()])
    code, status, _ = await latest_request(gw, amina)
    assert status == "pending" and code in again.screen
    # One request, one payment, one hold: amount and fee reserved once, not twice.
    assert await count(gw, "SELECT count(*) FROM cash_requests WHERE customer_user_id = :u", u=amina.id) == 1
    assert await count(gw, "SELECT count(*) FROM payments WHERE payer_user_id = :u AND kind = 'cash_out'",
                       u=amina.id) == 1
    assert await count(gw, "SELECT count(*) FROM cash_requests WHERE customer_user_id = :u AND hold_id IS NOT NULL",
                       u=amina.id) == 1


async def test_a_cash_in_request_resumed_after_its_hop_raised_it_is_raised_once(gw, phone_for):
    _, number = await agent(gw)
    amina = await customer(gw, name="Amina Otieno")
    first = phone_for(amina.phone)
    await run(first, [Dial(), Type(DEPOSIT), Type("2"), Type(number), See("ca.in.amount")])
    async with saves_lost(gw):
        await first.type("1000")
    assert await count(gw, "SELECT count(*) FROM cash_requests WHERE customer_user_id = :u", u=amina.id) == 1

    again = phone_for(amina.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("ca.in.amount"), Type("1000"), See("ca.in.done"),
                      Ends()])
    code, status, _ = await latest_request(gw, amina)
    assert status == "pending" and code in again.screen
    assert await count(gw, "SELECT count(*) FROM cash_requests WHERE customer_user_id = :u", u=amina.id) == 1


async def test_an_agent_s_confirmation_resumed_after_its_pin_hop_paid_says_done_and_pays_once(gw, phone_for):
    agent_user, number = await agent(gw)
    amina = await customer(gw, name="Amina Otieno")
    await run(phone_for(amina.phone), [Dial(), Type(DEPOSIT), Type("2"), Type(number), Type("1000"),
                                       See("ca.in.done")])
    first = phone_for(agent_user.phone)
    await run(first, [Dial(), Type(AG["cash_in"]), Type("1"), See("ag.in.confirm")])
    async with saves_lost(gw):
        await first.type(PIN)
    assert await gw.wallet(amina) == Money.of(1000, KES)

    # Continued, the PIN replays that confirmation: "done", with its reference (not "no longer waiting").
    again = phone_for(agent_user.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("ag.in.confirm"), Type(PIN), See("ag.in.done"),
                      Shows("Ksh 4,000"), Ends()])
    _, status, public_id = await latest_request(gw, amina)
    assert status == "confirmed" and again.reference() == (await gw.payment(public_id)).reference
    assert await gw.wallet(amina) == Money.of(1000, KES)
    assert await floats(gw, agent_user) == (Money.of(4000, KES), Money.of(20, KES))


async def test_a_mini_statement_is_never_shown_again_to_a_redial(gw, phone_for):
    """The owner typed the PIN, read the statement and put the phone down: whoever dials within the
    resume window starts afresh, and needs the PIN to see it."""
    payer = await customer(gw, funds=2000)
    owner = phone_for(payer.phone)
    await run(owner, [Dial(), Type("6"), Type("2"), Type(PIN), See("acct.stmt.show"), Shows("Ksh 2,000"),
                      Continues()])
    other = phone_for(payer.phone)
    await run(other, [Dial(), See("home"), Continues()])
    assert CATALOGS.text("en", "sys.resume.yes") not in other.screen
    # Nor its next page, nor once another screen was shown on the way back to it.
    await run(other, [Type("6"), Type("2"), Type(PIN), See("acct.stmt.show"), Type("98"), Continues()])
    await run(phone_for(payer.phone), [Dial(), See("home"), Continues()])


async def test_a_pin_prompt_is_still_resumed_and_asks_for_the_pin(gw, phone_for):
    """A wrong PIN brings the prompt back: dropped there, the session is offered again, and the PIN
    is asked again before anything is shown."""
    payer = await customer(gw, funds=2000)
    owner = phone_for(payer.phone)
    await run(owner, [Dial(), Type("6"), Type("2"), Type("9173"), See("err.wrong_pin"), See("acct.pin")])
    again = phone_for(payer.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("acct.pin"), Type(PIN), See("acct.stmt.show"),
                      Shows("Ksh 2,000"), Continues()])


async def test_a_dropped_session_continued_by_a_redial_is_recorded_where_the_caller_left_it(gw, phone_for):
    payer = await customer(gw, funds=2000)
    first = phone_for(payer.phone)
    await run(first, [Dial(), Type("1"), Type("0712345678"), See("send.amount")])
    second = phone_for(payer.phone)
    await run(second, [Dial(), See("sys.resume"), Type("1"), See("send.amount")])
    # Africa's Talking reports the first session's end (it timed out) after the redial continued it.
    event = {"sessionId": first.session.session_id, "serviceCode": "*384*1#", "phoneNumber": payer.phone,
             "networkCode": "63902", "status": "Incomplete", "hopsCount": "3", "durationInMillis": "61000",
             "input": "1*0712345678", "lastAppResponse": "CON Enter amount", "errorMessage": "", "cost": "0"}
    async with aiohttp.ClientSession() as http, http.post(gw.url + "/ussd/events", data=event) as resp:
        assert (resp.status, await resp.text()) == (200, "OK")
    assert await gw.scalar("SELECT outcome || ' ' || last_screen || ' ' || journey FROM ussd_sessions "
                           "WHERE session_id = :s", s=first.session.session_id) == "dropped send.amount customer"
    # A late hop on the old session still says it moved.
    assert await first.type("250") == CATALOGS.text("en", "sys.moved") and first.ended


async def test_an_agent_s_rejection_resumed_after_its_hop_rejected_says_rejected(gw, phone_for):
    agent_user, number = await agent(gw)
    amina = await customer(gw, name="Amina Otieno")
    await run(phone_for(amina.phone), [Dial(), Type(DEPOSIT), Type("2"), Type(number), Type("1000"),
                                       See("ca.in.done")])
    first = phone_for(agent_user.phone)
    await run(first, [Dial(), Type(AG["cash_in"]), Type("1"), See("ag.in.confirm"), Type("0"), See("ag.keep")])
    async with saves_lost(gw):
        await first.type("1")  # reject
    again = phone_for(agent_user.phone)
    await run(again, [Dial(), See("sys.resume"), Type("1"), See("ag.keep"), Type("1"), See("ag.rejected"), Ends()])
    _, status, reference = await latest_request(gw, amina)
    assert status == "rejected" and reference is None
    assert await floats(gw, agent_user) == (Money.of(5000, KES), Money.zero(KES))
