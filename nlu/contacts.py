"""Contacts: resolving a name said or typed in an utterance against the user's address book.

A transcriber hears "John Kamau" as "donkamao", "Moussa" as "musa", "Njoroge" as "joroge"; people
type "jhon". Each candidate is scored against every alias of every contact (full name with and
without spaces, each name, nickname) by spelling (rapidfuzz ratio and Jaro-Winkler) and by sound
(a metaphone key after folding spellings that sound alike in Kenyan and Senegalese names). A contact
is chosen only when it is clearly better than every other one: two Johns make a question, not a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import jellyfish
import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler

from nlu.results import Contact
from nlu.tokens import fold

# Spellings that sound alike: French "ou" (Moussa/Musa, Fatou/Fatu), "dj" (Djibril/Jibril), and
# transcribers' "ao" for "au" (Kamau/Kamao).
_SOUND_FOLDS = (("ou", "u"), ("dj", "j"), ("ao", "au"), ("ph", "f"), ("ck", "k"))
_WEIGHT_RATIO, _WEIGHT_JARO, _WEIGHT_SOUND = 0.5, 0.25, 0.25
# Short names sound like many words ("tuma" and "Tom" share a metaphone key), so they must be
# spelt closer before they count.
MIN_SCORE, MIN_SCORE_SHORT, SHORT = 0.72, 0.8, 4
# The best contact must beat any other contact by this much.
MIN_MARGIN = 0.06


@dataclass(frozen=True, slots=True)
class ContactMatch:
    """A contact found for the words over tokens `[token_start, token_end)`."""

    contact: Contact
    score: float
    token_start: int
    token_end: int


def compact(text: str) -> str:
    """Letters only, folded: "John Kamau" and "johnkamau" and "Jôhn-Kamau" compare equal."""
    return re.sub(r"[^a-z]", "", fold(text))


def sound_key(text: str) -> str:
    """A phonetic key of a compacted name."""
    for spelling, sound in _SOUND_FOLDS:
        text = text.replace(spelling, sound)
    return jellyfish.metaphone(text) if text else ""


@dataclass(frozen=True, slots=True)
class _AddressBook:
    """Aliases of a contact list, prepared once per list (they are re-used across utterances)."""

    contacts: tuple[Contact, ...]
    owners: np.ndarray  # alias index -> contact index
    aliases: tuple[str, ...]
    keys: tuple[str, ...]


def _aliases(contact: Contact) -> set[str]:
    names = {compact(contact.name)}
    names.update(compact(part) for part in contact.name.split() if len(compact(part)) >= 3)
    if contact.nickname:
        names.add(compact(contact.nickname))
    names.discard("")
    return names


@lru_cache(maxsize=256)
def _address_book(contacts: tuple[Contact, ...]) -> _AddressBook:
    owners: list[int] = []
    aliases: list[str] = []
    for index, contact in enumerate(contacts):
        for alias in sorted(_aliases(contact)):
            owners.append(index)
            aliases.append(alias)
    return _AddressBook(contacts, np.array(owners, dtype=np.intp), tuple(aliases),
                        tuple(sound_key(a) for a in aliases))


def score_candidates(candidates: Sequence[str], contacts: Sequence[Contact]) -> np.ndarray:
    """Scores in [0, 1], one row per compacted candidate, one column per contact."""
    book = _address_book(tuple(contacts))
    scores = np.zeros((len(candidates), len(book.contacts)))
    if not candidates or not book.aliases:
        return scores
    keys = [sound_key(c) for c in candidates]
    by_alias = (
        _WEIGHT_RATIO * process.cdist(candidates, book.aliases, scorer=fuzz.ratio, workers=1) / 100
        + _WEIGHT_JARO * process.cdist(candidates, book.aliases, scorer=JaroWinkler.normalized_similarity,
                                       workers=1)
        + _WEIGHT_SOUND * process.cdist(keys, book.keys, scorer=fuzz.ratio, workers=1) / 100
    )
    # A contact scores as its best alias.
    np.maximum.at(scores.T, book.owners, by_alias.T)
    return scores


def _acceptable(candidate: str, score: float) -> bool:
    return score >= (MIN_SCORE_SHORT if len(candidate) <= SHORT else MIN_SCORE)


def match_contact(
    spans: Sequence[tuple[str, int, int]], contacts: Sequence[Contact]
) -> ContactMatch | None:
    """The contact meant by one of `spans` (compacted text, token start, token end), if any.

    The best-scoring span wins, a longer one on a tie ("john kamau" over "john"); it is refused
    when another contact scores within `MIN_MARGIN` of it.
    """
    if not spans or not contacts:
        return None
    scores = score_candidates([s[0] for s in spans], contacts)
    best: tuple[float, int, int, int] | None = None  # score, span length, span index, contact index
    for row, (text, start, end) in enumerate(spans):
        column = int(np.argmax(scores[row]))
        score = float(scores[row, column])
        if not _acceptable(text, score):
            continue
        others = np.delete(scores[row], column)
        if others.size and float(others.max()) > score - MIN_MARGIN:
            continue
        rank = (round(score, 6), end - start, row, column)
        if best is None or rank[:2] > best[:2]:
            best = rank
    if best is None:
        return None
    _, _, row, column = best
    return ContactMatch(contacts[column], best[0], spans[row][1], spans[row][2])
