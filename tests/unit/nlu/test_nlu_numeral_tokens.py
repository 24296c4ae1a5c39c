"""The tokens a recognizer forbids so that Whisper writes numbers as words."""

from __future__ import annotations

from nlu.numeral_tokens import numeral_tokens

VOCABULARY = ["hello", " 5", "00", " five", "x2y", "½", " hundred", "<|endoftext|>", "7"]


def test_every_text_token_holding_a_digit_and_no_other() -> None:
    found = numeral_tokens(lambda ids: "".join(VOCABULARY[i] for i in ids), VOCABULARY.index("<|endoftext|>"))
    assert found == [1, 2, 4]  # not "½" (no digit), nor anything from the special tokens on
