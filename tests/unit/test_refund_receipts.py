"""A refund's SMS receipts (`payments.receipts`, `dialogs.receipts`): its payer reads what came back
(the amount and the fee that comes back with it, the reference of the payment undone, the new
balance), or for a deposit that the money went back to M-Pesa / Wave; the payee of a wallet payment,
whose wallet gave the amount back, reads that it was reversed. Each is one GSM-7 SMS, in every
language, for every kind of payment a refund undoes, with the largest amounts and the longest name."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.display import money_text, phone_text
from dialogs.gsm7 import SMS_LIMIT, is_gsm7, length
from dialogs.receipts import receipt_writer
from payments.commands import PaymentKind
from payments.money import Currency, Money
from payments.receipts import Receipt, english_receipt
from payments.references import payment_reference
from payments.states import PaymentStatus

REF, ORIGINAL = payment_reference(987_654), payment_reference(987_001)
LONGEST_NAME = "Nyambura Wanjiku-Kamau Ochieng Akinyi Aa"
WRITE = receipt_writer(load_catalogs())
#: What `payments.refunds` undoes (cash at an agent and refunds themselves are refused).
UNDONE = [k for k in PaymentKind if k not in (PaymentKind.REFUND, PaymentKind.CASH_IN, PaymentKind.CASH_OUT)]
SUCCEEDED = PaymentStatus.SUCCEEDED


def largest(currency: Currency) -> tuple[Money, Money, Money, str]:
    """The largest amount, fee and balance the limits allow (with cents), and a number."""
    if currency is Currency.XOF:
        return Money.of(1_000_000, currency), Money.of(10_000, currency), Money.of(99_999_999, currency), \
            "+221771234567"
    return Money(15_000_050, currency), Money(10_050, currency), Money(999_999_999, currency), "+254712345678"


def refund_receipt(party: str, undone: PaymentKind, language: str, currency: Currency, *, fee: bool = True,
                   balance: bool = True, status: PaymentStatus = SUCCEEDED) -> Receipt:
    amount, returned_fee, new_balance, phone = largest(currency)
    return Receipt(party, PaymentKind.REFUND.value, status, REF, amount, Money.zero(currency), language,
                   counterpart=LONGEST_NAME, counterpart_phone=phone, balance=new_balance if balance else None,
                   original=ORIGINAL, original_kind=undone.value,
                   provider="wave" if currency is Currency.XOF else "mpesa",
                   returned_fee=returned_fee if fee and undone is not PaymentKind.DEPOSIT else Money.zero(currency))


@pytest.mark.parametrize("currency", [Currency.KES, Currency.XOF])
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("undone", UNDONE)
def test_every_refund_receipt_is_one_gsm7_sms_saying_what_came_back(undone, language, currency):
    amount, returned_fee, new_balance, phone = largest(currency)
    for fee in (True, False):
        for balance in (True, False):
            receipt = refund_receipt("payer", undone, language, currency, fee=fee, balance=balance)
            text = WRITE(receipt)
            assert is_gsm7(text) and length(text) <= SMS_LIMIT, f"{receipt.situation} {language}: {text!r}"
            assert text.startswith(REF) and ORIGINAL in text, text
            if undone is PaymentKind.DEPOSIT:
                assert receipt.situation == "deposit_reversed"
                assert money_text(amount) in text and ("Wave" if currency is Currency.XOF else "M-Pesa") in text
            elif fee:
                # The true credit: amount + fee, and each of them.
                assert receipt.situation == "refunded"
                assert money_text(amount + returned_fee) in text, text
                assert money_text(amount) in text and money_text(returned_fee) in text, text
            else:
                assert money_text(amount) in text, text
            if balance:
                assert text.endswith(money_text(new_balance) + "."), text
    if undone is PaymentKind.DEPOSIT:
        return
    # The payee of a wallet payment: the amount taken back, from whom the payment had come.
    payee = refund_receipt("payee", undone, language, currency)
    text = WRITE(payee)
    assert payee.situation == "reversed"
    assert is_gsm7(text) and length(text) <= SMS_LIMIT, text
    assert text.startswith(REF) and ORIGINAL in text and money_text(amount) in text, text
    assert phone_text(phone) in text and LONGEST_NAME[:1] in text, text
    assert text.endswith(money_text(new_balance) + "."), text


def test_the_payer_reads_the_amount_and_the_fee_that_came_back_and_the_payee_that_it_was_taken_back():
    kes = Currency.KES
    payer = Receipt("payer", "refund", SUCCEEDED, REF, Money.of(500, kes), Money.zero(kes), "en",
                    counterpart="Baraka", counterpart_phone="+254712345678", balance=Money.of(1000, kes),
                    original=ORIGINAL, original_kind="p2p", returned_fee=Money.of(5, kes))
    assert WRITE(payer) == (f"{REF} Confirmed. Payment {ORIGINAL} reversed: Ksh 505 returned to your wallet "
                            "(Ksh 500 + fee Ksh 5). New balance Ksh 1,000.")
    # Without catalogs, the same words.
    assert english_receipt(payer) == (f"{REF} Confirmed. Payment {ORIGINAL} reversed: KES 505 returned to your "
                                      "wallet (KES 500 + fee KES 5). New balance KES 1,000.")
    free = replace(payer, returned_fee=Money.zero(kes), balance=Money.of(995, kes))
    assert WRITE(free) == (f"{REF} Confirmed. Payment {ORIGINAL} reversed: Ksh 500 returned to your wallet. "
                           "New balance Ksh 995.")
    payee = replace(payer, party="payee", counterpart="Amina Otieno", balance=Money.of(20, kes))
    assert WRITE(payee) == (f"{REF} Confirmed. Payment {ORIGINAL} from Amina Otieno 0712 345678 reversed: Ksh 500 "
                            "taken back from your wallet. New balance Ksh 20.")
    assert "KES 500 taken back" in english_receipt(payee)
    deposit = replace(payer, original_kind="deposit", provider="mpesa", returned_fee=Money.zero(kes),
                      balance=Money.zero(kes))
    assert WRITE(deposit) == (f"{REF} Confirmed. Deposit {ORIGINAL} of Ksh 500 reversed: the money went back to "
                              "your M-Pesa account. New balance Ksh 0.")
    assert WRITE(replace(payer, language="sw")) == (
        f"{REF} Imethibitishwa. Malipo {ORIGINAL} yamerejeshwa: umerudishiwa Ksh 505 (Ksh 500 + ada Ksh 5). "
        "Salio jipya Ksh 1,000.")
    # A refund that failed is the payer's failure receipt, as before.
    failed = replace(payer, status=PaymentStatus.FAILED, balance=None)
    assert WRITE(failed) == f"{REF} Failed. Refund of Ksh 500 did not go through. No money was taken."
