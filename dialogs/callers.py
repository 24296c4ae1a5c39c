"""Who is dialling: the registered user behind a phone number with the top of their address book and
how many payment intents await them (one read per new session, outside any transaction:
`db.engine.autocommit`), the language to greet a new number in, and the values every session of a
number starts with (its currency and mobile money, by country)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import autocommit
from dialogs.display import clock_text, phone_text
from dialogs.engine import Caller
from payments.contacts import SavedContact, read_caller
from payments.identities import UserStatus
from payments.money import Currency
from payments.phones import parse_msisdn, region_of

#: Each country's currency, its mobile money, and a number to show as an example.
_COUNTRY = {
    "KE": (Currency.KES, "M-Pesa", "0712345678"),
    "SN": (Currency.XOF, "Wave", "77 123 45 67"),
    "CI": (Currency.XOF, "Wave", "07 01 23 45 67"),
}


@functools.lru_cache(maxsize=65_536)
def _region(phone: str) -> str:
    # libphonenumber takes ~0.1 ms a parse; a caller dials again and again.
    return region_of(phone)


def currency_of(phone: str) -> Currency:
    return _COUNTRY.get(_region(phone), _COUNTRY["KE"])[0]


#: Saved contacts offered on the send screen, and how much of a name fits on its line.
SAVED_SHOWN = 3
_NAME_IN_LIST = 18


def saved_values(contacts: Sequence[SavedContact]) -> dict[str, Any]:
    """The send screen's list of saved contacts (``saved``, shown) and their numbers (``_saved``,
    what ``1``-``3`` pick); nothing when there are none."""
    if not contacts:
        return {}
    lines = []
    for n, contact in enumerate(contacts, 1):
        shown = contact.nickname or contact.name
        if len(shown) > _NAME_IN_LIST:
            shown = shown[:_NAME_IN_LIST - 2].rstrip() + ".."
        lines.append(f"{n}. {shown}")
    return {"saved": "\n".join(lines), "_saved": [c.phone for c in contacts]}


def intent_values(open_intents: int) -> dict[str, Any]:
    """How many payment intents ask the caller to pay (``_open_intents``: the main menu offers
    "Requests to pay" when there are some); nothing when there are none."""
    return {"_open_intents": open_intents} if open_intents > 0 else {}


@dataclass(frozen=True)
class CallerDirectory:
    engine: AsyncEngine | None
    default_language: str = "en"
    #: Language for new numbers by country (ISO code); others get ``default_language``.
    country_languages: Mapping[str, str] = field(default_factory=dict)
    service_code: str = ""
    pin_length: int = 4

    async def find(self, phone: str) -> Caller | None:
        assert self.engine is not None
        async with autocommit(self.engine).connect() as conn:
            read = await read_caller(conn, parse_msisdn(phone), limit=SAVED_SHOWN)
        if read is None:
            return None
        user = read.user
        if user.status is UserStatus.CLOSED:
            return Caller(user.id, user.language.value, frozenset(), closed=True)
        locked = user.locked_until if user.status is UserStatus.LOCKED else None
        return Caller(user.id, user.language.value, frozenset(r.value for r in user.roles), locked,
                      locked_until_text=clock_text(locked, phone) if locked else "",
                      values={**saved_values(read.contacts), **intent_values(read.open_intents)})

    def language_for(self, phone: str) -> str:
        try:
            return self.country_languages.get(_region(phone), self.default_language)
        except Exception:  # a number libphonenumber cannot place: greet in the default language
            return self.default_language

    def values_for(self, phone: str) -> dict[str, Any]:
        currency, provider, example = _COUNTRY.get(_region(phone), _COUNTRY["KE"])
        return {"currency": currency.value, "provider": provider, "me": phone_text(phone), "example": example,
                "pin_length": str(self.pin_length), "service_code": self.service_code, "_own_phone": phone}
