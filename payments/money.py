"""Money as an immutable value: an integer count of minor units and an ISO 4217 currency.

IMPORTANT: no float ever touches an amount. Amounts typed by people ("1,500", "1500.50") are parsed
from text with `Decimal` and must convert exactly into minor units, or they are rejected.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class Currency(enum.StrEnum):
    """The currencies Sauti moves. `exponent` is the number of minor-unit digits (ISO 4217)."""

    KES = "KES"  # Kenyan shilling: 100 cents, though M-Pesa itself only moves whole shillings
    XOF = "XOF"  # West African CFA franc: no minor unit

    @property
    def exponent(self) -> int:
        return _EXPONENTS[self]

    @property
    def minor_per_major(self) -> int:
        return 10**self.exponent

    @classmethod
    def parse(cls, code: str) -> Currency:
        try:
            return cls(code.strip().upper())
        except ValueError:
            known = ", ".join(c.value for c in cls)
            raise UnknownCurrency(f"unknown currency {code!r}; Sauti supports {known}") from None


_EXPONENTS = {Currency.KES: 2, Currency.XOF: 0}
#: An amount is less than 10**13 major units.
_MAX_MAJOR_DIGITS = 13


class MoneyError(ValueError):
    """An amount or currency that cannot be money."""


class UnknownCurrency(MoneyError):
    pass


def _shown(major: object) -> str:
    """``major`` as an error message quotes it: a JSON number may have thousands of digits."""
    text = str(major)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in minor units of one currency. Arithmetic refuses to mix currencies."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        # bool is an int subclass; True shillings are a bug, not an amount.
        if not isinstance(self.minor, int) or isinstance(self.minor, bool):
            raise MoneyError(f"amount must be an integer number of minor units, got {self.minor!r}")
        if not isinstance(self.currency, Currency):
            object.__setattr__(self, "currency", Currency.parse(str(self.currency)))

    @classmethod
    def of(cls, major: str | int | Decimal, currency: Currency | str) -> Money:
        """Money from a major-unit amount such as ``"1,500"`` or ``"99.50"``; exact or an error."""
        cur = currency if isinstance(currency, Currency) else Currency.parse(currency)
        if isinstance(major, bool):
            raise MoneyError(f"not an amount: {major!r}")
        try:
            value = Decimal(major.replace(",", "").replace("_", "").strip()) if isinstance(major, str) \
                else Decimal(major)
        except ArithmeticError:  # decimal.InvalidOperation: not a number, or an exponent no Decimal holds
            raise MoneyError(f"not an amount: {_shown(major)!r}") from None
        if not value.is_finite():
            raise MoneyError(f"not an amount: {_shown(major)!r}")
        # Read from the digits and the exponent, with no decimal arithmetic: that works to the
        # context's 28 digits, so it would round "1.00999999999999999999999999999" to 1.01 (money
        # made up) and overflow on "1e999999999".
        sign, digits, exponent = value.as_tuple()
        significant = "".join(map(str, digits)).rstrip("0")
        if not significant:  # zero, however written ("0.000", "0E+7")
            return cls(0, cur)
        exponent += len(digits) - len(significant)  # "1.500" is 15 tenths: trailing zeros are no decimals
        if exponent + len(significant) > _MAX_MAJOR_DIGITS:
            raise MoneyError(f"amount {_shown(major)!r} is out of range")
        if exponent < -cur.exponent:
            raise MoneyError(f"{_shown(major)} has more decimals than {cur.value} allows ({cur.exponent})")
        # At most 15 digits by now (13 before the point, the currency's after): an int of them is cheap.
        minor = int(significant) * 10 ** (exponent + cur.exponent)
        return cls(-minor if sign else minor, cur)

    @classmethod
    def zero(cls, currency: Currency) -> Money:
        return cls(0, currency)

    @property
    def major(self) -> Decimal:
        return Decimal(self.minor).scaleb(-self.currency.exponent)

    def _same(self, other: Money) -> None:
        if other.currency is not self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def format(self) -> str:
        """Human form used on screens and receipts: ``KES 1,500`` or ``KES 1,500.50``, ``XOF 5,000``."""
        major = self.major
        if major == major.to_integral_value():
            return f"{self.currency.value} {int(major):,}"
        return f"{self.currency.value} {major:,.{self.currency.exponent}f}"

    def __str__(self) -> str:
        return self.format()
