"""What a Daraja transaction status answer means for a payment to our paybill
(`payments.provider_results._status_verdict`): credited only when M-Pesa shows that receipt, for that
amount, paid to our paybill (`CreditPartyName` "<shortcode> - <name>"); money that went elsewhere is
refused; a party given by name alone cannot be told from ours."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.provider_results import _status_verdict
from payments.providers.daraja_callbacks import parse_result
from payments.states import PaymentStatus

OURS = "600638"


def deposit(amount: int = 250) -> Payment:
    now = datetime.now(UTC)
    return Payment(id=1, public_id="pay_x", payer_user_id=1, idempotency_key="c2b:R", request_hash="h",
                   kind="deposit", channel="api", amount=Money.of(amount, Currency.KES),
                   fee=Money.zero(Currency.KES), status=PaymentStatus.PROCESSING, provider="mpesa",
                   provider_ref="RKTQDM7W6S", recipient_phone=None, recipient_user_id=None, error_code=None,
                   error_message=None, debit_transfer_id=None, settle_transfer_id=None, created_at=now,
                   updated_at=now, finished_at=None, provider_refs={"source": "c2b", "receipt": "RKTQDM7W6S"})


def status_answer(credit_party: str | None, amount: int = 250, status: str = "Completed"):
    parameters = [{"Key": "ReceiptNo", "Value": "RKTQDM7W6S"}, {"Key": "Amount", "Value": amount},
                  {"Key": "TransactionStatus", "Value": status}]
    if credit_party is not None:
        parameters.append({"Key": "CreditPartyName", "Value": credit_party})
    return parse_result(json.dumps({"Result": {
        "ResultType": 0, "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
        "OriginatorConversationID": "1-2-3", "ConversationID": "AG_1", "TransactionID": "OTHER00001",
        "ResultParameters": {"ResultParameter": parameters}}}))


@pytest.mark.parametrize("credit_party", [f"{OURS} - Sauti Ltd", OURS, "Sauti Ltd", "", None])
def test_money_paid_to_our_paybill_or_to_a_party_named_only_is_credited(credit_party):
    verdict, review = _status_verdict(deposit(), status_answer(credit_party), shortcode=OURS)
    assert verdict is not None and verdict.succeeded and review is None


@pytest.mark.parametrize("credit_party", ["254712345678 - Jane Doe", "254712345678", "888880 - Other Co"])
def test_money_that_went_elsewhere_is_never_credited(credit_party):
    verdict, _ = _status_verdict(deposit(), status_answer(credit_party), shortcode=OURS)
    assert verdict is not None and not verdict.succeeded and verdict.error_code == "not_to_our_paybill"


def test_another_amount_or_a_reversal_is_not_credited_either():
    verdict, review = _status_verdict(deposit(250), status_answer(f"{OURS} - Sauti", amount=300), shortcode=OURS)
    assert verdict is None and "KES 300" in review  # a confirmation's amount M-Pesa disputes: a person looks
    verdict, _ = _status_verdict(deposit(), status_answer(f"{OURS} - Sauti", status="Reversed"), shortcode=OURS)
    assert verdict is not None and verdict.error_code == "reversed"
