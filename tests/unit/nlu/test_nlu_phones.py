"""Phone numbers: Kenyan and Senegalese, typed or spoken, to E.164."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlu.numbers_words import DIGIT_WORDS, EN, FR, SW
from nlu.phones import KE, SN, as_phone, find_phones, normalize_phone
from nlu.tokens import tokenize


def phones_in(text: str, regions=(KE, SN)) -> list[str]:
    return [p.value for p in find_phones(tokenize(text), regions=regions)]


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("send 500 to 0712345678", "+254712345678"),
        ("send to 0712 345 678 now", "+254712345678"),
        ("0712-345-678", "+254712345678"),
        ("+254 712 345 678", "+254712345678"),
        ("254712345678", "+254712345678"),
        ("0110 123 456", "+254110123456"),
        ("tuma kwa 0 7 1 2 3 4 5 6 7 8", "+254712345678"),
        ("zero seven one two three four five six seven eight", "+254712345678"),
        ("oh seven double two one one one two two two", "+254722111222"),
        ("sifuri saba moja mbili tatu nne tano sita saba nane", "+254712345678"),
        ("zéro sept un deux trois quatre cinq six sept huit", "+254712345678"),
    ],
)
def test_kenyan_numbers(text: str, phone: str) -> None:
    assert phones_in(text) == [phone]


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("envoie au 77 123 45 67", "+221771234567"),
        ("+221 77 123 45 67", "+221771234567"),
        ("00221771234567", "+221771234567"),
        ("sept sept un deux trois quatre cinq six sept", "+221771234567"),
        # French reads a number in pairs and hundreds: 77 123 45 67.
        ("soixante-dix-sept cent vingt-trois quarante-cinq soixante-sept", "+221771234567"),
    ],
)
def test_senegalese_numbers(text: str, phone: str) -> None:
    assert phones_in(text, regions=(SN, KE)) == [phone]


def test_region_order_decides_a_bare_nine_digit_number() -> None:
    assert phones_in("771234567", regions=(SN, KE)) == ["+221771234567"]
    assert phones_in("712345678", regions=(KE, SN)) == ["+254712345678"]


def test_phone_beside_an_amount() -> None:
    assert phones_in("tuma 500 0712345678") == ["+254712345678"]
    tokens = tokenize("send 0712345678 1500")
    (match,) = find_phones(tokens)
    assert [t.text for t in tokens[match.token_end:]] == ["1500"]


def test_spoken_phone_then_spoken_amount() -> None:
    tokens = tokenize("envoie au zéro sept un deux trois quatre cinq six sept huit mille shillings")
    (match,) = find_phones(tokens)
    assert match.value == "+254712345678"
    assert [t.text for t in tokens[match.token_end:]] == ["mille", "shillings"]


@pytest.mark.parametrize("text", ["send 1500 to John", "paybill 888880", "0712 345", "0212345678", "1234567890123"])
def test_not_phone_numbers(text: str) -> None:
    assert phones_in(text) == []


def test_claimed_tokens_are_not_phones() -> None:
    tokens = tokenize("account 0712345678")
    assert find_phones(tokens, claimed={1}) == []


def test_normalize_phone() -> None:
    assert normalize_phone("(0712) 345-678") == "+254712345678"
    assert normalize_phone("77 123 45 67", (SN,)) == "+221771234567"
    assert normalize_phone("12345") is None
    assert as_phone("0712345678", (SN,)) is None


kenyan = st.sampled_from(["0712345678", "0722111222", "0733444555", "0798765432", "0110123456", "0745678901"])


@given(kenyan, st.sampled_from([EN, SW, FR]))
def test_spoken_digit_by_digit_round_trip(number: str, language: str) -> None:
    names = {d: w for w, d in DIGIT_WORDS[language].items() if w not in ("oh", "o", "une")}
    spoken = " ".join(names[int(c)] for c in number)
    assert phones_in(f"send to {spoken} please") == ["+254" + number[1:]]


@given(kenyan, st.sampled_from(["{a} {b} {c}", "{a}-{b}-{c}", "{a}{b}{c}", "+254 {a2} {b} {c}"]))
def test_typed_formats_round_trip(number: str, form: str) -> None:
    text = form.format(a=number[:4], a2=number[1:4], b=number[4:7], c=number[7:])
    assert phones_in(f"tuma 200 kwa {text}") == ["+254" + number[1:]]
