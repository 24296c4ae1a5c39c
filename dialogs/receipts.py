"""SMS receipts in the party's language: a `payments.receipts.Receipt` written with the catalogs'
``sms.*`` texts, which are normalised to GSM-7 as screens are (one odd character would make the
SMS UCS-2 and cut it to 70 characters), in one SMS: a registered name too long for it is shortened.
The gateway hands `receipt_writer(...)` to `Payments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType

from dialogs.catalog import Catalogs
from dialogs.display import clock_text, day_text, money_text, phone_text, provider_name
from dialogs.gsm7 import SMS_LIMIT, length
from payments.receipts import IntentNotice, IntentNoticeWriter, Receipt, ReceiptWriter

#: Which ``sms.what.*`` text names a payment kind.
_WHAT: Mapping[str, str] = MappingProxyType({
    "p2p": "payment", "send_to_phone": "payment", "buy_goods_till": "payment", "buy_goods_pochi": "payment",
    "withdraw": "withdraw", "deposit": "deposit", "pay_bill": "bill", "refund": "refund", "cash_in": "cash_in",
    "cash_out": "cash_out",
})
#: Kinds whose payer's receipt says where the money went (M-Pesa's "sent to …"): the rest went to
#: the payer's own wallet (a deposit, a refund) or to an agent the payer stood in front of.
_TO_KINDS = frozenset({"p2p", "send_to_phone", "withdraw", "pay_bill", "buy_goods_till", "buy_goods_pochi"})


def receipt_writer(catalogs: Catalogs) -> ReceiptWriter:
    """Writes each receipt in its party's language (English for a language the catalogs lack)."""

    def write(receipt: Receipt) -> str:
        language = receipt.language
        values = {"ref": receipt.reference, "amount": money_text(receipt.amount), "fee": money_text(receipt.fee),
                  "url": receipt.approve_url or "",
                  "what": catalogs.text(language, f"sms.what.{_WHAT.get(receipt.kind, 'payment')}")}
        key, name_field = f"sms.{receipt.situation}", ""
        if receipt.retry_until is not None:
            # A deposit's counterpart number is its payer's own: the time as the payer's clock shows it.
            values["until"] = clock_text(receipt.retry_until, receipt.counterpart_phone or "")
        if receipt.situation in ("refunded", "deposit_reversed", "reversed"):
            # A refund: what it undid, and for its payer what came back (the fee with the amount).
            values |= {"original": receipt.original or "", "total": money_text(receipt.total_returned),
                       "provider": provider_name(receipt.provider or "")}
            if receipt.situation == "refunded":
                returned = receipt.returned_fee
                values["fee"] = money_text(returned) if returned is not None else ""
                if returned is None or not returned.minor:
                    key = "sms.refunded_no_fee"
        if receipt.situation in ("received", "reversed"):
            name_field = "sender"
        elif receipt.situation == "succeeded" and receipt.kind in _TO_KINDS and (
                receipt.paybill or receipt.till or receipt.counterpart or receipt.counterpart_phone):
            key = "sms.succeeded_to"
            if receipt.paybill:
                values["to"] = catalogs.text(language, "sms.to.paybill",
                                             {"paybill": receipt.paybill, "account": receipt.account or ""})
            elif receipt.till:
                values["to"] = catalogs.text(language, "sms.to.till", {"till": receipt.till})
            else:
                name_field = "to"
        balance = "" if receipt.balance is None else " " + catalogs.text(
            language, "sms.new_balance", {"balance": money_text(receipt.balance)})

        def text(name: str) -> str:
            if name_field:
                phone = phone_text(receipt.counterpart_phone) if receipt.counterpart_phone else ""
                values[name_field] = " ".join(part for part in (name, phone) if part)
            return catalogs.text(language, key, values) + balance

        # A long registered name is shortened, never the facts: the receipt stays one SMS.
        name = receipt.counterpart
        written = text(name)
        excess = length(written) - SMS_LIMIT
        if excess > 0 and name:
            written = text(name[:max(1, len(name) - excess - 1)].rstrip() + ".")
        return written

    return write


def intent_notice_writer(catalogs: Catalogs, service_code: str) -> IntentNoticeWriter:
    """Writes the SMS of a payment intent (`payments.intents`) in the customer's language, naming
    the USSD code to dial (``service_code``), in one SMS: a long description, then a long merchant
    name, is shortened, never the amount, the code or the time."""

    def write(notice: IntentNotice) -> str:
        until = clock_text(notice.expires_at, notice.payer_phone)
        if day_text(notice.expires_at, notice.payer_phone) != day_text(datetime.now(UTC), notice.payer_phone):
            # Not today, on the reader's calendar: the day too (an intent may wait a week).
            until = f"{day_text(notice.expires_at, notice.payer_phone)} {until}"

        def text(payee: str, description: str) -> str:
            # The merchant's number always: a name alone is whatever its owner registered.
            named = f"{payee} {phone_text(notice.payee_phone)}" if payee else phone_text(notice.payee_phone)
            return catalogs.text(notice.language, "sms.intent", {
                "payee": named, "amount": money_text(notice.amount), "what": f" ({description})" if description else "",
                "dial": service_code, "until": until, "code": notice.code})

        payee = notice.payee_name
        description = notice.description
        written = text(payee, description)
        for _ in range(3):
            excess = length(written) - SMS_LIMIT
            if excess <= 0:
                break
            if description:
                description = description[:max(0, len(description) - excess - 1)].rstrip()
                description = description + "." if description else ""
            elif payee:
                payee = payee[:max(0, len(payee) - excess - 1)].rstrip()
                payee = payee + "." if payee else ""
            written = text(payee, description)
        return written

    return write
