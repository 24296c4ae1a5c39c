"""Short references (`payments.references`): unique, reversible, read leniently, and stable."""

from __future__ import annotations

import itertools
import random

import pytest

from payments.references import (
    ALPHABET,
    MAX_ID,
    ReferenceKind,
    cash_request_reference,
    payment_reference,
    read_reference,
    reference,
)


def test_a_reference_is_ten_crockford_characters_and_reads_back_to_its_row():
    rng = random.Random(7)
    ids = [1, 2, 3, 999, 2**31, MAX_ID, *(rng.randint(1, MAX_ID) for _ in range(2000))]
    for kind in ReferenceKind:
        for row_id in ids:
            ref = reference(kind, row_id)
            assert len(ref) == 10 and set(ref) <= set(ALPHABET)
            assert read_reference(ref) == (kind, row_id)


def test_references_are_unique_and_consecutive_rows_do_not_look_consecutive():
    payments = [payment_reference(i) for i in range(1, 50_001)]
    requests = [cash_request_reference(i) for i in range(1, 50_001)]
    assert len(set(payments) | set(requests)) == 100_000
    # Neighbours share no long prefix (a sequence would share nine characters of ten).
    assert max(len(_common_prefix(a, b)) for a, b in itertools.pairwise(payments)) <= 4


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return a[:n]


def test_a_reference_typed_back_by_a_person_is_read_leniently():
    ref = payment_reference(123_456)
    expected = (ReferenceKind.PAYMENT, 123_456)
    assert read_reference(ref.lower()) == expected
    assert read_reference(f" {ref[:3]}-{ref[3:6]} {ref[6:]} ") == expected
    # O read as 0, I and L as 1: the letters Crockford's alphabet leaves out for that reason.
    confusable = ref.replace("0", "O").replace("1", "I")
    assert read_reference(confusable) == expected


@pytest.mark.parametrize("text", ["", "K7Q2M9BXA", "K7Q2M9BXA44", "K7Q2M9BXU4", "pay_01m8pbc3tw8d7ewds5qrnn6ywj",
                                  "K7Q2M9BX!4", "K7Q2M9BXA\n"])
def test_what_is_not_a_reference_names_nothing(text):
    assert read_reference(text) is None


@pytest.mark.parametrize("row_id", [0, -1, MAX_ID + 1])
def test_rows_outside_the_range_have_no_reference(row_id):
    with pytest.raises(ValueError):
        payment_reference(row_id)


def test_references_never_change():
    # Printed on receipts and said to support agents: the permutation and its keys are fixed forever.
    assert [payment_reference(i) for i in (1, 2, 1000)] == ["Q90A9KXSV4", "TZDZ8C9A13", "S88Z7ZET3Y"]
    assert cash_request_reference(1) == "4E9F8N8NWR"
