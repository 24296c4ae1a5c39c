"""Journeys as data: the shipped set is valid and drawable; a broken one is refused at start-up with
every problem named; GSM-7 normalisation and counting."""

from __future__ import annotations

import pytest

from dialogs.assembly import sauti_journeys
from dialogs.catalog import load_catalogs
from dialogs.gsm7 import SCREEN_LIMIT, is_gsm7, length, normalise
from dialogs.journey import JourneyError, build_journeys, draw
from dialogs.screens import Action, End, Input, Journey, Menu, Option
from dialogs.steps import ActionSpec

CATALOGS = load_catalogs()


async def _noop(step) -> str:
    return "ok"


def _build(screens, *, actions=None, validators=None, start="home"):
    return build_journeys([Journey("customer", start, tuple(screens)), Journey("register", "r", (End("r", "home"),))],
                          registration="register", homes=[("customer", "customer")], catalogs=CATALOGS,
                          actions=actions if actions is not None else {"act": ActionSpec(_noop, frozenset({"ok"}))},
                          validators=validators if validators is not None else {"amount": lambda t, v: t})


def test_the_shipped_journeys_are_valid_and_every_screen_is_reachable():
    journeys = sauti_journeys(None)
    assert {"register", "customer", "system"} <= {j.name for j in journeys.journeys}
    assert journeys.home_for({"customer"}) == "home"
    assert journeys.registration_start == "reg.language"


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_the_journeys_draw_as_mermaid_and_dot(fmt):
    drawing = draw(sauti_journeys(None), fmt)
    assert drawing.startswith("flowchart TD" if fmt == "mermaid" else "digraph journeys {")
    for screen_id in ("send_confirm", "send_pay", "acct_stmt_show", "reg_welcome"):
        assert screen_id in drawing
    assert ("-->|" if fmt == "mermaid" else "->") in drawing
    assert "Send money" in drawing  # option labels come from the English catalog


def test_every_problem_is_named_at_once():
    screens = [
        Menu("home", "home", (Option("menu.send", "nowhere"), Option("no.such.label", "pin"))),
        Input("pin", "acct.pin", field="pin", validator="pin", next="done", secret=True),  # PIN not into an action
        Action("run", "", run="missing", outcomes=(("ok", "done"),)),
        Action("run2", "", run="act", outcomes=(("ok", "done"), ("other", "done"))),
        End("done", "no.such.text"),
        End("orphan", "home"),
    ]
    with pytest.raises(JourneyError) as caught:
        _build(screens)
    message = str(caught.value)
    for expected in ("screen home: leads to unknown screen 'nowhere'",
                     "catalog key 'no.such.label' (option) is missing",
                     "screen pin: unknown validator 'pin'",
                     "screen pin: a PIN must go straight to an action",
                     "screen run: unknown action 'missing'",
                     "screen run2: act never gives outcome 'other'",
                     "screen done: catalog key 'no.such.text' is missing",
                     "screen orphan cannot be reached"):
        assert expected in message, message


def test_an_outcome_without_a_screen_is_refused():
    spec = ActionSpec(_noop, frozenset({"ok", "failed"}))
    with pytest.raises(JourneyError, match="outcome 'failed' of act leads nowhere"):
        _build([Menu("home", "home", (Option("menu.send", "run"),)),
                Action("run", "", run="act", outcomes=(("ok", "home"),))], actions={"act": spec})


def test_gsm7_normalisation_keeps_gsm_accents_and_maps_the_rest():
    assert normalise("Réf à Dakar, ñ, ü") == "Réf à Dakar, ñ, ü"  # all in GSM-7
    assert normalise("Français, fenêtre, Njëlbéen, jóge") == "Francais, fenetre, Njelbéen, joge"
    assert normalise("“quoted” – it’s…") == '"quoted" - it\'s...'
    assert normalise("emoji 😀") == "emoji ?"
    assert is_gsm7(normalise("ŋ œ Œ ç î ô û ï"))


def test_gsm7_length_counts_escape_characters_twice():
    assert length("abc") == 3
    assert length("€[]{}") == 10
    with pytest.raises(ValueError):
        length("ç")
    assert SCREEN_LIMIT == 182
