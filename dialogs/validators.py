"""Input validators of the customer journeys: pure functions from what was typed to the value kept,
refusing with a note the caller can act on (`dialogs.steps.Invalid`). No I/O: limits, balances and
recipients are checked by the actions, against the database, once the input is well formed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dialogs.steps import Invalid, Validator
from payments.commands import bill_account_number
from payments.errors import InvalidPin, InvalidRequest
from payments.identities import PinService
from payments.phones import InvalidPhoneNumber, parse_msisdn, region_of

#: The most digits an amount may have (999,999,999 minor... major units): more is a stuck key.
_AMOUNT_DIGITS = 9
_NAME = re.compile(r"^[^\W\d_]+(?:[ '.-]+[^\W\d_]+)*\.?$")


def amount(typed: str, values: Mapping[str, Any]) -> str:
    """A whole amount in major units (``500``, ``1,500``): M-Pesa and Wave move no cents."""
    digits = typed.replace(",", "").replace(" ", "")
    if not (digits.isascii() and digits.isdigit()) or len(digits.lstrip("0")) > _AMOUNT_DIGITS or int(digits) <= 0:
        raise Invalid("err.amount")
    return str(int(digits))


def phone(typed: str, values: Mapping[str, Any]) -> str:
    """A mobile number in any local or international form, as E.164; local numbers are read in the
    caller's own country."""
    try:
        return parse_msisdn(typed, region_of(values["_own_phone"]) if values.get("_own_phone") else None)
    except InvalidPhoneNumber:
        raise Invalid("err.phone") from None


def recipient(typed: str, values: Mapping[str, Any]) -> str:
    """A saved contact picked by its line number (``_saved``: their numbers, as listed), or any
    mobile number. One digit cannot be a phone number, so the two never mix up."""
    saved = values.get("_saved") or []
    if typed.isascii() and typed.isdigit() and len(typed) == 1:
        if 1 <= int(typed) <= len(saved):
            return saved[int(typed) - 1]
        raise Invalid("note.invalid_choice")
    return phone(typed, values)


def name(typed: str, values: Mapping[str, Any]) -> str:
    cleaned = " ".join(typed.split())
    if not 2 <= len(cleaned) <= 40 or not _NAME.match(cleaned):
        raise Invalid("err.name")
    return cleaned.title() if cleaned.islower() or cleaned.isupper() else cleaned


def shortcode(typed: str, values: Mapping[str, Any]) -> str:
    """A paybill or till number: 5 to 7 digits."""
    if not (typed.isascii() and typed.isdigit() and 5 <= len(typed) <= 7):
        raise Invalid("err.shortcode")
    return typed


def account_number(typed: str, values: Mapping[str, Any]) -> str:
    """What the business calls the payer's account, as M-Pesa takes it: 1 to 13 letters and digits
    (`payments.commands.bill_account_number`, the rule every way of paying a bill checks)."""
    try:
        return bill_account_number(typed)
    except InvalidRequest:
        raise Invalid("err.account") from None


def customer_validators(pins: PinService | None, pin_length: int) -> dict[str, Validator]:
    """The validators by name, as journeys name them. ``pins`` judges new PINs (too easy to guess);
    without it (drawing the journeys) only the length is checked."""

    def pin(typed: str, values: Mapping[str, Any]) -> str:
        if not (typed.isascii() and typed.isdigit() and len(typed) == pin_length):
            raise Invalid("err.pin_format")
        return typed

    def new_pin(typed: str, values: Mapping[str, Any]) -> str:
        typed = pin(typed, values)
        if pins is not None:
            try:
                pins.validate_new_pin(typed)
            except InvalidPin:
                raise Invalid("err.pin_weak") from None
        return typed

    return {"amount": amount, "phone": phone, "recipient": recipient, "name": name, "shortcode": shortcode,
            "account": account_number,
            "pin": pin, "new_pin": new_pin}
