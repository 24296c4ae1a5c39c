"""Offline text-to-speech: the voice channel's prompts in Swahili and French (Africa's Talking's own
`Say` speaks English only), and the spoken test fixtures and benchmark clips.

eSpeak NG speaks every language: libespeak-ng from the `espeakng-loader` wheel (library and
language data inside the wheel, nothing installed by hand), driven through ctypes. The library keeps
global state and is not thread-safe: one process-wide lock serialises synthesis (a prompt takes a
few milliseconds, and rendered prompts are cached on disk by `dialogs.voice_prompts`).

CMU Flite (voices ``flite:slt``, ``flite:rms``, ``flite:kal16``, ``flite:awb``) speaks English only,
from Debian's ``flite`` package when it is installed: its voices are recorded people's, far closer
to a caller than eSpeak's formant synthesis, which is why the voice benchmark speaks English with
both.
"""

from __future__ import annotations

import ctypes
import io
import shutil
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

# espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS hands every chunk to the callback before Synth returns.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3

#: eSpeak NG voices for Sauti's spoken languages. Wolof has none: Wolof callers get French prompts.
#: "+steady" (our variant: no flutter, no roughness) makes the same words always give the same audio:
#: eSpeak's flutter follows a phase that runs on across every text the process ever spoke, and its
#: roughness is random, so test fixtures and prompts would otherwise depend on what came before.
VOICES = {"en": "en-us+steady", "sw": "sw+steady", "fr": "fr+steady"}
_STEADY_VARIANT = "language variant\nname steady\nflutter 0\nroughness 0\n"

#: Words per minute: slower than eSpeak's 175, as an operator reads to a caller on a poor line.
DEFAULT_RATE_WPM = 140

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechSynthesisError(RuntimeError):
    """eSpeak NG could not be loaded or could not speak the text."""


@dataclass(frozen=True, slots=True, eq=False)
class Speech:
    """Synthesised speech: int16 mono `samples` at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    def at_rate(self, rate: int) -> Speech:
        """The same speech resampled (8000 for telephone quality: everything above 4 kHz is lost,
        as on a real call)."""
        if rate == self.rate:
            return self
        floats = resample_poly(self.samples.astype(np.float32), rate, self.rate)
        return Speech(np.clip(floats, -32768, 32767).astype(np.int16), rate)

    def wav_bytes(self) -> bytes:
        """A 16-bit PCM WAV file."""
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.rate)
            w.writeframes(self.samples.tobytes())
        return out.getvalue()


class _Engine:
    """The one libespeak-ng instance of the process."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise SpeechSynthesisError("eSpeak NG is missing: install the espeakng-loader package") from exc
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_parent = str(_data_with_steady_variant(Path(espeakng_loader.get_data_path())))
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self.rate = int(self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_parent.encode(), 0))
        if self.rate <= 0:
            raise SpeechSynthesisError(f"eSpeak NG did not start (data under {data_parent})")
        # The callback object must outlive every call into the library: keep it on the instance.
        self._callback = _CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), count: int, _events: int) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0: go on

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int) -> Speech:
        data = text.encode("utf-8")
        with self._lock:
            self._chunks = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SpeechSynthesisError(f"eSpeak NG has no voice {voice!r}")
            self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
            self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
            if self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None) != 0:
                raise SpeechSynthesisError("eSpeak NG could not speak the text")
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        return Speech(samples.astype(np.int16, copy=False), self.rate)


def _data_with_steady_variant(wheel_data: Path) -> Path:
    """The wheel's espeak-ng-data seen through links, plus our "steady" voice variant (the
    wheel's own folder stays untouched); returns the folder holding ``espeak-ng-data``."""
    root = Path(tempfile.mkdtemp(prefix="sauti-espeak-"))
    data = root / "espeak-ng-data"
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True)
    for entry in wheel_data.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (wheel_data / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (wheel_data / "voices" / "!v").iterdir():
        (variants / entry.name).symlink_to(entry)
    (variants / "steady").write_text(_STEADY_VARIANT)
    return root


@cache
def _engine() -> _Engine:
    return _Engine()


def synthesize(text: str, language: str, *, rate_wpm: int = DEFAULT_RATE_WPM, pitch: int = 50,
               voice: str | None = None) -> Speech:
    """Speak `text` in `language` ("en", "sw", "fr"; Wolof falls back to French) at eSpeak's own
    rate (22,050 Hz). `voice` overrides the language's voice (e.g. "en-us+m3" for another speaker,
    "flite:slt" for CMU Flite's, English only)."""
    if not text.strip():
        raise SpeechSynthesisError("nothing to say")
    if voice is not None and voice.startswith(FLITE_PREFIX):
        if language != "en":
            raise SpeechSynthesisError(f"Flite speaks English only, not {language!r}")
        return _flite(text, voice.removeprefix(FLITE_PREFIX), rate_wpm)
    chosen = voice or VOICES.get(language) or VOICES["fr" if language == "wo" else "en"]
    return _engine().speak(text, chosen, rate_wpm, pitch)


FLITE_PREFIX = "flite:"
FLITE_VOICES = ("flite:slt", "flite:rms", "flite:kal16", "flite:awb")
#: Flite's own pace, in words a minute, for turning a rate into its duration stretch.
_FLITE_WPM = 150


def flite_available() -> bool:
    return shutil.which("flite") is not None


def _flite(text: str, voice: str, rate_wpm: int) -> Speech:
    binary = shutil.which("flite")
    if binary is None:
        raise SpeechSynthesisError("CMU Flite is not installed (Debian: apt-get install flite)")
    with tempfile.NamedTemporaryFile(suffix=".wav") as out:
        # The arguments are a list (no shell) and the binary is the one found on the PATH.
        args = [binary, "-voice", voice, "--setf", f"duration_stretch={_FLITE_WPM / rate_wpm:.3f}",
                "-t", text, "-o", out.name]
        done = subprocess.run(args, capture_output=True, timeout=60, check=False)  # noqa: S603
        if done.returncode != 0:
            raise SpeechSynthesisError(f"flite failed: {done.stderr.decode(errors='replace')[:200]}")
        with wave.open(out.name) as audio:
            if audio.getsampwidth() != 2 or audio.getnchannels() != 1:
                raise SpeechSynthesisError("flite wrote audio other than 16-bit mono")
            samples = np.frombuffer(audio.readframes(audio.getnframes()), np.int16).copy()
            return Speech(samples, audio.getframerate())
