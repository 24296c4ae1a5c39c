"""Shortening a screen to fit: names and descriptions are cut in GSM-7 septets (an extension
character such as ``{`` or ``€`` takes two), shortening ends once nothing can get shorter, and a
screen that still does not fit is cut at the limit rather than sent too long. Rendering runs on the
event loop at every hop: a screen that never finishes rendering stops the whole gateway."""

from __future__ import annotations

import threading

import pytest

from dialogs.assembly import sauti_journeys
from dialogs.catalog import LANGUAGES
from dialogs.display import money_text, phone_text
from dialogs.gsm7 import SCREEN_LIMIT, length
from dialogs.render import Rendered, _shortened, render
from payments.money import Currency, Money

JOURNEYS = sauti_journeys(None)
CATALOGS = JOURNEYS.catalogs
PIN_NOTES = [None, "err.wrong_pin", "err.wrong_pin_last", "err.pin_format", "note.invalid_choice", "note.empty"]


def rendered_in_time(screen_id: str, language: str, values: dict, note: str | None) -> Rendered:
    """``render``, on a thread of its own: a render that loops fails this test instead of hanging it."""
    done: list[Rendered] = []
    worker = threading.Thread(target=lambda: done.append(render(
        CATALOGS, JOURNEYS.screen(screen_id), language=language, values=values, note=note)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert done, f"rendering {screen_id} in {language} under {note} did not end"
    return done[0]


@pytest.mark.parametrize("language", LANGUAGES)
def test_names_and_descriptions_of_extension_characters_end_shortened_and_fit(language):
    """An Ivorian merchant (the longest numbers) with a name and a description of ``{`` or ``€``:
    each shortened to eight characters is still sixteen septets. It looped for ever."""
    amount = Money.of(999_999, Currency.XOF)
    for name in ("{" * 30, "€" * 30, "Java House [Westlands] Nairobi"):
        for about in ("{" * 40, "€" * 40, "[Order 42] " * 4):
            values = {"name": name, "number": f" {phone_text('+2250701234567')}", "about": f" ({about[:40]})",
                      "amount": money_text(amount), "fee": money_text(Money.of(9_999, Currency.XOF)),
                      "total": money_text(Money.of(1_009_998, Currency.XOF)), "tries": "2", "pin_length": "4"}
            for note in PIN_NOTES:
                text = rendered_in_time("pi.confirm", language, values, note).text
                assert length(text) <= SCREEN_LIMIT, (name, about, note, length(text), text)
                # The figures are never cut, the description keeps its bracket.
                for figure in (values["amount"], values["fee"], values["total"]):
                    assert figure in text, (note, text)
                assert "..)" in text or f"({about[:40]})" in text, text


def test_a_value_at_its_shortest_is_no_longer_offered_for_shortening():
    # Eleven characters with a bracket: cut to eight and "..)", it comes back the same.
    assert _shortened({"about": " (abcdefgh)"}, 5) is None
    # The floor is in septets: four "{" are eight, as eight letters are.
    assert _shortened({"name": "{" * 4 + "..", "about": " (" + "€" * 3 + "..)"}, 40) is None
    # The longest value that can still get shorter is the one cut, in septets.
    cut = _shortened({"name": "{" * 8 + "..", "recipient": "Nyambura Wanjiku-Kamau Ochieng"}, 10)
    assert cut is not None and cut["name"] == "{" * 8 + ".." and cut["recipient"] == "Nyambura Wanjiku-K.."
    euro = _shortened({"name": "€" * 20}, 10)
    assert euro is not None and euro["name"] == "€" * 14 + ".." and length(euro["name"]) == 40 - 10


def test_a_screen_that_cannot_be_shortened_enough_is_cut_at_the_limit():
    """No value of this screen may be shortened (a balance is shown whole or not at all): too long,
    it is cut at the limit rather than sent over it (never with the values Sauti shows)."""
    text = rendered_in_time("acct.bal.show", "en", {"balance": "€" * 200}, "acct.bal.held").text
    assert length(text) <= SCREEN_LIMIT and text.endswith("..")
