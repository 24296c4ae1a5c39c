"""Amounts of money in an utterance: digits with separators and suffixes, number words, Sheng, and
the currency said with them.

"1,500", "1.500", "5 000 F", "1.5k", "500/-", "ksh 200", "200 bob", "elfu moja mia tano",
"cinq mille francs", "two thousand five hundred", "ngiri mbili", "mbao" all read here. Values are
integers in major units (shillings, francs): a fraction that does not make a whole number is not an
amount at all, so the dialog asks again rather than rounding someone's money.

Digits and words mix the way people write what they say: "2 thousand five hundred", "5 hundred",
"2 mille 500", "elfu mbili 500", "one thousand, five hundred" (Whisper's comma) are one number each.
Anything less clear is no amount, so the dialog asks "How much?" instead of paying a guess: two
amounts in one sentence, digits or number words left over right next to the amount ("110 712 345
678", "50 000" in English), a fraction word beside it ("one point five thousand", "elfu moja na
nusu"), or a currency Sauti does not move ("50 dollars", "$50").
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from nlu.numbers_words import (
    ALL_NUMBER_WORDS,
    DIGIT_WORDS,
    EN_HUNDRED,
    EN_SCALES,
    FR,
    FR_HUNDRED,
    FR_SCALES,
    FRACTION_WORDS,
    LANGUAGES,
    SW_HUNDRED,
    SW_SCALES,
    read_number_words,
)
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

# Currencies Sauti does not move. Said with an amount, they must not become the wallet's own
# currency ("50 dollars" is not 50 shillings): the amount is left out and the dialog asks.
# These are currencies wherever they are said ("send 50 to John in dollars")...
_FOREIGN_CURRENCY = frozenset({"$", "\u20ac", "\u00a3", "\u00a5", "usd", "dollar", "dollars", "dola", "dolla",
                               "euro", "euros", "eur", "yuro", "gbp", "pauni", "tsh", "tshs", "tzs", "ugx",
                               "ush", "rwf", "xaf", "ngn", "naira", "ghs", "cedi", "cedis", "zar", "inr",
                               "rupee", "rupees", "yuan", "cny", "rmb", "dirham", "dirhams", "aed"})
# ...and these only right next to the number: elsewhere they are names or words ("to Rand").
_FOREIGN_CURRENCY_NEXT_TO = _FOREIGN_CURRENCY | {"us", "pound", "pounds", "quid", "bucks", "yen", "rand",
                                                 "birr", "livres", "sterling"}

# A multiplier written after digits: "1.5k", "2 thao", "5 elfu", "10 mille", "2 million".
_SCALES_AFTER_DIGITS = {**EN_SCALES, **SW_SCALES, **FR_SCALES}
# Hundreds after a count below a hundred: "5 hundred", "2 cent mille", "5 mia". They live apart from
# the scales above, which the grammars and the spoken-digit groups also use. "cent"/"cents" only
# multiply in French: in English "50 cents" is half a shilling, not 5,000.
_HUNDREDS_AFTER_DIGITS = frozenset(EN_HUNDRED | FR_HUNDRED | {"mia"})
# Multipliers Swahili says before their count ("elfu mbili", "mia tano"): a word right after one is
# its count, never a smaller number to add ("2 elfu ishirini" is no 2,020).
_COUNT_AFTER = (frozenset(SW_SCALES) - frozenset(EN_SCALES) - frozenset(FR_SCALES)) | SW_HUNDRED
_SCALE_VALUES = {**_SCALES_AFTER_DIGITS, **dict.fromkeys(EN_HUNDRED | FR_HUNDRED | SW_HUNDRED, 100)}
# What may join a number to the smaller one after it: "two thousand and 500", "elfu mbili na 500".
_JOINERS = frozenset({"and", "na"})
# Small words that may stand between an amount and a fraction word ("two and a half thousand",
# "elfu moja na nusu", "un million et demi", "moitie de mille").
_FRACTION_GLUE = frozenset({",", "and", "a", "an", "of", "na", "ya", "et", "de", "d", "'", "un", "une", "la"})
# Words next to an amount that say a number was left out of it ("five 500", "tano elfu"). Articles
# that are also French ones ("un", "une") and the letter "o" say nothing on their own.
_NUMBER_WORDS = (ALL_NUMBER_WORDS | {w for table in DIGIT_WORDS.values() for w in table}) - {"un", "une", "o"}
# A digits token after a multiplier, and nothing else, adds to it only up to three digits ("2 mille
# 500"): "laki moja 20000" is two numbers said one after the other.
_MAX_REMAINDER_DIGITS = 3
_COMMA_JOINS_FROM = 1000
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
        return (after.text not in CURRENCY_AFTER and after.text not in _SCALES_AFTER_DIGITS
                and after.text not in _HUNDREDS_AFTER_DIGITS)
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


@dataclass(frozen=True, slots=True)
class _Number:
    """A number without its currency: `value` over tokens up to `end`; `scale` is the last multiplier
    said ("thousand" in "2 thousand") when nothing was said below it yet, so a smaller number may
    follow and add to it; `count_after` when that multiplier is Swahili's, said before its count."""

    value: Decimal
    end: int
    scale: int | None = None
    count_after: bool = False


def _digits_and_multipliers(
    tokens: Sequence[Token], start: int, number: Decimal, end: int, languages: Sequence[str]
) -> _Number:
    """Digits read up to `end`, then the hundreds and the multiplier said after them: "5 hundred",
    "5 hundred thousand", "2 cent mille", "1.5k"."""
    n = len(tokens)
    scale: int | None = None
    count_after = False
    whole = number == number.to_integral_value()
    word = tokens[end].text if end < n else ""
    french = languages[0] == FR
    if (word in _HUNDREDS_AFTER_DIGITS and (french or word not in FR_HUNDRED) and end == start + 1
            and tokens[start].text.isdigit() and 0 < number < 100):
        number, end = number * 100, end + 1
        # After "5 mia" nothing is added: Swahili's "mia 5" is 500, so "5 mia 5" is no 505.
        scale, count_after = (None, True) if word == "mia" else (100, False)
        word = tokens[end].text if end < n else ""
    if word in _SCALES_AFTER_DIGITS and not count_after and (scale is None or word not in _COUNT_AFTER):
        # "k" and "grand" after digits only; "5 elfu", "10 mille", "2 thao" all multiply.
        number, end = number * _SCALES_AFTER_DIGITS[word], end + 1
        # "1.5k" is whole only once multiplied: nothing may be added to it ("1.5k 200" is a question).
        scale, count_after = (_SCALE_VALUES[word], word in _COUNT_AFTER) if whole else (None, False)
    return _Number(number, end, scale, count_after)


def _last_scale(words: Sequence[str], value: int) -> tuple[int | None, bool]:
    """The last multiplier of a number said in `words`, if nothing below it was said ("deux mille",
    "elfu mbili", "five hundred"), and whether it is the last word and awaits its count ("elfu")."""
    for k in range(len(words) - 1, -1, -1):
        if words[k] in _SCALE_VALUES:
            scale = _SCALE_VALUES[words[k]]
            if value % scale:
                return None, False
            return scale, k == len(words) - 1 and words[k] in _COUNT_AFTER
    return None, False


def _read_number(
    tokens: Sequence[Token], start: int, languages: Sequence[str], claimed: Collection[int], *,
    spaced: bool | None,
) -> _Number | None:
    """The number at `start`, in digits or words, with the smaller numbers that complete it ("2
    thousand five hundred"). `spaced` says whether space-grouped thousands ("5 000") are one number:
    True, False, or None for "only if a currency follows them"."""
    at = tokens[start]
    if at.is_number:
        if _inside_identifier(tokens, start):
            return None
        read = _read_digits(tokens, start, spaced_groups=spaced is not False)
        if read is None:
            return None
        digits, end = read
        if end > start + 1 and spaced is None and _currency_after(tokens, end) is None:
            digits, end = digits_value(at.text) or Decimal(0), start + 1
        number = _digits_and_multipliers(tokens, start, digits, end, languages)
    elif at.is_word:
        words = [t.text for t in tokens]
        match = read_number_words(words, start, languages)
        if match is None:
            return None
        scale, count_after = _last_scale(words[start:match.end], match.value)
        number = _Number(Decimal(match.value), match.end, scale, count_after)
    else:
        return None
    return _with_remainder(tokens, number, languages, claimed)


def _with_remainder(
    tokens: Sequence[Token], number: _Number, languages: Sequence[str], claimed: Collection[int]
) -> _Number:
    """`number` and the smaller number said right after its multiplier, which adds to it: "2
    thousand 500", "2 mille 500", "elfu mbili na 500", and "one thousand, five hundred" as Whisper
    writes it. Only a number below the multiplier adds: "five thousand, five thousand" stays two."""
    scale = number.scale
    if scale is None:
        return number
    n, pos, comma = len(tokens), number.end, False
    if pos < n and tokens[pos].text == ",":
        # Whisper writes a pause after "thousand" as a comma; after "five hundred" one may as well be
        # a correction ("five hundred, fifty"), so only a thousand or more goes on past a comma.
        if scale < _COMMA_JOINS_FROM:
            return number
        pos, comma = pos + 1, True
    if pos < n and tokens[pos].text in _JOINERS:
        pos += 1
    if pos >= n or pos in claimed:
        return number
    if tokens[pos].is_word and number.count_after and tokens[pos].text not in _HUNDREDS_AFTER_DIGITS | SW_HUNDRED:
        return number  # "2 elfu ishirini": the word is elfu's count, not 20 more
    rest = _read_number(tokens, pos, languages, claimed, spaced=False)
    if rest is None or any(k in claimed for k in range(pos, rest.end)):
        return number
    value = _whole(rest.value)
    lone_digits = tokens[pos].is_number and rest.end == pos + 1
    if (value is None or value >= scale or (comma and value < _SMALLEST_BARE_WORD_AMOUNT)
            or (lone_digits and len(tokens[pos].text) > _MAX_REMAINDER_DIGITS)):
        return number
    return _Number(number.value + value, rest.end, rest.scale, rest.count_after)


def read_amount(
    tokens: Sequence[Token], i: int, languages: Sequence[str] = LANGUAGES, claimed: Collection[int] = ()
) -> AmountMatch | None:
    """Read an amount starting at token `i`, or None. `claimed` tokens (another entity's) are never
    added to it."""
    currency: str | None = None
    currency_token: int | None = None
    start = i
    before = _currency_before(tokens, i)
    if before is not None:
        currency, currency_token, start = before
    at = tokens[start]
    # Space-grouped thousands are French typography; elsewhere "500 200" is two numbers, unless a
    # currency is said with them ("ksh 2 500", "2 500 bob").
    spaced = True if languages[0] == FR or currency is not None else None
    number = _read_number(tokens, start, languages, claimed, spaced=spaced)
    if number is None:
        return None
    value, end = _whole(number.value), number.end
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
        match = read_amount(tokens, i, languages, claimed)
        if match is not None and not any(k in claimed for k in range(match.token_start, match.token_end)):
            found.append(match)
            i = match.token_end
        else:
            i += 1
    return found


def choose_amount(
    amounts: Sequence[AmountMatch], tokens: Sequence[Token] = (), claimed: Mapping[int, str] | None = None
) -> AmountMatch | None:
    """The amount the sentence is about, or None when that is in doubt, so the dialog asks "How
    much?" rather than paying a guess: two amounts (which one?), or, given the sentence's `tokens`
    and what other entities `claimed` (token -> entity type), one that `doubtful` finds. One
    exception: an amount that names its currency, followed only by small numbers said apart from it
    ("envoie 5000 francs à Awa pour 2 jours", "tuma shilingi 500 kwa mama saa 3"): those count
    something else. "cinq mille francs à Awa et deux mille à Fatou" stays a question."""
    if not amounts:
        return None
    with_currency = [match for match in amounts if match.currency is not None]
    if len(amounts) == 1:
        chosen = amounts[0]
    elif len(with_currency) == 1 and all(_a_count_after(other, with_currency[0]) for other in amounts
                                         if other is not with_currency[0]):
        chosen = with_currency[0]
    else:
        return None
    return None if tokens and doubtful(tokens, chosen, claimed or {}) else chosen


#: Below this, a number said after an amount with its currency counts something else (days, bags, a
#: time of day) rather than money.
_SMALL_COUNT = 100


def _a_count_after(other: AmountMatch, amount: AmountMatch) -> bool:
    """Whether ``other`` is a small number said after ``amount`` and apart from it (more than one
    word between: "2 thousand shillings and 500" may be one amount said in two)."""
    return other.value < _SMALL_COUNT and other.token_start > amount.token_end + 1


def doubtful(tokens: Sequence[Token], amount: AmountMatch, claimed: Mapping[int, str]) -> bool:
    """Whether what surrounds `amount` says it may not be what was meant:

    - a currency Sauti does not move ("50 dollars", "$50", "50 usd");
    - a fraction word beside it ("one point five thousand" read "five thousand", "elfu moja na nusu",
      "half a million"): the grammars read whole numbers and would drop the fraction;
    - a number left out of it right next to it, past a comma at most: digits nobody took ("50 000" in
      English, "1 500"), a number word nobody took ("five 500"), or the last group of a number spelt
      in spaced groups ("110 712 345 678": where the phone number ends is a guess).
    """
    if any(t.text in _FOREIGN_CURRENCY for k, t in enumerate(tokens) if k not in claimed):
        return True
    n = len(tokens)
    for step, edge in ((-1, amount.token_start - 1), (1, amount.token_end)):
        if 0 <= edge < n and tokens[edge].text in _FOREIGN_CURRENCY_NEXT_TO:
            return True
        k = edge
        while 0 <= k < n and tokens[k].text in _FRACTION_GLUE:
            k += step
        if 0 <= k < n and tokens[k].text in FRACTION_WORDS:
            return True
        k = edge
        while 0 <= k < n and tokens[k].text == ",":
            k += step
        digits_edge = tokens[edge - step].is_number  # the amount's own token on this side
        if 0 <= k < n and _left_out(tokens, k, step, claimed, digits_edge=digits_edge):
            return True
    return False


def _left_out(
    tokens: Sequence[Token], k: int, step: int, claimed: Mapping[int, str], *, digits_edge: bool
) -> bool:
    """Whether token `k`, next to an amount (on the side `step` points to), is a number that was
    left out of it. `digits_edge` when the amount ends in digits on that side."""
    token, kind = tokens[k], claimed.get(k)
    if token.is_number:
        if kind is None:
            return True
        # One group of digits of an entity spelt in groups ("0712 345 678") beside the amount's own
        # digits: the groups could be split either way. Beside words ("... 555 mia tano") they cannot.
        other = k + step
        return (digits_edge and 0 <= other < len(tokens) and tokens[other].is_number
                and claimed.get(other) == kind)
    return kind is None and token.is_word and token.text in _NUMBER_WORDS
