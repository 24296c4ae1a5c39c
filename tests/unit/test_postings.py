"""The posting rules, property-tested: anything that constructs balances; nothing unbalanced,
zero, fractional or oversized constructs; fingerprints identify the request."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from payments import errors as pe
from payments.fees import FeePlan
from payments.ledger import LedgerLimits
from payments.money import Currency, Money
from payments.postings import ABSOLUTE_MAX_MINOR, Leg, TransferRequest, payment_legs

KES = Currency.KES
amounts = st.integers(min_value=1, max_value=10**9)
accounts = st.integers(min_value=1, max_value=10**6)


@given(st.lists(st.tuples(accounts, st.integers(-(10**9), 10**9).filter(bool), st.sampled_from(list(Currency))),
                min_size=1, max_size=8), accounts)
def test_any_set_of_legs_plus_its_balancing_leg_is_a_valid_transfer(raw, balancer):
    legs = [Leg(a, m, c) for a, m, c in raw]
    for currency in Currency:
        total = sum(leg.amount for leg in legs if leg.currency is currency)
        if total:
            legs.append(Leg(balancer, -total, currency))
    assume(2 <= len(legs) <= 16)
    request = TransferRequest("k", tuple(legs))
    for currency in Currency:
        assert sum(leg.amount for leg in request.legs if leg.currency is currency) == 0


@given(accounts, accounts, amounts, st.integers(1, 10**6))
def test_unbalanced_legs_never_construct(a, b, amount, error):
    with pytest.raises(pe.UnbalancedTransfer):
        TransferRequest("k", (Leg(a, -amount, KES), Leg(b, amount + error, KES)))


@given(accounts, accounts, amounts, st.integers(0, 10**6))
def test_payment_legs_balance_and_charge_the_payer_the_fee(src, dst, amount, fee):
    legs = payment_legs(src, dst, Money(amount, KES), fee=Money(fee, KES), fee_account=999)
    assert sum(leg.amount for leg in legs) == 0
    assert legs[0].amount == -(amount + fee)
    assert len(legs) == (3 if fee else 2)


@pytest.mark.parametrize("amount", [0, ABSOLUTE_MAX_MINOR + 1, 1.5, True, "100"])
def test_bad_amounts_never_construct(amount):
    with pytest.raises(pe.InvalidRequest):
        Leg(1, amount, KES)  # type: ignore[arg-type]


def test_single_leg_and_too_many_legs_are_refused():
    with pytest.raises(pe.UnbalancedTransfer):
        TransferRequest("k", (Leg(1, 5, KES),))
    many = tuple(Leg(i, 1 if i % 2 else -1, KES) for i in range(1, 19))
    with pytest.raises(pe.InvalidRequest):
        TransferRequest("k", many)


def test_per_transaction_cap_from_configuration():
    limits = LedgerLimits.from_major(999_999)
    limits.check(TransferRequest("k", payment_legs(1, 2, Money.of(999_999, KES), fee=Money.of(9, KES), fee_account=3)))
    with pytest.raises(pe.AmountOutOfRange):
        limits.check(TransferRequest("k", payment_legs(1, 2, Money.of(1_000_000, KES))))


def test_the_ledgers_bound_leaves_room_for_the_dearest_plans_fee():
    """A payout's debit credits clearing amount + fee, and giving a payment back credits the payer
    amount + fee, in one leg each: the bound is the amount cap plus the largest fee a plan charges."""
    plans = [FeePlan("cheap", 30, None), FeePlan("dear", 200, 5)]
    limits = LedgerLimits.for_payments(999_999, plans)
    assert limits.max_minor[KES] == (999_999 + 20_000) * 100  # 2 % of 999,999, rounded up to a shilling
    assert limits.max_minor[Currency.XOF] == 999_999 + 20_000
    limits.check(TransferRequest("k", payment_legs(1, 2, Money.of(1_019_999, KES))))
    with pytest.raises(pe.AmountOutOfRange):
        limits.check(TransferRequest("k", (Leg(1, -101_999_901, KES), Leg(2, 101_999_901, KES))))
    assert LedgerLimits.for_payments(1000, [FeePlan("none", 0, None)]) == LedgerLimits.from_major(1000)


@given(st.integers(1, 10**9), st.lists(st.integers(0, 10_000), min_size=1, max_size=5), st.integers(1, 10**9))
def test_every_quoted_payment_and_its_giving_back_fits_the_ledgers_bound(cap, basis_points, minor):
    """Whatever the plans and the amount up to the cap, amount + fee passes the bound."""
    plans = [FeePlan(f"p{i}", bp, None) for i, bp in enumerate(basis_points)]
    limits = LedgerLimits.for_payments(cap, plans)
    amount = Money(min(minor, cap * KES.minor_per_major), KES)
    for plan in plans:
        total = amount + plan.fee_for(amount)
        limits.check(TransferRequest("k", (Leg(1, -total.minor, KES), Leg(2, total.minor, KES))))


@given(accounts, accounts, amounts)
def test_fingerprint_is_stable_and_sensitive(a, b, amount):
    assume(a != b)
    one = TransferRequest("k", payment_legs(a, b, Money(amount, KES)))
    same = TransferRequest("other-key", payment_legs(a, b, Money(amount, KES)))
    different = TransferRequest("k", payment_legs(a, b, Money(amount + 1, KES)))
    assert one.fingerprint() == same.fingerprint() != different.fingerprint()


def test_metadata_must_be_json_and_is_frozen():
    with pytest.raises(pe.InvalidRequest):
        TransferRequest("k", payment_legs(1, 2, Money(1, KES)), metadata={"x": object()})
    request = TransferRequest("k", payment_legs(1, 2, Money(1, KES)), metadata={"x": 1})
    with pytest.raises(TypeError):
        request.metadata["x"] = 2  # type: ignore[index]
