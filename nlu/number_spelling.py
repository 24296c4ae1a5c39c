"""Scale words misspelt or misheard, read as meant: "two thousnd", "five hundrd" as people type them,
"two ndousand" as Whisper writes eSpeak NG's "thousand" at 8 kHz.

Only the long English scale words are repaired (hundred, thousand, million and their plurals): short
words sit too close to ordinary ones. A word is read as one only when it is no word the parser
knows, spells close to it (rapidfuzz ratio ≥ `MIN_SCORE`) and comes right after a number, in digits
or in words ("two husband" is not an amount anyone says; "my husband" is left alone).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from rapidfuzz import fuzz, process

from nlu.numbers_words import ALL_NUMBER_WORDS
from nlu.tokens import Token

_SCALES = ("hundred", "hundreds", "thousand", "thousands", "million", "millions")
MIN_SCORE = 75
_MIN_LENGTH = 5
# Real words that spell as close to a scale word as the misspellings it is meant for ("husband" is
# 80 % "thousand", Whisper's "ndousand" 75 %).
_NOT_MISSPELT = frozenset({"husband", "husbands", "hundredth", "thousandth"})


def _after_a_number(token: Token) -> bool:
    return token.is_number or token.text in ALL_NUMBER_WORDS


def repair_scale_words(tokens: Sequence[Token], known: Collection[str] = ()) -> tuple[Token, ...]:
    """`tokens` with each misspelt scale word right after a number replaced by the word meant (its
    text only: offsets, and so what the user wrote, are kept)."""
    repaired = list(tokens)
    for k in range(1, len(tokens)):
        token = tokens[k]
        if (not token.is_word or len(token.text) < _MIN_LENGTH or token.text in ALL_NUMBER_WORDS
                or token.text in _NOT_MISSPELT or token.text in known or not _after_a_number(tokens[k - 1])):
            continue
        found = process.extractOne(token.text, _SCALES, scorer=fuzz.ratio, score_cutoff=MIN_SCORE)
        if found is not None:
            repaired[k] = replace(token, text=found[0])
    return tuple(repaired)
