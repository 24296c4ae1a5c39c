"""Which request to pay a caller means (`dialogs.voice_requests.narrow`), read by the real embedded
parser with the merchants asking as the address book, as `dialogs.voice_commands` reads it.

Answering the list just read out ("1: Naivas, 2 shillings. 2: Java House, 1,500 shillings. ..."), a
bare number is a place in it, even where a request asks that very amount; a number said as money is
an amount."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from dialogs.voice_requests import Listed, merchants, narrow
from nlu.parser import EmbeddedParser, load_embedded_parser


@pytest.fixture(scope="module")
def parser(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedParser:
    cache: Path = tmp_path_factory.mktemp("nlu-cache")
    return load_embedded_parser(cache_dir=cache)


def request(n: int, merchant: str, shillings: int, description: str | None = None) -> Listed:
    """A listed request of ``shillings`` (Ksh), as `Listed.of` keeps one."""
    phone = f"+25470000{n:04d}"
    return Listed([f"pi_{n:026d}", [merchant, phone], shillings * 100, "KES", description, n], merchant, phone)


#: As read out, newest first: the first asks Ksh 2 (a deposit, a bag), the second Ksh 1,500.
LISTED = (request(1, "Naivas", 2), request(2, "Java House", 1500, "Lunch"), request(3, "Carrefour", 300))


def picked(parser: EmbeddedParser, said: str, *, language: str = "en", listed: Sequence[Listed] = LISTED,
           answering: bool = True) -> list[int]:
    parse = parser.parse(said, language=language, contacts=merchants(listed))
    return narrow(listed, parse, answering=answering)


@pytest.mark.parametrize(("said", "language"), [
    ("2", "en"), ("two", "en"), ("the second", "en"), ("the second one", "en"), ("number 2", "en"),
    ("number two", "en"), ("the 2 one", "en"),
    ("2", "sw"), ("mbili", "sw"), ("ya pili", "sw"), ("ombi la pili", "sw"),
    ("2", "fr"), ("deux", "fr"), ("la deuxième", "fr"),
])
def test_a_bare_two_is_the_second_even_when_a_request_asks_two_shillings(parser, said, language):
    assert picked(parser, said, language=language) == [1]


@pytest.mark.parametrize(("said", "language"), [
    ("2 shillings", "en"), ("two shillings", "en"), ("Ksh 2", "en"), ("shs 2", "en"), ("2 bob", "en"),
    ("2/-", "en"), ("2.00", "en"), ("shilingi mbili", "sw"),
])
def test_two_said_as_money_is_the_request_of_two_shillings(parser, said, language):
    assert picked(parser, said, language=language) == [0]


@pytest.mark.parametrize("said", ["1500", "1,500", "one thousand five hundred", "elfu moja mia tano"])
def test_an_amount_no_place_could_be_picks_its_request(parser, said):
    assert picked(parser, said) == [1]


def test_the_other_places_are_read_as_places_too(parser):
    assert picked(parser, "1") == [0]
    assert picked(parser, "3") == [2] and picked(parser, "the third") == [2]
    assert picked(parser, "300") == [2]


@pytest.mark.parametrize("said", ["2000", "2k", "two thousand", "elfu mbili", "the 3 thousand one", "the blue one"])
def test_what_is_neither_a_place_nor_an_amount_asked_picks_none(parser, said):
    assert picked(parser, said) == []


@pytest.mark.parametrize("said", ["not the first, the second", "the first or the third"])
def test_words_that_name_two_places_name_none(parser, said):
    assert picked(parser, said) == []


def test_two_said_as_money_when_no_request_asks_it_is_no_place(parser):
    listed = (request(1, "Naivas", 250), request(2, "Java House", 1500))
    assert picked(parser, "2 shillings", listed=listed) == []
    assert picked(parser, "2", listed=listed) == [1]


def test_a_number_past_the_list_is_an_amount_if_a_request_asks_it(parser):
    listed = (request(1, "Naivas", 250), request(2, "Kiosk", 5))
    assert picked(parser, "5", listed=listed) == [1]
    assert picked(parser, "4", listed=listed) == []


def test_two_requests_of_the_amount_said_are_a_question(parser):
    listed = (request(1, "Naivas", 2), request(2, "Java House", 1500), request(3, "Kiosk", 2))
    assert picked(parser, "2 shillings", listed=listed) == [0, 2]
    assert picked(parser, "2", listed=listed) == [1]


def test_a_first_command_names_a_request_by_its_amount_not_its_place(parser):
    # No list was read out yet: "the 2 request" can only be the one of Ksh 2.
    assert picked(parser, "pay the 2 shillings request", answering=False) == [0]
    assert picked(parser, "pay the request from java house", answering=False) == [1]
