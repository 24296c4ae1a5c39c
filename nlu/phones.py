"""Phone numbers in Kenyan and Senegalese formats, typed or spoken, as E.164 strings.

Typed: "0712345678", "0712 345 678", "+254 712 345 678", "254712345678", "77 123 45 67",
"+221 77 123 45 67". Spoken: digit by digit in any of the three languages, or in French pairs.
A bare nine-digit "7…" number is both a Kenyan number without its 0 and a Senegalese one, so the
caller orders the regions (French speakers first try Senegal).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import phonenumbers

from nlu.spoken_digits import read_digit_run
from nlu.tokens import Token

KE, SN = "KE", "SN"
# National significant numbers: Kenyan mobiles are 7xx/1xx xxx xxx, Senegalese 70/75/76/77/78.
# The patterns only pick what to hand to phonenumbers, which knows the allocated ranges.
_PATTERNS = {
    KE: re.compile(r"(?:254|0)?([71]\d{8})"),
    SN: re.compile(r"(?:00221|221)?(7[05678]\d{7})"),
}
_MIN_DIGITS, _MAX_DIGITS = 9, 14


@dataclass(frozen=True, slots=True)
class PhoneMatch:
    """A phone number (E.164) read from tokens `[token_start, token_end)`."""

    value: str
    token_start: int
    token_end: int


def as_phone(digits: str, regions: Sequence[str] = (KE, SN)) -> str | None:
    """The E.164 form of `digits` if it is a valid mobile number in one of `regions`, in order."""
    for region in regions:
        found = _PATTERNS[region].fullmatch(digits)
        if found is None:
            continue
        number = phonenumbers.parse(found.group(1), region)
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def normalize_phone(text: str, regions: Sequence[str] = (KE, SN)) -> str | None:
    """E.164 form of a phone number written any usual way ("0712 345 678", "+221 77…")."""
    return as_phone(re.sub(r"\D", "", text), regions)


def find_phones(
    tokens: Sequence[Token], claimed: Collection[int] = (), regions: Sequence[str] = (KE, SN)
) -> list[PhoneMatch]:
    """Every phone number in the utterance, left to right, skipping claimed tokens."""
    found: list[PhoneMatch] = []
    i = 0
    while i < len(tokens):
        plus = tokens[i].text == "+"
        groups = read_digit_run(tokens, i + 1 if plus else i, claimed) if i not in claimed else []
        if sum(len(g.digits) for g in groups) < _MIN_DIGITS:
            i = groups[-1].end if groups else i + 1
            continue
        s = 0
        while s < len(groups):
            best: tuple[str, int] | None = None
            digits = ""
            for e in range(s, len(groups)):
                digits += groups[e].digits
                if len(digits) > _MAX_DIGITS:
                    break
                if len(digits) >= _MIN_DIGITS and (phone := as_phone(digits, regions)) is not None:
                    best = (phone, e)
            if best is None:
                s += 1
                continue
            start = i if plus and s == 0 else groups[s].start
            found.append(PhoneMatch(best[0], start, groups[best[1]].end))
            s = best[1] + 1
        i = groups[-1].end
    return found
