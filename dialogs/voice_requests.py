"""Requests to pay, by voice: which of the requests merchants sent a caller (payment intents, as the
USSD journey lists them: `dialogs.intent_actions`) the caller means, from what they said.

A request is picked by its merchant's name (the intent layer resolves it against the merchants
asking, as it resolves a recipient against the caller's contacts), by its amount, or, answering the
list read out, by its number ("2", "two", "the second", "ya pili", "la deuxième"). Answering the
list, a bare number is its number even when a request asks that amount ("2" is the second, not the
one of Ksh 2); only a number said as money ("2 shillings", "Ksh 2", "2000") is an amount. Whatever
leaves more than one request, or none, is a question (the list, read again), never a guess: the PIN
then pays the one read back, and only that one.
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
    address book) may mean: by merchant, then by amount. Answering the list, a place in it said bare
    ("2", "two", "the second") is that place, even where a request asks that amount too: the list was
    just read out by number, and the read-back says which request was taken. A number said as money
    ("2 shillings", "Ksh 2", "2000") is an amount; words that name nothing mean none."""
    recipient = parse.recipient
    if answering and recipient is None:
        place = place_said(parse)
        if place is not None and place <= len(listed):
            return [place - 1]
    places = list(range(len(listed)))
    if recipient is not None:
        places = [k for k in places if listed[k].phone == recipient.phone]
    amount = parse.amount
    if amount is not None:
        by_amount = [k for k in places if _is_amount(listed[k], amount)]
        if by_amount or not answering or recipient is not None:
            return by_amount
    return [] if answering and recipient is None else places


def _is_amount(item: Listed, major: int) -> bool:
    # Said in major units: "1,500" is Ksh 1,500 (150,000 cents), 5000 is 5,000 FCFA.
    return major * 10 ** item.amount.currency.exponent == item.amount.minor


def place_said(parse: Parse) -> int | None:
    """The place in the list an answer says, as a digit or a word ("2", "two", "the second", "ya
    pili"), or None.

    A number said as money is no place: with a currency ("2 shillings", "Ksh 2", "shilingi mbili"),
    in a form only money takes ("2.00", "2/-"), or as part of a larger one ("the 3 thousand one",
    "3 000 francs", "2k"). So the amount the intent layer (or, when it kept none, `find_amounts`)
    reads is a place only when it is the answer's one number, said bare (a lone digit or number
    word), from 1 to `READ_OUT`, and no currency is said. Words that name two places ("not the
    first, the second") name none: which one is a question."""
    tokens = tokenize(parse.text)
    found = find_amounts(tokens)
    if parse.currency is not None or any(match.currency is not None for match in found):
        return None
    named: set[int] = set()
    if parse.amount is not None or found:
        said = parse.entity("amount")
        if parse.amount is not None:
            value, as_said = parse.amount, said.raw if said is not None else ""
        elif len(found) == 1 and found[0].token_end - found[0].token_start == 1:
            value, as_said = found[0].value, tokens[found[0].token_start].text
        else:
            return None
        if not _bare(as_said, value):
            return None
        named.add(value)
    words = [token.text for token in tokens]
    for k, word in enumerate(words):
        if word in _ORDINALS:
            named.add(_ORDINALS[word])
        elif word in _NUMBERS and (len(words) == 1 or (k > 0 and words[k - 1] in _NUMBER_CUES)):
            named.add(_NUMBERS[word])
    return named.pop() if len(named) == 1 else None


def _bare(said: str, value: int) -> bool:
    """Whether ``said`` is ``value`` as a place is said: one digit, or one number word, 1 to `READ_OUT`."""
    return 1 <= value <= READ_OUT and (said.strip() == str(value) or _NUMBERS.get(said.strip().lower()) == value)
