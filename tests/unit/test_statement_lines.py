"""A mini statement's lines as a feature phone shows them (USSD and the spoken statement): the date
is the caller's own, not the UTC date the ledger records."""

from __future__ import annotations

from datetime import UTC, datetime

from dialogs.display import statement_line
from payments.accounts import StatementLine
from payments.money import Currency, Money


def _line(at: datetime, amount: Money) -> StatementLine:
    return StatementLine(1, 1, at, amount, Money.zero(amount.currency), "p2p", None, None, "+254712345678",
                         "Juma Mwangi", None)


def test_a_line_is_dated_in_the_caller_s_country():
    # 21:30 UTC on 30 November: 00:30 on 1 December in Nairobi (UTC+3), still 30 November in Dakar.
    late = datetime(2026, 11, 30, 21, 30, tzinfo=UTC)
    assert statement_line(_line(late, Money.of(-505, Currency.KES)), "+254712345678") == "01/12 -Ksh 505 Juma Mwangi"
    assert statement_line(_line(late, Money.of(2500, Currency.XOF)), "+221771234567") == "30/11 +2 500 FCFA Juma Mwangi"
