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


HEADER = ("Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Reason Type,"
          "Other Party Info,Linked Transaction ID,A/C No.")


def kinds(*rows: str, header: str = HEADER) -> dict[str, tuple[bool, bool]]:
    """Each line's (is_reversal, is_fee), by receipt."""
    return {ln.transaction_id: (ln.is_reversal, ln.is_fee) for ln in parse_mpesa_csv("\n".join([header, *rows]))}


def test_words_a_payer_typed_never_make_a_payment_a_fee_or_a_reversal():
    """Details carries the account number and remarks as typed: "CHARGER SHOP" is a shop, "reversal
    of bet" a remark. The line's Reason Type says what it is."""
    found = kinds(
        "QKC1CHARGE,2026-11-29 12:00:00,Pay Bill from 254712345678 - JANE DOE Acc. CHARGER SHOP,Completed,500.00,,"
        "Pay Bill Online,254712345678 - JANE DOE,,CHARGER SHOP",
        "QKC2CHARGE,2026-11-29 12:00:01,Pay Bill Online,Completed,500.00,,Pay Bill Online,254712345678 - JANE,,"
        "PHONE CHARGE",
        "NLJ1REVERS,2026-11-29 12:00:02,Business Payment to 254708374149 - reversal of bet,Completed,,-300.00,"
        "Business Payment to Customer,254708374149 - John Doe,,",
        "NLJ2REVERS,2026-11-29 12:00:03,Reversal of bet,Completed,,-300.00,Salary Payment,254708374149 - J,,",
        "QKC3CHARGE,2026-11-29 12:00:04,Charge,Completed,,-20.00,Business Pay Bill,888880 - Duka,,charge",
        # M-Pesa's own words, in Reason Type: these are a fee and reversals.
        "QKC4FEE001,2026-11-29 12:00:05,B2C Charges,Completed,,-15.00,Business Payment Charge,,NLJ41HAY6Q,",
        "QKD1REVERS,2026-11-29 12:00:06,Pay Bill from 254712345678,Completed,,-500.00,Reversal,,QKC1CHARGE,",
        "QKD2REVERS,2026-11-29 12:00:07,Utility reversal,Completed,250.00,,Pay Utility Reversal,,NLJ41HAY6Q,",
    )
    assert found == {"QKC1CHARGE": (False, False), "QKC2CHARGE": (False, False), "NLJ1REVERS": (False, False),
                     "NLJ2REVERS": (False, False), "QKC3CHARGE": (False, False), "QKC4FEE001": (False, True),
                     "QKD1REVERS": (True, False), "QKD2REVERS": (True, False)}


def test_without_a_reason_type_only_m_pesas_whole_phrases_in_details_count():
    header = "Receipt No.,Completion Time,Details,Paid In,Withdrawn,Linked Transaction ID"
    found = kinds(
        "QKC1CHARGE,2026-11-29 12:00:00,Pay Bill from 254712345678 - JANE DOE Acc. CHARGER SHOP,500.00,,",
        "QKC2CHARGE,2026-11-29 12:00:01,Pay Bill from 254712345678 - JANE Acc. PHONE CHARGE,500.00,,",
        "QKC3CHARGE,2026-11-29 12:00:02,Charge,500.00,,",  # money in is never M-Pesa's charge
        "NLJ1REVERS,2026-11-29 12:00:03,Business Payment to 254708374149 - reversal of bet,,-300.00,",
        "NLJ2REVERS,2026-11-29 12:00:04,Reversal of bet,,-300.00,",
        "QKC4FEE001,2026-11-29 12:00:05,B2C Charges,,-15.00,NLJ41HAY6Q",
        "QKC5FEE001,2026-11-29 12:00:06,Business Payment Charge,,-15.00,NLJ41HAY6Q",
        "QKD1REVERS,2026-11-29 12:00:07,Reversal of NLJ41HAY6Q,1500.00,,NLJ41HAY6Q",
        "QKD2REVERS,2026-11-29 12:00:08,  REVERSAL ,1500.00,,NLJ41HAY6Q",
        header=header)
    assert found == {"QKC1CHARGE": (False, False), "QKC2CHARGE": (False, False), "QKC3CHARGE": (False, False),
                     "NLJ1REVERS": (False, False), "NLJ2REVERS": (False, False), "QKC4FEE001": (False, True),
                     "QKC5FEE001": (False, True), "QKD1REVERS": (True, False), "QKD2REVERS": (True, False)}
    # A Reason Type column left empty on a line: that line's Details decides, the same way.
    assert kinds("QKD3REVERS,2026-11-29 12:00:09,Reversal of NLJ41HAY6Q,Completed,1500.00,,,,NLJ41HAY6Q,",
                 "QKC6CHARGE,2026-11-29 12:00:10,Pay Bill Online CHARGER,Completed,500.00,,,,,") == {
        "QKD3REVERS": (True, False), "QKC6CHARGE": (False, False)}
