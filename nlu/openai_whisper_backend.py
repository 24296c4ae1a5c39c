"""The openai-whisper speech backend: Whisper run by PyTorch, as an alternative to faster-whisper.

It reads the same models as the default backend (CTranslate2 directories from `nlu.whisper_models`),
converted once into openai-whisper checkpoints by `nlu.whisper_checkpoint`, and decodes in float32 on
the CPU. openai-whisper and torch are an optional extra (`pip install 'sauti[openai]'`); this module
imports neither until `OpenAIWhisperRecognizer.load` is called, so the rest of Sauti never pays for
torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlu.numeral_tokens import numeral_tokens
from nlu.transcripts import Clip, EmptyAudio, Transcript
from nlu.whisper_checkpoint import WhisperDimensions, alignment_heads_dump, ensure_checkpoint

if TYPE_CHECKING:
    from whisper.model import Whisper

BACKEND = "openai-whisper"

#: Beam search as the default backend does it: on short commands it is what turns near-misses
#: ("and I'm hungry") into the words of the prompt ("and 500").
DEFAULT_BEAM_SIZE = 5

#: Greedy-and-beam only, no fallback to sampling at higher temperatures: a payment command must read
#: the same way twice, and a doubtful reading is better flagged by its low confidence than rewritten
#: by chance.
DEFAULT_TEMPERATURE: tuple[float, ...] = (0.0,)


class OpenAIWhisperRecognizer:
    """A `nlu.transcripts.Recognizer` over openai-whisper. Blocking; one thread at a time.

    Hotwords are ignored (openai-whisper has none): the prompt carries the vocabulary alone."""

    backend = BACKEND

    def __init__(self, model: str, network: Whisper, *, beam_size: int = DEFAULT_BEAM_SIZE,
                 temperature: Sequence[float] = DEFAULT_TEMPERATURE) -> None:
        self.model = model
        self._network = network
        self._beam_size = beam_size
        self._temperature = tuple(temperature)
        self._numerals: list[int] | None = None

    @classmethod
    def load(cls, model: str, ct2_dir: Path, *, cache_dir: Path, threads: int,
             beam_size: int = DEFAULT_BEAM_SIZE,
             temperature: Sequence[float] = DEFAULT_TEMPERATURE) -> OpenAIWhisperRecognizer:
        """Load Whisper `model` (its name, e.g. "base", for the record) from the CTranslate2
        directory `ct2_dir`, converting it on first use into a checkpoint kept in `cache_dir`.
        `threads` is torch's intra-op thread count (it is process-wide: torch has one pool)."""
        checkpoint = ensure_checkpoint(ct2_dir, name=model, cache_dir=cache_dir)
        try:
            import torch
            from whisper.model import ModelDimensions, Whisper
        except ImportError as missing:  # the optional extra is not installed
            raise RuntimeError("the openai-whisper backend needs the 'openai' extra: "
                               "pip install 'sauti[openai]'") from missing

        torch.set_num_threads(threads)
        # What whisper.load_model does with a path, plus the alignment heads it only knows for the
        # checkpoints it downloads itself. weights_only: a checkpoint is data, never code.
        saved: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=True)
        network = Whisper(ModelDimensions(**saved["dims"]))
        network.load_state_dict(saved["model_state_dict"], strict=True)  # float16 on disk -> float32
        if heads := saved.get("alignment_heads"):
            dims = WhisperDimensions(**saved["dims"])
            network.set_alignment_heads(alignment_heads_dump([(int(layer), int(head)) for layer, head in heads], dims))
        network.eval()
        return cls(model, network, beam_size=beam_size, temperature=temperature)

    @property
    def network(self) -> Whisper:
        """The loaded openai-whisper model (for tests and the benchmark)."""
        return self._network

    def _numeral_tokens(self) -> list[int]:
        if self._numerals is None:  # about 50,000 decodes, once
            from whisper.tokenizer import get_tokenizer

            tokenizer = get_tokenizer(self._network.is_multilingual, num_languages=self._network.num_languages)
            self._numerals = numeral_tokens(tokenizer.decode, tokenizer.eot)
        return self._numerals

    def transcribe(self, clip: Clip, *, language: str | None, prompt: str | None,
                   hotwords: str | None, numbers_in_words: bool = False) -> Transcript:
        if clip.samples.size == 0:
            raise EmptyAudio("the recording holds no sound")
        if not self._network.is_multilingual:
            language = "en"  # an English-only model reads English whatever is asked (and says so)
        started = time.perf_counter()
        result = self._network.transcribe(
            clip.samples,
            language=language,  # None: detected from the first 30 seconds
            initial_prompt=prompt or None,
            beam_size=self._beam_size,
            temperature=self._temperature,
            condition_on_previous_text=False,  # each clip is one command: nothing to carry over
            without_timestamps=True,
            fp16=False,  # float32 on the CPU (float16 there is slower, and openai-whisper warns)
            verbose=None,  # no printing, no progress bar
            # -1: Whisper's own list of tokens it never writes (the default), kept.
            suppress_tokens=[-1, *self._numeral_tokens()] if numbers_in_words else "-1",
        )
        processing_s = time.perf_counter() - started
        segments = result.get("segments") or []
        return Transcript(
            text=str(result.get("text", "")).strip(),
            language=str(result.get("language") or language or ""),
            confidence=_confidence([float(segment["avg_logprob"]) for segment in segments]),
            audio_s=clip.seconds,
            processing_s=processing_s,
            model=self.model,
            backend=self.backend,
            prompt=prompt,
        )


def _confidence(avg_logprobs: Sequence[float]) -> float:
    """exp of the mean of the segments' average token log probability, in [0, 1] (as the
    faster-whisper backend computes it), 0 when nothing was read."""
    if not avg_logprobs:
        return 0.0
    return min(1.0, max(0.0, math.exp(sum(avg_logprobs) / len(avg_logprobs))))
