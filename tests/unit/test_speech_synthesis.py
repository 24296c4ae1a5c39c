"""The offline speakers behind the voice channel's prompts and the voice benchmark's clips: each voice
named is the voice heard, and the rate asked for is the rate spoken."""

from __future__ import annotations

import numpy as np
import pytest

from dialogs.speech_synthesis import FLITE_VOICES, SpeechSynthesisError, flite_available, synthesize

TEXT = "send five hundred shillings to Juma"


def test_espeak_voices_and_rates_are_applied() -> None:
    plain = synthesize(TEXT, "en", voice="en-us", rate_wpm=150)
    assert plain.seconds > 1
    assert not np.array_equal(plain.samples, synthesize(TEXT, "en", voice="en-us+m3", rate_wpm=150).samples)
    assert synthesize(TEXT, "en", voice="en-us", rate_wpm=100).seconds > plain.seconds * 1.2


def test_an_unknown_espeak_voice_is_refused() -> None:
    with pytest.raises(SpeechSynthesisError, match="no voice"):
        synthesize(TEXT, "en", voice="xx-nobody")


@pytest.mark.skipif(not flite_available(), reason="CMU Flite is not installed (make flite, as root, installs it)")
def test_every_flite_voice_is_its_own_and_the_rate_is_applied() -> None:
    # Each voice once: a lost "-voice" argument once made all four the default voice, and the
    # benchmark's "four voices" one.
    clips = [synthesize(TEXT, "en", voice=voice, rate_wpm=150) for voice in FLITE_VOICES]
    assert all(clip.seconds > 1 for clip in clips)
    assert len({(clip.rate, clip.samples.tobytes()) for clip in clips}) == len(FLITE_VOICES)
    slow = synthesize(TEXT, "en", voice=FLITE_VOICES[0], rate_wpm=100)
    assert slow.seconds > clips[0].seconds * 1.2
