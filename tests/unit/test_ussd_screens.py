"""Every screen of every journey, in every language, fits one USSD page (182 GSM-7 characters, escape
characters counted twice) with long realistic values and any note above it; catalogs agree; long lists
paginate with the navigation labelled in the caller's language."""

from __future__ import annotations

import pytest

from dialogs.assembly import sauti_journeys
from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.gsm7 import SCREEN_LIMIT, is_gsm7, length
from dialogs.render import render
from dialogs.screens import Action, Confirm, End, Input, Menu, Notice

JOURNEYS = sauti_journeys(None)
CATALOGS = JOURNEYS.catalogs
ENGINE_NOTES = ["note.invalid_choice", "note.empty"]
ALL_ERRORS = sorted(k for k in CATALOGS.texts["en"] if k.startswith("err."))
#: What `pay` says on the end screens of a payment that did not go through.
PAY_NOTES = ["err.limit", "err.closed", "err.no_funds_short", "err.busy", "err.recipient_currency"]


def notes_for(screen) -> list[str | None]:
    """Every note that can be shown above ``screen``: the engine's on anything that takes input, any
    validator's or action's on an input (the strictest reading), the PIN's on a confirmation, and a
    refusal's on the end screens of payments."""
    if isinstance(screen, Input):
        return [None, *ENGINE_NOTES, *ALL_ERRORS]
    if isinstance(screen, Confirm):
        return [None, *ENGINE_NOTES, "err.pin_format", "err.wrong_pin", "err.wrong_pin_last"]
    if isinstance(screen, Menu | Notice):
        return [None, *ENGINE_NOTES]
    if screen.id in ("pay.refused", "pay.failed"):
        return [None, *PAY_NOTES]
    if screen.id == "acct.bal.show":
        return [None, "acct.bal.held"]  # money held for a cash-out, said above what can be spent
    return [None]

STATEMENT = [
    "28/11 -Ksh 120,000 Nyambura Wanjiku-Kamau Ochieng Achieng",
    "27/11 +Ksh 999,999.50 M-Pesa",
    "26/11 -1 250 000 FCFA Aminata Ndiaye Diop Fall Sarr",
    "25/11 +Ksh 3,000 0712 345678",
    "24/11 -Ksh 45,500 Abdoulaye Mamadou Seydou Ba",
]


def long_values(currency: str) -> dict[str, object]:
    """The longest values a screen can show: amounts near the limits, a 40-character name plus a
    number, a full payment reference, the longest example number."""
    big, fee, total = (("Ksh 999,999", "Ksh 10,000", "Ksh 1,009,999") if currency == "KES"
                       else ("999 999 FCFA", "9 999 FCFA", "1 009 998 FCFA"))
    return {
        "amount": big, "fee": fee, "total": total, "balance": "Ksh 12,345,678.50" if currency == "KES"
        else "12 345 678 FCFA", "currency": currency, "provider": "M-Pesa" if currency == "KES" else "Wave",
        "recipient": "Nyambura Wanjiku-Kamau Ochieng Akinyi 0712 345678", "name": "Nyambura Wanjiku-Kamau Ochieng A",
        "held": "Ksh 1,009,999" if currency == "KES" else "1 009 998 FCFA",
        "ref": "K7Q2M9BXA4", "paybill": "8888800", "account": "ACC1234567890",
        "till": "5123456", "me": "07 01 23 45 67", "until": "23:59", "tries": "2", "example": "07 01 23 45 67",
        "pin_length": "8", "service_code": "*384*12345*99#", "lines": STATEMENT,
        # Three saved contacts, each name cut to fit its line (`CustomerActions.saved_contacts`).
        "plan": "Business", "percent": "0.25%", "used": "49", "allowance": "50",
        "saved": "1. Nyambura Wanjiku..\n2. Abdoulaye Mamad..\n3. Aminata Ndiaye..",
    }


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("currency", ["KES", "XOF"])
def test_every_screen_fits_one_page_in_every_language(language, currency):
    values = long_values(currency)
    checked = 0
    for screen in JOURNEYS.screens.values():
        if isinstance(screen, Action):
            continue
        for note in notes_for(screen):
            first = render(CATALOGS, screen, language=language, values=values, note=note,
                           conditions=JOURNEYS.conditions)
            for page in range(first.pages):
                shown = render(CATALOGS, screen, language=language, values=values, note=note, page=page,
                               conditions=JOURNEYS.conditions)
                assert is_gsm7(shown.text), (screen.id, language, shown.text)
                assert length(shown.text) <= SCREEN_LIMIT, (screen.id, note, length(shown.text), shown.text)
                assert not shown.cut, (screen.id, note, shown.text)  # fitted, not cut at the limit
                assert shown.end == isinstance(screen, End)
                checked += 1
    assert checked >= sum(len(notes_for(s)) for s in JOURNEYS.screens.values() if not isinstance(s, Action))


def test_the_amounts_and_names_stay_readable_when_a_name_is_shortened():
    values = long_values("KES")
    confirm = render(CATALOGS, JOURNEYS.screen("send.confirm"), language="wo", values=values)
    # The summary keeps what matters for the decision: amount, fee, total, the PIN prompt.
    for shown in ("Ksh 999,999", "Ksh 10,000", "Ksh 1,009,999", "PIN"):
        assert shown in confirm.text
    assert "Nyambura" in confirm.text


def test_catalogs_have_the_same_keys_and_placeholders_and_are_gsm7():
    catalogs = load_catalogs()
    assert set(catalogs.languages) == {"en", "sw", "fr", "wo"}
    keys = set(catalogs.texts["en"])
    for language in catalogs.languages:
        assert set(catalogs.texts[language]) == keys
        for key, text in catalogs.texts[language].items():
            assert is_gsm7(text), (language, key, text)


def test_catalogs_are_not_copies_of_english():
    catalogs = load_catalogs()
    for language in ("sw", "fr", "wo"):
        same = [k for k, t in catalogs.texts[language].items()
                if t == catalogs.texts["en"][k] and not k.startswith(("lang.", "goods.pochi", "home"))]
        assert same == [], (language, same)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_long_statement_paginates_with_navigation_in_the_language(language):
    lines = [f"{d:02d}/11 -Ksh {d * 1000:,} Mwanaisha Abdallah Omar {d}" for d in range(1, 11)]
    screen = JOURNEYS.screen("acct.stmt.show")
    assert isinstance(screen, Notice)
    first = render(CATALOGS, screen, language=language, values={"lines": lines})
    assert first.pages >= 2
    more, back, home = (CATALOGS.text(language, k) for k in ("nav.more", "nav.back", "nav.home"))
    seen = []
    for page in range(first.pages):
        text = render(CATALOGS, screen, language=language, values={"lines": lines}, page=page).text
        assert length(text) <= SCREEN_LIMIT
        assert back in text and home in text
        assert (more in text) == (page < first.pages - 1)
        seen += [line for line in lines if line in text]
    assert seen == lines  # every line once, in order


def test_a_long_menu_keeps_its_numbers_across_pages():
    catalogs = CATALOGS
    menu = Menu("big", "acct.lang", tuple(JOURNEYS.screen("acct.lang").options) * 6)
    first = render(catalogs, menu, language="sw", values={})
    assert first.pages > 1
    texts = [render(catalogs, menu, language="sw", values={}, page=p).text for p in range(first.pages)]
    numbers = [int(line.split(".")[0]) for t in texts for line in t.splitlines() if line[:1].isdigit()
               and "." in line.split(" ")[0]]
    assert numbers == list(range(1, 25))
    assert all("98 Zaidi" in t for t in texts[:-1]) and "98 Zaidi" not in texts[-1]
