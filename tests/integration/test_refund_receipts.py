"""A refund's SMS receipts, through the outbox and the Africa's Talking sandbox, for every kind of
payment a refund undoes: its payer reads the true credit (the amount and the fee that came back
with it), the reference of the payment undone and the new balance; the payee of a wallet payment,
whose wallet gave the amount back, is told too; a deposit's payer reads that the money went back to
M-Pesa / Wave. (Without catalogs, receipts are `payments.receipts.english_receipt`'s.)"""

from __future__ import annotations

import aiohttp
import pytest

from payments.commands import BuyGoods, Channel, Deposit, PayBill, Refund, SendToPhone, SendToWallet, Withdraw
from payments.identities import User
from payments.money import Currency, Money
from payments.payment_store import Payment
from payments.states import PaymentStatus
from tests.integration.payments_helpers import PaymentsWorld, module_world

KES, XOF = Currency.KES, Currency.XOF
S = PaymentStatus


world, ledger_stays_consistent = module_world(sandbox={"callback_delay_s": 0.05})


def texts_to(world: PaymentsWorld, user: User, about: Payment) -> list[str]:
    """The SMS sent to ``user`` naming ``about`` (by its short reference)."""
    return [m.message for m in world.sandboxes.africastalking.messages
            if m.to == user.phone and about.reference in m.message]


async def refunded(world: PaymentsWorld, paid: Payment, key: str) -> Payment:
    refund = await world.payments.handle(Refund(key, paid.public_id, "customer asked"))
    done = await world.settle(refund.public_id)
    assert done.status is S.SUCCEEDED
    await world.worker.drain()
    return done


async def test_a_wallet_payment_s_refund_tells_the_payer_the_whole_credit_and_the_payee_it_was_reversed(
        world: PaymentsWorld):
    payer, payee = await world.user(name="Amina"), await world.user(name="Baraka")
    await world.fund(payer, Money.of(1000, KES))
    await world.fund(payee, Money.of(20, KES))
    paid = await world.payments.handle(SendToWallet("p2p-sms", payer.id, Money.of(500, KES), Channel.USSD,
                                                    recipient_user_id=payee.id))
    assert paid.status is S.SUCCEEDED and paid.fee == Money.of(5, KES)
    await world.worker.drain()

    refund = await refunded(world, paid, "rf-p2p-sms")

    assert await world.wallet(payer) == Money.of(1000, KES)  # 505 came back
    assert texts_to(world, payer, refund) == [
        f"{refund.reference} Confirmed. Payment {paid.reference} reversed: KES 505 returned to your wallet "
        "(KES 500 + fee KES 5). New balance KES 1,000."]
    assert texts_to(world, payee, refund) == [
        f"{refund.reference} Confirmed. Payment {paid.reference} from Amina {payer.phone} reversed: KES 500 taken "
        "back from your wallet. New balance KES 20."]
    # Through the outbox, once per party.
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = 'sms.receipt' "
                              "AND payload->>'payment' = :p", p=refund.public_id) == 2


async def test_a_send_to_a_number_with_a_wallet_is_reversed_with_both_told(world: PaymentsWorld):
    payer, payee = await world.user(name="Amina"), await world.user()
    await world.fund(payer, Money.of(1000, KES))
    paid = await world.payments.handle(SendToPhone("phone-sms", payer.id, Money.of(200, KES), Channel.USSD,
                                                   recipient_phone=payee.phone))
    assert paid.status is S.SUCCEEDED and paid.provider is None
    refund = await refunded(world, paid, "rf-phone-sms")
    [to_payer], [to_payee] = texts_to(world, payer, refund), texts_to(world, payee, refund)
    assert "KES 202 returned to your wallet" in to_payer and to_payer.endswith("New balance KES 1,000."), to_payer
    assert "KES 200 taken back" in to_payee and to_payee.endswith("New balance KES 0."), to_payee


@pytest.mark.parametrize("pay", ["withdraw", "pay_bill", "buy_goods_till"])
async def test_an_m_pesa_payout_s_refund_tells_its_payer_amount_and_fee(world: PaymentsWorld, pay: str):
    payer = await world.user()
    await world.fund(payer, Money.of(1000, KES))
    amount = Money.of(300, KES)
    command = {"withdraw": Withdraw(f"{pay}-sms", payer.id, amount, Channel.USSD),
               "pay_bill": PayBill(f"{pay}-sms", payer.id, amount, Channel.USSD, paybill="888880",
                                   account_number="ACC1"),
               "buy_goods_till": BuyGoods(f"{pay}-sms", payer.id, amount, Channel.USSD, till="123456")}[pay]
    paid = await world.settle((await world.payments.handle(command)).public_id)
    assert paid.status is S.SUCCEEDED and paid.fee == Money.of(3, KES)

    refund = await refunded(world, paid, f"rf-{pay}-sms")

    assert texts_to(world, payer, refund) == [
        f"{refund.reference} Confirmed. Payment {paid.reference} reversed: KES 303 returned to your wallet "
        "(KES 300 + fee KES 3). New balance KES 1,000."]
    # The merchant / the M-Pesa number is outside Sauti: no wallet gave anything back.
    assert await world.scalar("SELECT count(*) FROM outbox_jobs WHERE kind = 'sms.receipt' "
                              "AND payload->>'payment' = :p AND payload->>'to' = 'payee'", p=refund.public_id) == 0


async def test_a_wave_payout_s_reversal_tells_its_payer_amount_and_fee(world: PaymentsWorld):
    payer = await world.user(XOF)
    await world.fund(payer, Money.of(10_000, XOF))
    paid = await world.settle((await world.payments.handle(SendToPhone(
        "wave-sms", payer.id, Money.of(5000, XOF), Channel.USSD, recipient_phone="+221775551234"))).public_id)
    assert paid.status is S.SUCCEEDED and paid.fee == Money.of(50, XOF)

    refund = await refunded(world, paid, "rf-wave-sms")

    assert texts_to(world, payer, refund) == [
        f"{refund.reference} Confirmed. Payment {paid.reference} reversed: XOF 5,050 returned to your wallet "
        "(XOF 5,000 + fee XOF 50). New balance XOF 10,000."]


async def test_a_deposit_s_reversal_tells_its_payer_where_the_money_went(world: PaymentsWorld):
    payer = await world.user()
    deposit = await world.settle((await world.payments.handle(
        Deposit("dep-sms", payer.id, Money.of(250, KES), Channel.USSD))).public_id)
    assert deposit.status is S.SUCCEEDED

    refund = await refunded(world, deposit, "rf-dep-sms")

    assert texts_to(world, payer, refund) == [
        f"{refund.reference} Confirmed. Deposit {deposit.reference} of KES 250 reversed: the money went back to "
        "your M-Pesa account. New balance KES 0."]


async def test_a_wave_deposit_s_refund_names_wave(world: PaymentsWorld):
    payer = await world.user(XOF)
    deposit = await world.payments.handle(Deposit("wave-dep-sms", payer.id, Money.of(4000, XOF), Channel.USSD))
    await world.worker.drain()
    session = (await world.payment(deposit.public_id)).provider_ref or ""
    async with aiohttp.ClientSession() as http, http.post(
            f"{world.sandboxes.urls.wave}/_sandbox/checkout/sessions/{session}/approve") as resp:
        assert resp.status == 200, await resp.text()
    deposit = await world.settle(deposit.public_id)

    refund = await refunded(world, deposit, "rf-wave-dep-sms")

    [text] = texts_to(world, payer, refund)
    assert f"Deposit {deposit.reference} of XOF 4,000 reversed" in text and "your Wave account" in text, text
