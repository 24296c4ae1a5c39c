"""The agent menu and cash at an agent, on screen: every screen fits one USSD page (182 GSM-7
characters) in every language with the longest values they can show (a full page of requests with
long names and amounts, a 40-character name, a payment reference) and any note that can appear
above it; a page of requests reads as numbered lines with ``98`` for more."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialogs.agent_actions import PAGE, AgentActions, agent_number, pick
from dialogs.agent_journeys import AGENT, AGENT_CASH
from dialogs.assembly import sauti_journeys
from dialogs.catalog import LANGUAGES
from dialogs.gsm7 import SCREEN_LIMIT, is_gsm7, length
from dialogs.render import render
from dialogs.screens import Action, Confirm, End, Input, Menu, Notice
from dialogs.steps import Invalid, Step
from payments.cash_requests import CashRequest, CashRequestStatus, PendingLine
from payments.commands import PaymentKind
from payments.money import Currency, Money

JOURNEYS = sauti_journeys(None)
CATALOGS = JOURNEYS.catalogs
ENGINE_NOTES = ["note.invalid_choice", "note.empty"]
#: What the agent actions say above an input (and what the customer's shared validators say).
INPUT_NOTES = ["err.amount", "err.phone", "err.agent_number", "err.agent_unknown", "err.agent_self", "err.no_wallet",
               "err.float_low", "err.amount_max", "err.limit", "err.recipient", "err.no_funds"]
#: Lists of requests show only the engine's notes (a bad pick is "invalid choice").
PICKS = {"ag.in.pick", "ag.out.pick"}


def notes_for(screen) -> list[str | None]:
    if isinstance(screen, Input) and screen.id in PICKS:
        return [None, *ENGINE_NOTES]
    if isinstance(screen, Input):
        return [None, *ENGINE_NOTES, *INPUT_NOTES, "err.pin_format", "err.wrong_pin", "err.wrong_pin_last"]
    if isinstance(screen, Confirm):
        return [None, *ENGINE_NOTES, "err.pin_format", "err.wrong_pin", "err.wrong_pin_last"]
    if isinstance(screen, Menu | Notice):
        return [None, *ENGINE_NOTES]
    return [None]


def request(n: int, amount: Money) -> CashRequest:
    now = datetime.now(UTC)
    return CashRequest(
        id=1000 - n, public_id=f"cr_01jh8z3k4m5n6p7q8r9s0t1v{n:02d}", kind=PaymentKind.CASH_IN, channel="ussd",
        customer_user_id=n, agent_user_id=99, amount=amount, fee=Money.zero(amount.currency),
        commission=Money(amount.minor // 50, amount.currency), status=CashRequestStatus.PENDING,
        requested_by_user_id=n, idempotency_key=f"k{n}", request_hash="h", hold_id=None, payment_id=None,
        expires_at=now, resolved_by_user_id=None, resolution_key=None, reason=None, created_at=now, resolved_at=None)


def full_page(language: str, currency: Currency) -> dict[str, object]:
    """The values a page of the longest requests leaves in the session (built by the action itself)."""
    amount = Money.of(999_999, currency)
    lines = [PendingLine(request(n, amount), "Nyambura Wanjiku-Kamau Ochieng", "+254712345678")
             for n in range(PAGE)]
    step = Step("s", "+254712345678", 99, language, {}, {}, "k")
    AgentActions(None, CATALOGS)._show_page(step, lines, next_before=1)
    return step.values


def long_values(language: str, currency: str) -> dict[str, object]:
    big = "Ksh 999,999" if currency == "KES" else "999 999 FCFA"
    balance = "Ksh 12,345,678.50" if currency == "KES" else "12 345 678 FCFA"
    return {
        **full_page(language, Currency(currency)), "amount": big, "fee": big, "total": "Ksh 1,009,999",
        "commission": "Ksh 19,999.98", "float": balance, "today": balance, "month": balance, "all_time": balance,
        "balance": balance, "currency": currency, "provider": "M-Pesa" if currency == "KES" else "Wave",
        "name": "Nyambura Wanjiku-Kamau Ochieng Akinyi", "customer": "0712 345678", "code": "T1V2W3",
        "recipient": "Nyambura Wanjiku-Kamau Ochieng Akinyi 1234567890", "ref": "K7Q2M9BXA4",
        "minutes": "1440", "tries": "2", "until": "23:59", "example": "07 01 23 45 67", "pin_length": "8",
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("currency", ["KES", "XOF"])
def test_every_agent_screen_fits_one_page_in_every_language(language, currency):
    values = long_values(language, currency)
    checked = 0
    for journey in (AGENT, AGENT_CASH):
        for screen in journey.screens:
            if isinstance(screen, Action):
                continue
            for note in notes_for(screen):
                shown = render(CATALOGS, screen, language=language, values=values, note=note,
                               conditions=JOURNEYS.conditions)
                assert shown.pages == 1, (screen.id, language)
                assert is_gsm7(shown.text), (screen.id, language, shown.text)
                assert length(shown.text) <= SCREEN_LIMIT, (screen.id, note, length(shown.text), shown.text)
                assert not shown.cut, (screen.id, note, shown.text)  # fitted, not cut at the limit
                assert shown.end == isinstance(screen, End)
                checked += 1
    assert checked > 100


def test_the_withdraw_and_deposit_menus_offer_cash_at_an_agent():
    for menu, start in (("wd.menu", "ca.out.agent"), ("dep.menu", "ca.in.agent")):
        screen = JOURNEYS.screen(menu)
        assert isinstance(screen, Menu) and [o.goto for o in screen.options][-1] == start
        shown = render(CATALOGS, screen, language="sw", values={"provider": "M-Pesa"})
        assert "1. K" in shown.text and "pesa ya simu\n2. Pesa taslimu kwa wakala" in shown.text


def page_of(language: str, amount: Money, next_before: int | None = 1) -> dict[str, object]:
    lines = [PendingLine(request(n, amount), "Nyambura Wanjiku-Kamau Ochieng", "+254712345678") for n in range(PAGE)]
    step = Step("s", "+254712345678", 99, language, {}, {}, "k")
    AgentActions(None, CATALOGS)._show_page(step, lines, next_before=next_before)
    return step.values


def test_a_page_of_requests_is_numbered_lines_then_more_then_back_and_home():
    values = page_of("en", Money.of(1_000, Currency.KES))
    lines = values["requests"].split("\n")
    assert lines[:PAGE] == [f"{n}. Nyambura Wan.. Ksh 1,000" for n in range(1, PAGE + 1)]
    # As the engine's own long lists end: 98 more, then 0 back and 00 home, in the caller's language.
    assert lines[PAGE:] == ["98 More", "0 Back  00 Home"]
    assert [p[0] for p in values["_picks"]] == [f"cr_01jh8z3k4m5n6p7q8r9s0t1v{n:02d}" for n in range(PAGE)]
    assert values["_next"] == 1
    assert page_of("fr", Money.of(25_000, Currency.XOF))["requests"].split("\n")[PAGE:] == [
        CATALOGS.text("fr", "nav.more"), "0 Retour  00 Accueil"]
    # The last page: no "more", the navigation still.
    assert page_of("sw", Money.of(100, Currency.KES), None)["requests"].split("\n")[PAGE:] == ["0 Rudi  00 Mwanzo"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_names_are_cut_shorter_only_where_the_largest_amounts_need_the_room(language):
    """A full page of the largest amounts, under the longest note, fits one screen: the names give
    way (never below a few letters), the amounts never do."""
    values = full_page(language, Currency.XOF)
    lines = values["requests"].split("\n")[:PAGE]
    assert all(line.endswith(" 999 999 FCFA") and line[3:7] == "Nyam" for line in lines), lines
    for screen in ("ag.in.pick", "ag.out.pick"):
        for note in notes_for(JOURNEYS.screen(screen)):
            shown = render(CATALOGS, JOURNEYS.screen(screen), language=language, values=values, note=note)
            assert length(shown.text) <= SCREEN_LIMIT and not shown.cut, (note, shown.text)


def test_agent_numbers_and_picks_are_checked_before_anything_runs():
    assert agent_number("123 456", {}) == "123456"
    for bad in ("12", "12345678901", "abc123", "１２３４５"):
        with pytest.raises(Invalid):
            agent_number(bad, {})
    assert pick("2", {}) == "2" and pick("98", {}) == "98"
    for bad in ("x", "123", "-1"):
        with pytest.raises(Invalid):
            pick(bad, {})
