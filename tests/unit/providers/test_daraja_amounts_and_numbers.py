"""What our Daraja client sends as Amount and as a phone number, refused before any request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.money import Currency, Money
from payments.phones import InvalidPhoneNumber
from payments.providers.daraja import AmountNotPayable, mpesa_msisdn, whole_shillings


@pytest.mark.parametrize(("money", "shillings"), [(Money(100, Currency.KES), 1), (Money.of("1,500", "KES"), 1500)])
def test_whole_shillings_from_minor_units(money, shillings):
    assert whole_shillings(money) == shillings


@pytest.mark.parametrize(
    "money",
    [
        Money.of("10.50", "KES"),
        Money(1, Currency.KES),
        Money(0, Currency.KES),
        Money(-100, Currency.KES),
        Money.of("100", "XOF"),
    ],
)
def test_amounts_mpesa_cannot_move_are_refused(money):
    with pytest.raises(AmountNotPayable):
        whole_shillings(money)


@given(st.integers(min_value=1, max_value=10**12))
def test_whole_shillings_never_rounds(minor):
    money = Money(minor, Currency.KES)
    if minor % 100:
        with pytest.raises(AmountNotPayable):
            whole_shillings(money)
    else:
        assert whole_shillings(money) * 100 == minor


@pytest.mark.parametrize("typed", ["0712345678", "+254 712 345 678", "254712345678", "0112345678"])
def test_kenyan_numbers_become_2547_or_2541_without_plus(typed):
    assert mpesa_msisdn(typed) in {"254712345678", "254112345678"}


@pytest.mark.parametrize("typed", ["+221771234567", "12345", "not a number"])
def test_other_numbers_are_refused(typed):
    with pytest.raises(InvalidPhoneNumber):
        mpesa_msisdn(typed)
