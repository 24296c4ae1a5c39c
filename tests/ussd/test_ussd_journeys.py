"""Every customer journey, in every language, as a transcript driven through ``POST /ussd`` exactly as
Africa's Talking sends it, on the whole gateway with the provider sandboxes (both session stores):
registration, send money (to a wallet and to M-Pesa / Wave), pay bill, till, pochi, withdraw, deposit
(STK push and Wave checkout), balance, mini statement, change PIN, language. Money is checked where
it lands, and the ledger is checked after each test."""

from __future__ import annotations

import aiohttp
import pytest
from sqlalchemy import text

from dialogs.display import phone_text
from dialogs.gsm7 import SMS_LIMIT, is_gsm7, length
from payments.commands import Channel, SendToWallet
from payments.money import Currency, Money
from payments.states import PaymentStatus
from tests.e2e.gateway_payments_world import wait_for
from tests.ussd.ussd_world import (
    CATALOGS,
    PIN,
    Continues,
    Dial,
    Ends,
    See,
    Shows,
    Speak,
    Type,
    customer,
    phone_number,
    run,
    sms_saying,
)

LANGUAGES = ("en", "sw", "fr", "wo")
KES, XOF = Currency.KES, Currency.XOF
# Main menu numbers: Kenya shows the M-Pesa-only services (paybill, goods); Senegal does not.
KE = {"send": "1", "bill": "2", "goods": "3", "withdraw": "4", "deposit": "5", "account": "6"}
SN = {"send": "1", "withdraw": "2", "deposit": "3", "account": "4"}

pytestmark = pytest.mark.parametrize("language", LANGUAGES)


async def test_a_new_number_registers_in_its_language(gw, phone_for, language):
    phone = phone_for(phone_number())
    choice = str(LANGUAGES.index(language) + 1)
    await run(phone, [Dial(), See("reg.language"), Continues(), Type(choice), Speak(language), See("reg.name"),
                      Type("Wanjiru Kamau"), See("reg.pin"), Type("1234"), See("err.pin_weak"), Type(PIN),
                      See("reg.pin_again"), Type("2581"), See("err.pin_mismatch"), See("reg.pin"), Type(PIN),
                      See("reg.pin_again"), Type(PIN), See("reg.welcome"), Shows("Wanjiru Kamau"), Ends()])
    # Registered, in the chosen language, with the PIN that was typed twice.
    again = phone_for(phone.msisdn)
    await run(again, [Dial(), See("home"), Type(KE["account"]), Type("1"), See("acct.pin"), Type(PIN),
                      See("acct.bal.show"), Shows("Ksh 0"), Ends()], language)


async def test_send_money_to_a_sauti_wallet(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=2000, name="Amina Otieno")
    payee_language = "sw" if language == "en" else "en"
    payee = await customer(gw, name="Juma Mwangi", language=payee_language)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), See("home"), Type(KE["send"]), See("send.to"), Type("0" + payee.phone[4:]),
                      See("send.amount"), Type("500"), See("send.confirm"), Shows("Juma Mwangi"),
                      Shows("Ksh 500"), Shows("Ksh 5"), Shows("Ksh 505"), Type(PIN), See("send.done"),
                      Shows("Ksh 1,495"), Ends()], language)
    reference = phone.reference()
    assert (await wait_for(gw, reference)).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payee) == Money.of(500, KES)
    assert await gw.wallet(payer) == Money.of(1495, KES)
    # Both SMS receipts carry the reference the screen showed, each in its reader's language.
    texts = CATALOGS
    # Each ends with the reader's balance right after it, as M-Pesa's do.
    assert await sms_saying(gw, payer.phone, reference) == " ".join((texts.text(language, "sms.succeeded_to", {
        "ref": reference, "what": texts.text(language, "sms.what.payment"), "amount": "Ksh 500", "fee": "Ksh 5",
        "to": f"Juma Mwangi {phone_text(payee.phone)}"}),
        texts.text(language, "sms.new_balance", {"balance": "Ksh 1,495"})))
    assert await sms_saying(gw, payee.phone, reference) == " ".join((texts.text(payee_language, "sms.received", {
        "ref": reference, "amount": "Ksh 500", "sender": f"Amina Otieno {phone_text(payer.phone)}"}),
        texts.text(payee_language, "sms.new_balance", {"balance": "Ksh 500"})))


async def test_send_money_to_a_saved_contact(gw, phone_for, language):
    """A first send saves the recipient; the next one offers them by number on the send screen."""
    payer = await customer(gw, language=language, funds=2000)
    payee = await customer(gw, name="Achieng Otieno")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["send"]), See("send.to"), Type(payee.phone), Type("200"), Type(PIN),
                      See("send.done"), Ends()], language)
    assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    await run(phone, [Dial(), Type(KE["send"]), See("send.pick_to"), Shows("1. Achieng Otieno"), Type("7"),
                      See("note.invalid_choice"), See("send.pick_to"), Type("1"), See("send.amount"), Type("300"),
                      See("send.confirm"), Shows("Achieng Otieno"), Type(PIN), See("send.done"), Ends()], language)
    assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payee) == Money.of(500, KES)


async def test_send_money_to_an_mpesa_number(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=1000)
    recipient = phone_number()
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["send"]), Type(recipient), Type("300"), See("send.confirm"),
                      Type(PIN), See("send.pending"), Shows("M-Pesa"), Shows("Ksh 697"), Ends()], language)
    done = await wait_for(gw, phone.reference())
    assert done.status is PaymentStatus.SUCCEEDED and done.recipient_phone == recipient
    # Sent once M-Pesa said it paid, with the balance right after the payment took the money.
    receipt = await sms_saying(gw, payer.phone, done.reference)
    assert receipt.endswith(CATALOGS.text(language, "sms.new_balance", {"balance": "Ksh 697"})), receipt


async def test_send_money_to_a_wave_number(gw, phone_for, language):
    payer = await customer(gw, country="SN", language=language, funds=10_000)
    recipient = phone_number("SN")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), See("home"), Type(SN["send"]), Type(recipient[4:]), Type("2500"), See("send.confirm"),
                      Shows("2 500 FCFA"), Type(PIN), See("send.pending"), Shows("Wave"), Ends()], language)
    assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payer, XOF) == Money.of(10_000 - 2500 - 25, XOF)


async def test_send_money_to_a_wallet_of_another_country_is_refused_before_the_pin(gw, phone_for, language):
    """A wallet holds its number's currency: Kenyan shillings sent to a Senegalese user landed in a
    KES wallet that their menus never show. The send journey says why before any PIN and asks for
    another number; nothing moves, no wallet is opened. XOF to a Kenyan wallet likewise."""
    payer = await customer(gw, language=language, funds=2000)
    awa = await customer(gw, country="SN", language=language, name="Awa Ndiaye", funds=5000)
    juma = await customer(gw, name="Juma Mwangi")
    await run(phone_for(payer.phone), [
        Dial(), Type(KE["send"]), See("send.to"), Type(awa.phone), See("send.amount"), Type("500"),
        See("err.recipient_currency"), See("send.to"), Continues(), Type(juma.phone), Type("500"),
        See("send.confirm"), Shows("Juma Mwangi"), Type(PIN), See("send.done"), Ends()], language)
    await run(phone_for(awa.phone), [
        Dial(), Type(SN["send"]), Type(payer.phone), Type("1000"), See("err.recipient_currency"), See("send.to"),
        Continues()], language)
    assert await gw.wallet(payer) == Money.of(1495, KES) and await gw.wallet(juma) == Money.of(500, KES)
    assert await gw.wallet(awa, XOF) == Money.of(5000, XOF)
    assert await gw.scalar("SELECT count(*) FROM payments WHERE recipient_user_id IN (:a, :p)",
                           a=awa.id, p=payer.id) == 0
    assert await gw.scalar("SELECT count(*) FROM accounts WHERE owner_user_id = :a", a=awa.id) == 1


async def test_pay_a_bill(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=5000)
    phone = phone_for(payer.phone)
    # An account number M-Pesa would not take (letters and digits only, 13 at most) is asked again.
    await run(phone, [Dial(), Type(KE["bill"]), See("bill.number"), Type("888880"), See("bill.account"),
                      Type("ACC-42"), See("err.account"), See("bill.account"), Type("€" * 13), See("err.account"),
                      Type("ACC42"), See("bill.amount"), Type("1200"), See("bill.confirm"), Shows("888880"),
                      Shows("ACC42"), Shows("Ksh 1,212"), Type(PIN), See("bill.pending"), Ends()], language)
    done = await wait_for(gw, phone.reference())
    assert done.status is PaymentStatus.SUCCEEDED and (done.paybill, done.account_number) == ("888880", "ACC42")
    receipt = await sms_saying(gw, payer.phone, done.reference)
    assert "ACC42" in receipt and is_gsm7(receipt) and length(receipt) <= SMS_LIMIT, receipt


async def test_buy_goods_at_a_till_and_a_pochi(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=5000)
    till = phone_for(payer.phone)
    await run(till, [Dial(), Type(KE["goods"]), See("goods.menu"), Type("1"), See("till.number"), Type("5123456"),
                     See("till.amount"), Type("250"), See("till.confirm"), Shows("5123456"), Type(PIN),
                     See("till.pending"), Ends()], language)
    merchant = phone_number()
    pochi = phone_for(payer.phone)
    await run(pochi, [Dial(), Type(KE["goods"]), Type("2"), See("pochi.number"), Type(merchant), See("pochi.amount"),
                      Type("100"), See("pochi.confirm"), Type(PIN), See("pochi.pending"), Ends()], language)
    for phone in (till, pochi):
        assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    assert (await gw.payment(pochi.reference())).recipient_phone == merchant


async def test_withdraw_to_my_mpesa(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=3000)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["withdraw"]), See("menu.withdraw"), Type("1"), See("wd.amount"), Type("1000"),
                      See("wd.confirm"), Shows("Ksh 1,010"), Type(PIN), See("wd.pending"), Shows("Ksh 1,990"), Ends()],
              language)
    done = await wait_for(gw, phone.reference())
    assert done.status is PaymentStatus.SUCCEEDED and done.recipient_phone == payer.phone


async def test_deposit_from_mpesa_by_stk_push(gw, phone_for, language):
    payer = await customer(gw, language=language)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["deposit"]), See("menu.deposit"), Type("1"), See("dep.amount"), Type("700"),
                      See("dep.confirm"), Type(PIN), See("dep.mpesa"), Shows("Ksh 700"), Ends()], language)
    assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payer) == Money.of(700, KES)


async def test_a_deposit_after_a_day_s_spending_is_confirmed_not_refused(gw, phone_for, language):
    """Deposits are limited per transaction only (the payment takes them so): the deposit journey's
    quote no longer counts the day's sends, which made it say "over your limit"."""
    payer = await customer(gw, language=language, funds=80_000)
    payee = await customer(gw, name="Juma Mwangi")
    sent = await gw.payments.handle(SendToWallet("spend-the-day", payer.id, Money.of(70_000, KES), Channel.USSD,
                                                 recipient_user_id=payee.id))
    assert sent.status is PaymentStatus.SUCCEEDED
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["deposit"]), See("menu.deposit"), Type("1"), See("dep.amount"), Type("700"),
                      See("dep.confirm"), Shows("Ksh 700"), Type(PIN), See("dep.mpesa"), Ends()], language)
    assert (await wait_for(gw, phone.reference())).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payer) == Money.of(80_000 - 70_700 + 700, KES)


async def test_deposit_from_wave_by_a_checkout_link_sent_by_sms(gw, phone_for, language):
    payer = await customer(gw, country="SN", language=language)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(SN["deposit"]), Type("1"), See("dep.amount"), Type("5000"), See("dep.confirm"),
                      Type(PIN), See("dep.wave"), Shows("5 000 FCFA"), Ends()], language)
    payment = await wait_for(gw, phone.reference(), PaymentStatus.PROCESSING)
    session_id = payment.provider_refs["checkout_session_id"]
    # The link goes out by SMS through the outbox, in the payer's language.
    link = payment.provider_refs["wave_launch_url"]
    assert await sms_saying(gw, payer.phone, link) == CATALOGS.text(
        language, "sms.approve", {"amount": "5 000 FCFA", "url": link})
    urls = gw.runtime.sandbox_urls
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{urls.wave}/_sandbox/checkout/sessions/{session_id}/approve", json={}) as resp:
            assert resp.status == 200
    assert (await wait_for(gw, payment.public_id)).status is PaymentStatus.SUCCEEDED
    assert await gw.wallet(payer, XOF) == Money.of(5000, XOF)


async def test_balance_and_mini_statement(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=4000)
    payee = await customer(gw, name="Achieng Odhiambo")
    first = phone_for(payer.phone)
    await run(first, [Dial(), Type(KE["send"]), Type(payee.phone), Type("150"), Type(PIN), See("send.done")],
              language)
    balance = phone_for(payer.phone)
    await run(balance, [Dial(), Type(KE["account"]), See("acct.menu"), Type("1"), See("acct.pin"), Type(PIN),
                        See("acct.bal.show"), Shows("Ksh 3,848"), Ends()], language)
    statement = phone_for(payer.phone)
    await run(statement, [Dial(), Type(KE["account"]), Type("2"), See("acct.pin"), Type(PIN), See("acct.stmt.show"),
                          Shows("-Ksh 152 Achieng Odhiambo"), Shows("+Ksh 4,000"), Continues(), Type("0"),
                          See("acct.menu"), Type("00"), See("home")], language)


async def test_the_mini_statement_dates_are_the_caller_s_local_dates(gw, phone_for, language):
    """A Kenyan's payment at 00:30 on 1 December in Nairobi (21:30 UTC on 30 November) is listed on
    01/12, the date the caller lived, not the UTC date."""
    payer = await customer(gw, language=language, funds=2000)
    payee = await customer(gw, name="Juma Mwangi")
    sent = await gw.payments.handle(SendToWallet("late-night", payer.id, Money.of(500, KES), Channel.USSD,
                                                 recipient_user_id=payee.id))
    # The send's postings moved to 21:30 UTC (this module's own database; the append-only triggers
    # lifted for that one statement).
    async with gw.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE postings DISABLE TRIGGER USER"))
        await conn.execute(text("UPDATE postings SET created_at = '2026-11-30 21:30:00+00' WHERE transfer_id = :t"),
                           {"t": sent.debit_transfer_id})
        await conn.execute(text("ALTER TABLE postings ENABLE TRIGGER USER"))
    await run(phone_for(payer.phone), [Dial(), Type(KE["account"]), Type("2"), Type(PIN), See("acct.stmt.show"),
                                       Shows("01/12 -Ksh 505 Juma Mwangi")], language)


async def test_change_my_pin(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=100)
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["account"]), Type("3"), See("acct.pin.old"), Type(PIN), See("acct.pin.new"),
                      Type("1111"), See("err.pin_weak"), Type("4739"), See("acct.pin.again"), Type("4738"),
                      See("err.pin_mismatch"), See("acct.pin.new"), Type("4739"), Type("4739"), See("acct.pin.done"),
                      Ends()], language)
    after = phone_for(payer.phone)
    await run(after, [Dial(), Type(KE["account"]), Type("1"), Type(PIN), See("err.wrong_pin"), Type("4739"),
                      See("acct.bal.show"), Shows("Ksh 100")], language)


async def test_choose_another_language(gw, phone_for, language):
    payer = await customer(gw, language="en")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["account"]), Type("4"), See("acct.lang"),
                      Type(str(LANGUAGES.index(language) + 1)), Speak(language), See("acct.lang.done"), Ends()])
    again = phone_for(payer.phone)
    await run(again, [Dial(), Type(KE["account"]), See("acct.menu")], language)


async def test_my_fee_plan(gw, phone_for, language):
    payer = await customer(gw, language=language, funds=2000)
    payee = await customer(gw, name="Juma Mwangi")
    phone = phone_for(payer.phone)
    await run(phone, [Dial(), Type(KE["send"]), Type(payee.phone), Type("100"), Type(PIN), See("send.done"), Ends()],
              language)
    # The default plan (basic): 1 % a payment, 50 payments a month, one of them used.
    await run(phone, [Dial(), Type(KE["account"]), Type("5"), See("acct.fees.show"), Shows("Basic"), Shows("1%"),
                      Shows("1"), Shows("50"), Ends()], language)
