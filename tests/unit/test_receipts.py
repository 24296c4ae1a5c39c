"""SMS receipts (`dialogs.receipts`, `payments.receipts`): every receipt, in every language, for every
kind of payment, is one GSM-7 SMS that names the reference and the amount."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.gsm7 import is_gsm7, length
from dialogs.receipts import receipt_writer
from payments.commands import PaymentKind
from payments.money import Currency, Money
from payments.receipts import Receipt, english_receipt
from payments.references import payment_reference
from payments.states import PaymentStatus

#: One SMS segment in GSM-7.
SMS_LIMIT = 160
REF = payment_reference(987_654)
# The longest values a receipt shows: a 40-character registered name, the largest amounts the
# limits allow (with cents), a Wave checkout link as long as Wave's.
LONGEST_NAME = "Nyambura Wanjiku-Kamau Ochieng Akinyi Aa"
WAVE_URL = "https://pay.wave.com/c/cos-18qq4ncy02b0e8kpf6r2d1xkz7?a=1000000&c=XOF&m=Sauti"
WRITE = receipt_writer(load_catalogs())


def receipts(kind: PaymentKind, language: str) -> list[Receipt]:
    currency = Currency.XOF if language in ("fr", "wo") else Currency.KES  # Senegal's languages: francs
    amount = Money.of(1_000_000, currency) if currency is Currency.XOF else Money(15_000_050, currency)
    fee = Money.of(10_000, currency) if currency is Currency.XOF else Money(10_050, currency)
    balance = Money.of(99_999_999, currency) if currency is Currency.XOF else Money(999_999_999, currency)
    base = dict(kind=kind.value, reference=REF, amount=amount, fee=fee, language=language)
    return [Receipt("payer", status=PaymentStatus.SUCCEEDED, balance=balance, **base),
            Receipt("payer", status=PaymentStatus.SUCCEEDED, **base),  # an agent's: its float is no wallet
            Receipt("payer", status=PaymentStatus.FAILED, **base),
            Receipt("payee", status=PaymentStatus.SUCCEEDED, counterpart=LONGEST_NAME, balance=balance, **base),
            Receipt("payer", status=PaymentStatus.PROCESSING, approve_url=WAVE_URL, **base)]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", list(PaymentKind))
def test_every_receipt_is_one_gsm7_sms_naming_its_reference_and_amount(kind, language):
    for receipt in receipts(kind, language):
        text = WRITE(receipt)
        assert is_gsm7(text) and length(text) <= SMS_LIMIT, f"{receipt.situation} {kind} {language}: {text!r}"
        assert ("1 000 000 FCFA" in text) or ("Ksh 150,000.50" in text), text
        if receipt.situation == "approve":
            assert WAVE_URL in text
        else:
            assert text.startswith(REF), text
        if receipt.situation == "received":
            assert LONGEST_NAME in text
        if receipt.balance is not None:
            assert text.endswith(("99 999 999 FCFA.", "Ksh 9,999,999.99.")), text


def test_receipts_are_written_in_their_readers_language():
    payee = Receipt("payee", PaymentKind.P2P.value, PaymentStatus.SUCCEEDED, REF, Money.of(500, Currency.KES),
                    Money.of(5, Currency.KES), "sw", counterpart="Amina Otieno")
    assert WRITE(payee) == f"{REF} Imethibitishwa. Umepokea Ksh 500 kutoka kwa Amina Otieno."
    with_balance = replace(payee, balance=Money.of(1500, Currency.KES))
    assert WRITE(with_balance) == f"{WRITE(payee)} Salio jipya Ksh 1,500."
    failed = Receipt("payer", PaymentKind.WITHDRAW.value, PaymentStatus.FAILED, REF, Money.of(2500, Currency.XOF),
                     Money.of(25, Currency.XOF), "fr")
    assert WRITE(failed) == f"{REF} Échec : Retrait de 2 500 FCFA. Aucun montant n'a été débité."
    # A language the catalogs lack: English.
    unknown = Receipt("payee", "p2p", PaymentStatus.SUCCEEDED, REF, Money.of(500, Currency.KES),
                      Money.of(5, Currency.KES), "xx", counterpart="Amina")
    assert WRITE(unknown) == f"{REF} Confirmed. You received Ksh 500 from Amina."


def test_without_catalogs_receipts_are_in_english():
    done = Receipt("payer", PaymentKind.PAY_BILL.value, PaymentStatus.SUCCEEDED, REF, Money.of(1200, Currency.KES),
                   Money.of(12, Currency.KES), "fr")
    assert english_receipt(done) == f"{REF} Confirmed. Bill payment of KES 1,200 succeeded. Fee KES 12."
