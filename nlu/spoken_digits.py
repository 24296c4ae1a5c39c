"""Digit strings typed in groups or read aloud: the raw material of phone, paybill, till, agent and
account numbers.

People say "zero seven one two ...", "sifuri saba moja mbili ...", "zéro sept ...", "double seven",
and French speakers read a Senegalese number in pairs and hundreds ("soixante-dix-sept cent
vingt-trois quarante-cinq soixante-sept" is 77 123 45 67). Transcribers also write "0712 345 678"
or "0 7 1 2". A group is one of those pieces; callers join groups and decide what they form.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from nlu.numbers_words import (
    DIGIT_REPEATS,
    DIGIT_WORDS,
    EN_SCALES,
    FR_SCALES,
    SW_SCALES,
    read_number_words,
)
from nlu.tokens import Token

ALL_DIGIT_WORDS: dict[str, int] = {w: d for table in DIGIT_WORDS.values() for w, d in table.items()}
_SCALE_WORDS = frozenset(EN_SCALES) | frozenset(SW_SCALES) | frozenset(FR_SCALES)


@dataclass(frozen=True, slots=True)
class DigitGroup:
    """Digits read from tokens `[start, end)`; `single` when one spoken digit (or "double 7")."""

    digits: str
    start: int
    end: int
    single: bool


def _digit_of(token: Token) -> str | None:
    if token.text in ALL_DIGIT_WORDS:
        return str(ALL_DIGIT_WORDS[token.text])
    if token.is_number and len(token.text) == 1:
        return token.text
    return None


def read_group(tokens: Sequence[Token], i: int) -> DigitGroup | None:
    """One group of digits at token `i`, or None."""
    token = tokens[i]
    if token.is_number:
        return DigitGroup(token.text, i, i + 1, single=False) if token.text.isdigit() else None
    if token.text in DIGIT_REPEATS and i + 1 < len(tokens):
        digit = _digit_of(tokens[i + 1])
        if digit is not None:
            return DigitGroup(digit * DIGIT_REPEATS[token.text], i, i + 2, single=True)
        return None
    words = [t.text for t in tokens]
    number = read_number_words(words, i)
    # Only numbers below a thousand are read as a group ("soixante-dix-sept", "cent vingt-trois");
    # "huit mille" after a phone number is the digit 8 followed by an amount.
    if number is not None and (number.value >= 1000 or _SCALE_WORDS.intersection(words[i:number.end])):
        number = None
    if token.text in ALL_DIGIT_WORDS and (number is None or number.end == i + 1):
        return DigitGroup(str(ALL_DIGIT_WORDS[token.text]), i, i + 1, single=True)
    if number is not None:
        return DigitGroup(str(number.value), i, number.end, single=False)
    return None


def read_digit_run(
    tokens: Sequence[Token], i: int, claimed: Collection[int] = (), *, spoken_only: bool = False
) -> list[DigitGroup]:
    """Consecutive digit groups from token `i` ("-" between groups is skipped).

    `spoken_only` keeps to one-digit spoken groups, the way a paybill or account number is read
    out; it stops at anything else, so "till five one two ... five hundred" leaves the amount be.
    """
    groups: list[DigitGroup] = []
    pos = i
    while pos < len(tokens) and pos not in claimed:
        if groups and tokens[pos].text == "-" and pos + 1 < len(tokens):
            pos += 1
            continue
        group = read_group(tokens, pos)
        if group is None or any(k in claimed for k in range(group.start, group.end)):
            break
        if spoken_only and not group.single:
            break
        groups.append(group)
        pos = group.end
    return groups
