"""SMS receipts (`dialogs.receipts`, `payments.receipts`): every receipt, in every language, for every
kind of payment, is one GSM-7 SMS that names the reference and the amount; so is the SMS asking a
customer to pay a payment intent, with its code and the USSD code to dial."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from dialogs import validators
from dialogs.catalog import LANGUAGES, load_catalogs
from dialogs.display import money_text, phone_text
from dialogs.gsm7 import BASIC, EXTENSION, SMS_LIMIT, is_gsm7, length
from dialogs.receipts import intent_notice_writer, receipt_writer
from dialogs.steps import Invalid
from payments.commands import ACCOUNT_NUMBER_MAX, Channel, PayBill, PaymentKind
from payments.errors import InvalidRequest
from payments.money import Currency, Money
from payments.receipts import IntentNotice, Receipt, english_intent_notice, english_receipt
from payments.references import payment_reference
from payments.states import PaymentStatus

#: Kinds M-Pesa alone pays (Kenyan shillings).
MPESA_ONLY = {PaymentKind.PAY_BILL, PaymentKind.BUY_GOODS_TILL, PaymentKind.BUY_GOODS_POCHI}
#: Kinds whose payer's receipt names the person (or number) paid.
TO_PERSON = {PaymentKind.P2P, PaymentKind.SEND_TO_PHONE, PaymentKind.WITHDRAW, PaymentKind.BUY_GOODS_POCHI}
REF = payment_reference(987_654)
# The longest values a receipt shows: a 40-character registered name, the largest amounts the
# limits allow (with cents), a Wave checkout link as long as Wave's.
LONGEST_NAME = "Nyambura Wanjiku-Kamau Ochieng Akinyi Aa"
WAVE_URL = "https://pay.wave.com/c/cos-18qq4ncy02b0e8kpf6r2d1xkz7?a=1000000&c=XOF&m=Sauti"
WRITE = receipt_writer(load_catalogs())


def receipts(kind: PaymentKind, language: str) -> list[Receipt]:
    # Senegal's languages: francs; but M-Pesa's bills and merchants are paid in shillings whatever
    # language the payer reads.
    currency = Currency.XOF if language in ("fr", "wo") and kind not in MPESA_ONLY else Currency.KES
    amount = Money.of(1_000_000, currency) if currency is Currency.XOF else Money(15_000_050, currency)
    fee = Money.of(10_000, currency) if currency is Currency.XOF else Money(10_050, currency)
    balance = Money.of(99_999_999, currency) if currency is Currency.XOF else Money(999_999_999, currency)
    phone = "+221771234567" if currency is Currency.XOF else "+254712345678"
    merchant = {PaymentKind.PAY_BILL: {"paybill": "8888800", "account": "ACC1234567890"},
                PaymentKind.BUY_GOODS_TILL: {"till": "1234567"}}.get(kind, {})
    base = dict(kind=kind.value, reference=REF, amount=amount, fee=fee, language=language)
    paid = dict(counterpart=LONGEST_NAME, counterpart_phone=phone, **merchant, **base)
    return [Receipt("payer", status=PaymentStatus.SUCCEEDED, balance=balance, **paid),
            Receipt("payer", status=PaymentStatus.SUCCEEDED, **paid),  # an agent's: its float is no wallet
            Receipt("payer", status=PaymentStatus.FAILED, **paid),
            Receipt("payee", status=PaymentStatus.SUCCEEDED, counterpart=LONGEST_NAME, counterpart_phone=phone,
                    balance=balance, **base),
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
        if receipt.situation == "received" or (receipt.situation == "succeeded" and kind in TO_PERSON):
            # Who paid or was paid: the number always; the name as much of it as the SMS has room for.
            assert phone_text(receipt.counterpart_phone or "") in text and LONGEST_NAME[:12] in text, text
        if receipt.situation == "succeeded" and receipt.paybill:
            assert "8888800" in text and "ACC1234567890" in text, text
        if receipt.situation == "succeeded" and receipt.till:
            assert "1234567" in text, text
        if receipt.balance is not None:
            assert text.endswith(("99 999 999 FCFA.", "Ksh 9,999,999.99.")), text


#: Characters a payer might give as an account number: every printable ASCII one, GSM-7's own
#: (its extension table counts two septets each), and some outside it (an SMS holding one is UCS-2).
ACCOUNT_CHARACTERS = sorted(set(string.printable.strip()) | BASIC | EXTENSION | set("éíñçßœ€¢中😀\u00a0\u200b")
                            - {"\n", "\r"})


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_paybill_receipt_is_one_sms_whatever_account_number_is_let_in(language):
    """Only the names in a receipt are shortened, never the account number: so an account number
    must be one the receipt has room for. Whatever account number the payments API (`PayBill`) or a
    USSD screen (its validator) lets in, 13 of its widest character, makes a receipt of one GSM-7 SMS
    naming it whole, with the longest name, amount, fee and balance, in every language."""
    kes = Currency.KES
    let_in = []
    for char in ACCOUNT_CHARACTERS:
        account = char * ACCOUNT_NUMBER_MAX
        try:
            taken = PayBill("k", 1, Money(15_000_050, kes), Channel.API, paybill="8888800",
                            account_number=account).account_number
        except InvalidRequest:
            taken = None
        try:
            typed = validators.account_number(account, {})
        except Invalid:
            typed = None
        assert taken == typed, f"{account!r}: the API took {taken!r}, a USSD screen {typed!r}"
        if taken is None:
            continue
        let_in.append(char)
        for balance in (Money(999_999_999, kes), None):
            receipt = Receipt("payer", PaymentKind.PAY_BILL.value, PaymentStatus.SUCCEEDED, REF,
                              Money(15_000_050, kes), Money(10_050, kes), language, counterpart=LONGEST_NAME,
                              counterpart_phone="+254712345678", paybill="8888800", account=taken, balance=balance)
            text = WRITE(receipt)
            assert is_gsm7(text) and length(text) <= SMS_LIMIT, f"{language} {taken!r}: {length(text)} {text!r}"
            assert "8888800" in text and taken in text and "Ksh 150,000.50" in text, text
    # Letters and digits, as M-Pesa takes them; nothing else.
    assert "".join(let_in) == string.digits + string.ascii_uppercase + string.ascii_lowercase
    for refused in ("€" * 13, "[" * 13, "ACC-1", "A B", "ñ", "X" * 14, ""):
        with pytest.raises(InvalidRequest):
            PayBill("k", 1, Money(1000, kes), Channel.API, paybill="888880", account_number=refused)
        with pytest.raises(Invalid, match=r"err\.account"):
            validators.account_number(refused, {})


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


def test_the_payers_receipt_says_where_the_money_went():
    kes = Currency.KES
    sent = Receipt("payer", PaymentKind.P2P.value, PaymentStatus.SUCCEEDED, REF, Money.of(500, kes), Money.of(5, kes),
                   "en", counterpart="Juma Mwangi", counterpart_phone="+254712345678", balance=Money.of(1495, kes))
    assert WRITE(sent) == (f"{REF} Confirmed. Payment of Ksh 500 to Juma Mwangi 0712 345678 succeeded. Fee Ksh 5. "
                           "New balance Ksh 1,495.")
    bill = replace(sent, kind=PaymentKind.PAY_BILL.value, language="sw", paybill="888880", account="A17")
    assert WRITE(bill).startswith(f"{REF} Imethibitishwa. Malipo ya bili ya Ksh 500 kwa paybill 888880, akaunti A17.")
    # A number without a wallet has no name; a deposit went to the payer's own wallet: no "to".
    assert "to 0712 345678 succeeded" in WRITE(replace(sent, counterpart=""))
    nobody = replace(sent, counterpart="", counterpart_phone=None)  # never made so, but never "to ." either
    assert WRITE(nobody).startswith(f"{REF} Confirmed. Payment of Ksh 500 succeeded.")
    deposit = replace(sent, kind=PaymentKind.DEPOSIT.value)
    assert WRITE(deposit).startswith(f"{REF} Confirmed. Deposit of Ksh 500 succeeded.")


def test_a_name_too_long_for_one_sms_is_shortened_never_the_facts():
    kes = Currency.KES
    name = "Nyambura Wanjiku-Kamau Ochieng Akinyi Wairimu Chebet Njoroge"  # longer than any screen allows
    sent = Receipt("payer", PaymentKind.P2P.value, PaymentStatus.SUCCEEDED, REF, Money(15_000_050, kes),
                   Money(10_050, kes), "en", counterpart=name, counterpart_phone="+254712345678",
                   balance=Money(999_999_999, kes))
    text = WRITE(sent)
    assert length(text) <= SMS_LIMIT and "Nyambura Wanjiku-Kamau" in text and name not in text, text
    assert "0712 345678 succeeded. Fee Ksh 100.50. New balance Ksh 9,999,999.99." in text, text


def test_without_catalogs_receipts_are_in_english():
    done = Receipt("payer", PaymentKind.PAY_BILL.value, PaymentStatus.SUCCEEDED, REF, Money.of(1200, Currency.KES),
                   Money.of(12, Currency.KES), "fr")
    assert english_receipt(done) == f"{REF} Confirmed. Bill payment of KES 1,200 succeeded. Fee KES 12."


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("description", ["", "Order 17", "x" * 40])
def test_a_payment_intents_sms_is_one_gsm7_sms_with_the_amount_code_and_dial(language, description):
    currency = Currency.XOF if language in ("fr", "wo") else Currency.KES
    phone = "+221771234567" if currency is Currency.XOF else "+254712345678"
    amount = Money.of(1_000_000, currency) if currency is Currency.XOF else Money(15_000_050, currency)
    at = datetime(2026, 12, 1, 11, 5, tzinfo=UTC)
    write = intent_notice_writer(load_catalogs(), "*384*12345#")
    for name in ("Duka", LONGEST_NAME):
        text = write(IntentNotice(language, phone, name, "+254700000001", amount, description, "6HX7M2", at))
        assert is_gsm7(text) and length(text) <= SMS_LIMIT, text
        assert money_text(amount) in text and "6HX7M2" in text and "*384*12345#" in text
        # The customer's wall clock: Nairobi is three hours ahead of UTC, Dakar on it.
        assert ("14:05" if currency is Currency.KES else "11:05") in text
        assert name[:4] in text and phone_text("+254700000001") in text  # the merchant's number, always
    assert english_intent_notice(IntentNotice(language, phone, "Duka", "+254700000001", amount, description,
                                              "6HX7M2", at)).startswith("Duka +254700000001 asks you to pay")
