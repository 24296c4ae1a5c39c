"""How amounts, phone numbers and statement lines read on a feature phone's screen.

Amounts the way each currency's users write them: ``Ksh 1,500`` (M-Pesa's own messages) and
``5 000 FCFA`` (Wave and shops in Senegal and Côte d'Ivoire); phone numbers in their national form
(``0712 345678``, ``77 123 45 67``), which is how people read them back to each other.
"""

from __future__ import annotations

import functools
from datetime import datetime

import phonenumbers

from payments.accounts import StatementLine
from payments.local_time import local_zone
from payments.money import Currency, Money
from payments.payment_settings import PROVIDER_NAMES


def money_text(amount: Money) -> str:
    major = amount.major
    sign = "-" if major < 0 else ""
    major = abs(major)
    whole = major == major.to_integral_value()
    if amount.currency is Currency.XOF:
        return f"{sign}{int(major):,} FCFA".replace(",", " ")
    shown = f"{int(major):,}" if whole else f"{major:,.2f}"
    return f"{sign}Ksh {shown}"


@functools.lru_cache(maxsize=65_536)
def phone_text(msisdn: str) -> str:
    try:
        return phonenumbers.format_number(phonenumbers.parse(msisdn, None), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return msisdn


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def statement_line(line: StatementLine, msisdn: str) -> str:
    """``03/12 -Ksh 1,010 John Kamau``: the date as the caller ``msisdn`` lives it (a payment at
    00:30 in Nairobi is the next day's, not the UTC date's), signed amount, who was on the other side."""
    who = line.counterparty_name or (phone_text(line.counterparty_phone) if line.counterparty_phone else None)
    if who is None and line.counterparty_code:
        # Sauti's own accounts are named by kind:provider:currency; the provider is who people know.
        who = provider_name(line.counterparty_code.split(":")[1]) if ":" in line.counterparty_code else None
    sign = "+" if line.amount.minor > 0 else ""
    return f"{day_text(line.at, msisdn)} {sign}{money_text(line.amount)} {who or line.kind}".strip()


def clock_text(at: datetime, msisdn: str) -> str:
    """``at`` as the caller's wall clock shows it (``14:05``)."""
    return f"{_local(at, msisdn):%H:%M}"


def day_text(at: datetime, msisdn: str) -> str:
    """The caller's local date of ``at``, day and month as numbers (``24/12``), read alike in every language."""
    return f"{_local(at, msisdn):%d/%m}"


def _local(at: datetime, msisdn: str) -> datetime:
    return at.astimezone(local_zone(msisdn))
