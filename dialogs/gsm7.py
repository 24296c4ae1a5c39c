"""GSM-7: the alphabet a USSD screen is sent in, and how long a text is in it.

One character outside GSM 03.38 (a curly quote, an emoji, a ``ç``) switches the whole screen to UCS-2,
which cuts a screen to about 70 characters, and some handsets render it as boxes. So every text we
show is first normalised: characters of the basic set pass, accents outside it lose their accent
(``ç`` → ``c``, ``ê`` → ``e``, ``ë`` → ``e``), typographic punctuation becomes its plain form, and
anything left becomes ``?``. Characters of the extension table (``€ [ ] { } \\ ^ ~ |``) are sent as
an escape plus the character, so they count as two.
"""

from __future__ import annotations

import re
import unicodedata

#: GSM 03.38 basic character set (the 128 one-septet characters; ESC and the control characters
#: other than LF and CR are left out: we never send them).
BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each costs an escape septet too.
EXTENSION = frozenset("^{}\\[~]|€")

#: Screen limit of a USSD page in GSM-7 characters (Africa's Talking, most telcos).
SCREEN_LIMIT = 182
#: One SMS in GSM-7 characters (more is sent, and billed, as several).
SMS_LIMIT = 160

# Typographic characters people (and translators) type, mapped to what a feature phone shows well.
_PLAIN = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "´": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "«": '"', "»": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...", "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\t": " ",
    "•": "-", "·": ".", "×": "x", "÷": "/", "ç": "c", "œ": "oe", "Œ": "OE",
}


# Every screen is normalised and measured at every hop, and nearly every text is plain GSM-7
# already: one regex pass (in C) answers for those, and only the rare odd character goes through
# the per-character path below.
_NOT_GSM7 = re.compile("[^" + "".join(re.escape(c) for c in sorted(BASIC | EXTENSION)) + "]")
_EXTENDED = re.compile("[" + "".join(re.escape(c) for c in sorted(EXTENSION)) + "]")


def _one(char: str) -> str:
    if char in BASIC or char in EXTENSION:
        return char
    if char in _PLAIN:
        return _PLAIN[char]
    # Strip the accent (NFKD splits "ê" into "e" + a combining circumflex) and keep what is left
    # if that is GSM-7: ê → e, ï → i, ó → o, ŋ stays unknown.
    stripped = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if stripped and all(c in BASIC for c in stripped):
        return stripped
    return "?"


def normalise(text: str) -> str:
    """``text`` in characters GSM-7 can carry (see the module docstring)."""
    if _NOT_GSM7.search(text) is None:
        return text
    return "".join(_one(c) for c in text)


def length(text: str) -> int:
    """Septets ``text`` takes in GSM-7: extension characters count two. Raises ValueError on a
    character that is not GSM-7 (normalise first)."""
    if _NOT_GSM7.search(text) is None:
        return len(text) + len(_EXTENDED.findall(text))
    total = 0
    for char in text:
        if char in BASIC:
            total += 1
        elif char in EXTENSION:
            total += 2
        else:
            raise ValueError(f"{char!r} is not a GSM-7 character")
    return total


def is_gsm7(text: str) -> bool:
    return _NOT_GSM7.search(text) is None
