"""Fixtures for the NLU unit tests: one trained embedded parser per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.parser import EmbeddedParser, load_embedded_parser
from nlu.results import Contact
from nlu.training_data import TrainingData, load_directory


@pytest.fixture(scope="session")
def nlu_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nlu-cache")


@pytest.fixture(scope="session")
def training_data() -> TrainingData:
    return load_directory()


@pytest.fixture(scope="session")
def parser(nlu_cache: Path) -> EmbeddedParser:
    return load_embedded_parser(cache_dir=nlu_cache)


@pytest.fixture(scope="session")
def contacts() -> tuple[Contact, ...]:
    return (
        Contact("John Kamau", None, "+254712345678"),
        Contact("Grace Wanjiru", "Mama", "+254722111222"),
        Contact("Peter Otieno", None, "+254733444555"),
        Contact("Kevin Mutua", "Kevo", "+254791234567"),
        Contact("Awa Ndiaye", None, "+221771234567"),
        Contact("Moussa Diop", None, "+221782345678"),
        Contact("Fatou Sow", None, "+221765554433"),
    )
