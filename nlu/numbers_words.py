"""Number words in English, Swahili (with Sheng) and French: words to integers and back.

Each language has a small grammar that reads a number starting at one token and says where it ended,
so an amount can sit anywhere in a sentence ("tuma elfu moja mia tano kwa Mama"). The grammars are
strict about order (Swahili puts the multiplier first: "elfu mbili" is 2000, "mia tano" 500; French
multiplies "quatre-vingt"), so "five five" reads as 5, not 10. `to_words` writes the canonical form
back: voice confirmations use it, and the tests use it for round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

EN, SW, FR = "en", "sw", "fr"
LANGUAGES = (EN, SW, FR)

_INF = float("inf")

# --- English ------------------------------------------------------------------------------------
EN_UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
            "nine": 9}
EN_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
            "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
# "fourty" and "ninty" are how people (and some transcribers) spell them.
EN_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
           "seventy": 70, "eighty": 80, "ninety": 90, "ninty": 90}
EN_HUNDRED = frozenset({"hundred", "hundreds"})
# "thao" is Sheng for thousand and is said with English numbers too ("two thao"); "grand" and "k"
# are everyday English/Sheng for thousand.
EN_SCALES = {"thousand": 1000, "thousands": 1000, "k": 1000, "grand": 1000, "thao": 1000,
             "million": 1_000_000, "millions": 1_000_000}

# --- Swahili and Sheng -------------------------------------------------------------------------
SW_UNITS = {"moja": 1, "mbili": 2, "tatu": 3, "nne": 4, "tano": 5, "sita": 6, "saba": 7, "nane": 8,
            "tisa": 9}
SW_TEN = frozenset({"kumi"})
SW_TENS = {"ishirini": 20, "thelathini": 30, "selasini": 30, "arobaini": 40, "arubaini": 40,
           "hamsini": 50, "sitini": 60, "sabini": 70, "themanini": 80, "tisini": 90}
# "soo" is Sheng for a hundred ("soo mbili" = 200).
SW_HUNDRED = frozenset({"mia", "soo"})
# "ngiri" and "thao" are Sheng for elfu (thousand).
SW_SCALES = {"elfu": 1000, "ngiri": 1000, "thao": 1000, "laki": 100_000, "milioni": 1_000_000}
# Sheng words that are a whole amount by themselves: "mbao" is twenty shillings.
SW_SLANG = {"mbao": 20}

# --- French --------------------------------------------------------------------------------------
FR_UNITS = {"un": 1, "une": 1, "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "six": 6, "sept": 7,
            "huit": 8, "neuf": 9}
FR_TEENS = {"onze": 11, "douze": 12, "treize": 13, "quatorze": 14, "quinze": 15, "seize": 16}
# Belgian/Swiss septante, huitante/octante, nonante cost nothing to accept.
FR_TENS = {"vingt": 20, "trente": 30, "quarante": 40, "cinquante": 50, "soixante": 60,
           "septante": 70, "huitante": 80, "octante": 80, "nonante": 90}
FR_HUNDRED = frozenset({"cent", "cents"})
FR_SCALES = {"mille": 1000, "milles": 1000, "million": 1_000_000, "millions": 1_000_000}

# Words a phone number is spelt with, one digit each ("zero seven one two ...").
DIGIT_WORDS = {
    EN: {"zero": 0, "oh": 0, "o": 0, **{w: v for w, v in EN_UNITS.items()}},
    SW: {"sifuri": 0, "sufuri": 0, **SW_UNITS},
    FR: {"zero": 0, **FR_UNITS},
}
# "double seven" / "triple one": how English speakers read repeated digits aloud.
DIGIT_REPEATS = {"double": 2, "triple": 3}

# Words that say part of a number is a fraction: "one point five thousand", "two and a half thousand",
# "elfu moja na nusu", "un virgule cinq million", "un million et demi", "robo milioni". The grammars
# here read whole numbers only, so they stop at these words and would read "five thousand" out of
# "one point five thousand": an amount next to one of them is a question, not a number (amounts.py).
FRACTION_WORDS = frozenset({"point", "half", "halves", "quarter", "quarters", "nusu", "robo", "virgule", "demi",
                            "demie", "moitie", "quart", "quarts"})

NUMBER_WORDS = {
    EN: frozenset(EN_UNITS) | set(EN_TEENS) | set(EN_TENS) | EN_HUNDRED | set(EN_SCALES) | {"zero", "oh"},
    SW: frozenset(SW_UNITS) | SW_TEN | set(SW_TENS) | SW_HUNDRED | set(SW_SCALES) | set(SW_SLANG)
    | {"sifuri"},
    FR: frozenset(FR_UNITS) | {"dix"} | set(FR_TEENS) | set(FR_TENS) | {"vingts"} | FR_HUNDRED
    | set(FR_SCALES) | {"zero"},
}


# Every word a number in words can start with.
#: Every number word of every language.
ALL_NUMBER_WORDS = frozenset().union(*NUMBER_WORDS.values())
_STARTS = ALL_NUMBER_WORDS | {"a"}


@dataclass(frozen=True, slots=True)
class NumberMatch:
    """A number read from tokens `[start, end)`; `language` is None when it was written in digits."""

    value: int
    start: int
    end: int
    language: str | None


def _int_token(word: str, limit: int) -> int | None:
    """A digits token usable as a count inside number words ("elfu 2", "mia 5")."""
    if word.isdigit() and 0 < int(word) <= limit:
        return int(word)
    return None


# --- English grammar ----------------------------------------------------------------------------
_START, _UNIT, _TENS, _HUNDRED = range(4)
# Scale words that are a number only with a count before them: a lone "k" is a letter.
_COUNTED = frozenset({"k", "grand"})


def _parse_en(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    total, cur, stage, had_hundred, last_scale = 0, 0, _START, False, _INF
    pos, end = i, i
    while pos < n:
        w = words[pos]
        nxt = words[pos + 1] if pos + 1 < n else ""
        if w == "and" and pos > i and end == pos and (stage == _HUNDRED or (stage == _START and cur == 0)):
            if nxt in EN_UNITS or nxt in EN_TEENS or nxt in EN_TENS:
                pos += 1
                continue
            break
        if w == "a" and stage == _START and cur == 0 and (nxt in EN_HUNDRED or nxt in EN_SCALES):
            cur, stage = 1, _UNIT
            pos += 1
            continue
        if w in EN_UNITS and stage in (_START, _HUNDRED, _TENS):
            cur += EN_UNITS[w]
            stage = _UNIT
        elif w in EN_TEENS and stage in (_START, _HUNDRED):
            cur += EN_TEENS[w]
            stage = _UNIT
        elif w in EN_TENS and stage in (_START, _HUNDRED):
            cur += EN_TENS[w]
            stage = _TENS
        elif w in EN_HUNDRED and not had_hundred and cur < 100 and (stage != _START or cur == 0):
            # "twenty five hundred" is 2500: the count before "hundred" may go up to 99.
            cur = max(cur, 1) * 100
            stage, had_hundred = _HUNDRED, True
        elif w in EN_SCALES and EN_SCALES[w] < last_scale and cur < 1000 and (cur or w not in _COUNTED):
            total += max(cur, 1) * EN_SCALES[w]
            last_scale = EN_SCALES[w]
            cur, stage, had_hundred = 0, _START, False
        else:
            break
        pos += 1
        end = pos
    if end == i:
        return None
    return total + cur, end


# --- Swahili grammar ----------------------------------------------------------------------------
def _sub_hundred_sw(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    if i >= n:
        return None
    w = words[i]
    if w in SW_TENS or w in SW_TEN:
        value = SW_TENS.get(w, 10)
        if i + 2 < n and words[i + 1] == "na" and words[i + 2] in SW_UNITS:
            return value + SW_UNITS[words[i + 2]], i + 3
        # Typed in a hurry, "ishirini tano" drops the "na".
        if w in SW_TENS and i + 1 < n and words[i + 1] in SW_UNITS:
            return value + SW_UNITS[words[i + 1]], i + 2
        return value, i + 1
    if w in SW_UNITS:
        return SW_UNITS[w], i + 1
    if w in SW_SLANG:
        return SW_SLANG[w], i + 1
    return None


def _starts_sub_thousand_sw(word: str) -> bool:
    return word in SW_HUNDRED or word in SW_TENS or word in SW_TEN or word in SW_UNITS


def _sub_thousand_sw(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    pos, value = i, 0
    if pos < n and words[pos] in SW_HUNDRED:
        pos += 1
        count = 1
        if pos < n and words[pos] in SW_UNITS:
            count = SW_UNITS[words[pos]]
            pos += 1
        elif pos < n and (digit := _int_token(words[pos], 9)) is not None:
            count = digit
            pos += 1
        value = 100 * count
        if pos + 1 < n and words[pos] == "na" and _starts_sub_thousand_sw(words[pos + 1]):
            pos += 1
    rest = _sub_hundred_sw(words, pos)
    if rest is not None:
        value += rest[0]
        pos = rest[1]
    elif pos > i and words[pos - 1] == "na":
        pos -= 1  # a "na" not followed by a number belongs to the sentence ("mia tano na ...")
    return (value, pos) if pos > i else None


def _parse_sw(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    total, pos, end, last_scale = 0, i, i, _INF
    while pos < n:
        w = words[pos]
        if w in SW_SCALES and SW_SCALES[w] < last_scale:
            scale = SW_SCALES[w]
            count_at = pos + 1
            sub = _sub_thousand_sw(words, count_at)
            if sub is None and count_at < n and (digit := _int_token(words[count_at], 999)) is not None:
                sub = (digit, count_at + 1)
            count, pos = sub if sub is not None else (1, count_at)
            total += scale * count
            last_scale = scale
            end = pos
            if pos + 1 < n and words[pos] == "na" and (
                words[pos + 1] in SW_SCALES or _starts_sub_thousand_sw(words[pos + 1])
            ):
                pos += 1
            continue
        sub = _sub_thousand_sw(words, pos)
        if sub is not None:
            total += sub[0]
            end = sub[1]
        break
    return (total, end) if end > i else None


# --- French grammar -----------------------------------------------------------------------------
def _after_vingt_fr(words: Sequence[str], i: int) -> tuple[int, int]:
    """What may follow "quatre-vingt" or "soixante": dix[-sept…], onze…seize, or a unit."""
    n = len(words)
    if i < n and words[i] == "dix":
        if i + 1 < n and words[i + 1] in ("sept", "huit", "neuf"):
            return 10 + FR_UNITS[words[i + 1]], i + 2
        return 10, i + 1
    if i < n and words[i] in FR_TEENS:
        return FR_TEENS[words[i]], i + 1
    if i + 1 < n and words[i] == "et" and words[i + 1] in ("un", "une", "onze"):
        return (11 if words[i + 1] == "onze" else 1), i + 2
    if i < n and words[i] in FR_UNITS:
        return FR_UNITS[words[i]], i + 1
    return 0, i


def _sub_hundred_fr(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    if i >= n:
        return None
    w = words[i]
    if w == "quatre" and i + 1 < n and words[i + 1] in ("vingt", "vingts"):
        rest, pos = _after_vingt_fr(words, i + 2)
        return 80 + rest, pos
    if w in FR_TENS:
        value, pos = FR_TENS[w], i + 1
        if w == "soixante":
            rest, pos = _after_vingt_fr(words, pos)
            return value + rest, pos
        if pos + 1 < n and words[pos] == "et" and words[pos + 1] in ("un", "une"):
            return value + 1, pos + 2
        if pos < n and words[pos] in FR_UNITS:
            return value + FR_UNITS[words[pos]], pos + 1
        return value, pos
    if w == "dix":
        if i + 1 < n and words[i + 1] in ("sept", "huit", "neuf"):
            return 10 + FR_UNITS[words[i + 1]], i + 2
        return 10, i + 1
    if w in FR_TEENS:
        return FR_TEENS[w], i + 1
    if w in FR_UNITS:
        return FR_UNITS[w], i + 1
    return None


def _sub_thousand_fr(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    if i < n and words[i] in FR_HUNDRED:
        value, pos = 100, i + 1
    else:
        sub = _sub_hundred_fr(words, i)
        if sub is None:
            return None
        # "deux cents"; "quinze cents" (1500) is everyday speech for prices.
        if sub[1] < n and words[sub[1]] in FR_HUNDRED and 2 <= sub[0] <= 19:
            value, pos = sub[0] * 100, sub[1] + 1
        else:
            return sub
    rest = _sub_hundred_fr(words, pos)
    if rest is not None:
        value += rest[0]
        pos = rest[1]
    return value, pos


def _parse_fr(words: Sequence[str], i: int) -> tuple[int, int] | None:
    n = len(words)
    total, pos, end, last_scale = 0, i, i, _INF
    while pos < n:
        sub = _sub_thousand_fr(words, pos)
        after = sub[1] if sub is not None else pos
        if after < n and words[after] in FR_SCALES and FR_SCALES[words[after]] < last_scale:
            scale = FR_SCALES[words[after]]
            total += (sub[0] if sub is not None else 1) * scale
            last_scale = scale
            pos = end = after + 1
            continue
        if sub is not None:
            total += sub[0]
            end = after
        break
    return (total, end) if end > i else None


_GRAMMARS: dict[str, Callable[[Sequence[str], int], tuple[int, int] | None]] = {
    EN: _parse_en,
    SW: _parse_sw,
    FR: _parse_fr,
}


def read_number_words(
    words: Sequence[str], i: int, languages: Sequence[str] = LANGUAGES
) -> NumberMatch | None:
    """Read a number written in words starting at `words[i]` (folded tokens).

    Every language's grammar is tried and the longest reading wins; on a tie the earlier language
    in `languages` does, so callers put the utterance's language first.
    """
    if i >= len(words) or words[i] not in _STARTS:
        return None  # most words are not numbers: answer them without running three grammars
    best: NumberMatch | None = None
    for language in languages:
        found = _GRAMMARS[language](words, i)
        if found is not None and (best is None or found[1] > best.end):
            best = NumberMatch(found[0], i, found[1], language)
    return best


# --- integers to words --------------------------------------------------------------------------
_EN_NAMES = {v: k for k, v in {**EN_UNITS, **EN_TEENS}.items()} | {
    20: "twenty", 30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty",
    90: "ninety"}


def _en_below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_EN_NAMES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_EN_NAMES[n - n % 10] + (f"-{_EN_NAMES[n % 10]}" if n % 10 else ""))
    elif n:
        words.append(_EN_NAMES[n])
    return words


def _to_words_en(n: int) -> str:
    words: list[str] = []
    for scale, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= scale:
            words += [*_en_below_thousand(n // scale), name]
            n %= scale
    words += _en_below_thousand(n)
    return " ".join(words)


_SW_NAMES = {v: k for k, v in SW_UNITS.items()} | {10: "kumi", 20: "ishirini", 30: "thelathini",
                                                   40: "arobaini", 50: "hamsini", 60: "sitini",
                                                   70: "sabini", 80: "themanini", 90: "tisini"}


def _sw_below_hundred(n: int) -> list[str]:
    if n < 10 or n % 10 == 0:
        return [_SW_NAMES[n]]
    return [_SW_NAMES[n - n % 10], "na", _SW_NAMES[n % 10]]


def _sw_below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += ["mia", _SW_NAMES[n // 100]]
        n %= 100
        if n:
            words.append("na")
    if n:
        words += _sw_below_hundred(n)
    return words


def _to_words_sw(n: int) -> str:
    words: list[str] = []
    for scale, name in ((1_000_000, "milioni"), (100_000, "laki"), (1000, "elfu")):
        if n >= scale:
            words += [name, *_sw_below_thousand(n // scale)]
            n %= scale
    if n:
        # Swahili joins a small remainder with "na": "elfu moja na hamsini" (1050).
        if words and n < 100:
            words.append("na")
        words += _sw_below_thousand(n)
    return " ".join(words)


_FR_NAMES = {1: "un", 2: "deux", 3: "trois", 4: "quatre", 5: "cinq", 6: "six", 7: "sept", 8: "huit",
             9: "neuf", 10: "dix", 11: "onze", 12: "douze", 13: "treize", 14: "quatorze", 15: "quinze",
             16: "seize", 20: "vingt", 30: "trente", 40: "quarante", 50: "cinquante", 60: "soixante"}


def _fr_below_hundred(n: int) -> str:
    if n in _FR_NAMES:
        return _FR_NAMES[n]
    if n < 20:
        return f"dix-{_FR_NAMES[n - 10]}"
    if n < 70:
        tens, unit = n - n % 10, n % 10
        return f"{_FR_NAMES[tens]} et un" if unit == 1 else f"{_FR_NAMES[tens]}-{_FR_NAMES[unit]}"
    if n < 80:
        return "soixante et onze" if n == 71 else f"soixante-{_fr_below_hundred(n - 60)}"
    if n == 80:
        return "quatre-vingts"
    return f"quatre-vingt-{_fr_below_hundred(n - 80)}"


def _fr_below_thousand(n: int, *, final: bool) -> str:
    """`final` is False before "mille": "deux cent mille" and "quatre-vingt mille" take no "s"."""
    words: list[str] = []
    if n >= 100:
        hundreds, n = divmod(n, 100)
        if hundreds == 1:
            words.append("cent")
        else:
            words.append(f"{_FR_NAMES[hundreds]} cent" + ("s" if n == 0 and final else ""))
    if n:
        text = _fr_below_hundred(n)
        if text == "quatre-vingts" and not final:
            text = "quatre-vingt"
        words.append(text)
    return " ".join(words)


def _to_words_fr(n: int) -> str:
    words: list[str] = []
    if n >= 1_000_000:
        millions, n = divmod(n, 1_000_000)
        words += [_fr_below_thousand(millions, final=True), "million" if millions == 1 else "millions"]
    if n >= 1000:
        thousands, n = divmod(n, 1000)
        if thousands > 1:
            words.append(_fr_below_thousand(thousands, final=False))
        words.append("mille")
    if n:
        words.append(_fr_below_thousand(n, final=True))
    return " ".join(words)


_WRITERS = {EN: _to_words_en, SW: _to_words_sw, FR: _to_words_fr}


def to_words(n: int, language: str) -> str:
    """Write `n` (1 ≤ n < 10**9) in words, the way a voice confirmation reads an amount aloud."""
    if not 0 < n < 1_000_000_000:
        raise ValueError(f"to_words handles 1 to 999,999,999, not {n}")
    return _WRITERS[language](n)
