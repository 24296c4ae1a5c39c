"""Cash at an agent over USSD, in every language, as transcripts driven through ``POST /ussd`` exactly
as Africa's Talking sends it, on the whole gateway (both session stores): a customer raises a cash-in
and the agent confirms it from its menu; a direct cash-in; a cash-out from both sides; a request
rejected; pages of requests; float and commission. Money is checked where it lands, and the ledger
after each test."""

from __future__ import annotations

import uuid

import pytest

from dialogs.display import phone_text
from gateway.keys import PINS
from payments.accounts import AccountKind
from payments.agent_commands import TopUpFloat
from payments.agents import AgentService, register_agent
from payments.identities import User
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import Gateway
from tests.ussd.ussd_world import (
    CATALOGS,
    PIN,
    Continues,
    Dial,
    Ends,
    See,
    Shows,
    Type,
    customer,
    run,
    sms_saying,
)

LANGUAGES = ("en", "sw", "fr", "wo")
KES = Currency.KES
#: The Kenyan main menu's Withdraw and Deposit (and Send money, My account), and the agent menu.
WITHDRAW, DEPOSIT = "4", "5"
SEND, ACCOUNT = "1", "6"
AG = {"cash_in": "1", "direct": "2", "cash_out": "3", "float": "4", "commission": "5", "wallet": "6"}

languages = pytest.mark.parametrize("language", LANGUAGES)


async def agent(gw: Gateway, *, language: str = "en", float_: int = 5000) -> tuple[User, str]:
    """A registered agent (with a PIN) holding ``float_`` KES of float; returns it and its number."""
    user = await customer(gw, language=language, name="Njeri Wambui")
    async with gw.engine.begin() as conn:
        registered = await register_agent(conn, user.id, business_name="Duka la Njeri")
    if float_:
        await AgentService(gw.payments, gw.app[PINS]).top_up_float(TopUpFloat(
            f"float-{uuid.uuid4().hex[:8]}", user.id, Money.of(float_, KES), reference=f"QK{uuid.uuid4().hex[:8]}",
            operator="ops"))
    return user, registered.agent_number


async def floats(gw: Gateway, user: User) -> tuple[Money, Money]:
    return (await gw.balance(AccountKind.AGENT_FLOAT, KES, user.id),
            await gw.balance(AccountKind.AGENT_COMMISSION, KES, user.id))


async def latest_request(gw: Gateway, customer_user: User) -> tuple[str, str, str | None]:
    """The code, status and payment of the customer's latest request."""
    async with gw.engine.connect() as conn:
        row = (await conn.exec_driver_sql(
            "SELECT r.public_id, r.status, p.public_id FROM cash_requests r "
            "LEFT JOIN payments p ON p.id = r.payment_id WHERE r.customer_user_id = $1 ORDER BY r.id DESC LIMIT 1",
            (customer_user.id,))).one()
    return row[0][-6:].upper(), row[1], row[2]


@languages
async def test_a_customer_raises_a_cash_in_and_the_agent_confirms_it(gw, phone_for, language):
    agent_user, number = await agent(gw, language=language)
    amina = await customer(gw, language=language, name="Amina Otieno")

    await run(phone_for(amina.phone), [
        Dial(), Type(DEPOSIT), See("menu.deposit"), Type("2"), See("ca.agent"), Type("12"), See("err.agent_number"),
        Type(number), See("ca.in.amount"), Type("1000"), See("ca.in.done"), Shows("Duka la Njeri"),
        Shows("Ksh 1,000"), Ends()], language)
    code, status, _ = await latest_request(gw, amina)
    assert status == "pending" and await gw.wallet(amina) == Money.zero(KES)

    agent_phone = phone_for(agent_user.phone)
    await run(agent_phone, [
        Dial(), See("ag.home"), Type(AG["cash_in"]), See("ag.in.pick"), Shows("1. Amina Otieno Ksh 1,000"),
        Type("7"), See("note.invalid_choice"), Type("1"), See("ag.in.confirm"), Shows("Amina Otieno"), Shows(code),
        Shows("Ksh 20"), Type("9173"), See("err.wrong_pin"), See("ag.in.confirm"), Type(PIN), See("ag.in.done"),
        Shows("Ksh 4,000"), Ends()], language)

    _, status, public_id = await latest_request(gw, amina)
    assert status == "confirmed" and public_id is not None
    paid = await gw.payment(public_id)
    assert paid.status is PaymentStatus.SUCCEEDED and agent_phone.reference() == paid.reference
    # Both sides get an SMS with the reference the agent's screen showed, each in their language.
    texts = CATALOGS
    assert await sms_saying(gw, agent_user.phone, paid.reference) == texts.text(language, "sms.succeeded", {
        "ref": paid.reference, "what": texts.text(language, "sms.what.cash_in"), "amount": "Ksh 1,000",
        "fee": "Ksh 0"})
    # The customer's ends with her new balance; the agent's has none (the float is not a wallet).
    assert await sms_saying(gw, amina.phone, paid.reference) == " ".join((texts.text(language, "sms.received", {
        "ref": paid.reference, "amount": "Ksh 1,000", "sender": f"Njeri Wambui {phone_text(agent_user.phone)}"}),
        texts.text(language, "sms.new_balance", {"balance": "Ksh 1,000"})))
    assert await gw.wallet(amina) == Money.of(1000, KES)
    assert await floats(gw, agent_user) == (Money.of(4000, KES), Money.of(20, KES))
    # Nothing left to serve.
    await run(phone_for(agent_user.phone), [Dial(), Type(AG["cash_in"]), See("ag.in.none"), Continues()], language)


@languages
async def test_an_agent_cashes_in_to_a_number_and_sees_its_float_and_commission(gw, phone_for, language):
    agent_user, _ = await agent(gw, language=language)
    baraka = await customer(gw, name="Baraka Mwangi")

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["direct"]), See("ag.direct.phone"), Type(agent_user.phone), See("ag.direct.amount"),
        Type("500"), See("err.agent_self"), See("ag.direct.phone"), Type("0" + baraka.phone[4:]), Type("9000"),
        See("err.float_low"), See("ag.direct.amount"), Type("500"), See("ag.direct.confirm"),
        Shows("Baraka Mwangi"), Shows("Ksh 10"), Type(PIN), See("ag.direct.done"), Shows("Ksh 4,500"), Ends()],
        language)
    assert await gw.wallet(baraka) == Money.of(500, KES)

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["float"]), See("acct.pin"), Type(PIN), See("ag.float.show"), Shows("Ksh 4,500"),
        Shows("Ksh 10"), Ends()], language)
    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["commission"]), Type(PIN), See("ag.comm.show"), Shows("Ksh 10"), Ends()], language)
    # The agent's own wallet is one option away: the customer menu.
    await run(phone_for(agent_user.phone), [Dial(), Type(AG["wallet"]), See("home"), Continues()], language)


@languages
async def test_a_customer_withdraws_cash_and_the_agent_hands_it_over(gw, phone_for, language):
    agent_user, number = await agent(gw, language=language, float_=0)
    chebet = await customer(gw, language=language, name="Chebet Kiprop", funds=2000)

    await run(phone_for(chebet.phone), [
        Dial(), Type(WITHDRAW), See("menu.withdraw"), Type("2"), See("ca.agent"), Type(number), See("ca.out.amount"),
        Type("5000"), See("err.no_funds"), See("ca.out.amount"), Type("1000"), See("ca.out.confirm"),
        Shows("Duka la Njeri"), Shows("Ksh 10"), Shows("Ksh 1,010"), Type(PIN), See("ca.out.done"),
        Shows("Ksh 1,000"), Ends()], language)
    code, status, reference = await latest_request(gw, chebet)
    assert status == "pending" and reference is not None
    assert (await gw.payment(reference)).status is PaymentStatus.PENDING
    assert await gw.wallet(chebet) == Money.of(2000, KES)  # held until the agent pays it out

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["cash_out"]), See("ag.out.pick"), Shows("Chebet Kiprop Ksh 1,000"), Type("1"),
        See("ag.out.confirm"), Shows(code), Type(PIN), See("ag.out.done"), Shows("Ksh 1,000"), Ends()], language)

    assert (await gw.payment(reference)).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(chebet) == Money.of(990, KES)
    assert await floats(gw, agent_user) == (Money.of(1000, KES), Money.of(5, KES))


@languages
async def test_money_held_for_a_cash_out_is_not_offered_as_spendable(gw, phone_for, language):
    """A cash-out request holds amount + fee until its agent pays it out. The balance screen shows
    what can be spent and says what is held; a send the rest cannot cover is refused before the
    PIN (it was confirmed, then failed at the PIN)."""
    _, number = await agent(gw, language=language, float_=0)
    chebet = await customer(gw, language=language, name="Chebet Kiprop", funds=2000)
    juma = await customer(gw, name="Juma Mwangi")
    await run(phone_for(chebet.phone), [
        Dial(), Type(WITHDRAW), Type("2"), See("ca.agent"), Type(number), See("ca.out.amount"), Type("1500"),
        See("ca.out.confirm"), Type(PIN), See("ca.out.done"), Ends()], language)
    assert await gw.wallet(chebet) == Money.of(2000, KES)  # held (1,515), not taken

    await run(phone_for(chebet.phone), [
        Dial(), Type(ACCOUNT), Type("1"), See("acct.pin"), Type(PIN), See("acct.bal.held"), Shows("Ksh 1,515"),
        See("acct.bal.show"), Shows("Ksh 485"), Ends()], language)
    await run(phone_for(chebet.phone), [
        Dial(), Type(SEND), Type(juma.phone), See("send.amount"), Type("1000"), See("err.no_funds"), Shows("Ksh 485"),
        Shows("Ksh 1,010"), See("send.amount"), Type("400"), See("send.confirm"), Type(PIN), See("send.done"),
        Ends()], language)
    assert await gw.wallet(juma) == Money.of(400, KES) and await gw.wallet(chebet) == Money.of(1596, KES)


@languages
async def test_an_agent_pages_through_requests_and_rejects_one(gw, phone_for, language):
    agent_user, number = await agent(gw, language=language)
    people = [await customer(gw, name=f"Mteja {n}") for n in range(4)]
    for n, person in enumerate(people):
        await run(phone_for(person.phone), [Dial(), Type(DEPOSIT), Type("2"), Type(number), Type(str(100 + n)),
                                            See("ca.in.done")])

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["cash_in"]), See("ag.in.pick"), Shows("1. Mteja 3 Ksh 103"), Shows("3. Mteja 1 Ksh 101"),
        Shows("98"), Type("98"), See("ag.in.pick"), Shows("1. Mteja 0 Ksh 100"), Type("1"), See("ag.in.confirm"),
        Shows("Mteja 0"), Type("0"), See("ag.keep"), Type("1"), See("ag.rejected"), Ends()], language)

    _, status, reference = await latest_request(gw, people[0])
    assert status == "rejected" and reference is None
    assert await gw.wallet(people[0]) == Money.zero(KES)
    assert await floats(gw, agent_user) == (Money.of(5000, KES), Money.zero(KES))


@languages
async def test_an_agent_cannot_cash_in_to_a_number_of_another_country(gw, phone_for, language):
    """A Kenyan agent's cash-in to a Senegalese number went through (a KES wallet her menu never
    shows); now the number is refused as any number that cannot receive, and the agent types another."""
    agent_user, _ = await agent(gw, language=language)
    awa = await customer(gw, country="SN", name="Awa Diop")
    baraka = await customer(gw, name="Baraka Mwangi")

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["direct"]), See("ag.direct.phone"), Type(awa.phone), See("ag.direct.amount"), Type("1000"),
        See("err.recipient"), See("ag.direct.phone"), Type(baraka.phone), Type("1000"), See("ag.direct.confirm"),
        Shows("Baraka Mwangi"), Type(PIN), See("ag.direct.done"), Ends()], language)

    assert await gw.balance(AccountKind.CUSTOMER_WALLET, KES, awa.id) == Money.zero(KES)
    async with gw.engine.connect() as conn:
        kes_accounts = (await conn.exec_driver_sql(
            "SELECT count(*) FROM accounts WHERE owner_user_id = $1 AND currency = 'KES'", (awa.id,))).scalar_one()
    assert kes_accounts == 0
    assert await gw.wallet(baraka) == Money.of(1000, KES)
    assert await floats(gw, agent_user) == (Money.of(4000, KES), Money.of(20, KES))


@languages
async def test_an_agent_confirming_a_cash_in_for_an_account_closed_since_is_told_and_nothing_moves(
        gw, phone_for, language):
    agent_user, number = await agent(gw, language=language)
    amina = await customer(gw, name="Amina Otieno")
    await run(phone_for(amina.phone), [Dial(), Type(DEPOSIT), Type("2"), Type(number), Type("1000"),
                                       See("ca.in.done")])
    async with gw.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE users SET status = 'closed' WHERE id = $1", (amina.id,))

    await run(phone_for(agent_user.phone), [
        Dial(), Type(AG["cash_in"]), See("ag.in.pick"), Type("1"), See("ag.in.confirm"), Type(PIN),
        See("err.closed"), See("ag.gone"), Ends()], language)

    _, status, reference = await latest_request(gw, amina)
    assert status == "rejected" and reference is None
    assert await gw.wallet(amina) == Money.zero(KES)
    assert await floats(gw, agent_user) == (Money.of(5000, KES), Money.zero(KES))
    await run(phone_for(agent_user.phone), [Dial(), Type(AG["cash_in"]), See("ag.in.none"), Continues()], language)
