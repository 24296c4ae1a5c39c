"""What a Wave checkout session means for its deposit (`payments.wave_deposits`): paid credits,
expired fails, and a failed attempt on a session still open is no verdict at all (the payer may pay
with the same link); when a session Wave still calls open should have expired; and the payer's SMS
about a declined attempt, one GSM-7 SMS in every language, naming the time the link stops working."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.gsm7 import SMS_LIMIT, is_gsm7, length
from dialogs.receipts import receipt_writer
from payments.money import Currency, Money
from payments.providers.wave import parse_checkout_session
from payments.receipts import Receipt, english_receipt
from payments.references import payment_reference
from payments.states import PaymentStatus
from payments.wave_deposits import DEFAULT_SESSION_TTL, EXPIRY_GRACE, checkout_verdict, past_deadline

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def session(checkout: str, payment: str, *, error: dict | None = None, expires: datetime | None = None,
            created: datetime | None = CREATED):
    return parse_checkout_session({
        "id": "cos-1", "amount": "3000", "currency": "XOF", "checkout_status": checkout, "payment_status": payment,
        "client_reference": "pay_1", "transaction_id": "T_1" if payment == "succeeded" else None,
        "wave_launch_url": "https://pay.wave.com/c/cos-1", "last_payment_error": error,
        "when_created": created.isoformat() if created else None,
        "when_expires": expires.isoformat() if expires else None})


DECLINED = {"code": "insufficient-client-funds", "message": "The payer does not have enough funds."}


def test_a_failed_attempt_on_an_open_session_is_no_verdict():
    assert checkout_verdict(session("open", "cancelled", error=DECLINED), "webhook") is None
    assert checkout_verdict(session("open", "processing"), "webhook") is None


def test_a_paid_session_credits_and_an_expired_one_fails_with_its_last_error():
    paid = checkout_verdict(session("complete", "succeeded"), "webhook")
    assert paid is not None and paid.succeeded and paid.refs["transaction_id"] == "T_1"
    lapsed = checkout_verdict(session("expired", "processing"), "recovery")
    assert lapsed is not None and not lapsed.succeeded and lapsed.error_code == "expired"
    after_decline = checkout_verdict(session("expired", "cancelled", error=DECLINED), "recovery")
    assert after_decline is not None and not after_decline.succeeded
    assert after_decline.error_code == "insufficient-client-funds" and "expired" in (after_decline.error_message or "")


def test_an_open_session_is_past_its_deadline_only_after_its_expiry_and_a_grace():
    expires = CREATED + timedelta(minutes=30)
    open_one = session("open", "cancelled", expires=expires)
    assert not past_deadline(open_one, expires, CREATED)
    assert not past_deadline(open_one, expires + EXPIRY_GRACE - timedelta(seconds=1), CREATED)
    assert past_deadline(open_one, expires + EXPIRY_GRACE, CREATED)
    # A session that does not say: the contract's default lifetime, from its creation or ours.
    silent = session("open", "processing", created=None)
    assert not past_deadline(silent, CREATED + DEFAULT_SESSION_TTL, CREATED)
    assert past_deadline(silent, CREATED + DEFAULT_SESSION_TTL + EXPIRY_GRACE, CREATED)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_declined_sms_is_one_gsm7_sms_with_the_reference_amount_and_time(language):
    reference = payment_reference(987_654)
    receipt = Receipt("payer", "deposit", PaymentStatus.PROCESSING, reference, Money.of(1_000_000, Currency.XOF),
                      Money.zero(Currency.XOF), language, counterpart_phone="+221771234567",
                      approve_url="https://pay.wave.com/c/cos-18qq4ncy02b0e8kpf6r2d1xkz7?a=1000000&c=XOF&m=Sauti",
                      retry_until=datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    assert receipt.situation == "declined"
    for text in (receipt_writer(load_catalogs())(receipt), english_receipt(receipt)):
        assert is_gsm7(text) and length(text) <= SMS_LIMIT, text
        assert text.startswith(reference) and "23:59" in text, text
        assert "1 000 000 FCFA" in text or "1,000,000" in text, text
