"""What speech recognition hands to the rest of Sauti, and what it asks of a recognizer backend.

Audio arrives as bytes (an app upload, an Africa's Talking recording), is decoded into a `Clip`
(16 kHz mono float32, as Whisper wants it, whatever the source rate), trimmed of silence, and read by
a `Recognizer` (faster-whisper by default, openai-whisper as an alternative) into a `Transcript`.
Bad audio is an `AudioError` whose `code` a channel turns into a clear answer, never a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Whisper reads 16 kHz mono; every clip is brought to it, whatever rate it was recorded at.
SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True, eq=False)
class Clip:
    """Decoded audio: `samples` are float32 in [-1, 1] at `SAMPLE_RATE`, mono. `source_rate` is the
    rate it was recorded at (8000 for a phone call), for the record."""

    samples: np.ndarray
    source_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Transcript:
    """The reading of one clip. `confidence` is in [0, 1] (from the decoder's average log
    probability); `language` is the one decoded in; `audio_s` the speech kept after trimming;
    `processing_s` the time spent decoding (so `processing_s / audio_s` is the real-time factor)."""

    text: str
    language: str
    confidence: float
    audio_s: float
    processing_s: float
    model: str
    backend: str
    prompt: str | None = None

    @property
    def real_time_factor(self) -> float:
        return self.processing_s / self.audio_s if self.audio_s > 0 else 0.0


class AudioError(ValueError):
    """Audio that cannot be transcribed. `code` is stable (an API answers with it); the message
    says what is wrong in words a user or an app developer can act on."""

    code = "bad_audio"


class EmptyAudio(AudioError):
    code = "empty_audio"


class CorruptAudio(AudioError):
    code = "corrupt_audio"


class TruncatedAudio(AudioError):
    code = "truncated_audio"


class AudioTooLong(AudioError):
    code = "audio_too_long"


class NoSpeech(AudioError):
    code = "no_speech"


class SpeechBusy(RuntimeError):
    """Too many clips are already waiting for a recognizer: try again in a moment."""

    code = "speech_busy"


class Recognizer(Protocol):
    """A speech-to-text backend. Blocking (it runs in a worker thread, never on the event loop) and
    safe to call from one thread at a time; `SpeechService` owns the threads."""

    backend: str
    model: str

    def transcribe(self, clip: Clip, *, language: str | None, prompt: str | None,
                   hotwords: str | None, numbers_in_words: bool = False) -> Transcript:
        """Read `clip` in `language` (None: detect), primed with `prompt` (a previous-text context:
        the command vocabulary and the user's contacts) and `hotwords` where the backend has them;
        with `numbers_in_words`, never writing a digit (`nlu.numeral_tokens`)."""
        ...
