"""Tokens: the folded, offset-preserving view of an utterance that every extractor reads.

Folding lowercases and strips accents one character for one character, so a span found in the
folded text is the same span in what the user typed ("Zéro" and "zero" both match `zero`, and the
entity's `raw` is still cut from the original).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Characters whose plain fold is not what a speaker means: curly apostrophes, and the no-break
# spaces French typography puts inside numbers ("5 000 F").
_SPECIAL = {"\u2019": "'", "\u2018": "'", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2013": "-"}

WORD, NUMBER, SYMBOL = "word", "number", "symbol"

# `/-` and `/=` are how Kenyans close an amount ("500/-"); digits keep their separators so "1,500"
# and "1.5" stay one token and amounts decide what the separator meant.
_TOKEN = re.compile(r"(?P<number>\d+(?:[.,]\d+)*)|(?P<word>[^\W\d_]+)|(?P<symbol>/[-=]|\S)")


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    low = ch.lower()
    if len(low) != 1:  # e.g. "İ" lowercases to two code points: keep one for one
        low = ch
    return unicodedata.normalize("NFKD", low)[0]


def fold(text: str) -> str:
    """Lowercase and strip accents, keeping `len(fold(text)) == len(text)`."""
    return "".join(map(_fold_char, text))


@dataclass(frozen=True, slots=True)
class Token:
    """One word, number or symbol of an utterance; `text` is folded, offsets index the original."""

    text: str
    kind: str
    start: int
    end: int

    @property
    def is_word(self) -> bool:
        return self.kind == WORD

    @property
    def is_number(self) -> bool:
        return self.kind == NUMBER


def tokenize(text: str) -> tuple[Token, ...]:
    """Split `text` into folded tokens. A hyphen joining two words ("quatre-vingt-dix") is dropped
    so number words read the same hyphenated or not."""
    folded = fold(text)
    raw = [Token(m.group(), m.lastgroup or SYMBOL, m.start(), m.end()) for m in _TOKEN.finditer(folded)]
    tokens: list[Token] = []
    for i, tok in enumerate(raw):
        if (
            tok.text == "-"
            and 0 < i < len(raw) - 1
            and raw[i - 1].is_word
            and raw[i + 1].is_word
            and raw[i - 1].end == tok.start
            and tok.end == raw[i + 1].start
        ):
            continue
        tokens.append(tok)
    return tuple(tokens)
