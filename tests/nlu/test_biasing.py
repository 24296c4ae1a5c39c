"""The prompt Whisper is primed with (command vocabulary and contact names, within Whisper's prompt
budget, never a code number) and the tidying of Whisper's number typography for the parser."""

from __future__ import annotations

import re

import pytest

from nlu.biasing import DEFAULT_MAX_CHARS, NO_BIAS, build_bias, contact_names, decoding_language
from nlu.results import Contact
from nlu.whisper_text import tidy_transcript

CONTACTS = [
    Contact("Grace Wanjiru", "Mama", "+254722111222"),
    Contact("Juma Otieno", None, "+254711000001"),
    Contact("Awa Ndiaye", None, "+221771234567"),
]


@pytest.mark.parametrize(("language", "words"), [
    ("en", ("Send", "Pay bill", "till", "M-Pesa", "Wave", "shillings", "balance")),
    ("sw", ("Tuma", "Lipa", "wakala", "M-Pesa", "salio", "elfu")),
    ("fr", ("Envoie", "francs", "Wave", "facture", "solde", "Retirer")),
])
def test_the_prompt_carries_the_languages_command_words_and_the_callers_names(language: str,
                                                                             words: tuple[str, ...]) -> None:
    bias = build_bias(language, CONTACTS)
    assert bias.prompt is not None
    for word in (*words, "Mama", "Grace", "Juma", "Awa"):
        assert word in bias.prompt
    # Surnames are left out: Whisper strings them onto the one name that was said.
    assert "Otieno" not in bias.prompt and "Wanjiru" not in bias.prompt
    assert bias.hotwords is None  # every name fitted in the prompt


def test_wolof_callers_are_primed_and_decoded_as_french() -> None:
    assert build_bias("wo", CONTACTS) == build_bias("fr", CONTACTS)
    assert decoding_language("wo") == "fr" and decoding_language("sw") == "sw" and decoding_language(None) is None


def test_without_a_language_only_the_names_are_given() -> None:
    assert build_bias(None, CONTACTS).prompt == "Mama, Grace, Juma, Awa."
    assert build_bias(None, []) is NO_BIAS


def test_no_code_number_is_ever_in_the_prompt() -> None:
    # Whisper copies digits it was shown: only round example amounts may appear, never a paybill,
    # till, agent, account or phone number.
    for language in ("en", "sw", "fr", None):
        prompt = build_bias(language, CONTACTS).prompt or ""
        numbers = [int(re.sub(r"\D", "", n)) for n in re.findall(r"\d+(?:[, ]\d{3})*", prompt)]
        assert all(n % 100 == 0 and n <= 10_000 for n in numbers), (language, numbers)


@pytest.mark.parametrize("language", ["en", "sw", "fr", "wo"])
def test_where_numbers_are_written_in_words_the_prompt_holds_no_digit(language: str) -> None:
    # Whisper forbidden to write digits but shown them writes "$$$" for the amounts it hears.
    worded = build_bias(language, CONTACTS, numbers_in_words=True).prompt
    assert worded is not None and not re.search(r"\d", worded)
    assert "Mama" in worded
    plain = build_bias(language, CONTACTS).prompt
    assert plain is not None and (worded == plain) == (language == "sw")  # Swahili's says its amounts in words


def test_a_long_address_book_fits_whisper_s_prompt_and_overflows_into_hotwords() -> None:
    book = [Contact(f"Person{n:02d} Surname", None, f"+2547000000{n:02d}") for n in range(60)]
    bias = build_bias("en", book)
    assert bias.prompt is not None and len(bias.prompt) <= DEFAULT_MAX_CHARS
    assert "Person00" in bias.prompt  # favourites (first) are kept
    assert bias.hotwords is not None and "Person23" in bias.hotwords  # the next ones overflow
    assert "Person30" not in bias.prompt + bias.hotwords  # past max_names nobody is listed


def test_contact_names_are_what_callers_say_without_repeats() -> None:
    book = [*CONTACTS, Contact("Juma Kariuki", "Juma", "+254700000009"), Contact("  ", None, "+254700000010")]
    assert contact_names(book) == ["Mama", "Grace", "Juma", "Awa"]


@pytest.mark.parametrize(("heard", "tidied"), [
    ("Pay bill 8, 8, 8, 8, 8, 0, account 1, 2, 3, 4, 5, amount 1,500.",
     "Pay bill 888880 account 12345 amount 1500."),
    ("Buy goods till 1-2-3-4-5-6, amount 300.", "Buy goods till 123456 amount 300."),
    ("Pay 2,500 to pay bill 247-247, account 556-677.", "Pay 2500 to pay bill 247247 account 556677."),
    ("Pay 2500 to pay bill 247 247 account 556 677.", "Pay 2500 to pay bill 247247 account 556677."),
    ("Buy goods till 832 910 amount 300", "Buy goods till 832910 amount 300"),
    ("Withdraw 2,000 from agent, 345,678, store 12.", "Withdraw 2000 from agent 345678 store 12."),
    ("Send 300 to 0, 7, 1, 2, 3, 4, 5, 6, 7, 8.", "Send 300 to 0712345678."),
    ("Withdraw 2000 from agent 345678 store 1 2.", "Withdraw 2000 from agent 345678 store 12."),
    ("Pay $2,500 to till 832910", "Pay 2500 to till 832910"),
    ("Send 300 to 0712 345 678.", "Send 300 to 0712 345 678."),  # groups the parser reads already
    ("Envoie 5 000 francs à Awa.", "Envoie 5 000 francs à Awa."),
    ("tuma elfu moja kwa Mama", "tuma elfu moja kwa Mama"),
    ("Send 1.5k to Juma", "Send 1.5k to Juma"),
    # "to" lost between an amount and a number said from its zero: the two are told apart again.
    ("Send 3000712345678.", "Send 300 0712345678."),
    ("Tuma 12000112345678", "Tuma 1200 0112345678"),
    ("Send 254712345678", "Send 254712345678"),  # a number in international form is left whole
    ("Send 1.5000712345678", "Send 1.5000712345678"),
    # "to" and "two" told apart around numbers written in words.
    ("Pay six hundred and fifty to till eight three to nine one zero.",
     "Pay six hundred and fifty to till eight three two nine one zero."),
    ("Withdraw one thousand two M-Pesa.", "Withdraw one thousand to M-Pesa."),
    ("Send three hundred two zero seven one two", "Send three hundred to zero seven one two"),
    ("send three hundred two shillings to Mama", "send three hundred two shillings to Mama"),
    ("send three hundred two to Mama", "send three hundred two to Mama"),
    ("send one thousand two hundred to Juma", "send one thousand two hundred to Juma"),
    ("send five to zero seven one two", "send five to zero seven one two"),
])
def test_whisper_s_number_typography_is_tidied_for_the_parser(heard: str, tidied: str) -> None:
    assert tidy_transcript(heard) == tidied
