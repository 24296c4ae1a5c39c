"""NLU settings as read from config.yml."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.parser import DEFAULT_CONFIDENCE_THRESHOLD
from nlu.settings import NluSettings


def test_defaults() -> None:
    settings = NluSettings()
    assert settings.backend == "embedded"
    assert settings.confidence_threshold == DEFAULT_CONFIDENCE_THRESHOLD
    assert settings.rasa_url == "http://localhost:5005"


def test_from_mapping() -> None:
    settings = NluSettings.from_mapping({"backend": "rasa", "rasa_url": "http://rasa:5005",
                                         "confidence_threshold": 0.6, "cache_dir": "/tmp/x"})
    assert (settings.backend, settings.rasa_url, settings.confidence_threshold) == ("rasa", "http://rasa:5005", 0.6)
    assert settings.cache_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backend": "spacy"}, "backend"),
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"rasa_timeout_s": 0}, "rasa_timeout_s"),
        ({"treshold": 0.4}, "unknown nlu settings: treshold"),
    ],
)
def test_rejects_bad_settings(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NluSettings.from_mapping(values)


def test_builds_the_embedded_parser(nlu_cache: Path, parser) -> None:
    built = NluSettings(cache_dir=nlu_cache, confidence_threshold=0.5).embedded_parser()
    assert built.confidence_threshold == 0.5
    assert built.model.classes == parser.model.classes  # loaded from the session's cache


async def test_builds_the_rasa_client() -> None:
    settings = NluSettings(backend="rasa", rasa_url="http://127.0.0.1:5005", rasa_token="t", rasa_timeout_s=1.5)
    async with settings.rasa_parser() as client:
        assert client.confidence_threshold == settings.confidence_threshold
