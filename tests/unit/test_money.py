"""Money as a value: exact parsing from text, no floats, no mixing currencies."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments.money import Currency, Money, MoneyError, UnknownCurrency


def test_parse_major_amounts_exactly():
    assert Money.of("1,500", "KES") == Money(150_000, Currency.KES)
    assert Money.of("99.50", Currency.KES).minor == 9_950
    assert Money.of(5000, "xof") == Money(5000, Currency.XOF)
    assert Money.of("1500", "KES").format() == "KES 1,500"
    assert Money(150_050, Currency.KES).format() == "KES 1,500.50"


@pytest.mark.parametrize("bad", ["1.005", "abc", "", "NaN", "Infinity", "1e400000"])
def test_refuse_what_is_not_exact_money(bad):
    with pytest.raises(MoneyError):
        Money.of(bad, "KES")


@pytest.mark.parametrize("bad", [
    "1e999999999", "-1e999999999", Decimal("1e999999999"), "1e-999999999",  # abs() of these overflows
    "1e999999999999999999999",  # an exponent no Decimal holds
])
def test_exponents_beyond_any_amount_are_refused_as_money_errors(bad):
    with pytest.raises(MoneyError):
        Money.of(bad, "KES")


@pytest.mark.parametrize("bad", [
    "1.00999999999999999999999999999",  # 30 digits: at decimal's 28 it would round to 1.01
    Decimal("1.000000000000000000000000000001"),
    Decimal("9999999999999.9999999999999999"),
])
def test_more_decimals_than_the_currency_has_are_refused_beyond_28_digits_too(bad):
    with pytest.raises(MoneyError, match="more decimals"):
        Money.of(bad, "KES")


def test_trailing_zeros_are_no_decimals():
    assert Money.of("1.50", "KES").minor == Money.of("1.500", "KES").minor == 150
    assert Money.of(Decimal("1.5" + "0" * 40), "KES").minor == 150
    assert Money.of("5000.000", "XOF").minor == 5000
    assert Money.of(Decimal("1E+2"), "KES").minor == 10_000
    assert Money.of("0.000", "KES").minor == Money.of(Decimal("0E+7"), "XOF").minor == 0
    assert Money.of("-3.50", "KES").minor == -350


def test_an_error_quotes_a_long_amount_shortened():
    with pytest.raises(MoneyError) as refused:
        Money.of(Decimal("1." + "0" * 5000 + "1"), "KES")
    assert len(str(refused.value)) < 100


def test_xof_has_no_decimals_and_floats_are_refused():
    with pytest.raises(MoneyError):
        Money.of("10.5", "XOF")
    with pytest.raises(MoneyError):
        Money(1.5, Currency.KES)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, Currency.KES)  # type: ignore[arg-type]


def test_unknown_currency_is_named():
    with pytest.raises(UnknownCurrency, match="USD"):
        Money.of("1", "USD")


def test_no_mixing_currencies():
    with pytest.raises(MoneyError):
        Money(1, Currency.KES) + Money(1, Currency.XOF)


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(list(Currency)))
def test_major_round_trip(minor, currency):
    money = Money(minor, currency)
    assert Money.of(str(money.major), currency) == money
    assert isinstance(money.major, Decimal)
