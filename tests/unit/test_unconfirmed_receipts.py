"""The receipt of an M-Pesa deposit ended as unconfirmed (its push's answer was lost, so it may have
been paid: `payments.provider_jobs.run_stk_push`): in every language one GSM-7 SMS naming the
reference and the amount that never says nothing was taken, and says a payment made will reach the
wallet."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.gsm7 import SMS_LIMIT, is_gsm7, length
from dialogs.receipts import receipt_writer
from payments.commands import PaymentKind
from payments.money import Currency, Money
from payments.receipts import Receipt, english_receipt
from payments.references import payment_reference
from payments.states import PaymentStatus

REF = payment_reference(987_654)
WRITE = receipt_writer(load_catalogs())
#: The largest deposit the limits allow, with cents: the longest amount a receipt shows.
UNCONFIRMED = Receipt("payer", PaymentKind.DEPOSIT.value, PaymentStatus.FAILED, REF, Money(15_000_050, Currency.KES),
                      Money.zero(Currency.KES), "en", counterpart_phone="+254712345678", unconfirmed=True)


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_unconfirmed_deposit_s_receipt_is_one_sms_that_never_says_nothing_was_taken(language):
    receipt = replace(UNCONFIRMED, language=language)
    failed = replace(receipt, unconfirmed=False)
    assert (receipt.situation, failed.situation) == ("unconfirmed", "failed")
    text = WRITE(receipt)
    assert is_gsm7(text) and length(text) <= SMS_LIMIT, text
    assert text.startswith(REF) and "Ksh 150,000.50" in text, text
    # Not the failed receipt's words ("No money was taken", "Hakuna pesa iliyokatwa", ...).
    assert WRITE(failed) not in text and text != WRITE(failed)


def test_in_english_it_says_a_payment_made_reaches_the_wallet():
    assert WRITE(UNCONFIRMED) == (f"{REF} Deposit of Ksh 150,000.50: we could not confirm it yet. If you paid, the "
                                  "money will reach your wallet.")
    written = english_receipt(UNCONFIRMED)
    assert "If you paid, the money will reach your wallet." in written and "taken" not in written
    # A succeeded deposit is never "unconfirmed", whatever the flag says.
    assert replace(UNCONFIRMED, status=PaymentStatus.SUCCEEDED).situation == "succeeded"
