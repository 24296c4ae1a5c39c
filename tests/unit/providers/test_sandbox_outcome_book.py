"""How the sandbox picks an outcome: control overrides first (per number, then global), then the
number's suffix, then success."""

from __future__ import annotations

import pytest

from payments.sandbox.outcomes import SUFFIXES, Outcome, OutcomeBook, Plan

ALL = set(Outcome)


def test_suffixes_select_failure_modes_and_other_numbers_succeed():
    book = OutcomeBook(ALL)
    assert book.take("+254712345032") == Plan(Outcome.USER_CANCELLED)
    assert book.take("254712345001") == Plan(Outcome.INSUFFICIENT_FUNDS)
    assert book.take("+254 712 345 678") == Plan(Outcome.SUCCESS)
    assert book.take(None) == Plan(Outcome.SUCCESS)


def test_a_sandbox_ignores_suffixes_for_modes_it_does_not_simulate():
    assert OutcomeBook({Outcome.HTTP_500}).take("+254712345032") == Plan(Outcome.SUCCESS)


def test_overrides_are_used_the_given_number_of_times_in_order():
    book = OutcomeBook(ALL)
    book.set_next(Outcome.WRONG_PIN, msisdn="+254712345678", times=2, delay_s=0.5)
    book.set_next(Outcome.SLOW, msisdn="254712345678")
    taken = [book.take("254712345678") for _ in range(4)]
    assert taken == [
        Plan(Outcome.WRONG_PIN, 0.5),
        Plan(Outcome.WRONG_PIN, 0.5),
        Plan(Outcome.SLOW),
        Plan(Outcome.SUCCESS),
    ]


def test_a_number_override_wins_over_a_global_one_which_wins_over_the_suffix():
    book = OutcomeBook(ALL)
    book.set_next(Outcome.HTTP_500)
    book.set_next(Outcome.EXPIRED, msisdn="+254712345032")
    assert book.take("+254712345032").outcome is Outcome.EXPIRED
    assert book.take("+254712345032").outcome is Outcome.HTTP_500
    assert book.take("+254712345032").outcome is Outcome.USER_CANCELLED
    assert book.pending() == []


def test_unsupported_or_senseless_overrides_are_refused():
    book = OutcomeBook({Outcome.HTTP_500})
    with pytest.raises(ValueError):
        book.set_next(Outcome.IDEMPOTENCY_MISMATCH)
    with pytest.raises(ValueError):
        book.set_next(Outcome.HTTP_500, times=0)


def test_clear_forgets_every_override():
    book = OutcomeBook(ALL)
    book.set_next(Outcome.HTTP_500)
    book.set_next(Outcome.HTTP_500, msisdn="+254712345678")
    book.clear()
    assert book.pending() == [] and book.take("+254712345678").outcome is Outcome.SUCCESS


def test_every_suffix_is_three_digits_and_unique():
    assert all(len(s) == 3 and s.isdigit() for s in SUFFIXES)
    assert len(set(SUFFIXES.values())) == len(SUFFIXES)
