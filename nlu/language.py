"""Which language an utterance is in (en, sw, fr), from the words the training data uses in each.

A naive Bayes vote over known words: code-switched sentences ("tuma 500 to John") go to the
language with the most telling words, and a hint (the language the user chose) breaks ties.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from nlu.numbers_words import EN, LANGUAGES, NUMBER_WORDS
from nlu.tokens import Token

# A hint is worth about one ambiguous word: it decides ties, not a clear Swahili sentence.
_HINT_BONUS = math.log(2.0)


class LanguageGuesser:
    """Guesses the language of tokenized utterances."""

    def __init__(self, words_by_language: Mapping[str, Iterable[str]]) -> None:
        counts = {lang: Counter(words_by_language.get(lang, ())) for lang in LANGUAGES}
        for lang in LANGUAGES:
            counts[lang].update(NUMBER_WORDS[lang])
        vocabulary = set().union(*counts.values())
        self._log_probs: dict[str, dict[str, float]] = {}
        for word in vocabulary:
            # Laplace-smoothed P(word | language), stored per word for one lookup per token.
            self._log_probs[word] = {
                lang: math.log((counts[lang][word] + 1) / (sum(counts[lang].values()) + len(vocabulary)))
                for lang in LANGUAGES
            }

    def guess(self, tokens: Sequence[Token], hint: str | None = None) -> str:
        scores = dict.fromkeys(LANGUAGES, 0.0)
        if hint in scores:
            scores[hint] += _HINT_BONUS
        seen = False
        for token in tokens:
            probs = self._log_probs.get(token.text) if token.is_word else None
            if probs is None:
                continue
            seen = True
            for lang, value in probs.items():
                scores[lang] += value
        if not seen:
            return hint if hint in scores else EN
        return max(LANGUAGES, key=lambda lang: scores[lang])
