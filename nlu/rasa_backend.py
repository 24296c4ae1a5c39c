"""The Rasa backend: the same `Parse` as the embedded parser, with the intent from a Rasa server's
`POST /model/parse` (async, aiohttp).

Rasa decides the intent and its confidence. Entities come from Sauti's deterministic extractors,
as in the embedded parser, so amounts, phones and contacts are normalised the same way; an entity
of a type only Rasa found, over words no extractor claimed, is normalised and added. Rasa's
`nlu_fallback` (FallbackClassifier) and any guarded intent below our threshold become CLARIFY.

A server that cannot be reached or answers nonsense raises `RasaError`: the caller decides whether
to fall back to the embedded parser or to say "try again".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from nlu.amounts import read_amount
from nlu.contacts import compact, match_contact
from nlu.entities import EntityExtractor
from nlu.intents import (
    AMOUNT,
    CLARIFY,
    GUARDED_INTENTS,
    INTENTS,
    PHONE,
    RECIPIENT,
    keep_entities,
    missing_slots,
)
from nlu.language import LanguageGuesser
from nlu.parser import DEFAULT_CONFIDENCE_THRESHOLD, prepare
from nlu.phones import normalize_phone
from nlu.results import Contact, Entity, Parse
from nlu.tokens import tokenize
from nlu.training_data import TrainingData, load_directory

FALLBACK_INTENT = "nlu_fallback"
DEFAULT_TIMEOUT_S = 2.0


class RasaError(RuntimeError):
    """The Rasa server could not give a parse (unreachable, timed out, or a malformed answer)."""


class RasaParser:
    """Parses utterances with a Rasa server. Use as `async with RasaParser(url) as parser:`, or pass
    an `aiohttp.ClientSession` you own (then `close()` leaves it open)."""

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
        data: TrainingData | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/model/parse"
        self._session = session
        self._owns_session = session is None
        self._params = {"token": token} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.confidence_threshold = confidence_threshold
        # The extractors need the lookup tables and vocabulary, not a trained model: cheap.
        self._extractor: EntityExtractor
        self._languages: LanguageGuesser
        self._extractor, self._languages = prepare(data if data is not None else load_directory())

    async def __aenter__(self) -> RasaParser:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _ask(self, text: str) -> Mapping[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(self._endpoint, json={"text": text}, params=self._params,
                                          timeout=self._timeout) as response:
                if response.status != 200:
                    body = (await response.text())[:200]
                    raise RasaError(f"Rasa answered {response.status} at {self._endpoint}: {body}")
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise RasaError(f"Rasa at {self._endpoint} failed: {error!r}") from error
        if not isinstance(answer, Mapping) or not isinstance(answer.get("intent"), Mapping):
            raise RasaError(f"Rasa at {self._endpoint} answered without an intent: {str(answer)[:200]}")
        return answer

    async def parse(self, text: str, *, language: str | None = None, contacts: Sequence[Contact] = ()) -> Parse:
        answer = await self._ask(text)
        intent, confidence, guess = _intent_of(answer)
        tokens = tokenize(text)
        detected = self._languages.guess(tokens, hint=language)
        extraction = self._extractor.extract(text, tokens, language=detected, contacts=contacts)
        entities = list(extraction.entities)
        found_types = {e.type for e in entities}
        for raw in answer.get("entities") or ():
            entity = _normalise(raw, text, contacts)
            # Rasa only fills gaps: a type we did not find, over words no extractor claimed.
            if entity is None or entity.type in found_types or any(
                entity.start < e.end and e.start < entity.end for e in entities
            ):
                continue
            entities.append(entity)
            found_types.add(entity.type)
        entities.sort(key=lambda e: (e.start, e.end))
        if intent in GUARDED_INTENTS and confidence < self.confidence_threshold:
            intent, guess = CLARIFY, intent
        if intent == CLARIFY:
            return Parse(text, CLARIFY, confidence, tuple(entities), (), detected, guess=guess)
        kept = keep_entities(intent, entities)
        return Parse(text, intent, confidence, kept, missing_slots(intent, kept), detected)


def _intent_of(answer: Mapping[str, Any]) -> tuple[str, float, str | None]:
    """(intent, confidence, guess) from a /model/parse answer; fallback and unknown intents clarify."""
    name = str(answer["intent"].get("name") or "")
    confidence = float(answer["intent"].get("confidence") or 0.0)
    if name in INTENTS:
        return name, confidence, None
    # nlu_fallback (or an intent Sauti does not know): keep Rasa's best real intent as the guess.
    ranking = [r for r in answer.get("intent_ranking") or () if isinstance(r, Mapping) and r.get("name") in INTENTS]
    guess = str(ranking[0]["name"]) if ranking else None
    return CLARIFY, confidence, guess


def _normalise(raw: Any, text: str, contacts: Sequence[Contact]) -> Entity | None:
    """One of Rasa's entities in Sauti's terms, or None when it cannot be normalised."""
    if not isinstance(raw, Mapping) or "entity" not in raw:
        return None
    try:
        start, end = int(raw["start"]), int(raw["end"])
    except (KeyError, TypeError, ValueError):
        return None
    kind, said, value = str(raw["entity"]), text[start:end], raw.get("value")
    if kind == AMOUNT:
        tokens = tokenize(said)
        amount = read_amount(tokens, 0) if tokens else None
        return Entity(kind, amount.value, said, start, end) if amount is not None else None
    if kind == PHONE:
        phone = normalize_phone(said)
        return Entity(kind, phone, said, start, end) if phone is not None else None
    if kind == RECIPIENT:
        found = match_contact([(compact(said), 0, 1)], contacts)
        return Entity(kind, found.contact.name, said, start, end, found.contact) if found else None
    if value is None or not str(value).strip():
        return None
    return Entity(kind, str(value), said, start, end)
