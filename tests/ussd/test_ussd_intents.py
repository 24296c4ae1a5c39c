"""Requests to pay (payment intents) over USSD, as transcripts driven through ``POST /ussd`` exactly as
Africa's Talking sends it, on the whole gateway (both session stores): a merchant's API key asks a
customer to pay (`PaymentIntents.create`, as ``POST /v1/payment_intents`` does); the customer finds
the request under "Requests to pay", which the main menu shows only while some are open, and pays it
with the PIN, declines it, or keeps it for later. Requests that end meanwhile, a wallet that cannot
cover one, pages of requests, wrong PINs and retried hops. Money is checked where it lands, and the
ledger after each test."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import text

from dialogs.display import phone_text
from gateway.keys import API_KEY_HASHER
from payments.agents import register_agent
from payments.api_keys import create_api_key, get_api_key_by_id, revoke_api_key
from payments.commands import Channel
from payments.identities import Role, User, grant_role
from payments.intent_store import IntentStatus
from payments.intents import CreateIntent, IntentView, PayIntent
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import Gateway
from tests.statements import statements
from tests.ussd.test_ussd_agents import agent
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
KES, XOF = Currency.KES, Currency.XOF
#: "Requests to pay" comes after every other option of the main menu: Kenya shows six, Senegal four.
REQUESTS = {"KE": "7", "SN": "5"}
#: Where each language's customer lives in the full transcripts (so both currencies are paid).
COUNTRY = {"en": "KE", "sw": "KE", "fr": "SN", "wo": "SN"}


async def merchant(gw: Gateway, *, country: str = "KE", name: str = "Duka la Njeri") -> tuple[User, int]:
    """A merchant (the role intents pay) with a wallet and an API key of its own; returns it and the
    key's id."""
    user = await customer(gw, country=country, name=name)
    async with gw.engine.begin() as conn:
        await grant_role(conn, user.id, Role.MERCHANT, actor="test")
        made = await create_api_key(conn, gw.app[API_KEY_HASHER], "shop backend", user_id=user.id)
    return user, made.key.id


async def ask(gw: Gateway, shop: tuple[User, int], payer: User, amount: int, description: str = "") -> IntentView:
    """The merchant asks ``payer`` to pay ``amount`` (major units, the payer's currency)."""
    user, key_id = shop
    currency = KES if payer.phone.startswith("+254") else XOF
    view, created = await gw.payments.intents.create(CreateIntent(
        f"order-{uuid.uuid4().hex[:12]}", key_id, user.id, payer.phone, Money.of(amount, currency), description))
    assert created
    return view


async def intent(gw: Gateway, view: IntentView) -> IntentView:
    """The intent as it stands now, with the payment that paid it."""
    now = await gw.payments.intents.get(view.intent.public_id, may_see=lambda _: True)
    paid_by = now.intent.payment_public_id
    return replace(now, payment=await gw.payment(paid_by)) if paid_by else now


async def assert_not_offered(phone_for, payer: User) -> None:
    """A new dial of ``payer``'s: the main menu offers no "Requests to pay"."""
    again = phone_for(payer.phone)
    await run(again, [Dial(), See("home"), Continues()])
    assert label("en") not in again.screen


def label(language: str) -> str:
    return CATALOGS.text(language, "menu.intents")


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_customer_pays_a_request_from_the_menu(gw, phone_for, language):
    country = COUNTRY[language]
    currency, amount, shown = (KES, 500, ("Ksh 500", "Ksh 5", "Ksh 505", "Ksh 1,495")) if country == "KE" \
        else (XOF, 5000, ("5 000 FCFA", "50 FCFA", "5 050 FCFA", "14 950 FCFA"))
    shop = await merchant(gw, country=country)
    payer = await customer(gw, country=country, language=language, funds=amount * 4)
    asked = await ask(gw, shop, payer, amount, "Order 42")

    phone = phone_for(payer.phone)
    await run(phone, [
        Dial(), See("home"), Shows(f"{REQUESTS[country]}. {label(language)}"), Type(REQUESTS[country]),
        See("pi.pick"), Shows(f"1. Duka la Njeri {shown[0]}"), Type("4"), See("note.invalid_choice"), Type("1"),
        See("pi.confirm"), Shows(f"Duka la Njeri {phone_text(shop[0].phone)} (Order 42)"), Shows(shown[0]),
        Shows(shown[1]), Shows(shown[2]),
        Type(PIN), See("pi.done"), Shows("Duka la Njeri"), Shows(shown[3]), Ends()], language)

    # The customer paid amount + fee, the merchant got the amount, and the intent names the payment.
    paid = await intent(gw, asked)
    assert paid.intent.status is IntentStatus.SUCCEEDED and paid.payment is not None
    assert paid.payment.status is PaymentStatus.SUCCEEDED and paid.payment.reference == phone.reference()
    assert paid.payment.amount == Money.of(amount, currency) and paid.payment.recipient_user_id == shop[0].id
    assert await gw.wallet(payer, currency) == Money.of(amount * 4, currency) - paid.payment.total
    assert paid.payment.total == Money.of(amount, currency) + Money.of(amount // 100, currency)
    assert await gw.wallet(shop[0], currency) == Money.of(amount, currency)
    # Nothing left to pay: the menu no longer offers it.
    again = phone_for(payer.phone)
    await run(again, [Dial(), See("home"), Type(REQUESTS[country]), See("note.invalid_choice"), Continues()],
              language)
    assert label(language) not in again.screen


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_customer_declines_a_request(gw, phone_for, language):
    shop = await merchant(gw)
    payer = await customer(gw, language=language, funds=1000)
    asked = await ask(gw, shop, payer, 300)

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"), Type("0"), See("pi.keep"), See("pi.decline"),
        See("pi.wait"), Type("2"), See("pi.declined"), Ends()], language)

    assert (await intent(gw, asked)).intent.status is IntentStatus.DECLINED
    assert await gw.wallet(payer) == Money.of(1000, KES) and await gw.wallet(shop[0]) == Money.zero(KES)


async def test_a_request_kept_for_later_stays_open_and_is_paid_on_the_next_dial(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 250)

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), Type("0"), See("pi.keep"), Type("1"), See("home"),
        Shows(label("en")), Continues()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.PENDING

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"), Type(PIN), See("pi.done"), Ends()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED


async def test_a_wrong_pin_brings_the_confirmation_back_with_the_tries_left(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 200, "Lunch")

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"), Type("9173"),
        Shows(CATALOGS.text("en", "err.wrong_pin", {"tries": "2"})), See("pi.confirm"), Shows("(Lunch)"),
        Continues(), Type(PIN), See("pi.done"), Shows("Ksh 798"), Ends()])

    assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED
    assert await gw.wallet(payer) == Money.of(798, KES)


async def test_too_many_wrong_pins_lock_the_account(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 200)

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), Type("9173"), See("err.wrong_pin"), Type("9174"),
        See("err.wrong_pin_last"), Type("9175"), See("pay.locked"), Ends()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.PENDING
    assert await gw.wallet(payer) == Money.of(1000, KES)


async def test_a_request_cancelled_meanwhile_is_no_longer_open(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 400)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm")])

    await gw.payments.intents.cancel(asked.intent.public_id, api_key_id=shop[1], user_id=None)
    await run(phone, [Type(PIN), See("pi.gone"), Ends()])

    assert (await intent(gw, asked)).intent.status is IntentStatus.CANCELLED
    assert await gw.wallet(payer) == Money.of(1000, KES) and await gw.wallet(shop[0]) == Money.zero(KES)
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 0


async def test_a_request_that_expired_meanwhile_is_no_longer_open_to_pay_or_decline(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    first, second = await ask(gw, shop, payer, 400), await ask(gw, shop, payer, 100)
    paying, declining = phone_for(payer.phone), phone_for(payer.phone)
    await run(paying, [Dial(), Type(REQUESTS["KE"]), See("pi.pick"), Shows("Ksh 400"), Type("2"),
                       See("pi.confirm"), Shows("Ksh 400")])
    # A second session of the same number is first offered to resume the other: "Start again".
    await run(declining, [Dial(), See("sys.resume"), Type("2"), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"),
                          Shows("Ksh 100"), Type("0"), See("pi.keep")])
    # Both lapse before the customer answers (the expiry sweep has not run: paying one closes it).
    async with gw.engine.begin() as conn:
        await conn.execute(text("UPDATE payment_intents SET expires_at = now() - interval '1 second' "
                                "WHERE payer_user_id = :u"), {"u": payer.id})

    await run(paying, [Type(PIN), See("pi.gone"), Ends()])
    await run(declining, [Type("2"), See("pi.gone"), Ends()])

    for asked in (first, second):
        assert (await intent(gw, asked)).intent.status is IntentStatus.EXPIRED
    assert await gw.wallet(payer) == Money.of(1000, KES)
    # Lapsed requests are not offered even before the sweep closes them.
    await assert_not_offered(phone_for, payer)


async def test_requests_of_a_key_revoked_meanwhile_are_not_paid_nor_offered(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    first, second = await ask(gw, shop, payer, 400), await ask(gw, shop, payer, 300)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm")])

    async with gw.engine.begin() as conn:
        key = await get_api_key_by_id(conn, shop[1])
        assert key is not None
        await revoke_api_key(conn, key.prefix, actor="test")
    await run(phone, [Type(PIN), See("pi.gone"), Ends()])

    assert (await intent(gw, second)).intent.status is IntentStatus.CANCELLED
    assert (await intent(gw, first)).intent.status is IntentStatus.PENDING  # closed when paid or swept
    assert await gw.wallet(payer) == Money.of(1000, KES)
    await assert_not_offered(phone_for, payer)


async def test_a_wallet_that_cannot_cover_a_request_is_told_before_the_pin(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=100)
    asked = await ask(gw, shop, payer, 500)

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("err.no_funds"), Shows("Ksh 100"), Shows("Ksh 505"),
        See("pi.keep"), Continues(), Type("1"), See("home"), Continues()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.PENDING

    # Topped up, the same request is paid.
    await gw.fund(payer, Money.of(405, KES))
    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"), Type(PIN), See("pi.done"), Shows("Ksh 0"),
        Ends()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED


async def test_money_held_for_a_cash_out_does_not_cover_a_request(gw, phone_for):
    """What a wallet can spend is its balance less what a cash-out holds: the request is refused
    before the PIN (it was confirmed, then failed at the PIN), and stays open."""
    _, number = await agent(gw, float_=0)
    shop = await merchant(gw)
    payer = await customer(gw, funds=2000)
    asked = await ask(gw, shop, payer, 500)
    await run(phone_for(payer.phone), [
        Dial(), Type("4"), Type("2"), See("ca.agent"), Type(number), Type("1500"), See("ca.out.confirm"), Type(PIN),
        See("ca.out.done"), Ends()])

    await run(phone_for(payer.phone), [
        Dial(), Type(REQUESTS["KE"]), Type("1"), See("err.no_funds"), Shows("Ksh 485"), Shows("Ksh 505"),
        See("pi.keep"), Continues()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.PENDING
    assert await gw.wallet(payer) == Money.of(2000, KES)


async def test_money_spent_after_the_confirmation_fails_the_payment_and_the_request_stays_open(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=600)
    first, second = await ask(gw, shop, payer, 500), await ask(gw, shop, payer, 400)
    slow, quick = phone_for(payer.phone), phone_for(payer.phone)
    await run(slow, [Dial(), Type(REQUESTS["KE"]), Type("2"), See("pi.confirm"), Shows("Ksh 505")])
    await run(quick, [Dial(), See("sys.resume"), Type("2"), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"),
                      Shows("Ksh 404"), Type(PIN), See("pi.done")])

    await run(slow, [Type(PIN), See("err.no_funds_short"), See("pay.failed"), Ends()])

    assert (await intent(gw, first)).intent.status is IntentStatus.PENDING
    assert (await intent(gw, second)).intent.status is IntentStatus.SUCCEEDED
    assert await gw.wallet(payer) == Money.of(196, KES) and await gw.wallet(shop[0]) == Money.of(400, KES)
    failed = await gw.rows("SELECT status, error_code FROM payments WHERE payer_user_id = :u AND status = 'failed'",
                           u=payer.id)
    assert [tuple(row) for row in failed] == [("failed", "insufficient_funds")]


async def test_requests_come_a_page_of_three_at_a_time(gw, phone_for):
    shop = await merchant(gw, name="Soko la Mama Wanjiku Ltd")
    other = await merchant(gw, name="Jua Kali Hardware")
    payer = await customer(gw, funds=1000)
    for n in range(4):
        await ask(gw, shop if n % 2 == 0 else other, payer, 100 + n)

    more = CATALOGS.text("en", "nav.more")
    phone = phone_for(payer.phone)
    await run(phone, [
        Dial(), Type(REQUESTS["KE"]), See("pi.pick"), Shows("1. Jua Kali Har.. Ksh 103"),
        Shows("2. Soko la Mama.. Ksh 102"), Shows("3. Jua Kali Har.. Ksh 101"), Shows(more), Type("98"),
        See("pi.pick"), Shows("1. Soko la Mama.. Ksh 100"), Continues()])
    assert more not in phone.screen and "2." not in phone.screen  # the last page, of one
    await run(phone, [
        Type("98"), See("note.invalid_choice"), Type("1"), See("pi.confirm"), Shows("Soko la Mama Wanjiku Ltd"),
        Shows("Ksh 100"), Type(PIN), See("pi.done"), Ends()])
    assert await gw.wallet(shop[0]) == Money.of(100, KES) and await gw.wallet(other[0]) == Money.zero(KES)


async def test_a_next_page_that_ended_meanwhile_shows_the_first_again(gw, phone_for):
    shop, other = await merchant(gw), await merchant(gw, name="Jua Kali Hardware")
    payer = await customer(gw, funds=1000)
    oldest = await ask(gw, shop, payer, 100)
    for n in range(1, 4):
        # One merchant holds at most `max_pending_intents_per_merchant` (3) of them.
        await ask(gw, other if n == 1 else shop, payer, 100 + n)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), See("pi.pick"), Shows("Ksh 103"), Continues()])
    await gw.payments.intents.cancel(oldest.intent.public_id, api_key_id=shop[1], user_id=None)

    await run(phone, [Type("98"), See("pi.pick"), Shows("1. Duka la Njeri Ksh 103"), Continues()])
    assert CATALOGS.text("en", "nav.more") not in phone.screen


async def test_the_menu_offers_requests_only_when_some_are_open(gw, phone_for):
    payer = await customer(gw, funds=100)
    plain = phone_for(payer.phone)
    await run(plain, [Dial(), See("home"), Continues()])
    assert label("en") not in plain.screen and "7." not in plain.screen

    view = await ask(gw, await merchant(gw), payer, 50)
    # The SMS naming the option (sent by the outbox worker, whose reads are not the dial's).
    assert label("en") in await sms_saying(gw, payer.phone, view.intent.code)
    asked = phone_for(payer.phone)
    with statements(gw.engine) as seen:
        await run(asked, [Dial(), See("home"), Shows(f"7. {label('en')}")])
    # Counted in the one read of who is calling (`payments.contacts.read_caller`), not a read more.
    assert [level for sql, level in seen if "outbox_jobs" not in sql] == ["AUTOCOMMIT"]
    # Every other option keeps its number: 1 is still Send money, 6 My account.
    assert plain.screen.splitlines()[1:] == asked.screen.splitlines()[1:7]
    await run(asked, [Type("6"), See("acct.menu")])


async def test_a_retried_paying_hop_shows_the_same_screen_and_pays_once(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    first, second = await ask(gw, shop, payer, 200), await ask(gw, shop, payer, 300)

    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), Type("2"), Type(PIN), See("pi.done")])
    done = phone.screen
    assert await phone.retry() == done and await phone.retry() == done
    # A twin of the paying hop racing a fresh copy of it: still one payment.
    twin = phone_for(payer.phone)
    await run(twin, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm")])
    results = await asyncio.gather(twin.type(PIN), twin.retry(), twin.retry())
    assert len(set(results)) == 1 and all(CATALOGS.text("en", "pi.gone") not in r for r in results)

    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u", u=payer.id) == 2
    assert await gw.wallet(payer) == Money.of(1000 - 202 - 303, KES)
    assert await gw.wallet(shop[0]) == Money.of(500, KES)
    for asked in (first, second):
        assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED


async def test_a_request_paid_already_shows_as_paid_not_as_gone(gw, phone_for):
    """The answer to the PIN hop was lost (the telco timed out): the customer dials again, resumes at
    the confirmation and types the PIN once more. They paid: they are told so, with the reference."""
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 200)
    first, again = phone_for(payer.phone), phone_for(payer.phone)
    await run(first, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm")])
    await run(again, [Dial(), See("sys.resume"), Type("2"), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"),
                      Type(PIN), See("pi.done")])

    await run(first, [Type(PIN), See("pi.done"), Ends()])

    paid = await intent(gw, asked)
    assert paid.intent.status is IntentStatus.SUCCEEDED and paid.payment is not None
    assert await gw.wallet(shop[0]) == Money.of(200, KES)
    # Its reference on both screens: one payment.
    assert await gw.scalar("SELECT count(*) FROM payments WHERE payer_user_id = :u AND status = 'succeeded'",
                           u=payer.id) == 1


async def test_declining_a_request_paid_meanwhile_says_it_was_paid(gw, phone_for):
    """Kept for later, then paid from the customer's app; the USSD session goes on to decline it:
    the customer is told it was paid, with the reference, never that no money was taken."""
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    asked = await ask(gw, shop, payer, 300)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(REQUESTS["KE"]), Type("1"), See("pi.confirm"), Type("0"), See("pi.keep")])
    paid = await gw.payments.intents.pay(PayIntent("app-1", payer.id, asked.intent.public_id, Channel.API))
    assert paid.payment is not None

    await run(phone, [Type("2"), See("pi.done"), Ends()])

    assert paid.payment.reference in phone.screen and "No money" not in phone.screen, phone.screen
    assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED


async def test_the_option_goes_once_the_last_request_is_answered(gw, phone_for):
    shop = await merchant(gw)
    payer = await customer(gw, funds=1000)
    await ask(gw, shop, payer, 100)
    await run(phone_for(payer.phone), [
        Dial(), Shows(label("en")), Type(REQUESTS["KE"]), Type("1"), Type("0"), See("pi.keep"), Type("2"),
        See("pi.declined"), Ends()])
    await assert_not_offered(phone_for, payer)


async def test_an_agent_finds_requests_to_pay_on_its_own_menu(gw, phone_for):
    shop = await merchant(gw)
    clerk = await customer(gw, funds=1000)
    async with gw.engine.begin() as conn:
        await register_agent(conn, clerk.id, business_name="Kiosk")
    asked = await ask(gw, shop, clerk, 150)
    # The agent menu's six options keep their numbers; the requests come seventh, while some are open.
    await run(phone_for(clerk.phone), [
        Dial(), See("ag.home"), Shows(f"7. {label('en')}"), Type("7"), See("pi.pick"), Type("1"), See("pi.confirm"),
        Type(PIN), See("pi.done"), Ends()])
    assert (await intent(gw, asked)).intent.status is IntentStatus.SUCCEEDED
