"""The embedded parser, Sauti's default NLU backend: trained from the Rasa data at start-up (or
loaded from a cache keyed by the data's hash) and parsing an utterance in well under a millisecond.

One utterance goes through one pipeline, top to bottom: tokenize → guess the language → extract
entities (deterministic extractors) → classify the masked text → apply the confidence threshold →
keep the entities the intent uses → list the slots still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nlu.classifier import FORMAT_VERSION, IntentModel, train
from nlu.entities import EntityExtractor
from nlu.intents import CLARIFY, GUARDED_INTENTS, RECIPIENT, RECIPIENT_NAME, keep_entities, missing_slots
from nlu.language import LanguageGuesser
from nlu.lookups import LookupMatcher
from nlu.results import Contact, Parse
from nlu.tokens import tokenize
from nlu.training_data import TrainingData, load_directory

log = logging.getLogger(__name__)

# Below this probability a payment (or a "yes" that would confirm one) is only a guess: the parse
# says CLARIFY. Chosen by 5-fold cross-validation on the training data, not on the test set: at 0.4,
# 95% of the payment/affirm readings it lets through were right (94% at 0.3, 97% at 0.5, at the
# cost of asking again more often).
DEFAULT_CONFIDENCE_THRESHOLD = 0.4


@dataclass(frozen=True)
class EmbeddedParser:
    """Parses utterances with a trained intent model and the deterministic entity extractors."""

    model: IntentModel
    extractor: EntityExtractor
    languages: LanguageGuesser
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD

    def parse(self, text: str, *, language: str | None = None, contacts: Sequence[Contact] = ()) -> Parse:
        """Read one utterance. `language` is the user's chosen language (a hint: the words decide);
        `contacts` is their address book, for recipients. A payment or a confirming "yes" below
        the confidence threshold comes back as CLARIFY with the guess kept."""
        tokens = tokenize(text)
        detected = self.languages.guess(tokens, hint=language)
        extraction = self.extractor.extract(text, tokens, language=detected, contacts=contacts)
        intent, confidence = self.model.rank(extraction.masked)[0]
        if not tokens or (intent in GUARDED_INTENTS and confidence < self.confidence_threshold):
            return Parse(text, CLARIFY, confidence, extraction.entities, (), detected, guess=intent)
        entities = keep_entities(intent, extraction.entities)
        return Parse(text, intent, confidence, entities, missing_slots(intent, entities), detected)

    def rank(self, text: str, *, language: str | None = None) -> list[tuple[str, float]]:
        """Every intent with its probability, most likely first (for debugging and evaluation)."""
        tokens = tokenize(text)
        detected = self.languages.guess(tokens, hint=language)
        return self.model.rank(self.extractor.extract(text, tokens, language=detected).masked)


def _vocabulary(data: TrainingData) -> dict[str, list[str]]:
    """Words of the examples outside annotated entities, per language."""
    words: dict[str, list[str]] = {}
    for example in data.examples:
        for token in tokenize(example.text):
            inside = any(a.start <= token.start < a.end for a in example.entities)
            if token.is_word and not inside:
                words.setdefault(example.language, []).append(token.text)
    return words


def masked_examples(data: TrainingData, extractor: EntityExtractor) -> list[str]:
    """The training examples as the classifier sees them."""
    masked = []
    for example in data.examples:
        tokens = tokenize(example.text)
        spans = []
        for name in (a for a in example.entities if a.type in (RECIPIENT, RECIPIENT_NAME)):
            inside = [k for k, t in enumerate(tokens) if t.end > name.start and t.start < name.end]
            if inside:
                spans.append((inside[0], inside[-1] + 1))
        masked.append(extractor.extract(example.text, tokens, language=example.language,
                                        recipient_spans=spans).masked)
    return masked


def prepare(data: TrainingData) -> tuple[EntityExtractor, LanguageGuesser]:
    """The parts of the parser that are read from the data rather than fitted."""
    words = _vocabulary(data)
    extractor = EntityExtractor(LookupMatcher(data.lookups, data.synonyms), {w for ws in words.values() for w in ws})
    return extractor, LanguageGuesser(words)


def build_parser(
    data: TrainingData,
    *,
    cache_dir: Path | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
) -> EmbeddedParser:
    """Train (or load from `cache_dir`) a parser for `data`."""
    extractor, languages = prepare(data)
    cached = Path(cache_dir) / f"intents-v{FORMAT_VERSION}-{data.fingerprint[:20]}.npz" if cache_dir else None
    model = IntentModel.load(cached) if cached is not None and cached.exists() else None
    if model is None:
        model = train(masked_examples(data, extractor), [e.intent for e in data.examples])
        if cached is not None:
            try:
                model.save(cached)
                # Models of older data are never read again.
                for stale in cached.parent.glob("intents-v*.npz"):
                    if stale != cached:
                        stale.unlink(missing_ok=True)
            except OSError as error:  # a read-only cache only costs a retrain next time
                log.warning("could not cache the NLU model at %s: %s", cached, error)
    return EmbeddedParser(model, extractor, languages, confidence_threshold)


def load_embedded_parser(
    data_dir: Path | None = None,
    *,
    cache_dir: Path | None = None,
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
) -> EmbeddedParser:
    """The default parser: Sauti's own training data (or `data_dir`), cached under `cache_dir`."""
    return build_parser(load_directory(data_dir), cache_dir=cache_dir, confidence_threshold=confidence_threshold)
