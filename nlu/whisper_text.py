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

from nlu.amounts import CURRENCY_WORDS
from nlu.numbers_words import DIGIT_WORDS, EN, NUMBER_WORDS

# Two or more single digits separated by commas, hyphens or spaces: "8, 8, 8", "1-2-3-4", "store 1 2"
# (digits said one by one; an amount is never said that way). Not dots: "1.5" is an amount.
_SPELLED_DIGITS = re.compile(r"(?<![\d,.])\d(?:(?:\s*[,\-]\s*|\s+)\d)+(?!\d|\.\d)")
# Digit groups joined by hyphens: "247-247", "071-234-5678".
_HYPHENATED = re.compile(r"(?<![\d\-])\d+(?:-\d+)+(?![\d\-])")
# A number with thousands separators: "345,678", "1,500" (not "1,5" nor "1, 500").
_THOUSANDS = re.compile(r"(?<!\d)(?<!\d,)\d{1,3}(?:,\d{3})+(?!\d|,\d)")
# A code number read in groups right after its keyword: "pay bill 247 247", "account 556 677" (after
# a keyword that names a code, never an amount, the groups are one number).
_GROUPED_CODE = re.compile(r"\b(pay ?bill|till|account(?: number)?|agent|store|akaunti|wakala|compte|marchand)"
                           r"(\s+)(\d+(?:\s+\d+)+)\b", re.IGNORECASE)
# A comma Whisper puts where the speaker paused ("agent, 345678, store 12"): the parser reads a
# keyword and its number only when nothing stands between them.
_PAUSE_COMMA = re.compile(r",(?=\s)")
# An amount run into the Kenyan number after it, the "to" between them lost: "send three hundred to
# zero seven one two…" heard as "Send 3000712345678". A number said from its leading zero is 10
# digits, 07… or 01…, so the split is unambiguous; Senegalese numbers have no leading zero to find.
_AMOUNT_THEN_PHONE = re.compile(r"(?<![\d.,])([1-9]\d{0,6})(0[17]\d{8})(?!\d|[.,]\d)")
# "to" and "two" sound the same, and Whisper writing numbers in words picks the wrong one:
# - "to" inside a number said digit by digit ("till eight three to nine one zero"): after two digit
#   words and before a third, it is a digit ("send five to zero seven…" has one before it: left);
_DIGIT = "|".join(sorted(w for w in DIGIT_WORDS[EN] if len(w) > 1))
_TO_AMONG_DIGITS = re.compile(rf"\b((?:{_DIGIT})[\s,]+(?:{_DIGIT}))[\s,]+(?:to|too)[\s,]+(?=(?:{_DIGIT})\b)",
                              re.IGNORECASE)
# - "two" right after "hundred" or "thousand" and before neither a number, a currency nor "to": the
#   "to" before whom or where the money goes ("one thousand two M-Pesa"), or before a number said
#   from its zero ("three hundred two zero seven…"). "Three hundred two shillings" and "three
#   hundred two to Mama" keep their two.
_NOT_AFTER_TWO = "|".join(sorted(NUMBER_WORDS[EN] - {"zero", "oh"} | CURRENCY_WORDS | {"and", "to"}, key=len,
                                 reverse=True))
_TWO_FOR_TO = re.compile(rf"\b(hundreds?|thousands?)\s+two\s+(?=zero\b|(?!(?:{_NOT_AFTER_TWO})\b)[^\W\d_])",
                         re.IGNORECASE)
# A currency sign Sauti never deals in, stuck to an amount.
_FOREIGN_SIGN = re.compile(r"[$€£](?=\s?\d)")


def _digits_only(match: re.Match[str]) -> str:
    return re.sub(r"\D", "", match.group())


def tidy_transcript(text: str) -> str:
    """`text` with spelled-out digit strings, hyphenated digit groups, thousands separators and
    code numbers read in groups joined into plain numbers, an amount run into a phone number split
    off it, "to" and "two" told apart around numbers in words, pause commas and foreign currency
    signs dropped, spaces collapsed."""
    text = _FOREIGN_SIGN.sub("", text)
    text = _SPELLED_DIGITS.sub(_digits_only, text)
    text = _HYPHENATED.sub(_digits_only, text)
    text = _THOUSANDS.sub(_digits_only, text)
    text = _PAUSE_COMMA.sub("", text)
    text = _GROUPED_CODE.sub(lambda m: m.group(1) + m.group(2) + re.sub(r"\s+", "", m.group(3)), text)
    text = _AMOUNT_THEN_PHONE.sub(r"\1 \2", text)
    text = _TWO_FOR_TO.sub(r"\1 to ", text)
    while (fixed := _TO_AMONG_DIGITS.sub(r"\1 two ", text)) != text:
        text = fixed
    return " ".join(text.split())
