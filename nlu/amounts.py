"""Amounts of money in an utterance: digits with separators and suffixes, number words, Sheng, and
the currency said with them.

"1,500", "1.500", "5 000 F", "1.5k", "500/-", "ksh 200", "200 bob", "elfu moja mia tano",
"cinq mille francs", "two thousand five hundred", "ngiri mbili", "mbao" all read here. Values are
integers in major units (shillings, francs): a fraction that does not make a whole number is not an
amount at all, so the dialog asks again rather than rounding someone's money.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from nlu.numbers_words import EN_SCALES, FR, FR_SCALES, LANGUAGES, SW_SCALES, read_number_words
from nlu.tokens import Token

KES, XOF = "KES", "XOF"

# Said before the number: "ksh 200", "KES 1,000", "shilingi mia tano", "FCFA 5000".
CURRENCY_BEFORE = {"ksh": KES, "kshs": KES, "kes": KES, "sh": KES, "shs": KES, "shilingi": KES,
                   "fcfa": XOF, "cfa": XOF, "xof": XOF}
# Said after it: "500/-", "200 bob", "5000 F", "cinq mille francs", "1000 balles".
CURRENCY_AFTER = {"/-": KES, "/=": KES, "bob": KES, "shillings": KES, "shilling": KES, "shilingi": KES,
                  "ksh": KES, "kshs": KES, "kes": KES, "sh": KES, "shs": KES, "ksht": KES,
                  "f": XOF, "fr": XOF, "frs": XOF, "franc": XOF, "francs": XOF, "fcfa": XOF, "cfa": XOF,
                  "xof": XOF, "balles": XOF}
CURRENCY_WORDS = frozenset(CURRENCY_BEFORE) | frozenset(CURRENCY_AFTER)

# A multiplier written after digits: "1.5k", "2 thao", "5 elfu", "10 mille", "2 million".
_SCALES_AFTER_DIGITS = {**EN_SCALES, **SW_SCALES, **FR_SCALES}
# Number words below ten without a currency are rarely money ("une somme", "kwa mara moja").
_SMALLEST_BARE_WORD_AMOUNT = 10

_PLAIN = re.compile(r"\d+")
_COMMA_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DOT_THOUSANDS = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?")
_DECIMAL = re.compile(r"\d+[.,]\d{1,2}")


@dataclass(frozen=True, slots=True)
class AmountMatch:
    """An amount found over tokens `[token_start, token_end)`; `currency_token` indexes the token
    that said the currency, if one did."""

    value: int
    currency: str | None
    token_start: int
    token_end: int
    currency_token: int | None


def digits_value(text: str) -> Decimal | None:
    """Read a digits token, deciding what its separators mean: "1,500" and "1.500" are thousands
    (Kenyan and French habits), "1.5" and "2,5" decimals."""
    try:
        if _PLAIN.fullmatch(text):
            return Decimal(text)
        if _COMMA_THOUSANDS.fullmatch(text):
            return Decimal(text.replace(",", ""))
        if _DOT_THOUSANDS.fullmatch(text):
            return Decimal(text.replace(".", "").replace(",", "."))
        if _DECIMAL.fullmatch(text):
            return Decimal(text.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the patterns only admit valid decimals
        return None
    return None


def _whole(value: Decimal) -> int | None:
    return int(value) if value == value.to_integral_value() and value > 0 else None


def _read_digits(tokens: Sequence[Token], i: int, spaced_groups: bool) -> tuple[Decimal, int] | None:
    """Digits at `i`, with French space-grouped thousands ("5 000") when `spaced_groups` allows it."""
    value = digits_value(tokens[i].text)
    if value is None:
        return None
    end = i + 1
    if spaced_groups and _PLAIN.fullmatch(tokens[i].text) and len(tokens[i].text) <= 3:
        while (
            end < len(tokens)
            and tokens[end].is_number
            and len(tokens[end].text) == 3
            and tokens[end].text.isdigit()
            and tokens[end].start == tokens[end - 1].end + 1
        ):
            value = value * 1000 + Decimal(tokens[end].text)
            end += 1
    return value, end


def _inside_identifier(tokens: Sequence[Token], i: int) -> bool:
    """Digits glued to letters ("A12", "ZK20567", "12B") are a reference, not money; "ksh200",
    "1.5k" and "500bob" are money."""
    before = tokens[i - 1] if i > 0 else None
    if before is not None and before.end == tokens[i].start and before.is_word:
        return before.text not in CURRENCY_BEFORE
    after = tokens[i + 1] if i + 1 < len(tokens) else None
    if after is not None and after.start == tokens[i].end and after.is_word:
        return after.text not in CURRENCY_AFTER and after.text not in _SCALES_AFTER_DIGITS
    return False


def _currency_after(tokens: Sequence[Token], end: int) -> tuple[str, int] | None:
    if end < len(tokens) and tokens[end].text in CURRENCY_AFTER:
        return CURRENCY_AFTER[tokens[end].text], end
    return None


def _currency_before(tokens: Sequence[Token], i: int) -> tuple[str, int, int] | None:
    """A currency said before the number: returns (code, its token, where the number starts)."""
    if tokens[i].text not in CURRENCY_BEFORE:
        return None
    start = i + 1
    while start < len(tokens) and tokens[start].text in (".", ":"):  # "Ksh. 200", "KES: 200"
        start += 1
    return (CURRENCY_BEFORE[tokens[i].text], i, start) if start < len(tokens) else None


def read_amount(
    tokens: Sequence[Token], i: int, languages: Sequence[str] = LANGUAGES
) -> AmountMatch | None:
    """Read an amount starting at token `i`, or None."""
    words = [t.text for t in tokens]
    currency: str | None = None
    currency_token: int | None = None
    start = i
    before = _currency_before(tokens, i)
    if before is not None:
        currency, currency_token, start = before
    at = tokens[start]
    value: int | None
    if at.is_number and _inside_identifier(tokens, start):
        return None
    if at.is_number:
        # Space-grouped thousands are French typography; elsewhere "500 200" is two numbers.
        spaced = languages[0] == FR or currency is not None
        read = _read_digits(tokens, start, spaced_groups=True)
        if read is None:
            return None
        number, end = read
        if end > start + 1 and not spaced and _currency_after(tokens, end) is None:
            number, end = digits_value(at.text) or Decimal(0), start + 1
        if end < len(tokens) and tokens[end].text in _SCALES_AFTER_DIGITS:
            # "k" and "grand" after digits only; "5 elfu", "10 mille", "2 thao" all multiply.
            number *= _SCALES_AFTER_DIGITS[tokens[end].text]
            end += 1
        value = _whole(number)
    elif at.is_word:
        match = read_number_words(words, start, languages)
        if match is None:
            return None
        value, end = match.value, match.end
    else:
        return None
    if value is None:
        return None
    after = _currency_after(tokens, end)
    if after is not None:
        if currency is None:
            currency, currency_token = after[0], after[1]
        end += 1
        # "francs CFA", "F CFA": the second word belongs to the same currency.
        if end < len(tokens) and tokens[end].text in ("cfa", "fcfa") and currency == XOF:
            end += 1
    if at.is_word and value < _SMALLEST_BARE_WORD_AMOUNT and currency is None:
        return None
    return AmountMatch(value, currency, i if before is not None else start, end, currency_token)


def find_amounts(
    tokens: Sequence[Token], claimed: Collection[int] = (), languages: Sequence[str] = LANGUAGES
) -> list[AmountMatch]:
    """Every amount in the utterance, left to right, skipping tokens other entities claimed."""
    found: list[AmountMatch] = []
    i = 0
    while i < len(tokens):
        if i in claimed:
            i += 1
            continue
        match = read_amount(tokens, i, languages)
        if match is not None and not any(k in claimed for k in range(match.token_start, match.token_end)):
            found.append(match)
            i = match.token_end
        else:
            i += 1
    return found


def choose_amount(amounts: Sequence[AmountMatch]) -> AmountMatch | None:
    """The amount the sentence is about: one said with a currency wins, else the first."""
    for match in amounts:
        if match.currency is not None:
            return match
    return amounts[0] if amounts else None
