"""Contact matching: spelling and sound, nicknames, and refusing to guess."""

from __future__ import annotations

import pytest

from nlu.contacts import compact, match_contact, sound_key
from nlu.results import Contact


def match(words: str, contacts) -> str | None:
    """Match one candidate span (all of `words`) and return the contact's name."""
    found = match_contact([(compact(words), 0, len(words.split()))], contacts)
    return found.contact.name if found else None


@pytest.mark.parametrize(
    ("said", "name"),
    [
        ("donkamao", "John Kamau"),  # a transcriber's "John Kamau"
        ("john kamau", "John Kamau"),
        ("jhon", "John Kamau"),
        ("kamao", "John Kamau"),
        ("mama", "Grace Wanjiru"),  # nickname
        ("MAMA", "Grace Wanjiru"),
        ("kevo", "Kevin Mutua"),
        ("musa", "Moussa Diop"),
        ("fatu", "Fatou Sow"),
        ("awa", "Awa Ndiaye"),
        ("Peter Otieno", "Peter Otieno"),
        ("otieno", "Peter Otieno"),
    ],
)
def test_finds_the_contact(said: str, name: str, contacts) -> None:
    assert match(said, contacts) == name


@pytest.mark.parametrize("said", ["tuma", "baba", "wave", "pesa", "xyz", "brian"])
def test_does_not_invent_a_contact(said: str, contacts) -> None:
    assert match(said, contacts) is None


def test_two_johns_make_a_question() -> None:
    book = (Contact("John Kamau", None, "+254712345678"), Contact("John Otieno", None, "+254733444555"))
    assert match("john", book) is None
    assert match("john otieno", book) == "John Otieno"


def test_longer_span_wins_a_tie(contacts) -> None:
    spans = [(compact("john"), 3, 4), (compact("john kamau"), 3, 5)]
    found = match_contact(spans, contacts)
    assert found is not None and (found.token_start, found.token_end) == (3, 5)


def test_no_contacts_no_match() -> None:
    assert match_contact([("john", 0, 1)], ()) is None
    assert match_contact([], (Contact("John", None, "+254712345678"),)) is None


def test_keys() -> None:
    assert compact("Jôhn-Kamau") == "johnkamau"
    assert sound_key("moussa") == sound_key("musa")
