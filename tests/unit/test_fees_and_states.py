"""Fees, limits, quotes and the payment state machine: pure rules."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.errors import AmountOutOfRange
from payments.fees import DEFAULT_LIMITS, DEFAULT_PLANS, FeePlan, LimitExceeded, quote
from payments.money import Currency, Money
from payments.states import ALLOWED, InvalidTransition, PaymentStatus, check_transition, is_replay

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


def test_seed_plans_and_rounding_up_to_whole_units():
    assert DEFAULT_PLANS["free"].fee_for(Money.of(1000, KES)) == Money.of(20, KES)
    assert DEFAULT_PLANS["basic"].fee_for(Money.of(1500, KES)) == Money.of(15, KES)
    assert DEFAULT_PLANS["pro"].fee_for(Money.of(101, KES)) == Money.of(1, KES)  # 0.505 → 1
    assert DEFAULT_PLANS["business"].fee_for(Money.of(5000, XOF)) == Money.of(15, XOF)


@given(st.integers(1, 10**9), st.integers(0, 10_000), st.sampled_from(list(Currency)))
def test_fee_is_whole_units_never_less_than_the_percentage(minor, bp, currency):
    amount = Money(minor, currency)
    fee = FeePlan("p", bp, None).fee_for(amount)
    assert fee.minor % currency.minor_per_major == 0
    assert fee.minor * 10_000 >= minor * bp
    assert (fee.minor - currency.minor_per_major) * 10_000 < minor * bp or fee.minor == 0


def test_quote_totals_and_allowance():
    q = quote(Money.of(1000, KES), DEFAULT_PLANS["free"], limits=DEFAULT_LIMITS, kyc_tier=0,
              spent_today=Money.zero(KES), transactions_this_month=4, recipient_name="Mama")
    assert q.total == Money.of(1020, KES) and q.recipient_name == "Mama"
    with pytest.raises(LimitExceeded, match="5 payments a month"):
        quote(Money.of(1000, KES), DEFAULT_PLANS["free"], limits=DEFAULT_LIMITS, kyc_tier=0,
              spent_today=Money.zero(KES), transactions_this_month=5)


def test_incoming_money_is_free_outside_the_allowance_and_limited_per_transaction_only():
    """A deposit or cash-in: what one may spend is limited, not what comes in (as the commands check it)."""
    q = quote(Money.of(1000, KES), DEFAULT_PLANS["free"], limits=DEFAULT_LIMITS, kyc_tier=0,
              spent_today=Money.of(70_000, KES), transactions_this_month=5, incoming=True)
    assert (q.fee, q.total) == (Money.zero(KES), Money.of(1000, KES))
    with pytest.raises(LimitExceeded):  # more than the tier's day in one deposit
        quote(Money.of(70_001, KES), DEFAULT_PLANS["free"], limits=DEFAULT_LIMITS, kyc_tier=0,
              spent_today=Money.zero(KES), transactions_this_month=0, incoming=True)


def test_limits():
    with pytest.raises(AmountOutOfRange):
        DEFAULT_LIMITS.check(Money.of(1_000_000, KES), kyc_tier=3, spent_today=Money.zero(KES))
    with pytest.raises(LimitExceeded, match="left today"):
        DEFAULT_LIMITS.check(Money.of(20_000, KES), kyc_tier=0, spent_today=Money.of(60_000, KES))
    DEFAULT_LIMITS.check(Money.of(20_000, KES), kyc_tier=1, spent_today=Money.of(60_000, KES))
    with pytest.raises(AmountOutOfRange):
        DEFAULT_LIMITS.check(Money(0, KES), kyc_tier=0, spent_today=Money.zero(KES))


def test_state_machine():
    check_transition(S.CREATED, S.PENDING)
    check_transition(S.PROCESSING, S.SUCCEEDED)
    check_transition(S.SUCCEEDED, S.REFUNDED)
    for final in (S.FAILED, S.REVERSED, S.REFUNDED):
        assert not ALLOWED[final]
    with pytest.raises(InvalidTransition):
        check_transition(S.FAILED, S.SUCCEEDED)
    with pytest.raises(InvalidTransition):
        check_transition(S.SUCCEEDED, S.FAILED)
    assert is_replay(S.SUCCEEDED, S.SUCCEEDED) and is_replay(S.FAILED, S.PROCESSING)
    assert not is_replay(S.PROCESSING, S.SUCCEEDED)


@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_any_walk_through_the_table_reaches_at_most_one_of_succeeded_or_failed(targets):
    current, seen_final = S.CREATED, set()
    for target in targets:
        try:
            check_transition(current, target)
        except InvalidTransition:
            continue
        current = target
        if target in (S.SUCCEEDED, S.FAILED):
            seen_final.add(target)
    assert len(seen_final) <= 1
