"""The payer's calendar: where a Kenyan's (UTC+3) and a Senegalese's (UTC) day and month begin."""

from datetime import UTC, datetime, timedelta, timezone

from payments.local_time import day_and_month_start, local_zone

NAIROBI = timezone(timedelta(hours=3))


def test_a_kenyans_day_and_month_begin_at_midnight_in_nairobi():
    # 21:30 UTC on 28 February is 00:30 on 1 March in Nairobi: a new day and a new month.
    day, month = day_and_month_start("+254712345678", datetime(2026, 2, 28, 21, 30, tzinfo=UTC))
    assert day == month == datetime(2026, 3, 1, tzinfo=NAIROBI) == datetime(2026, 2, 28, 21, 0, tzinfo=UTC)


def test_a_senegalese_day_is_utcs():
    day, month = day_and_month_start("+221771234567", datetime(2026, 2, 28, 21, 30, tzinfo=UTC))
    assert (day, month) == (datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


def test_a_number_of_no_country_served_counts_in_utc():
    assert local_zone("+12025550123") is UTC and local_zone("not a number") is UTC
