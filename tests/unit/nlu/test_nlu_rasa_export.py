"""export_rasa writes a Rasa 3 project that holds all of Sauti's NLU data."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from gateway.commands.nlu import nlu as nlu_cli
from nlu.intents import ENTITY_TYPES, INTENTS
from nlu.rasa_export import export_rasa
from nlu.training_data import parse_document


def test_writes_a_complete_project(tmp_path: Path, training_data) -> None:
    written = export_rasa(tmp_path / "rasa", training_data)
    assert sorted(p.relative_to(tmp_path / "rasa").as_posix() for p in written) == [
        "config.yml", "data/nlu.yml", "domain.yml"]

    config = yaml.safe_load((tmp_path / "rasa" / "config.yml").read_text())
    assert config["recipe"] == "default.v1" and config["assistant_id"]
    names = [step["name"] for step in config["pipeline"]]
    assert names[0] == "WhitespaceTokenizer"
    assert {"DIETClassifier", "EntitySynonymMapper", "RegexEntityExtractor", "FallbackClassifier"} <= set(names)

    domain = yaml.safe_load((tmp_path / "rasa" / "domain.yml").read_text())
    assert domain["version"] == "3.1"
    assert domain["intents"] == list(INTENTS) and domain["entities"] == list(ENTITY_TYPES)

    text = (tmp_path / "rasa" / "data" / "nlu.yml").read_text()
    document = yaml.safe_load(text)
    assert document["version"] == "3.1"
    kinds = {next(iter(block)) for block in document["nlu"]}
    assert kinds == {"intent", "synonym", "lookup", "regex"}
    assert {b["intent"] for b in document["nlu"] if "intent" in b} == set(INTENTS)
    assert "examples: |" in text  # Rasa's block style

    # Reading the export back gives the same examples and annotations.
    again = parse_document(text, name="nlu.yml")
    assert sorted((e.intent, e.language, e.text, e.entities) for e in again.examples) == sorted(
        (e.intent, e.language, e.text, e.entities) for e in training_data.examples)
    assert again.synonyms == training_data.synonyms
    assert again.lookups == training_data.lookups


def test_cli_export(tmp_path: Path) -> None:
    result = CliRunner().invoke(nlu_cli, ["export-rasa", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "data" / "nlu.yml").is_file()
    assert "rasa train nlu" in result.output
