"""Rasa 3 training data: reading, validating and fingerprinting the YAML under `nlu/data/`.

The files are plain Rasa 3 NLU files (`version: "3.1"`, an `nlu:` list of `intent` / `synonym` /
`lookup` / `regex` blocks, entities annotated `[500](amount)` or
`[elfu moja]{"entity": "amount", "value": "1000"}`), so `rasa train nlu` reads them as they are.
Each file's language is its name (`en.yml`, `sw.yml`, `fr.yml`); an intent block's
`metadata: {language: ..}` overrides it. A test set may add a top-level `contacts:` list (our
extension) for the address book its utterances refer to.

Errors are data: a bad file raises `DataError` naming the file and the example.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nlu.intents import AMOUNT, ENTITY_TYPES, INTENTS
from nlu.numbers_words import LANGUAGES
from nlu.results import Contact

DATA_DIR = Path(__file__).parent / "data"

# Rasa's annotation forms: [text](type), [text](type:value), [text]{"entity": "type", "value": "v"}.
_ANNOTATION = re.compile(r"\[(?P<text>[^\]]+)\](?:\((?P<short>[^)]+)\)|(?P<json>\{[^}]+\}))")


class DataError(ValueError):
    """Training or test data that cannot be used as it is."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """An annotated entity over `text[start:end]` of its example; `value` as written in the data."""

    type: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Example:
    """One utterance with its intent, language and annotated entities (text without markup)."""

    text: str
    intent: str
    language: str
    entities: tuple[Annotation, ...] = ()


@dataclass(frozen=True)
class TrainingData:
    """Everything read from a set of Rasa files."""

    examples: tuple[Example, ...]
    synonyms: dict[str, str] = field(default_factory=dict)  # name as said -> value
    lookups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entity type -> names
    regexes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    contacts: tuple[Contact, ...] = ()
    fingerprint: str = ""

    def by_intent(self) -> dict[str, list[Example]]:
        grouped: dict[str, list[Example]] = {}
        for example in self.examples:
            grouped.setdefault(example.intent, []).append(example)
        return grouped


def parse_example(line: str, *, intent: str, language: str, where: str) -> Example:
    """Strip Rasa markup from one example line and keep its annotations."""
    text_parts: list[str] = []
    annotations: list[Annotation] = []
    cursor = 0
    length = 0
    for found in _ANNOTATION.finditer(line):
        before = line[cursor:found.start()]
        text_parts.append(before)
        length += len(before)
        raw = found.group("text")
        entity_type, value = _annotation_target(found, raw, where)
        annotations.append(Annotation(entity_type, value, length, length + len(raw)))
        text_parts.append(raw)
        length += len(raw)
        cursor = found.end()
    text_parts.append(line[cursor:])
    text = "".join(text_parts)
    if "[" in text or "](" in text:
        raise DataError(f"{where}: malformed entity annotation in {line!r}")
    return Example(text, intent, language, tuple(annotations))


def _annotation_target(found: re.Match[str], raw: str, where: str) -> tuple[str, str]:
    if found.group("json"):
        try:
            spec = json.loads(found.group("json"))
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: bad entity JSON {found.group('json')!r}: {error}") from None
        if not isinstance(spec, dict) or "entity" not in spec:
            raise DataError(f"{where}: entity JSON without 'entity': {found.group('json')!r}")
        entity_type, value = str(spec["entity"]), str(spec.get("value", raw))
    else:
        entity_type, _, value = found.group("short").partition(":")
        value = value or raw
    if entity_type not in ENTITY_TYPES:
        raise DataError(f"{where}: unknown entity type {entity_type!r} (known: {', '.join(ENTITY_TYPES)})")
    # IMPORTANT: an amount's value must be written as the integer it means, so gold values never
    # depend on the parser being evaluated.
    if entity_type == AMOUNT and not value.replace(",", "").isdigit():
        raise DataError(f"{where}: amount {raw!r} needs an integer value, e.g. "
                        f'[{raw}]{{"entity": "amount", "value": "1500"}}')
    if entity_type == AMOUNT:
        value = value.replace(",", "")
    return entity_type, value


def _examples_block(block: dict, where: str) -> list[str]:
    body = block.get("examples")
    if not isinstance(body, str):
        raise DataError(f"{where}: 'examples' must be a block of '- ' lines")
    lines = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("- "):
            raise DataError(f"{where}: example line must start with '- ': {line!r}")
        lines.append(line[2:].strip())
    return lines


def _contacts(raw: object, where: str) -> list[Contact]:
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'contacts' must be a list")
    contacts = []
    for item in raw:
        if not isinstance(item, dict) or "name" not in item or "phone" not in item:
            raise DataError(f"{where}: a contact needs 'name' and 'phone': {item!r}")
        contacts.append(Contact(str(item["name"]), item.get("nickname"), str(item["phone"])))
    return contacts


def parse_document(text: str, *, name: str, language: str | None = None) -> TrainingData:
    """Read one Rasa NLU YAML document; `language` is its examples' language unless a block says."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DataError(f"{name}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("nlu", []), list):
        raise DataError(f"{name}: expected a mapping with an 'nlu' list")
    examples: list[Example] = []
    synonyms: dict[str, str] = {}
    lookups: dict[str, tuple[str, ...]] = {}
    regexes: dict[str, tuple[str, ...]] = {}
    for number, block in enumerate(document.get("nlu") or [], start=1):
        where = f"{name}: block {number}"
        if not isinstance(block, dict):
            raise DataError(f"{where}: expected a mapping")
        if "intent" in block:
            intent = str(block["intent"])
            if intent not in INTENTS:
                raise DataError(f"{where}: unknown intent {intent!r}")
            metadata = block.get("metadata") or {}
            block_language = metadata.get("language", language) if isinstance(metadata, dict) else language
            if block_language not in LANGUAGES:
                raise DataError(f"{where}: language {block_language!r} is not one of {LANGUAGES}")
            for line in _examples_block(block, where):
                examples.append(parse_example(line, intent=intent, language=block_language,
                                              where=f"{where} ({intent})"))
        elif "synonym" in block:
            for line in _examples_block(block, where):
                synonyms[line] = str(block["synonym"])
        elif "lookup" in block:
            lookups[str(block["lookup"])] = lookups.get(str(block["lookup"]), ()) + tuple(
                _examples_block(block, where))
        elif "regex" in block:
            regexes[str(block["regex"])] = tuple(_examples_block(block, where))
        else:
            raise DataError(f"{where}: expected one of intent, synonym, lookup, regex")
    contacts = _contacts(document["contacts"], name) if "contacts" in document else []
    return TrainingData(tuple(examples), synonyms, lookups, regexes, tuple(contacts))


def _language_of(path: Path) -> str | None:
    return path.stem if path.stem in LANGUAGES else None


def load(paths: Iterable[Path]) -> TrainingData:
    """Read and merge Rasa files; the fingerprint hashes their names and contents."""
    digest = hashlib.sha256()
    merged: list[TrainingData] = []
    for path in sorted(Path(p) for p in paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read: {error}") from None
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        merged.append(parse_document(text, name=str(path), language=_language_of(path)))
    return _merge(merged, digest.hexdigest())


def load_directory(directory: Path | None = None) -> TrainingData:
    """Read every `*.yml` file of a data directory (by default Sauti's own `nlu/data/`)."""
    directory = Path(directory) if directory is not None else DATA_DIR
    paths = sorted(directory.glob("*.yml"))
    if not paths:
        raise DataError(f"{directory}: no *.yml training files")
    return load(paths)


def _merge(parts: Sequence[TrainingData], fingerprint: str) -> TrainingData:
    examples: list[Example] = []
    synonyms: dict[str, str] = {}
    lookups: dict[str, tuple[str, ...]] = {}
    regexes: dict[str, tuple[str, ...]] = {}
    contacts: list[Contact] = []
    for part in parts:
        examples.extend(part.examples)
        synonyms.update(part.synonyms)
        for key, names in part.lookups.items():
            lookups[key] = lookups.get(key, ()) + names
        regexes.update(part.regexes)
        contacts.extend(part.contacts)
    return TrainingData(tuple(examples), synonyms, lookups, regexes, tuple(contacts), fingerprint)


def to_markup(example: Example) -> str:
    """Write an example back in Rasa markup, values included where they differ from the text."""
    parts: list[str] = []
    cursor = 0
    for annotation in sorted(example.entities, key=lambda a: a.start):
        raw = example.text[annotation.start:annotation.end]
        parts.append(example.text[cursor:annotation.start])
        if annotation.value == raw:
            parts.append(f"[{raw}]({annotation.type})")
        else:
            spec = json.dumps({"entity": annotation.type, "value": annotation.value}, ensure_ascii=False)
            parts.append(f"[{raw}]{spec}")
        cursor = annotation.end
    parts.append(example.text[cursor:])
    return "".join(parts)
