"""The voice channel's spoken prompts as audio files, for the languages Africa's Talking's `Say` does
not speak (Swahili, French): rendered once with eSpeak NG (`dialogs.speech_synthesis`) at telephone
quality (8 kHz, 16-bit WAV), kept on disk under a name derived from the language and the words, and
served by URL (`GET /voice/prompts/{name}`) for a `<Play>`.

A prompt's name is a hash of what it says, so the same sentence is rendered once, by whichever
request needs it first; prompts that carry amounts or references are rendered per call, which is
cheap (a few milliseconds).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from dialogs.speech_synthesis import synthesize

#: Telephone quality: a call carries 8 kHz narrowband audio, anything more is wasted bytes.
PROMPT_RATE = 8000
_NAME = re.compile(r"^[0-9a-f]{32}\.wav$")


class VoicePrompts:
    """Rendered prompts under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def name_of(text: str, language: str) -> str:
        return hashlib.sha256(f"{language}\n{text}".encode()).hexdigest()[:32] + ".wav"

    def path_of(self, name: str) -> Path | None:
        """The file of a prompt already rendered, or None (also for any name that is not one of ours)."""
        if not _NAME.match(name):
            return None
        path = self.directory / name
        return path if path.is_file() else None

    async def render(self, text: str, language: str) -> str:
        """The prompt's name, rendering it first if needed (in a worker thread: the event loop keeps
        serving USSD meanwhile)."""
        name = self.name_of(text, language)
        if (self.directory / name).is_file():
            return name
        await asyncio.to_thread(self._render, text, language, name)
        return name

    def _render(self, text: str, language: str, name: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        audio = synthesize(text, language).at_rate(PROMPT_RATE).wav_bytes()
        # Written whole, then renamed: a request never serves half a file.
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(audio)
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
