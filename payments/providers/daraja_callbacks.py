"""Parse the payloads Daraja POSTs to us into typed values, and build the answers it expects.

Payloads come from the network: any of them may be truncated, mistyped or forged. Every parser
either returns a frozen dataclass or raises `MalformedCallback` saying what is wrong; none lets a
KeyError, TypeError or plain ValueError escape. Pass the raw request bytes when you have them: floats
are then read as `Decimal`, so no binary float ever touches an amount.

Numbers are read as Decimal, and ``1e1000000`` is a valid one: no code, stamp or phone is ever made
an int beyond `INT_MAX` (see `_integral`), as an int that big takes seconds to build and cannot be
written back as text.

Daraja signs nothing: a parsed callback is a claim, not proof. The orchestrator confirms successes
with a query and deduplicates on ``CheckoutRequestID`` / ``OriginatorConversationID`` / ``TransID``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

from payments.money import Currency, Money, MoneyError
from payments.plain_text import plain
from payments.providers.daraja_credentials import NAIROBI, parse_nairobi_timestamp

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_INTEGER = re.compile(r"-?[0-9]+")

#: No whole number Daraja sends reaches this: codes are a few digits, stamps 14, phones 12. Bigger is
#: not Daraja, and refusing it before any int() keeps ``1e1000000`` from costing seconds of CPU (the
#: event loop's) and from becoming an int that str() refuses (over 4,300 digits) on its way to a log
#: or to the recorded delivery.
INT_MAX = 10**18 - 1

_P = ParamSpec("_P")
_T = TypeVar("_T")


class MalformedCallback(ValueError):
    """A payload that does not follow the Daraja contract."""


def _refusing_bad_values(parse: Callable[_P, _T]) -> Callable[_P, _T]:
    """The parser, with any ValueError or ArithmeticError it lets out made a `MalformedCallback`.

    The routes answer a `MalformedCallback` with a 400 and anything else with a 500: every check
    below means to raise the former, and this makes sure one that a conversion raises itself (int(),
    str() of a huge int, Decimal arithmetic) is answered the same way, not as our fault.
    """

    @functools.wraps(parse)
    def parsing(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return parse(*args, **kwargs)
        except MalformedCallback:
            raise
        except (ValueError, ArithmeticError) as exc:
            raise MalformedCallback(f"unreadable value: {str(exc)[:80]}") from None

    return parsing


# -- decoding helpers ------------------------------------------------------------------------------


def _load(payload: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        return _plain(payload)
    if not isinstance(payload, bytes | str):
        raise MalformedCallback(f"expected JSON bytes or an object, got {type(payload).__name__}")
    try:
        decoded = json.loads(payload, parse_float=Decimal)
    except (ValueError, RecursionError, ArithmeticError) as exc:
        # UnicodeDecodeError is a ValueError; a number whose exponent no Decimal holds
        # (1e999999999999999999999) raises decimal.InvalidOperation, an ArithmeticError.
        raise MalformedCallback(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(decoded, Mapping):
        raise MalformedCallback("the payload is not a JSON object")
    # Daraja cannot be asked again: what it sent is recorded, less any control character.
    return _plain(decoded)


def _plain(decoded: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        return plain(decoded)
    except RecursionError:
        # plain() recurses once per level and below the route's own frames, so a body nested a
        # little less deeply than json.loads refuses (~900 levels) still runs out of stack here.
        raise MalformedCallback("the payload is nested too deeply") from None


def _object(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise MalformedCallback(f"{where}: {key} is missing or not an object")
    return value


#: The longest required value Daraja sends: its ids, receipts, shortcodes and numbers are 10 to 64
#: characters (a hashed MSISDN). Longer is not Daraja, and an id that long would not fit the keys
#: it becomes (a payment's idempotency key is at most 200 characters).
REQUIRED_TEXT_MAX = 100


def _required_text(parent: Mapping[str, Any], key: str, where: str) -> str:
    value = parent.get(key)
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
        raise MalformedCallback(f"{where}: {key} is missing or not a value")
    text = str(value).strip()
    if not text:
        raise MalformedCallback(f"{where}: {key} is empty")
    if len(text) > REQUIRED_TEXT_MAX:
        raise MalformedCallback(f"{where}: {key} is longer than {REQUIRED_TEXT_MAX} characters")
    return text


def _optional_text(parent: Mapping[str, Any], key: str) -> str | None:
    value = parent.get(key)
    if value is None or isinstance(value, bool | Mapping | list):
        return None
    text = str(value).strip()
    return text or None


def _integral(value: Any) -> int | None:
    """The int a JSON number stands for, or None when it is not a whole finite number within
    ±`INT_MAX`: callers treat a number too big to be Daraja's like one with decimals."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= INT_MAX else None
    if isinstance(value, Decimal):
        # The size from the exponent alone, before int(): int(Decimal("1e1000000")) takes seconds.
        # adjusted() is the power of ten of the first digit, so under 18 means under 10**18.
        if not value.is_finite() or value.adjusted() >= 18:
            return None
        whole = int(value)
    elif isinstance(value, float):
        if not abs(value) <= INT_MAX:  # NaN and the infinities too
            return None
        whole = int(value)
    else:
        return None
    return whole if whole == value else None


def _code(value: Any, where: str) -> int | str:
    """A ResultCode: an int when numeric (as the contract shows), otherwise the code as text."""
    if isinstance(value, bool) or value is None:
        raise MalformedCallback(f"{where}: ResultCode is missing")
    whole = _integral(value)
    if whole is not None:
        return whole
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            return text
        # Only digits, so a number: bounded like one, and before int() (which refuses 4,300 digits).
        whole = _integral(int(text)) if len(text) <= 19 else None
        if whole is not None:
            return whole
    raise MalformedCallback(f"{where}: ResultCode {_shown(value)} is not a code")


def _shown(value: Any) -> str:
    """A value for an error message, cut short: it comes from the sender and may be any size."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_MAX:
        return "(a number too big)"  # repr() of an int over 4,300 digits raises
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_code(value: Any, where: str) -> int:
    code = _code(value, where)
    if not isinstance(code, int):
        raise MalformedCallback(f"{where}: ResultCode {_shown(code)} is not a number")
    return code


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
        raise MalformedCallback(f"{what} {value!r} is not a number")
    try:
        # str() first: a float from an already-decoded payload keeps its short repr (1.0, not 0.999…).
        number = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation:
        raise MalformedCallback(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise MalformedCallback(f"{what} {value!r} is not a number")
    return number


def _kes(value: Any, what: str) -> Money:
    try:
        return Money.of(_decimal(value, what), Currency.KES)
    except (MoneyError, ArithmeticError) as exc:  # ArithmeticError: decimal overflow on absurd exponents
        raise MalformedCallback(f"{what}: {exc}") from None


def _stamp(value: Any, what: str) -> datetime:
    """A ``YYYYMMDDHHmmss`` stamp, given as a number (STK) or a string (C2B), in Nairobi time."""
    if isinstance(value, bool) or value is None:
        raise MalformedCallback(f"{what} is missing")
    whole = _integral(value)
    # A number that is not a bounded whole one is no stamp: never str() it (1e5000 as an int cannot be).
    if whole is None and not isinstance(value, str):
        raise MalformedCallback(f"{what} {_shown(value)} is not a YYYYMMDDHHmmss timestamp")
    text = str(whole) if whole is not None else value.strip()
    try:
        return parse_nairobi_timestamp(text)
    except ValueError:
        raise MalformedCallback(f"{what} {_shown(value)} is not a YYYYMMDDHHmmss timestamp") from None


def _completed_time(value: Any, what: str) -> datetime:
    """B2C writes ``19.12.2019 11:45:50``; B2B, status and reversal write ``YYYYMMDDHHmmss``."""
    text = str(value).strip()
    try:
        return datetime.strptime(text, "%d.%m.%Y %H:%M:%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return _stamp(text, what)


def _pairs(container: Any, list_key: str, name_key: str, where: str) -> Mapping[str, Any]:
    """``{"Item": [{"Name": .., "Value": ..}, ..]}`` as a read-only name → value mapping.

    Daraja sends a lone object instead of a one-element list at times, and an item may lack its
    value (``{"Name": "Balance"}``): that maps to None.
    """
    if container is None:
        return _EMPTY
    if not isinstance(container, Mapping):
        raise MalformedCallback(f"{where} is not an object")
    items = container.get(list_key)
    if items is None:
        return _EMPTY
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise MalformedCallback(f"{where}.{list_key} is not a list")
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get(name_key), str):
            raise MalformedCallback(f"{where}.{list_key} holds an item without a {name_key}")
        out[item[name_key]] = item.get("Value")
    return MappingProxyType(out)


# -- STK push callback -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StkCallback:
    """The payer's answer to an STK push (``Body.stkCallback``)."""

    merchant_request_id: str
    checkout_request_id: str
    result_code: int
    result_desc: str
    #: Present when the payment succeeded (result_code 0), None otherwise.
    amount: Money | None
    receipt: str | None
    transaction_date: datetime | None
    #: The payer as E.164 (``+2547…``), when Daraja sent it.
    phone: str | None
    #: Every CallbackMetadata item by name, as sent (a value-less item maps to None).
    metadata: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


@_refusing_bad_values
def parse_stk_callback(payload: bytes | str | Mapping[str, Any]) -> StkCallback:
    where = "STK callback"
    body = _object(_object(_load(payload), "Body", where), "stkCallback", where)
    result_code = _int_code(body.get("ResultCode"), where)
    metadata = _pairs(body.get("CallbackMetadata"), "Item", "Name", f"{where} CallbackMetadata")
    amount = receipt = transaction_date = phone = None
    if result_code == 0:
        # IMPORTANT: a success without amount or receipt cannot be credited: refuse it loudly.
        if "Amount" not in metadata or metadata["Amount"] is None:
            raise MalformedCallback(f"{where}: a successful payment without CallbackMetadata Amount")
        amount = _kes(metadata["Amount"], f"{where} Amount")
        receipt = _required_text(metadata, "MpesaReceiptNumber", where)
    elif metadata.get("Amount") is not None:
        amount = _kes(metadata["Amount"], f"{where} Amount")
    if metadata.get("TransactionDate") is not None:
        transaction_date = _stamp(metadata["TransactionDate"], f"{where} TransactionDate")
    if metadata.get("PhoneNumber") is not None:
        raw_phone = metadata["PhoneNumber"]
        if isinstance(raw_phone, str):
            digits = raw_phone.strip().removeprefix("+")
        else:  # a number: only a bounded whole one is a phone (see `_integral`), so str() never fails
            whole = _integral(raw_phone)
            digits = "" if whole is None else str(whole)
        if not _INTEGER.fullmatch(digits):
            raise MalformedCallback(f"{where}: PhoneNumber {_shown(raw_phone)} is not a number")
        phone = "+" + digits
    return StkCallback(
        merchant_request_id=_required_text(body, "MerchantRequestID", where),
        checkout_request_id=_required_text(body, "CheckoutRequestID", where),
        result_code=result_code,
        result_desc=str(body.get("ResultDesc", "")),
        amount=amount,
        receipt=receipt if receipt is not None else _optional_text(metadata, "MpesaReceiptNumber"),
        transaction_date=transaction_date,
        phone=phone,
        metadata=metadata,
    )


# -- Result envelope (B2C, B2B, transaction status, reversal, balance) -------------------------------


@dataclass(frozen=True, slots=True)
class DarajaResult:
    """A ``{"Result": {...}}`` POSTed to a ResultURL."""

    result_type: int
    #: 0 is success; an int when numeric, else Daraja's alphanumeric code as text.
    result_code: int | str
    result_desc: str
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str | None
    #: ResultParameters by key (absent on failures: then empty).
    parameters: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    reference_data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    #: Drawn from the parameters when present: the amount moved, the receipt, when it completed.
    amount: Money | None = None
    receipt: str | None = None
    completed_at: datetime | None = None

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0

    @property
    def is_final(self) -> bool:
        """ResultType 0 is the last message for this request; 1 says more follow."""
        return self.result_type == 0

    @property
    def transaction_status(self) -> str | None:
        """What a transaction status Result says of the transaction asked about (``Completed``,
        ``Reversed``, …), from its ``TransactionStatus`` parameter; None in other Results."""
        value = self.parameters.get("TransactionStatus")
        if value is None or isinstance(value, bool | Mapping | list):
            return None
        return str(value).strip() or None


_AMOUNT_KEYS = ("TransactionAmount", "Amount")
_RECEIPT_KEYS = ("TransactionReceipt", "ReceiptNo")
_COMPLETED_KEYS = ("TransactionCompletedDateTime", "TransCompletedTime", "FinalisedTime")


@_refusing_bad_values
def parse_result(payload: bytes | str | Mapping[str, Any]) -> DarajaResult:
    where = "Result"
    body = _object(_load(payload), "Result", where)
    result_type_raw = body.get("ResultType", 0)
    result_type = _int_code(result_type_raw, f"{where} ResultType")
    parameters = _pairs(body.get("ResultParameters"), "ResultParameter", "Key", f"{where} ResultParameters")
    reference = _pairs(body.get("ReferenceData"), "ReferenceItem", "Key", f"{where} ReferenceData")
    amount = next((_kes(parameters[k], f"{where} {k}") for k in _AMOUNT_KEYS if parameters.get(k) is not None), None)
    receipt = next((str(parameters[k]) for k in _RECEIPT_KEYS if parameters.get(k) not in (None, "")), None)
    completed_at = next(
        (_completed_time(parameters[k], f"{where} {k}") for k in _COMPLETED_KEYS if parameters.get(k)), None
    )
    transaction_id = _optional_text(body, "TransactionID")
    return DarajaResult(
        result_type=result_type,
        result_code=_code(body.get("ResultCode"), where),
        result_desc=str(body.get("ResultDesc", "")),
        originator_conversation_id=_required_text(body, "OriginatorConversationID", where),
        conversation_id=_required_text(body, "ConversationID", where),
        transaction_id=transaction_id,
        parameters=parameters,
        reference_data=reference,
        amount=amount,
        receipt=receipt or transaction_id,
        completed_at=completed_at,
    )


@dataclass(frozen=True, slots=True)
class QueueTimeout:
    """A request that waited too long in Daraja's queue (POSTed to QueueTimeOutURL).

    Its outcome is unknown: the request may still be processed. Query before retrying.
    """

    originator_conversation_id: str
    conversation_id: str | None
    result_code: int | str | None
    result_desc: str


@_refusing_bad_values
def parse_queue_timeout(payload: bytes | str | Mapping[str, Any]) -> QueueTimeout:
    # The contract does not fix this body: accept the Result envelope or the same fields flat.
    where = "queue timeout"
    decoded = _load(payload)
    body = decoded["Result"] if isinstance(decoded.get("Result"), Mapping) else decoded
    raw_code = body.get("ResultCode")
    return QueueTimeout(
        originator_conversation_id=_required_text(body, "OriginatorConversationID", where),
        conversation_id=_optional_text(body, "ConversationID"),
        result_code=None if raw_code is None else _code(raw_code, where),
        result_desc=str(body.get("ResultDesc", "")),
    )


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """One account of an ``AccountBalance`` result: ``Name|Currency|available|current|reserved|uncleared``."""

    name: str
    available: Money
    current: Money
    reserved: Money
    uncleared: Money


@_refusing_bad_values
def parse_account_balances(text: str) -> tuple[AccountBalance, ...]:
    """``Working Account|KES|700000.00|700000.00|0.00|0.00&Utility Account|KES|…`` → typed balances."""
    if not isinstance(text, str) or not text.strip():
        raise MalformedCallback("AccountBalance is empty")
    balances = []
    for chunk in text.split("&"):
        parts = chunk.split("|")
        if len(parts) != 6:
            raise MalformedCallback(f"AccountBalance entry {chunk!r} does not have 6 fields")
        name, currency, *amounts = parts
        if currency.strip() != "KES":
            raise MalformedCallback(f"AccountBalance entry {chunk!r} is not in KES")
        available, current, reserved, uncleared = (_kes(a, f"AccountBalance {name}") for a in amounts)
        balances.append(AccountBalance(name.strip(), available, current, reserved, uncleared))
    return tuple(balances)


# -- C2B validation and confirmation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class C2BPayment:
    """A customer paying our paybill/till from their phone menu (validation or confirmation)."""

    transaction_type: str
    trans_id: str
    trans_time: datetime
    amount: Money
    business_shortcode: str
    bill_ref_number: str
    invoice_number: str
    org_account_balance: Decimal | None
    third_party_trans_id: str
    #: As sent: Safaricom may mask or hash it, so it is not always a phone number.
    msisdn: str
    first_name: str
    middle_name: str
    last_name: str


@_refusing_bad_values
def parse_c2b_payment(payload: bytes | str | Mapping[str, Any]) -> C2BPayment:
    where = "C2B payload"
    body = _load(payload)
    raw_balance = body.get("OrgAccountBalance")
    balance = None if raw_balance in (None, "") else _decimal(raw_balance, f"{where} OrgAccountBalance")
    return C2BPayment(
        transaction_type=_optional_text(body, "TransactionType") or "",
        trans_id=_required_text(body, "TransID", where),
        trans_time=_stamp(body.get("TransTime"), f"{where} TransTime"),
        amount=_kes(body.get("TransAmount"), f"{where} TransAmount"),
        business_shortcode=_required_text(body, "BusinessShortCode", where),
        bill_ref_number=_optional_text(body, "BillRefNumber") or "",
        invoice_number=_optional_text(body, "InvoiceNumber") or "",
        org_account_balance=balance,
        third_party_trans_id=_optional_text(body, "ThirdPartyTransID") or "",
        msisdn=_required_text(body, "MSISDN", where),
        first_name=_optional_text(body, "FirstName") or "",
        middle_name=_optional_text(body, "MiddleName") or "",
        last_name=_optional_text(body, "LastName") or "",
    )


#: Rejection codes a validation answer may carry.
C2B_REJECTION_CODES = {
    "C2B00011": "Invalid MSISDN",
    "C2B00012": "Invalid Account Number",
    "C2B00013": "Invalid Amount",
    "C2B00014": "Invalid KYC Details",
    "C2B00015": "Invalid Shortcode",
    "C2B00016": "Other Error",
}


def c2b_validation_answer(*, accept: bool, rejection_code: str = "C2B00016") -> dict[str, str]:
    """The JSON body to answer a C2B validation with (within ~8 s)."""
    if accept:
        return {"ResultCode": "0", "ResultDesc": "Accepted"}
    if rejection_code not in C2B_REJECTION_CODES:
        raise ValueError(f"unknown C2B rejection code {rejection_code!r}")
    return {"ResultCode": rejection_code, "ResultDesc": "Rejected"}


def callback_acknowledgement() -> dict[str, Any]:
    """What to answer any other Daraja callback (STK, Result, confirmation) with."""
    return {"ResultCode": 0, "ResultDesc": "Success"}
