"""The calendar a customer lives by: their country's clock, and where their day and month begin.

A daily limit counts what the payer sent *today*, and a fee plan the payments of *this month*, as
the payer's calendar has them, not the database server's (UTC): a Kenyan's day begins at 21:00 UTC
the day before, so a UTC day let them send a day's limit at 00:30 Nairobi time and again later that
morning. The zone is the payer's country, from their phone number; the screens' times and dates
(`dialogs.display`) and the agents' commission today (`payments.agents`) read it here too.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone

import phonenumbers

from payments.phones import region_of

#: UTC offsets of the countries served. None of them has daylight saving time, so a fixed offset
#: is exact (and needs no time-zone database on the server).
_UTC_OFFSET_HOURS = {"KE": 3, "SN": 0, "CI": 0}


@functools.lru_cache(maxsize=65_536)
def local_zone(msisdn: str) -> timezone:
    """The clock of the number's country; UTC for a number of a country not served (or no number)."""
    try:
        region = region_of(msisdn)
    except phonenumbers.NumberParseException:
        return UTC
    hours = _UTC_OFFSET_HOURS.get(region or "", 0)
    return timezone(timedelta(hours=hours)) if hours else UTC


def day_and_month_start(msisdn: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """When the number's local day and local month began (aware datetimes), as of ``now``."""
    local = (now or datetime.now(UTC)).astimezone(local_zone(msisdn))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return day, day.replace(day=1)
