"""The M-Pesa organisation statement CSV, as the business portal exports it: columns found by name
whatever their case and spacing, the portal's preamble skipped, amounts exact, times in Nairobi,
fee and reversal lines told apart, and a file that is not a statement refused with the line named."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from payments.money import Currency, Money
from payments.provider_statements import StatementFileError, parse_mpesa_csv

KES = Currency.KES
EAT = timezone(timedelta(hours=3))

PORTAL_EXPORT = """Organization Name:,Sauti Ltd
Time Period:,01-11-2026 - 30-11-2026

Receipt No.,Completion Time,Initiation Time,Details,Transaction Status,Paid In,Withdrawn,Balance,Balance Confirmed,\
Reason Type,Other Party Info,Linked Transaction ID,A/C No.
NLJ41HAY6Q,2026-11-29 11:45:50,2026-11-29 11:45:49,Business Payment to 254708374149,Completed,,"-1,500.00",\
"98,500.00",true,Business Payment to Customer,254708374149 - John Doe,,
QKC7XY2ZAB,29-11-2026 12:00:01,,Pay Bill Online,Completed,250.00,,"98,750.00",true,Pay Bill Online,\
2547******149 - JOHN DOE,,Sauti
QKC7XY2ZCH,2026-11-29 12:00:02,,B2C Charges,Completed,,-15.00,,true,Business Payment Charge,,NLJ41HAY6Q,
QKD0REVERS,2026-11-29T12:30:00+03:00,,Reversal of NLJ41HAY6Q,Completed,"1,500.00",,,true,Reversal,,NLJ41HAY6Q,
QKE0FAILED,2026-11-29 13:00:00,,Business Payment,Failed,,-99.00,,false,,,,
"""


def test_a_portal_export_is_read_line_by_line():
    lines = parse_mpesa_csv(PORTAL_EXPORT)

    assert [ln.transaction_id for ln in lines] == ["NLJ41HAY6Q", "QKC7XY2ZAB", "QKC7XY2ZCH", "QKD0REVERS"]
    payout, deposit, fee, reversal = lines
    assert payout.amount == -Money.of(1500, KES) and payout.party == "254708374149"
    assert payout.at == datetime(2026, 11, 29, 11, 45, 50, tzinfo=EAT)
    assert payout.at.astimezone(UTC).hour == 8  # Nairobi is UTC+3
    assert not payout.is_fee and not payout.is_reversal
    assert deposit.amount == Money.of(250, KES) and deposit.party == "2547******149"
    assert deposit.references == ("Sauti",) and deposit.at == datetime(2026, 11, 29, 12, 0, 1, tzinfo=EAT)
    assert fee.is_fee and fee.amount == -Money.of(15, KES)
    assert reversal.is_reversal and reversal.reverses == "NLJ41HAY6Q" and reversal.amount == Money.of(1500, KES)


def test_headers_are_found_whatever_their_case_and_spacing():
    text = "receipt no,COMPLETION TIME,paid_in,Withdrawn,reference\nABC123,2026-11-29 10:00,12.50,,pay_x\n"
    (line,) = parse_mpesa_csv(text)
    assert line.amount == Money(1250, KES) and line.references == ("pay_x",)


@pytest.mark.parametrize(("row", "problem"), [
    (",2026-11-29 10:00:00,5.00,", "Receipt No. is empty"),
    ("R1,2026-11-29 10:00:00,5.00,-5.00", "exactly one of Paid In and Withdrawn"),
    ("R1,2026-11-29 10:00:00,,", "exactly one of Paid In and Withdrawn"),
    ("R1,2026-11-29 10:00:00,5.001,", "more decimals"),
    ("R1,2026-11-29 10:00:00,five,", "not an amount"),
    ("R1,yesterday,5.00,", "is not a date and time"),
])
def test_a_bad_line_is_refused_with_its_number(row, problem):
    with pytest.raises(StatementFileError, match=problem) as err:
        parse_mpesa_csv(f"Receipt No.,Completion Time,Paid In,Withdrawn\n{row}\n", source="march.csv")
    assert "march.csv line 2" in str(err.value)


def test_a_file_without_the_statement_columns_is_refused():
    with pytest.raises(StatementFileError, match="no header"):
        parse_mpesa_csv("Receipt,When,Amount\nX,2026-01-01,5\n")
