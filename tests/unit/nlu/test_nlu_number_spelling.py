"""Misspelt and misheard scale words after a number are read as meant; nothing else is touched."""

from __future__ import annotations

import pytest

from nlu.number_spelling import repair_scale_words
from nlu.parser import EmbeddedParser
from nlu.tokens import tokenize


@pytest.mark.parametrize(("said", "amount"), [
    ("send two thousnd to John", 2000),
    ("send five hundrd to John", 500),
    ("send two ndousand to John", 2000),  # Whisper on eSpeak NG's "thousand" at 8 kHz
    ("send 3 thosand to John", 3000),
])
def test_a_misspelt_scale_word_after_a_number_counts(parser: EmbeddedParser, contacts, said: str, amount: int) -> None:
    parse = parser.parse(said, contacts=contacts)
    assert (parse.amount, parse.value("recipient")) == (amount, "John Kamau")


@pytest.mark.parametrize("said", [
    "pay my husband two thousand",  # not after a number
    "send two husband",  # a real word, however close it spells
    "sand two thousand",  # "sand" is too short to be guessed at
])
def test_other_words_are_left_as_they_are(said: str) -> None:
    tokens = tokenize(said)
    assert [t.text for t in repair_scale_words(tokens)] == [t.text for t in tokens]


def test_what_the_user_wrote_is_kept() -> None:
    (_, _, repaired) = repair_scale_words(tokenize("send two thousnd"))
    assert (repaired.text, repaired.start, repaired.end) == ("thousand", 9, 16)
