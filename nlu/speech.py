"""Speech to text for the voice channel: bytes in, a `Transcript` out, off the event loop.

One clip goes through one pipeline, top to bottom: decode (`nlu.audio.decode_audio`: any format,
16 kHz mono, size and duration checked) → trim silence (Silero VAD) → build the bias (the command
vocabulary of the caller's language and their contacts' names, `nlu.biasing`) → recognise (Whisper:
faster-whisper by default, openai-whisper as an alternative) → tidy the numbers Whisper split
(`nlu.whisper_text`).

`SpeechService` runs that pipeline on a bounded pool of threads, so a USSD hop never waits behind a
transcription: `workers` threads, each with a recognizer of its own (faster-whisper's share one
model, which CTranslate2 runs concurrently), and at most `max_waiting` clips queued behind them;
one more is refused at once with `SpeechBusy` (the caller is asked to try again) rather than left
to wait an unbounded time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from nlu.audio import decode_audio, trim_silence
from nlu.biasing import NO_BIAS, build_bias, decoding_language
from nlu.numeral_tokens import numeral_tokens
from nlu.results import Contact
from nlu.speech_settings import FASTER_WHISPER, SpeechSettings
from nlu.transcripts import Clip, NoSpeech, Recognizer, SpeechBusy, Transcript
from nlu.whisper_models import ensure_model
from nlu.whisper_text import tidy_transcript

__all__ = ["FasterWhisperRecognizer", "SpeechService", "SpeechSettings", "SpeechUnavailable", "load_recognizer",
           "load_recognizers"]

class SpeechUnavailable(RuntimeError):
    """The configured recognizer cannot be loaded (a missing package or extra); says what to install."""


class FasterWhisperRecognizer:
    """A `nlu.transcripts.Recognizer` over faster-whisper (CTranslate2): beam search, no sampling
    fallback surprises on short commands, Whisper's own VAD off (clips are trimmed before), one
    30-second window with no carried-over text. Blocking; one thread at a time per instance, and
    `sibling()` hands another thread its own instance over the same loaded model."""

    backend = FASTER_WHISPER

    def __init__(self, model: str, whisper: Any, *, beam_size: int = 5,
                 numerals: dict[str, list[int]] | None = None) -> None:
        self.model = model
        self._whisper = whisper
        self._beam_size = beam_size
        # The model's digit-writing tokens, found at first need and shared with the siblings.
        self._numerals = numerals if numerals is not None else {}

    @classmethod
    def load(cls, model: str, directory: Path, *, compute_type: str = "int8", cpu_threads: int = 2,
             num_workers: int = 1, beam_size: int = 5) -> FasterWhisperRecognizer:
        """Load the CTranslate2 model in `directory` (from `nlu.whisper_models.ensure_model`) on the CPU.
        `num_workers` threads can then decode with it at once (through `sibling()`)."""
        from faster_whisper import WhisperModel

        # faster-whisper logs every clip's duration at INFO: one line per command says nothing.
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)
        whisper = WhisperModel(str(directory), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                               num_workers=num_workers, local_files_only=True)
        return cls(model, whisper, beam_size=beam_size)

    def sibling(self) -> FasterWhisperRecognizer:
        """Another recognizer sharing this one's loaded model (for another worker thread)."""
        return FasterWhisperRecognizer(self.model, self._whisper, beam_size=self._beam_size, numerals=self._numerals)

    @property
    def multilingual(self) -> bool:
        return bool(self._whisper.model.is_multilingual)

    def _numeral_tokens(self) -> list[int]:
        if "ids" not in self._numerals:  # about 50,000 decodes, once per model
            tokenizer = self._whisper.hf_tokenizer
            self._numerals["ids"] = numeral_tokens(tokenizer.decode, tokenizer.token_to_id("<|endoftext|>"))
        return self._numerals["ids"]

    def transcribe(self, clip: Clip, *, language: str | None, prompt: str | None,
                   hotwords: str | None, numbers_in_words: bool = False) -> Transcript:
        if not self.multilingual:
            language = "en"  # an English-only model reads English whatever is asked
        started = time.perf_counter()
        # -1: Whisper's own list of tokens it never writes (faster-whisper's default), kept.
        suppress = [-1, *self._numeral_tokens()] if numbers_in_words else [-1]
        segments, info = self._whisper.transcribe(
            clip.samples, language=language, beam_size=self._beam_size, initial_prompt=prompt or None,
            hotwords=hotwords or None, condition_on_previous_text=False, without_timestamps=True,
            vad_filter=False, suppress_tokens=suppress)
        segments = list(segments)  # the generator does the decoding
        processing_s = time.perf_counter() - started
        return Transcript(
            text=" ".join(s.text.strip() for s in segments).strip(),
            language=info.language,
            confidence=confidence([s.avg_logprob for s in segments]),
            audio_s=clip.seconds,
            processing_s=processing_s,
            model=self.model,
            backend=self.backend,
            prompt=prompt,
        )


def confidence(avg_logprobs: Sequence[float]) -> float:
    """exp of the mean over segments of Whisper's average token log probability, within [0, 1];
    0 when nothing was read."""
    if not avg_logprobs:
        return 0.0
    return min(1.0, max(0.0, math.exp(sum(avg_logprobs) / len(avg_logprobs))))


def load_recognizers(settings: SpeechSettings) -> list[Recognizer]:
    """`settings.workers` recognizers, one per worker thread: faster-whisper loads the model once
    (CTranslate2 decodes on it from several threads); openai-whisper loads one copy each."""
    directory = ensure_model(settings.model, settings.model_cache_dir)
    if settings.backend == FASTER_WHISPER:
        first = FasterWhisperRecognizer.load(settings.model, directory, compute_type=settings.compute_type,
                                             cpu_threads=settings.threads_per_worker, num_workers=settings.workers,
                                             beam_size=settings.beam_size)
        return [first, *(first.sibling() for _ in range(settings.workers - 1))]
    try:
        from nlu.openai_whisper_backend import OpenAIWhisperRecognizer
    except ImportError as missing:
        raise SpeechUnavailable(f"the openai-whisper backend is not available ({missing}); install the "
                                "'openai' extra (pip install 'sauti[openai]') or set speech.backend: "
                                "faster-whisper") from None
    try:
        return [OpenAIWhisperRecognizer.load(settings.model, directory, cache_dir=settings.model_cache_dir,
                                             threads=settings.threads_per_worker, beam_size=settings.beam_size)
                for _ in range(settings.workers)]
    except ImportError as missing:
        raise SpeechUnavailable(f"the openai-whisper backend cannot load ({missing}): install the 'openai' extra "
                                "(pip install 'sauti[openai]')") from None


def load_recognizer(settings: SpeechSettings) -> Recognizer:
    """One recognizer for `settings` (the CLI and the benchmark use one; the service a pool)."""
    return load_recognizers(replace(settings, workers=1))[0]


class SpeechService:
    """The async facade the channels use: `await service.transcribe(audio, language=…, contacts=…)`.

    Every step that costs CPU (decoding, VAD, Whisper) runs on the service's own threads. Start with
    `await service.start()` (or `async with service:`), stop with `await service.close()`. The
    model is loaded by the first clip (in a worker thread), or at start with `preload`."""

    def __init__(self, settings: SpeechSettings, recognizers: Sequence[Recognizer] = ()) -> None:
        if recognizers and len(recognizers) != settings.workers:
            raise ValueError(f"{settings.workers} workers need as many recognizers, not {len(recognizers)}")
        self.settings = settings
        self._pool: queue.SimpleQueue[Recognizer] = queue.SimpleQueue()
        for recognizer in recognizers:
            self._pool.put(recognizer)
        self._loaded = bool(recognizers)
        self._load_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._admitted = 0  # clips running or queued
        self._admitted_lock = threading.Lock()

    # -- lifetime ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the recognizers now (blocking; at most once)."""
        with self._load_lock:
            if not self._loaded:
                for recognizer in load_recognizers(self.settings):
                    self._pool.put(recognizer)
                self._loaded = True

    async def start(self) -> None:
        """Start the worker threads. The model's files are made ready now (joined from their
        packages the first time, ~1 s), so a missing package stops start-up with a message naming
        it; the model itself is loaded now with `preload`, else by the first clip."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="speech")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, ensure_model, self.settings.model, self.settings.model_cache_dir)
        if self.settings.preload:
            await loop.run_in_executor(self._executor, self.load)

    async def close(self) -> None:
        """Stop taking clips; queued ones are dropped, a running one is let finish (off the loop)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> SpeechService:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    @property
    def in_flight(self) -> int:
        """Clips being transcribed or waiting for a worker."""
        return self._admitted

    # -- transcription ----------------------------------------------------------------------------

    async def transcribe(self, audio: bytes, *, language: str | None, contacts: Sequence[Contact] = (),
                         accept: Callable[[str], bool] | None = None) -> Transcript:
        """Transcribe one clip (any audio format) spoken by a caller whose language is `language`
        ("en", "sw", "fr", "wo"; None: detected) and whose address book is `contacts` (favourites
        first). `accept` (see `transcribe_clip`) says whether a reading makes sense. Raises
        `nlu.transcripts.AudioError` kinds for bad audio and `SpeechBusy` when `workers +
        max_waiting` clips are already in hand."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the speech service is not started (await service.start())")
        with self._admitted_lock:
            if self._admitted >= self.settings.workers + self.settings.max_waiting:
                raise SpeechBusy(f"{self._admitted} clips are already being transcribed or waiting; "
                                 "try again in a moment")
            self._admitted += 1
        try:
            job = executor.submit(self.transcribe_bytes, audio, language, tuple(contacts), accept=accept)
        except RuntimeError:  # shut down meanwhile
            self._release(None)
            raise
        # Released when the job really ends (not when an awaiting request is cancelled while its
        # clip still runs), so the bound counts the threads' actual work.
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def _release(self, _job: Future[Transcript] | None) -> None:
        with self._admitted_lock:
            self._admitted -= 1

    def transcribe_bytes(self, audio: bytes, language: str | None, contacts: Sequence[Contact] = (),
                         *, biased: bool | None = None, accept: Callable[[str], bool] | None = None) -> Transcript:
        """The whole pipeline, blocking: decode, trim, recognise. The time reported covers all of it."""
        started = time.perf_counter()
        clip = decode_audio(audio, max_seconds=self.settings.max_audio_s)
        transcript = self.transcribe_clip(clip, language, contacts, biased=biased, accept=accept)
        return replace(transcript, processing_s=time.perf_counter() - started)

    def transcribe_clip(self, clip: Clip, language: str | None, contacts: Sequence[Contact] = (),
                        *, biased: bool | None = None, trim: bool = True,
                        accept: Callable[[str], bool] | None = None) -> Transcript:
        """Recognise a decoded clip, blocking (the benchmark's entry; the service's threads use it
        too). `biased` overrides `settings.biasing`; `trim=False` skips the VAD. Raises `NoSpeech`
        when there is no speech, or Whisper makes no words of it.

        `accept(text)` says whether a reading makes sense (the voice channel: a whole command the
        parser understands). A biased reading it refuses is read again without the prompt, and that
        one is kept if it is accepted: the prompt's words and amounts sometimes stand in for what
        was said ("twelve hundred" written as the prompt's "1,500"), and the plain reading is then
        the better one. Only refused clips pay for the second reading."""
        started = time.perf_counter()
        if trim:
            clip = trim_silence(clip)
        use_bias = self.settings.biasing if biased is None else biased
        first = self._read(clip, language, contacts, use_bias)
        if accept is None or not use_bias or (first is not None and accept(first.text)):
            chosen = first
        else:
            second = self._read(clip, language, contacts, False)
            chosen = second if second is not None and accept(second.text) else first
        if chosen is None:
            raise NoSpeech("no words could be made out in the audio")
        return replace(chosen, processing_s=time.perf_counter() - started)

    def _read(self, clip: Clip, language: str | None, contacts: Sequence[Contact], use_bias: bool) -> Transcript | None:
        """One reading of a trimmed clip, tidied; None when Whisper made no words of it."""
        self.load()
        recognizer = self._pool.get()
        try:
            decode_as = decoding_language(language)
            if not getattr(recognizer, "multilingual", True):
                decode_as = "en"
            words = decode_as in self.settings.numbers_in_words
            bias = build_bias(decode_as, contacts, numbers_in_words=words) if use_bias else NO_BIAS
            transcript = recognizer.transcribe(clip, language=decode_as, prompt=bias.prompt, hotwords=bias.hotwords,
                                               numbers_in_words=words)
        finally:
            self._pool.put(recognizer)
        text = tidy_transcript(transcript.text)
        return replace(transcript, text=text) if text else None

