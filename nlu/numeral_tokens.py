"""The Whisper tokens that write digits, so a recognizer can forbid them and hear numbers as words.

Whisper writes "eight eight eight eight eight zero" as "88880" and "to till eight three…" as
"650083910": its digit tokens are several digits long, so a repeated digit or a short word between
two numbers is easily lost. Forbidden to write digits, it writes each digit said as a word, which the
parser reads back ("eight three two nine one zero" → till 832910), and it can no longer copy a digit
string from the prompt. On `bench.voice`'s English clips spoken by Flite's four voices this took
end-to-end accuracy from 86 % to 94 % (WER 10 % → 6 %); on eSpeak NG's robotic voices it cost some
("thousand" heard as "ndousand"). `speech.numbers_in_words` says in which languages it is done.
"""

from __future__ import annotations

from collections.abc import Callable


def numeral_tokens(decode: Callable[[list[int]], str], text_tokens: int) -> list[int]:
    """The ids below `text_tokens` (Whisper's ordinary text tokens; special ones start there) whose
    text holds a digit, read with the model's `decode`."""
    return [token for token in range(text_tokens) if any(ch.isdigit() for ch in decode([token]))]
