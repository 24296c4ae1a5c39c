"""Reading Wave's answers into values: amounts as strings, sessions, payouts, statement lines."""

from __future__ import annotations

import pytest

from payments.money import Money
from payments.providers.errors import ProviderProtocolError
from payments.providers.wave import (
    PayoutStatus,
    parse_payout,
    parse_transaction,
    wave_amount,
)


def test_amounts_are_whole_franc_strings():
    assert wave_amount(Money.of("5000", "XOF")) == "5000"
    assert wave_amount(Money.of("1,000,000", "XOF")) == "1000000"
    with pytest.raises(ValueError):
        wave_amount(Money.of("10", "KES"))


def test_a_failed_payout_carries_its_error():
    payout = parse_payout(
        {
            "id": "pt-185sewgm8100t",
            "currency": "XOF",
            "receive_amount": "15000",
            "fee": "150",
            "mobile": "+221555110219",
            "name": "Mame Diarra Bousso",
            "client_reference": "f5e1c5d0",
            "status": "failed",
            "payout_error": {"error_code": "recipient-limit-exceeded", "error_message": "over the limit"},
            "timestamp": "2021-12-08T10:15:32Z",
        }
    )
    assert payout.status is PayoutStatus.FAILED
    assert payout.receive_amount == Money.of("15000", "XOF") and payout.fee == Money.of("150", "XOF")
    assert payout.error is not None and payout.error.code == "recipient-limit-exceeded"


@pytest.mark.parametrize(
    "broken",
    [
        {"currency": "XOF", "receive_amount": "1", "status": "succeeded"},
        {"id": "pt-1", "currency": "XOF", "receive_amount": "1.5", "status": "succeeded"},
        {"id": "pt-1", "currency": "EUR", "receive_amount": "1", "status": "succeeded"},
        {"id": "pt-1", "currency": "XOF", "receive_amount": "1", "status": "teleported"},
        {"id": "pt-1", "currency": "XOF", "receive_amount": "1", "status": "succeeded", "timestamp": "noon"},
        [],
    ],
)
def test_answers_that_break_the_contract_are_protocol_errors(broken):
    with pytest.raises(ProviderProtocolError):
        parse_payout(broken)


def test_statement_lines_are_signed():
    line = parse_transaction(
        {
            "transaction_id": "T_1",
            "amount": "-5000",
            "fee": "50",
            "balance": "94950",
            "currency": "XOF",
            "timestamp": "2024-01-01T00:00:00Z",
            "is_reversal": False,
        }
    )
    assert line.amount == Money.of("-5000", "XOF")
    assert line.balance == Money.of("94950", "XOF")
