"""NLU settings: which backend parses, how sure it must be, where its data and cache live.

The gateway reads these from config.yml (an `nlu:` section) and builds the parser once at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from nlu.config_sections import from_section
from nlu.parser import DEFAULT_CONFIDENCE_THRESHOLD, EmbeddedParser, load_embedded_parser
from nlu.rasa_backend import DEFAULT_TIMEOUT_S, RasaParser
from nlu.training_data import load_directory

EMBEDDED, RASA = "embedded", "rasa"
BACKENDS = (EMBEDDED, RASA)


@dataclass(frozen=True, slots=True)
class NluSettings:
    """`backend`: "embedded" (default, no server) or "rasa". `confidence_threshold`: below it a
    payment or a confirming "yes" becomes a clarification question. `data_dir`: Rasa YAML to train
    from (default: the package's nlu/data/). `cache_dir`: where trained models are kept, keyed by a
    hash of the data (None: train at every start, about two seconds). `rasa_url`, `rasa_token`,
    `rasa_timeout_s`: the Rasa server, when that backend is chosen."""

    backend: str = EMBEDDED
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    data_dir: Path | None = None
    cache_dir: Path | None = Path("var/cache/nlu")
    rasa_url: str = "http://localhost:5005"
    rasa_token: str | None = None
    rasa_timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"nlu.backend must be one of {BACKENDS}, not {self.backend!r}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"nlu.confidence_threshold must be within [0, 1], not {self.confidence_threshold}")
        if self.rasa_timeout_s <= 0:
            raise ValueError(f"nlu.rasa_timeout_s must be positive, not {self.rasa_timeout_s}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NluSettings:
        """Settings from a config.yml section; unknown keys are an error, not a silent typo."""
        return from_section(cls, "nlu", values, paths=("data_dir", "cache_dir"))

    def embedded_parser(self) -> EmbeddedParser:
        """Train (or load from the cache) the embedded parser: once, at start-up."""
        return load_embedded_parser(self.data_dir, cache_dir=self.cache_dir,
                                    confidence_threshold=self.confidence_threshold)

    def rasa_parser(self, session: aiohttp.ClientSession | None = None) -> RasaParser:
        """A client of the Rasa server; pass the app's shared ClientSession (it stays yours)."""
        data = load_directory(self.data_dir) if self.data_dir is not None else None
        return RasaParser(self.rasa_url, session=session, token=self.rasa_token, timeout_s=self.rasa_timeout_s,
                          confidence_threshold=self.confidence_threshold, data=data)
