"""Phone numbers as people type them, normalised to E.164 (``+254712345678``).

Kenyan and Senegalese numbers arrive in every local form: ``0712 345 678``, ``254712345678``,
``+221 77 123 45 67``, ``77 123 45 67``. Google's libphonenumber (the ``phonenumbers`` package) does
the parsing and validation; this module only decides which regions are allowed and which one to assume
for a number written without its country code.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from payments.money import Currency

#: Countries Sauti serves, and the order in which an ambiguous local number is tried.
SUPPORTED_REGIONS: tuple[str, ...] = ("KE", "SN", "CI")

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
_ALLOWED_CHARS = re.compile(r"^[\s\d+()\-./]*$")


class InvalidPhoneNumber(ValueError):
    """Text that is not a mobile number of a supported country."""


@functools.lru_cache(maxsize=8192)  # pure, and every USSD dial and payment parses the caller's number
def parse_msisdn(text: str, region: str | None = None) -> str:
    """Return the E.164 form of a mobile number, or raise `InvalidPhoneNumber` saying why.

    ``region`` is the country to assume when the number carries no country code (the user's own
    country); without it, supported regions are tried in order and the first that validates wins.
    Digits with a country code but no ``+`` (``254712345678``, ``221771234567``) are accepted, as
    M-Pesa writes them.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidPhoneNumber("no phone number given")
    raw = text.strip()
    if len(raw) > 32 or not _ALLOWED_CHARS.match(raw):
        raise InvalidPhoneNumber(f"{raw[:32]!r} is not a phone number")
    digits = re.sub(r"\D", "", raw)
    if not 7 <= len(digits) <= 15:
        raise InvalidPhoneNumber(f"{raw!r} has {len(digits)} digits; a phone number has 9 to 12")

    candidates: list[tuple[str, str | None]] = []
    if raw.startswith("+") or raw.startswith("00"):
        candidates.append(("+" + digits.removeprefix("00") if raw.startswith("00") else "+" + digits, None))
    else:
        # "2547..." / "22177..." typed without the plus: try it as international first.
        candidates.append(("+" + digits, None))
        regions = (region,) if region else SUPPORTED_REGIONS
        candidates.extend((digits, r) for r in regions)

    for number, assumed in candidates:
        try:
            parsed = phonenumbers.parse(number, assumed)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(parsed):
            continue
        region_code = phonenumbers.region_code_for_number(parsed)
        if region_code not in SUPPORTED_REGIONS:
            raise InvalidPhoneNumber(
                f"{raw!r} is a {region_code} number; Sauti serves Kenya, Senegal and Côte d'Ivoire")
        if phonenumbers.number_type(parsed) not in _MOBILE_TYPES:
            raise InvalidPhoneNumber(f"{raw!r} is not a mobile number")
        return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    raise InvalidPhoneNumber(f"{raw!r} is not a valid mobile number")


@functools.lru_cache(maxsize=65_536)
def region_of(msisdn: str) -> str:
    """The ISO country of an E.164 number (``KE``, ``SN``, ``CI``). Remembered: a payment asks it of
    its payer and recipient several times (their wallet's currency, their calendar, who may be paid),
    and libphonenumber takes some 14 µs to parse a number."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(msisdn, None))


#: The currency of a wallet in each country Sauti serves: M-Pesa's shilling, Wave's CFA franc.
_WALLET_CURRENCY = {"KE": Currency.KES, "SN": Currency.XOF, "CI": Currency.XOF}


def wallet_currency(msisdn: str) -> Currency | None:
    """The currency a number's wallet holds, by its country; None outside the countries served."""
    return _WALLET_CURRENCY.get(region_of(msisdn))


def provider_msisdn(msisdn: str) -> str:
    """E.164 without the plus, as M-Pesa wants it in ``PartyA``/``PhoneNumber`` (``254712345678``)."""
    return msisdn.removeprefix("+")
