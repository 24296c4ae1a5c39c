"""SMS receipts in the party's language: a `payments.receipts.Receipt` written with the catalogs'
``sms.*`` texts, which are normalised to GSM-7 as screens are (one odd character would make the
SMS UCS-2 and cut it to 70 characters). The gateway hands `receipt_writer(...)` to `Payments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dialogs.catalog import Catalogs
from dialogs.display import money_text
from payments.receipts import Receipt, ReceiptWriter

#: Which ``sms.what.*`` text names a payment kind.
_WHAT: Mapping[str, str] = MappingProxyType({
    "p2p": "payment", "send_to_phone": "payment", "buy_goods_till": "payment", "buy_goods_pochi": "payment",
    "withdraw": "withdraw", "deposit": "deposit", "pay_bill": "bill", "refund": "refund", "cash_in": "cash_in",
    "cash_out": "cash_out",
})


def receipt_writer(catalogs: Catalogs) -> ReceiptWriter:
    """Writes each receipt in its party's language (English for a language the catalogs lack)."""

    def write(receipt: Receipt) -> str:
        language = receipt.language
        what = catalogs.text(language, f"sms.what.{_WHAT.get(receipt.kind, 'payment')}")
        text = catalogs.text(language, f"sms.{receipt.situation}", {
            "ref": receipt.reference, "what": what, "amount": money_text(receipt.amount),
            "fee": money_text(receipt.fee), "sender": receipt.counterpart, "url": receipt.approve_url or ""})
        if receipt.balance is None:
            return text
        return f"{text} {catalogs.text(language, 'sms.new_balance', {'balance': money_text(receipt.balance)})}"

    return write
