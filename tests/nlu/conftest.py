"""Fixtures for the NLU evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu.parser import EmbeddedParser, load_embedded_parser
from nlu.training_data import TrainingData, load, load_directory

TESTSET = Path(__file__).parent / "testset.yml"


@pytest.fixture(scope="session")
def testset() -> TrainingData:
    return load([TESTSET])


@pytest.fixture(scope="session")
def training() -> TrainingData:
    return load_directory()


@pytest.fixture(scope="session")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedParser:
    return load_embedded_parser(cache_dir=tmp_path_factory.mktemp("nlu-eval-cache"))
