"""Whisper's typography, tidied for the parser: the numbers of a spoken command written as one number.

Whisper writes what it hears the way subtitles are written, which splits the digit strings a
payment needs: "pay bill eight eight eight eight eight zero" comes out as "Pay bill 8, 8, 8, 8, 8, 0"
or "8-8-8-8-8-0", an agent number said as a number as "345,678", a paybill read in halves as
"247-247", and it puts commas where the speaker paused ("agent, 345678, store 12"). The parser reads
a number per token, next to its keyword, so each digit string is joined back into the one that was
said and pause commas are dropped. Sauti moves shillings and francs only: a "$" or "€" Whisper adds
out of habit in front of an amount ("Pay $2,500") is dropped.

Only digit strings are touched; words, names and amounts written in words are left as they are.
"""

from __future__ import annotations

import re

# Three or more single digits separated by commas, hyphens, dots or spaces: "8, 8, 8", "1-2-3-4".
_SPELLED_DIGITS = re.compile(r"(?<![\d,.])\d(?:(?:\s*[,\-.]\s*|\s+)\d){2,}(?![\d])(?!\.\d)")
# Digit groups joined by hyphens: "247-247", "071-234-5678".
_HYPHENATED = re.compile(r"(?<![\d\-])\d+(?:-\d+)+(?![\d\-])")
# A number with thousands separators: "345,678", "1,500" (not "1,5" nor "1, 500").
_THOUSANDS = re.compile(r"(?<!\d)(?<!\d,)\d{1,3}(?:,\d{3})+(?!\d|,\d)")
# A comma Whisper puts where the speaker paused ("agent, 345678, store 12"): the parser reads a
# keyword and its number only when nothing stands between them.
_PAUSE_COMMA = re.compile(r",(?=\s)")
# A currency sign Sauti never deals in, stuck to an amount.
_FOREIGN_SIGN = re.compile(r"[$€£](?=\s?\d)")


def _digits_only(match: re.Match[str]) -> str:
    return re.sub(r"\D", "", match.group())


def tidy_transcript(text: str) -> str:
    """`text` with spelled-out digit strings, hyphenated digit groups and thousands separators
    joined into plain numbers, pause commas and foreign currency signs dropped, spaces collapsed."""
    text = _FOREIGN_SIGN.sub("", text)
    text = _SPELLED_DIGITS.sub(_digits_only, text)
    text = _HYPHENATED.sub(_digits_only, text)
    text = _THOUSANDS.sub(_digits_only, text)
    text = _PAUSE_COMMA.sub("", text)
    return " ".join(text.split())
