"""Names from the training data's lookup tables (banks, billers) found in an utterance and mapped
through its synonyms to the value the rest of Sauti uses.

"Equity", "equity bank" → bank code "68"; "KPLC", "kenya power" → paybill "888880"; "Senelec" →
"SENELEC". The tables live in the Rasa data (`lookup:` and `synonym:` blocks), so the embedded
parser and a Rasa server read the same lists.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from nlu.tokens import Token, tokenize


@dataclass(frozen=True, slots=True)
class LookupMatch:
    """A lookup-table name over tokens `[token_start, token_end)`."""

    type: str
    value: str
    token_start: int
    token_end: int


class LookupMatcher:
    """Finds the longest lookup-table name at each position of an utterance."""

    def __init__(self, tables: Mapping[str, Sequence[str]], synonyms: Mapping[str, str]) -> None:
        # Keys are folded word tuples, so "Co-op Bank" and "coop bank" are looked up the same way.
        self._names: dict[tuple[str, ...], tuple[str, str]] = {}
        folded_synonyms = {_words(name): value for name, value in synonyms.items()}
        for entity_type, names in tables.items():
            for name in names:
                key = _words(name)
                if key:
                    self._names[key] = (entity_type, folded_synonyms.get(key, name))
        self._longest = max((len(k) for k in self._names), default=0)

    def find(self, tokens: Sequence[Token], claimed: Collection[int] = ()) -> list[LookupMatch]:
        words = [t.text for t in tokens]
        found: list[LookupMatch] = []
        i = 0
        while i < len(words):
            for length in range(min(self._longest, len(words) - i), 0, -1):
                hit = self._names.get(tuple(words[i:i + length]))
                if hit is not None and not any(k in claimed for k in range(i, i + length)):
                    found.append(LookupMatch(hit[0], hit[1], i, i + length))
                    i += length
                    break
            else:
                i += 1
        return found


def _words(name: str) -> tuple[str, ...]:
    return tuple(t.text for t in tokenize(name) if t.kind != "symbol" or t.text not in ".,")
