"""Reading and validating the Rasa training data."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.intents import INTENTS
from nlu.numbers_words import LANGUAGES
from nlu.training_data import DataError, load, parse_document, parse_example, to_markup


def test_parse_example_strips_markup() -> None:
    example = parse_example(
        'tuma [elfu moja]{"entity": "amount", "value": "1000"} kwa [Mama](recipient) [ksh](currency:KES)',
        intent="send_money", language="sw", where="test")
    assert example.text == "tuma elfu moja kwa Mama ksh"
    assert [(a.type, a.value, example.text[a.start:a.end]) for a in example.entities] == [
        ("amount", "1000", "elfu moja"), ("recipient", "Mama", "Mama"), ("currency", "KES", "ksh")]


def test_markup_round_trip() -> None:
    line = 'send [1,500](amount) to [donkamao]{"entity": "recipient", "value": "John Kamau"} now'
    example = parse_example(line, intent="send_money", language="en", where="test")
    again = parse_example(to_markup(example), intent="send_money", language="en", where="test")
    assert again == example


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("send [elfu moja](amount)", "needs an integer value"),
        ("send [500](money)", "unknown entity type"),
        ('send [500]{"value": "500"}', "without 'entity'"),
        ("send [500]{not json}", "bad entity JSON"),
        ("send [500 to John", "malformed"),
    ],
)
def test_bad_annotations(line: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_example(line, intent="send_money", language="en", where="test")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("nlu: [", "not valid YAML"),
        ("- a list", "expected a mapping"),
        ("nlu:\n- intent: fly\n  examples: |\n    - up\n", "unknown intent"),
        ("nlu:\n- intent: help\n  examples: |\n    - help\n", "language None"),
        ("nlu:\n- intent: help\n  metadata: {language: de}\n  examples: |\n    - hilfe\n", "language 'de'"),
        ("nlu:\n- intent: help\n  metadata: {language: en}\n  examples: |\n    help\n", "must start with '- '"),
        ("nlu:\n- stuff: x\n", "expected one of"),
        ("contacts: [{name: X}]\nnlu: []\n", "needs 'name' and 'phone'"),
    ],
)
def test_bad_documents(document: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_document(document, name="doc.yml")


def test_load_reports_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "en.yml"
    bad.write_text("nlu:\n- intent: nope\n  examples: |\n    - x\n")
    with pytest.raises(DataError, match=r"en\.yml"):
        load([bad])


def test_fingerprint_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "en.yml"
    path.write_text('version: "3.1"\nnlu:\n- intent: help\n  examples: |\n    - help\n')
    first = load([path]).fingerprint
    path.write_text('version: "3.1"\nnlu:\n- intent: help\n  examples: |\n    - help me\n')
    assert load([path]).fingerprint != first


def test_shipped_data(training_data) -> None:
    assert len(training_data.examples) >= 900
    by_intent = training_data.by_intent()
    assert set(by_intent) == set(INTENTS)
    for intent, examples in by_intent.items():
        languages = {e.language for e in examples}
        # Wave is Senegalese: withdrawing to it is rarely said in Swahili, but still covered.
        assert languages == set(LANGUAGES), intent
    assert {"bank_code", "paybill"} <= set(training_data.lookups)
    assert training_data.synonyms["equity bank"] == "68"
    assert training_data.synonyms["bob"] == "KES"


def test_shipped_data_has_no_duplicates(training_data) -> None:
    seen: dict[str, str] = {}
    for example in training_data.examples:
        key = " ".join(example.text.lower().split())
        assert seen.setdefault(key, example.intent) == example.intent, f"{key!r} has two intents"
