"""Audio in: any file a phone or an app sends (WAV, MP3, OGG/Opus, AAC, …) decoded into a `Clip`
(16 kHz mono float32), and silence trimmed off with a voice activity detector.

Decoding is FFmpeg through PyAV, so whatever FFmpeg reads is accepted. Bad input becomes one of the
`nlu.transcripts.AudioError` kinds with a message a user or an app developer can act on:

- `EmptyAudio`: no bytes, or a file with no samples in it;
- `CorruptAudio`: not audio at all (or FFmpeg cannot decode a single frame of it);
- `TruncatedAudio`: a file cut short (an upload that stopped half-way): the WAV header promises more
  data than is there, the decoder fails after some frames, or far less was decoded than declared;
- `AudioTooLong`: longer than allowed, found from the declared duration before anything is decoded
  (a two-hour upload costs nothing), else while decoding (a file that under-declares its length);
- `NoSpeech` (from `trim_silence`): nothing but silence or noise.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np

from nlu.transcripts import (
    SAMPLE_RATE,
    AudioTooLong,
    Clip,
    CorruptAudio,
    EmptyAudio,
    NoSpeech,
    TruncatedAudio,
)

# A file whose decoded length falls this far short of its declared duration was cut short. The
# slack covers encoder priming and padding (an MP3 declares up to ~50 ms it never decodes).
_TRUNCATED_RATIO = 0.9
_TRUNCATED_SLACK_S = 0.15
# Declared durations are estimates for some formats (MP3 without a Xing header, ADTS): allow a
# little over the limit before refusing on the declaration alone; the decoded length is exact.
_DECLARED_SLACK_S = 0.5
# What Whisper reads: float samples, one channel (a stereo upload is mixed down).
_RESAMPLER_FORMAT, _RESAMPLER_LAYOUT = "flt", "mono"


def decode_audio(data: bytes, *, max_seconds: float) -> Clip:
    """Decode `data` (any container and codec FFmpeg reads) into 16 kHz mono float32.

    Raises `EmptyAudio`, `CorruptAudio`, `TruncatedAudio` or `AudioTooLong` (see the module doc)."""
    if not data:
        raise EmptyAudio("the audio is empty (0 bytes)")
    _check_wav_header(data)
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise CorruptAudio(f"this is not an audio file FFmpeg can read ({_reason(error)})") from None
    with container:
        if not container.streams.audio:
            raise CorruptAudio("the file has no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds + _DECLARED_SLACK_S:
            raise AudioTooLong(f"the audio is {declared:.1f} s long; at most {max_seconds:g} s is accepted")
        samples, failure = _decode(container, stream, max_seconds)
        source_rate = stream.codec_context.sample_rate or stream.rate or SAMPLE_RATE
    decoded = len(samples) / SAMPLE_RATE
    if failure is not None:
        if decoded == 0:
            raise CorruptAudio(f"the audio cannot be decoded ({failure})")
        raise TruncatedAudio(f"the audio stops after {decoded:.1f} s with a decoding error ({failure}): "
                             "the file was probably cut short")
    if declared is not None and decoded < declared * _TRUNCATED_RATIO - _TRUNCATED_SLACK_S:
        raise TruncatedAudio(f"the file declares {declared:.1f} s of audio but only {decoded:.1f} s is there: "
                             "it was probably cut short")
    if decoded == 0:
        raise EmptyAudio("the file holds no audio samples")
    return Clip(samples, int(source_rate))


def _reason(error: av.error.FFmpegError) -> str:
    return (getattr(error, "strerror", None) or str(error)).strip().rstrip(".").lower()


def _declared_seconds(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
            max_seconds: float) -> tuple[np.ndarray, str | None]:
    """All samples at 16 kHz mono, and the decoder's error if it stopped on one. Stops with
    `AudioTooLong` as soon as more than `max_seconds` is decoded."""
    resampler = av.AudioResampler(format=_RESAMPLER_FORMAT, layout=_RESAMPLER_LAYOUT, rate=SAMPLE_RATE)
    limit = int((max_seconds + _DECLARED_SLACK_S) * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    failure: str | None = None
    try:
        for frame in container.decode(stream):
            frame.pts = None  # the resampler needs no timestamps, and bad ones only make it complain
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
            if total > limit:
                raise AudioTooLong(f"the audio is longer than {max_seconds:g} s (the limit)")
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as error:
        failure = _reason(error)
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return np.clip(samples, -1.0, 1.0), failure


def _check_wav_header(data: bytes) -> None:
    """FFmpeg reads a WAV cut short without complaint (it trusts the file's size over the header):
    compare the data chunk's declared size with the bytes actually there."""
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RIFX") or data[8:12] != b"WAVE":
        return
    order = "<" if data[:4] == b"RIFF" else ">"
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack(order + "I", data[offset + 4:offset + 8])
        if chunk_id == b"data":
            present = len(data) - offset - 8
            # 0 and 0xFFFFFFFF are what streaming writers put when they do not know the size yet.
            if size not in (0, 0xFFFFFFFF) and present < size:
                raise TruncatedAudio(f"the WAV header announces {size} bytes of audio but only {present} are there: "
                                     "the file was cut short")
            return
        offset += 8 + size + (size & 1)  # chunks are padded to an even size


@dataclass(frozen=True, slots=True)
class TrimSettings:
    """Voice activity detection: Silero VAD's speech probability `threshold`; pauses shorter than
    `min_silence_ms` stay inside the speech; `speech_pad_ms` of audio is kept each side of every
    stretch of speech (a clipped first consonant costs words); `edge_silence_s` of silence is added
    at both ends (Whisper reads a word that starts at sample 0 worse)."""

    threshold: float = 0.5
    min_silence_ms: int = 700
    speech_pad_ms: int = 200
    min_speech_ms: int = 120
    edge_silence_s: float = 0.25


def trim_silence(clip: Clip, settings: TrimSettings = TrimSettings()) -> Clip:
    """`clip` with leading, trailing and long inner silences cut, a little padding kept around speech.
    Raises `NoSpeech` when the detector finds no speech at all."""
    # faster-whisper ships Silero VAD (ONNX) in its wheel; imported here so that decoding alone
    # does not load onnxruntime.
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if len(clip.samples) == 0:
        raise NoSpeech("the audio is silent")
    options = VadOptions(threshold=settings.threshold, min_silence_duration_ms=settings.min_silence_ms,
                         speech_pad_ms=settings.speech_pad_ms, min_speech_duration_ms=settings.min_speech_ms)
    spans = get_speech_timestamps(clip.samples, options, sampling_rate=SAMPLE_RATE)
    if not spans:
        raise NoSpeech("no speech was heard in the audio (only silence or noise)")
    edge = np.zeros(int(settings.edge_silence_s * SAMPLE_RATE), np.float32)
    pieces = [edge, *(clip.samples[span["start"]:span["end"]] for span in spans), edge]
    return Clip(np.concatenate(pieces), clip.source_rate)

