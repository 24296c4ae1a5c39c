"""Speech settings: which Whisper backend and model, how many clips at once, how long a clip may be.

The gateway reads them from config.yml (a `speech:` section) and hands them to `nlu.speech`. Kept
apart from it so that reading the settings loads no audio or model library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlu.config_sections import from_section
from nlu.whisper_models import known_models

FASTER_WHISPER, OPENAI_WHISPER = "faster-whisper", "openai-whisper"
BACKENDS = (FASTER_WHISPER, OPENAI_WHISPER)
#: CTranslate2 compute types that run on a CPU (int8: 8-bit weights, about 2x faster than float32
#: for the same words on these commands).
COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32")
#: The languages Whisper decodes Sauti's callers in (Wolof is decoded as French: `nlu.biasing`).
WHISPER_LANGUAGES = ("en", "sw", "fr")


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """`backend`: "faster-whisper" (CTranslate2, default) or "openai-whisper" (PyTorch, the
    `openai` extra). `model`: a name from `nlu.whisper_models.CATALOGUE` ("base", "tiny.en").
    `compute_type`: CTranslate2's weights type on the CPU. `cpu_threads`: threads per worker
    (0: the machine's cores shared among the workers). `workers`: clips transcribed at once.
    `max_waiting`: clips queued behind them before `SpeechBusy`. `max_audio_s`: longest clip
    accepted. `biasing`: prime the decoder with commands and contacts. `beam_size`: beam search
    width. `numbers_in_words`: languages (as Whisper decodes them: Wolof as French) in which
    Whisper may not write digits and writes numbers as words (`nlu.numeral_tokens`).
    `model_cache_dir`: where split models are joined (and openai-whisper checkpoints kept).
    `preload`: load the model when the service starts rather than at the first clip."""

    backend: str = FASTER_WHISPER
    model: str = "base"
    compute_type: str = "int8"
    cpu_threads: int = 0
    workers: int = 1
    max_waiting: int = 8
    max_audio_s: float = 30.0
    biasing: bool = True
    beam_size: int = 5
    numbers_in_words: tuple[str, ...] = ("en",)
    model_cache_dir: Path = Path("var/models")
    preload: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"speech.backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.model not in known_models():
            raise ValueError(f"speech.model must be one of {known_models()}, not {self.model!r}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"speech.compute_type must be one of {COMPUTE_TYPES}, not {self.compute_type!r}")
        if not 0 <= self.cpu_threads <= 256:
            raise ValueError(f"speech.cpu_threads must be within [0, 256], not {self.cpu_threads}")
        if not 1 <= self.workers <= 64:
            raise ValueError(f"speech.workers must be within [1, 64], not {self.workers}")
        if not 0 <= self.max_waiting <= 10_000:
            raise ValueError(f"speech.max_waiting must be within [0, 10000], not {self.max_waiting}")
        if not 1.0 <= self.max_audio_s <= 600.0:
            raise ValueError(f"speech.max_audio_s must be within [1, 600], not {self.max_audio_s}")
        if not 1 <= self.beam_size <= 16:
            raise ValueError(f"speech.beam_size must be within [1, 16], not {self.beam_size}")
        object.__setattr__(self, "numbers_in_words", tuple(self.numbers_in_words))
        if unknown := [x for x in self.numbers_in_words if x not in WHISPER_LANGUAGES]:
            raise ValueError(f"speech.numbers_in_words may list {WHISPER_LANGUAGES}, not {unknown}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SpeechSettings:
        """Settings from a config.yml section; unknown keys are an error, not a silent typo."""
        return from_section(cls, "speech", values, paths=("model_cache_dir",))

    @property
    def threads_per_worker(self) -> int:
        return self.cpu_threads or max(1, (os.cpu_count() or 1) // self.workers)
