"""Requests to pay (payment intents) on screen: every screen of the journey fits one USSD page (182
GSM-7 characters) in every language with the longest values it can show (a full page of requests with
long names and amounts, a 60-character merchant name, a 40-character description, a reference) and
any note that can appear above it; a page of requests reads as numbered lines with ``98`` for more;
the main menu offers "Requests to pay" last, and only while some are open, by the name the SMS gives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from dialogs.assembly import sauti_journeys
from dialogs.callers import intent_values
from dialogs.catalog import LANGUAGES
from dialogs.customer_actions import CustomerActions
from dialogs.display import phone_text
from dialogs.gsm7 import SCREEN_LIMIT, is_gsm7, length
from dialogs.intent_actions import PAGE, IntentActions
from dialogs.intent_journeys import INTENTS, INTENTS_START
from dialogs.render import render
from dialogs.screens import Action, Confirm, End, Menu, Notice
from dialogs.steps import Step
from payments.intent_store import IntentParties, IntentStatus, PaymentIntent
from payments.intents import DESCRIPTION_MAX, IntentView
from payments.money import Currency, Money

JOURNEYS = sauti_journeys(None)
CATALOGS = JOURNEYS.catalogs
ACTIONS = IntentActions(CustomerActions(None), CATALOGS)
ENGINE_NOTES = ["note.invalid_choice", "note.empty"]
PIN_NOTES = ["err.pin_format", "err.wrong_pin", "err.wrong_pin_last"]
LONGEST_NAME = "Nyambura Wanjiku-Kamau Ochieng Akinyi Wambui Njeri Chebet Aa"
DESCRIPTION = "School fees, term 2, Form 3B, 2026/2027."
#: What the intents' actions can say above each screen (a bad pick is "invalid choice"), and above
#: the shared ends they lead to.
NOTES: dict[str, list[str | None]] = {
    "pi.pick": [None, *ENGINE_NOTES],
    "pi.confirm": [None, *ENGINE_NOTES, *PIN_NOTES],
    "pi.keep": [None, *ENGINE_NOTES, "err.no_funds"],
    "pi.none": [None, *ENGINE_NOTES],
    "pay.refused": [None, "err.limit", "err.amount_max", "err.closed", "err.busy"],
    "pay.failed": [None, "err.no_funds_short", "err.busy"],
    "pay.locked": [None],
    "home": [None, *ENGINE_NOTES],
}


def intent(n: int, amount: Money, description: str = DESCRIPTION) -> PaymentIntent:
    now = datetime.now(UTC)
    return PaymentIntent(
        id=1000 - n, public_id=f"pi_01jh8z3k4m5n6p7q8r9s0t1v{n:02d}", api_key_id=1, payee_user_id=50 + n,
        payer_user_id=7, amount=amount, description=description, merchant_reference=None,
        status=IntentStatus.PENDING, idempotency_key=f"k{n}", request_hash="h", payment_id=None, expires_at=now,
        created_at=now, resolved_at=None)


def views(currency: Currency, names: list[str]) -> list[IntentView]:
    # The largest amount the limits allow, with cents where the currency has them.
    amount = Money(99_999_950, currency) if currency is Currency.KES else Money.of(999_999, currency)
    phone = "+254712345678" if currency is Currency.KES else "+221771234567"
    return [IntentView(intent(n, amount), IntentParties(phone, name, "+254700000001", "Amina", "en"))
            for n, name in enumerate(names)]


def step(language: str, currency: Currency, **values: object) -> Step:
    return Step("s", "+254712345678", 7, language, {"currency": currency.value, **values}, {}, "k")


def picked(language: str, currency: Currency) -> dict[str, object]:
    """What a full page of the longest requests, then picking one, leaves in the session (built by
    the actions themselves), with the longest figures the later screens show."""
    at = step(language, currency)
    ACTIONS._show_page(at, views(currency, [LONGEST_NAME] * PAGE), next_before=1)
    at.values["pick"] = "2"
    assert asyncio.run(ACTIONS.choose(at)) == "ok"
    kes = currency is Currency.KES
    return {**at.values, "fee": "Ksh 9,999.99" if kes else "9 999 FCFA",
            "total": "Ksh 1,009,999.49" if kes else "1 009 998 FCFA",
            "balance": "Ksh 12,345,678.50" if kes else "12 345 678 FCFA",
            "ref": "K7Q2M9BXA4", "tries": "2", "until": "23:59", "pin_length": "8", "_open_intents": 10}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("currency", [Currency.KES, Currency.XOF])
def test_every_intent_screen_fits_one_page_in_every_language(language, currency):
    values = picked(language, currency)
    screens = [s for s in INTENTS.screens if not isinstance(s, Action)]
    screens += [JOURNEYS.screen(s) for s in ("pay.refused", "pay.failed", "pay.locked", "home")]
    checked = 0
    for screen in screens:
        for note in NOTES.get(screen.id, [None]):
            shown = render(CATALOGS, screen, language=language, values=values, note=note,
                           conditions=JOURNEYS.conditions)
            assert shown.pages == 1, (screen.id, language, note)
            assert is_gsm7(shown.text), (screen.id, language, shown.text)
            assert length(shown.text) <= SCREEN_LIMIT, (screen.id, note, length(shown.text), shown.text)
            assert not shown.cut, (screen.id, note, shown.text)  # fitted, not cut at the limit
            assert shown.end == isinstance(screen, End)
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_confirmation_shows_the_merchant_the_description_and_the_figures(language):
    values = picked(language, Currency.KES)
    for note in (None, *PIN_NOTES):
        text = render(CATALOGS, JOURNEYS.screen("pi.confirm"), language=language, values=values, note=note).text
        # The figures are never cut; the name and the description are, only as far as they must.
        for figure in ("Ksh 999,999.50", "Ksh 9,999.99", "Ksh 1,009,999.49", "PIN"):
            assert figure in text, (note, text)
        assert "Nyambura" in text and "(School fees" in text, text
        # IMPORTANT: however long the name, the number is never cut from it.
        assert f".. {phone_text('+254712345678')} (" in text, text
        # Cut or whole, the description keeps its closing bracket.
        assert f"({DESCRIPTION})" in text or "..)" in text, text
    short = {**values, "name": "Duka la Njeri", "about": " (Order 42)"}
    text = render(CATALOGS, JOURNEYS.screen("pi.confirm"), language=language, values=short,
                  note="err.wrong_pin_last").text
    assert f"Duka la Njeri {phone_text('+254712345678')} (Order 42)" in text


def test_a_description_as_long_as_intents_allow_is_shown_whole_beside_a_usual_name():
    assert len(DESCRIPTION) == DESCRIPTION_MAX
    for language in LANGUAGES:
        at = step(language, Currency.KES)
        page = views(Currency.KES, ["Mama Mboga Groceries"])
        ACTIONS._show_page(at, page, next_before=None)
        at.values["pick"] = "1"
        assert asyncio.run(ACTIONS.choose(at)) == "ok"
        values = {**at.values, "fee": "Ksh 9,999.99", "total": "Ksh 1,009,999.49"}
        text = render(CATALOGS, JOURNEYS.screen("pi.confirm"), language=language, values=values).text
        # The merchant's number always beside its name (a name is whatever its owner registered).
        assert f"Mama Mboga Groceries {phone_text('+254712345678')} ({DESCRIPTION})" in text, text


def test_a_page_of_requests_is_numbered_lines_then_more_then_back_and_home():
    at = step("fr", Currency.XOF)
    ACTIONS._show_page(at, views(Currency.XOF, [LONGEST_NAME, "Awa", ""]), next_before=1)
    lines = at.values["intents"].split("\n")
    # A merchant with no registered name is shown by its number.
    # The largest amounts leave the names less room than usual (the page fits under any note).
    assert lines[:PAGE] == ["1. Nyambura.. 999 999 FCFA", "2. Awa 999 999 FCFA", "3. 77 123 4.. 999 999 FCFA"]
    # As the engine's own long lists end: 98 more, then 0 back and 00 home, in the caller's language.
    assert lines[PAGE:] == [CATALOGS.text("fr", "nav.more"), "0 Retour  00 Accueil"]
    assert [p[0] for p in at.values["_intent_picks"]] == [f"pi_01jh8z3k4m5n6p7q8r9s0t1v{n:02d}" for n in range(PAGE)]
    assert at.values["_intent_next"] == 1


def test_a_pick_sets_what_the_confirmation_shows_and_a_bad_one_asks_again():
    at = step("en", Currency.KES)
    ACTIONS._show_page(at, [IntentView(intent(0, Money.of(250, Currency.KES), ""),
                                       IntentParties("+254712345678", "Duka", "+254700000001", "A", "en"))], None)
    for bad in ("2", "98", "x"):
        at.values["pick"] = bad
        assert asyncio.run(ACTIONS.choose(at)) == "again" and at.note == "note.invalid_choice"
    # 0 on the first page: back to the menu the list was opened from.
    at.values["pick"] = "0"
    assert asyncio.run(ACTIONS.choose(at)) == "back"
    at.values["pick"] = "1"
    assert asyncio.run(ACTIONS.choose(at)) == "ok"
    assert (at.values["name"], at.values["number"], at.values["amount"], at.values["about"]) == (
        "Duka", " 0712 345678", "Ksh 250", "")
    assert at.values["_intent"] == "pi_01jh8z3k4m5n6p7q8r9s0t1v00" and at.values["_payee"] == 50
    # A page listed before the name and the number were kept apart still picks.
    legacy = step("en", Currency.KES, _intent_picks=[["pi_x", "Duka 0712 345678", 25000, "KES", "", 50]], pick="1")
    assert asyncio.run(ACTIONS.choose(legacy)) == "ok"
    assert (legacy.values["name"], legacy.values["number"]) == ("Duka 0712 345678", "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_menu_offers_requests_to_pay_last_and_only_while_some_are_open(language):
    home = JOURNEYS.screen("home")
    assert isinstance(home, Menu) and home.options[-1].goto == INTENTS_START
    label = CATALOGS.text(language, "menu.intents")
    for currency, count in (("KES", 7), ("XOF", 5)):
        without = render(CATALOGS, home, language=language, values={"currency": currency},
                         conditions=JOURNEYS.conditions).text
        with_some = render(CATALOGS, home, language=language, values={"currency": currency, **intent_values(2)},
                           conditions=JOURNEYS.conditions).text
        assert label not in without and with_some.startswith(without)
        assert with_some.endswith(f"\n{count}. {label}")
    assert intent_values(0) == {} and intent_values(3) == {"_open_intents": 3}
    # The SMS that tells the customer about a request names the option as the menu does.
    assert label in CATALOGS.text(language, "sms.intent")


def test_the_journey_is_data_that_leads_to_the_shared_ends():
    kinds = {type(s) for s in INTENTS.screens}
    assert {Action, Confirm, End, Menu, Notice} <= kinds
    confirm = JOURNEYS.screen("pi.confirm")
    assert isinstance(confirm, Confirm) and (confirm.next, confirm.cancel) == ("pi.pay", "pi.keep")
    pay = JOURNEYS.screen("pi.pay")
    assert isinstance(pay, Action)
    assert dict(pay.outcomes) == {"done": "pi.done", "failed": "pay.failed", "gone": "pi.gone",
                                  "wrong_pin": "pi.confirm", "locked": "pay.locked", "refused": "pay.refused"}
