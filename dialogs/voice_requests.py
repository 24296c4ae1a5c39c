"""Requests to pay, by voice: which of the requests merchants sent a caller (payment intents, as the
USSD journey lists them: `dialogs.intent_actions`) the caller means, from what they said.

A request is picked by its merchant's name (the intent layer resolves it against the merchants
asking, as it resolves a recipient against the caller's contacts), by its amount, or, answering the
list read out, by its number ("two", "the second", "ya pili", "la deuxième"). Whatever leaves more
than one request, or none, is a question (the list, read again), never a guess: the PIN then pays
the one read back, and only that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dialogs.display import phone_text
from dialogs.intent_actions import merchant_name, pick_of
from nlu.amounts import find_amounts
from nlu.numbers_words import EN_UNITS, FR_UNITS, SW_UNITS
from nlu.results import Contact, Parse
from nlu.tokens import tokenize
from payments.intents import IntentView
from payments.money import Currency, Money

#: Requests read out in one list; more than that are left to the USSD menu (a caller cannot hold
#: more in mind). A caller has at most `payments.max_pending_intents` (10) open.
READ_OUT = 5
#: How many requests are looked at when a caller names one: enough for every open one.
LOOKED_AT = 20

#: Words for a place in the list, in the voice channel's languages (folded: no accents). Ordinals
#: count anywhere in the answer; a number word only alone or after "number" ("the blue one" is not
#: the first).
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
             "kwanza": 1, "pili": 2,
             "premier": 1, "premiere": 1, "deuxieme": 2, "seconde": 2, "troisieme": 3, "quatrieme": 4,
             "cinquieme": 5}
_NUMBERS = {word: n for table in (EN_UNITS, SW_UNITS, FR_UNITS) for word, n in table.items() if 1 <= n <= READ_OUT}
_NUMBER_CUES = frozenset({"number", "no", "namba", "nambari", "numero"})


@dataclass(frozen=True, slots=True)
class Listed:
    """One request as the command keeps it between turns: what the USSD journey keeps of a listed
    intent (`pick_of`), and its merchant's name and number, to be matched and read out."""

    pick: list[Any]
    merchant: str
    phone: str

    @classmethod
    def of(cls, view: IntentView) -> Listed:
        return cls(pick_of(view), merchant_name(view.parties), view.parties.payee_phone)

    @classmethod
    def loads(cls, raw: Sequence[Any]) -> Listed:
        pick, merchant, phone = raw
        return cls(list(pick), merchant, phone)

    def dumps(self) -> list[Any]:
        return [self.pick, self.merchant, self.phone]

    @property
    def amount(self) -> Money:
        return Money(self.pick[2], Currency(self.pick[3]))

    @property
    def description(self) -> str | None:
        return self.pick[4]

    @property
    def said_as(self) -> str:
        """The merchant as a read-back says it: the name with its number, as the SMS shows it."""
        number = phone_text(self.phone)
        return number if self.merchant == number else f"{self.merchant} ({number})"


def merchants(listed: Sequence[Listed]) -> tuple[Contact, ...]:
    """The merchants asking, as an address book the intent layer can resolve a name against."""
    seen: dict[str, Contact] = {}
    for item in listed:
        seen.setdefault(item.phone, Contact(item.merchant, None, item.phone))
    return tuple(seen.values())


def narrow(listed: Sequence[Listed], parse: Parse, *, answering: bool) -> list[int]:
    """The places (0-based) in ``listed`` of the requests ``parse`` (read with `merchants` as the
    address book) may mean: by merchant, then by amount. Answering the list, a number that is no
    request's amount is a place in it ("two": the second), and words that name nothing mean none."""
    places = list(range(len(listed)))
    recipient = parse.recipient
    if recipient is not None:
        places = [k for k in places if listed[k].phone == recipient.phone]
    amount = parse.amount
    if amount is not None:
        by_amount = [k for k in places if _is_amount(listed[k], amount)]
        if by_amount or not answering or recipient is not None:
            return by_amount
    if answering and recipient is None:
        place = _place(parse.text, amount)
        return [place - 1] if place is not None and place <= len(listed) else []
    return places


def _is_amount(item: Listed, major: int) -> bool:
    # Said in major units: "1,500" is Ksh 1,500 (150,000 cents), 5000 is 5,000 FCFA.
    return major * 10 ** item.amount.currency.exponent == item.amount.minor


def _place(text: str, amount: int | None) -> int | None:
    """A place in the list said as a digit or a word ("2", "two", "the second", "ya pili"). A number
    that is part of a larger one ("the 3 thousand one", "3 000 francs") is no place: an amount the
    intent layer (or, when it kept none, `find_amounts`) reads is one only from 1 to `READ_OUT`,
    and only when it is the answer's one number."""
    if amount is not None:
        return amount if 1 <= amount <= READ_OUT else None
    tokens = tokenize(text)
    found = find_amounts(tokens)
    if found:
        return found[0].value if len(found) == 1 and 1 <= found[0].value <= READ_OUT else None
    words = [token.text for token in tokens]
    for k, word in enumerate(words):
        if word in _ORDINALS:
            return _ORDINALS[word]
        if word in _NUMBERS and (len(words) == 1 or (k > 0 and words[k - 1] in _NUMBER_CUES)):
            return _NUMBERS[word]
    return None
