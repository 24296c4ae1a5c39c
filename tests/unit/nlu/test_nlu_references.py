"""Keyword-introduced numbers: paybill, till, account, agent, store; and bank/biller lookups."""

from __future__ import annotations

import pytest

from nlu.lookups import LookupMatcher
from nlu.references import find_accounts_after_banks, find_references
from nlu.tokens import tokenize


def refs(text: str) -> list[tuple[str, str]]:
    return [(r.type, r.value) for r in find_references(tokenize(text), text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pay 1500 to paybill 888880 account 12345", [("paybill", "888880"), ("account_number", "12345")]),
        ("pay bill no. 444900 acc no 7023456789", [("paybill", "444900"), ("account_number", "7023456789")]),
        ("lipa namba ya biashara 522522 akaunti ADM-4521", [("paybill", "522522"), ("account_number", "ADM-4521")]),
        ("till number ni 5123456", [("till", "5123456")]),
        ("buy goods 889900", [("till", "889900")]),
        ("withdraw at agent 123456 store 001", [("agent_number", "123456"), ("store_number", "001")]),
        ("wakala 234567 stoo 2", [("agent_number", "234567"), ("store_number", "2")]),
        ("meter number 54321098765", [("account_number", "54321098765")]),
        ("numero de compteur 14123456789", [("account_number", "14123456789")]),
        ("a/c 00112233", [("account_number", "00112233")]),
        ("account zk20567", [("account_number", "ZK20567")]),
        ("paybill two four seven two four seven", [("paybill", "247247")]),
        ("lipa paybill nane nane nane nane nane sifuri", [("paybill", "888880")]),
        ("paybil 888888 acount 56789012", [("paybill", "888888"), ("account_number", "56789012")]),  # typos
        ("tilll 345678", [("till", "345678")]),
    ],
)
def test_references(text: str, expected: list[tuple[str, str]]) -> None:
    assert refs(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "pay bill 1500",  # too short for a paybill: it is the amount
        "pay bill 10000 bob",  # a currency after it makes it money
        "recharger mon compte 10 000 F",
        "deposit 5000 to my account 500",  # after "my", a short number is an amount
        "till 5123456789",  # too long for a till
        "pay my bill",
        "account",
    ],
)
def test_not_references(text: str) -> None:
    assert all(kind != "paybill" and kind != "till" for kind, _ in refs(text))
    if "account" in text or "compte" in text:
        assert all(kind != "account_number" for kind, _ in refs(text))


def test_currency_before_the_next_number_does_not_cancel_a_reference() -> None:
    assert refs("account 14123456789 ksh 500") == [("account_number", "14123456789")]


def test_spoken_reference_stops_before_the_amount() -> None:
    tokens = tokenize("till five one two three four five six five hundred")
    (till,) = find_references(tokens, "")
    assert till.value == "5123456"
    assert [t.text for t in tokens[till.token_end:]] == ["five", "hundred"]


def test_lookups_map_names_through_synonyms(training_data) -> None:
    lookups = LookupMatcher(training_data.lookups, training_data.synonyms)
    found = lookups.find(tokenize("send 500 from Co-op Bank then pay KPLC and Senelec"))
    assert [(m.type, m.value) for m in found] == [("bank_code", "11"), ("paybill", "888880"),
                                                  ("paybill", "SENELEC")]


def test_account_after_a_bank_name(training_data) -> None:
    tokens = tokenize("akaunti yangu ya Equity 0123456789 elfu tano")
    lookups = LookupMatcher(training_data.lookups, training_data.synonyms).find(tokens)
    (account,) = find_accounts_after_banks(tokens, [m.token_end for m in lookups])
    assert account.value == "0123456789"
    short = tokenize("Equity 5000")
    assert find_accounts_after_banks(short, [1]) == []
