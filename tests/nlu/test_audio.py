"""Audio in: decoding what phones and apps send (WAV, MP3, OGG/Opus, stereo), refusing what cannot be
transcribed with the right error, and trimming silence with the VAD. Real files, encoded with PyAV
(FFmpeg) from eSpeak NG speech at telephone quality."""

from __future__ import annotations

import io
import struct
from functools import cache

import av
import numpy as np
import pytest

from dialogs.speech_synthesis import Speech, synthesize
from nlu.audio import decode_audio, trim_silence
from nlu.transcripts import (
    AudioTooLong,
    CorruptAudio,
    EmptyAudio,
    NoSpeech,
    TruncatedAudio,
)

PHONE_RATE = 8000


@cache
def speech() -> Speech:
    """A spoken command at telephone quality (8 kHz), about 2.5 s."""
    return synthesize("send five hundred shillings to Juma", "en").at_rate(PHONE_RATE)


def encode(samples: np.ndarray, rate: int, fmt: str, codec: str, *, options: dict[str, str] | None = None,
           bit_rate: int | None = None) -> bytes:
    """Encode int16 samples (shape (n,) mono, or (n, 2) stereo) into a `fmt` file with `codec`."""
    layout = "stereo" if samples.ndim == 2 else "mono"
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def test_a_telephone_wav_is_decoded_to_16_khz_mono_float() -> None:
    clip = decode_audio(speech().wav_bytes(), max_seconds=30)
    assert clip.source_rate == PHONE_RATE
    assert clip.samples.dtype == np.float32 and clip.samples.ndim == 1
    assert clip.seconds == pytest.approx(speech().seconds, abs=0.02)
    # The same waveform, twice as many samples: its loudest sample survives the resampling.
    assert float(np.abs(clip.samples).max()) == pytest.approx(float(np.abs(speech().samples).max()) / 32768, rel=0.1)


@pytest.mark.parametrize(("fmt", "codec", "rate"), [("mp3", "libmp3lame", PHONE_RATE), ("ogg", "libopus", 48_000)])
def test_compressed_uploads_are_decoded(fmt: str, codec: str, rate: int) -> None:
    data = encode(speech().at_rate(rate).samples, rate, fmt, codec)
    clip = decode_audio(data, max_seconds=30)
    assert clip.source_rate == rate
    assert clip.seconds == pytest.approx(speech().seconds, abs=0.1)
    assert float(np.abs(clip.samples).max()) > 0.1


def test_stereo_is_mixed_down_to_one_channel() -> None:
    mono = speech().samples
    # Speech on the left, silence on the right: the mix keeps the speech.
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)
    clip = decode_audio(encode(stereo, PHONE_RATE, "wav", "pcm_s16le"), max_seconds=30)
    reference = decode_audio(speech().wav_bytes(), max_seconds=30)
    assert clip.samples.ndim == 1 and len(clip.samples) == len(reference.samples)
    assert np.corrcoef(clip.samples, reference.samples)[0, 1] > 0.99


def test_no_bytes_and_no_samples_are_empty() -> None:
    with pytest.raises(EmptyAudio, match="0 bytes"):
        decode_audio(b"", max_seconds=30)
    with pytest.raises(EmptyAudio, match="no audio samples"):
        decode_audio(Speech(np.zeros(0, np.int16), PHONE_RATE).wav_bytes(), max_seconds=30)


def test_bytes_that_are_not_audio_are_corrupt() -> None:
    with pytest.raises(CorruptAudio, match="not an audio file"):
        decode_audio(b"<html><body>502 Bad Gateway</body></html>" * 20, max_seconds=30)
    with pytest.raises(CorruptAudio):
        decode_audio(bytes(range(256)) * 40, max_seconds=30)


def test_a_wav_cut_short_is_truncated() -> None:
    wav = speech().wav_bytes()
    with pytest.raises(TruncatedAudio, match="cut short") as cut:
        decode_audio(wav[: len(wav) // 2], max_seconds=30)
    assert cut.value.code == "truncated_audio"
    with pytest.raises(TruncatedAudio):  # the header alone
        decode_audio(wav[:44], max_seconds=30)


def test_an_mp3_cut_mid_frame_is_truncated() -> None:
    mp3 = encode(speech().samples, PHONE_RATE, "mp3", "libmp3lame")
    with pytest.raises(TruncatedAudio, match="cut short"):
        decode_audio(mp3[: len(mp3) * 6 // 10 + 7], max_seconds=30)


def test_audio_declared_too_long_is_refused_before_decoding() -> None:
    long = Speech(np.tile(speech().samples, 16), PHONE_RATE)  # ~40 s
    with pytest.raises(AudioTooLong, match=r"is 4\d\.\d s long; at most 30 s") as refused:
        decode_audio(long.wav_bytes(), max_seconds=30)
    assert refused.value.code == "audio_too_long"


def test_audio_longer_than_it_declares_is_refused_while_decoding() -> None:
    # An MP3 without a Xing header (nor ID3 tags) declares a duration guessed from its first
    # frame's bit rate: 64 kbit/s speech, then a minute at 8 kbit/s, is announced as about 12 s.
    bare = {"write_xing": "0", "id3v2_version": "0"}
    loud = encode(speech().samples, PHONE_RATE, "mp3", "libmp3lame", options=bare, bit_rate=64_000)
    quiet = encode(np.tile(speech().samples, 24), PHONE_RATE, "mp3", "libmp3lame", options=bare, bit_rate=8_000)
    with av.open(io.BytesIO(loud + quiet)) as container:
        assert container.duration / av.time_base < 20
    with pytest.raises(AudioTooLong, match="longer than 30 s"):
        decode_audio(loud + quiet, max_seconds=30)


def test_silence_and_noise_hold_no_speech() -> None:
    silence = decode_audio(Speech(np.zeros(3 * PHONE_RATE, np.int16), PHONE_RATE).wav_bytes(), max_seconds=30)
    with pytest.raises(NoSpeech, match="no speech"):
        trim_silence(silence)
    hiss = np.random.default_rng(7).normal(0, 300, 3 * PHONE_RATE).astype(np.int16)
    with pytest.raises(NoSpeech):
        trim_silence(decode_audio(Speech(hiss, PHONE_RATE).wav_bytes(), max_seconds=30))


def test_trimming_cuts_the_silence_around_speech_and_keeps_the_speech() -> None:
    gap = np.zeros(2 * PHONE_RATE, np.int16)
    padded = Speech(np.concatenate([gap, speech().samples, gap]), PHONE_RATE)
    clip = decode_audio(padded.wav_bytes(), max_seconds=30)
    trimmed = trim_silence(clip)
    assert trimmed.source_rate == PHONE_RATE
    # Four seconds of silence went; the speech and a little padding stayed.
    assert speech().seconds <= trimmed.seconds <= speech().seconds + 1.2
    assert float(np.sum(trimmed.samples ** 2)) == pytest.approx(float(np.sum(clip.samples ** 2)), rel=0.02)


def test_a_wav_header_for_a_stream_of_unknown_length_is_not_truncation() -> None:
    # Streaming writers put 0xFFFFFFFF where the data size goes; the data is all there.
    wav = bytearray(speech().wav_bytes())
    wav[40:44] = struct.pack("<I", 0xFFFFFFFF)
    clip = decode_audio(bytes(wav), max_seconds=30)
    assert clip.seconds == pytest.approx(speech().seconds, abs=0.02)

