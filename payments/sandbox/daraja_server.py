"""A local M-Pesa Daraja: same paths, fields, codes and callbacks as ``shared/contracts/mpesa-daraja.md``.

What it checks, like Daraja: OAuth client credentials (``400.008.01``), bearer tokens that expire
(``404.001.03``, or ``401.002.01`` on B2C), the STK password and a Nairobi-time timestamp
(``500.001.1001`` "Wrong credentials", ``400.002.02`` "Invalid Timestamp"), phone numbers, whole
amounts and URLs (``400.002.02``), and the B2C/B2B/status/reversal/balance ``SecurityCredential``,
decrypted with the key of the certificate it serves (a wrong one gives ResultCode 2001).

What it does: answers synchronously, then after ``callback_delay_s`` settles the request in its
books and POSTs the result to CallBackURL / ResultURL (QueueTimeOutURL for ``queue_timeout``).
An STK query answers ``500.001.1001`` "being processed" until then. C2B simulate POSTs validation,
then (if accepted) confirmation, to the registered URLs; validation gets ``daraja_c2b_validation_timeout_s``
(8 s, as Daraja) to answer, after which the registered ``ResponseType`` decides. Failure modes: see `outcomes`.

Sandbox-only conventions where Daraja's own are unknown: a reused B2C OriginatorConversationID is
refused with ``400.002.02``; status/reversal of an unknown receipt (or, for status, an unknown
``OriginalConversationID``) gives ResultCode ``R000001``,
reversing twice ``R000002``, reversing a different amount ``R000003``; B2C below KES 10 gives 2.

Control API (besides ``/_sandbox/outcomes``): ``GET /_sandbox/certificate`` (PEM),
``GET /_sandbox/statement?from=&to=`` (ISO 8601 or YYYYMMDDHHmmss), ``POST /_sandbox/tokens/expire``,
``GET /_sandbox/tokens``, ``GET /_sandbox/callbacks`` (every POST made, with its HTTP status).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from payments.providers.daraja_credentials import NAIROBI, parse_nairobi_timestamp
from payments.sandbox.books import BookEntry, Books
from payments.sandbox.delivery import Dispatcher
from payments.sandbox.initiator_keys import InitiatorKeys
from payments.sandbox.outcomes import Outcome, OutcomeBook, Plan, outcome_routes
from payments.sandbox.settings import SandboxSettings

WORKING = "Working Account"
UTILITY = "Utility Account"

_SUPPORTED = {
    Outcome.INSUFFICIENT_FUNDS,
    Outcome.EXPIRED,
    Outcome.USER_CANCELLED,
    Outcome.UNREACHABLE,
    Outcome.WRONG_PIN,
    Outcome.HTTP_500,
    Outcome.RATE_LIMITED,
    Outcome.NO_CALLBACK,
    Outcome.DUPLICATE_CALLBACK,
    Outcome.EARLY_CALLBACK,
    Outcome.SLOW,
    Outcome.QUEUE_TIMEOUT,
    Outcome.BAD_REQUEST,
}

#: ResultCode and ResultDesc for each failing outcome (the same codes in STK callbacks and Results).
_FAILURES: dict[Outcome, tuple[int, str]] = {
    Outcome.INSUFFICIENT_FUNDS: (1, "The balance is insufficient for the transaction."),
    Outcome.EXPIRED: (1019, "Transaction has expired."),
    Outcome.USER_CANCELLED: (1032, "Request cancelled by user."),
    Outcome.UNREACHABLE: (1037, "DS timeout user cannot be reached."),
    Outcome.WRONG_PIN: (2001, "The initiator information is invalid."),
}
_INVALID_INITIATOR = (2001, "The initiator information is invalid.")
_SUCCESS_DESC = "The service request is processed successfully."
_ACCEPTED = "Accept the service request successfully."

_MSISDN = re.compile(r"254[17][0-9]{8}")
_SHORTCODE = re.compile(r"[0-9]{5,7}")
_B2C_MINIMUM_KES = 10


class _BadRequest(Exception):
    """A request field Daraja would refuse with 400.002.02."""


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"requestId": _request_id(), "errorCode": code, "errorMessage": message}, status=status)


def _request_id() -> str:
    return f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(9_000_000) + 1_000_000}-1"


def _receipt() -> str:
    # M-Pesa receipts: ten upper-case letters and digits, starting with a letter.
    alphabet = string.ascii_uppercase + string.digits
    return secrets.choice(string.ascii_uppercase) + "".join(secrets.choice(alphabet) for _ in range(9))


def _conversation_id(now: datetime) -> str:
    return f"AG_{now.astimezone(NAIROBI):%Y%m%d}_{secrets.token_hex(10)}"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def _kes_text(minor: int) -> str:
    return f"{Decimal(minor).scaleb(-2):.2f}"


def _require(body: dict[str, Any], key: str, *aliases: str) -> str:
    for name in (key, *aliases):
        value = body.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    raise _BadRequest(f"Bad Request - Invalid {key}")


def _amount(body: dict[str, Any]) -> int:
    """Whole shillings > 0, given as a number or a string; decimals are refused."""
    raw = body.get("Amount")
    if isinstance(raw, bool):
        raise _BadRequest("Bad Request - Invalid Amount")
    try:
        value = Decimal(str(raw))
    except ArithmeticError:
        raise _BadRequest("Bad Request - Invalid Amount") from None
    if not value.is_finite() or value != value.to_integral_value() or value <= 0:
        raise _BadRequest("Bad Request - Invalid Amount")
    return int(value)


def _msisdn(body: dict[str, Any], key: str) -> str:
    value = _require(body, key)
    if not _MSISDN.fullmatch(value):
        raise _BadRequest(f"Bad Request - Invalid {key}")
    return value


def _url(body: dict[str, Any], key: str, *aliases: str) -> str:
    value = _require(body, key, *aliases)
    if not value.startswith(("https://", "http://")):
        raise _BadRequest(f"Bad Request - Invalid {key}")
    return value


@dataclass(slots=True)
class _StkPush:
    merchant_request_id: str
    checkout_request_id: str
    phone: str
    amount: int
    account_reference: str
    callback_url: str
    result_code: int | None = None
    result_desc: str = ""
    receipt: str | None = None
    completed_at: datetime | None = None


class DarajaSandbox:
    """State and handlers of one sandbox Daraja. Reach it as ``app[DARAJA]``."""

    def __init__(self, settings: SandboxSettings, keys: InitiatorKeys | None = None) -> None:
        self.settings = settings
        self.keys = keys or InitiatorKeys.generate()
        self.outcomes = OutcomeBook(_SUPPORTED)
        self.books = Books(
            "KES", {WORKING: 0, UTILITY: settings.daraja_utility_balance_kes * 100, "Charges Paid Account": 0}
        )
        self.dispatcher = Dispatcher(settings.callback_timeout_s)
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.tokens_issued = 0
        self.tokens_refused = 0
        self._stk: dict[str, _StkPush] = {}
        self._b2c_originators: set[str] = set()
        self._c2b_urls: dict[str, tuple[str, str, str]] = {}  # shortcode -> validation, confirmation, type

    # -- app -----------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/oauth/v1/generate", self.oauth),
            web.post("/mpesa/stkpush/v1/processrequest", self.stk_push),
            web.post("/mpesa/stkpushquery/v1/query", self.stk_query),
            web.post("/mpesa/b2c/v1/paymentrequest", self.b2c),
            web.post("/mpesa/b2c/v3/paymentrequest", self.b2c),
            web.post("/mpesa/b2b/v1/paymentrequest", self.b2b),
            web.post("/mpesa/transactionstatus/v1/query", self.transaction_status),
            web.post("/mpesa/reversal/v1/request", self.reversal),
            web.post("/mpesa/accountbalance/v1/query", self.account_balance),
            web.post("/mpesa/c2b/v1/registerurl", self.c2b_register),
            web.post("/mpesa/c2b/v2/registerurl", self.c2b_register),
            web.post("/mpesa/c2b/v1/simulate", self.c2b_simulate),
            web.get("/_sandbox/certificate", self.certificate),
            web.get("/_sandbox/statement", self.statement),
            web.post("/_sandbox/tokens/expire", self.expire_tokens),
            web.get("/_sandbox/tokens", self.token_counts),
            web.get("/_sandbox/callbacks", self.callbacks),
            *outcome_routes(self.outcomes),
        ]

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        await self.dispatcher.open()
        yield
        await self.dispatcher.close()

    # -- OAuth ---------------------------------------------------------------------------------

    async def oauth(self, request: web.Request) -> web.Response:
        if request.query.get("grant_type") != "client_credentials":
            return _error(400, "400.008.02", "Invalid grant type passed")
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key = secret = ""
        good_key = secrets.compare_digest(key.encode(), self.settings.daraja_consumer_key.encode())
        good_secret = secrets.compare_digest(secret.encode(), self.settings.daraja_consumer_secret.encode())
        if scheme != "Basic" or not (good_key and good_secret):
            return _error(400, "400.008.01", "Invalid Authentication passed")
        token = secrets.token_urlsafe(21)
        ttl = self.settings.daraja_token_ttl_s
        self._tokens[token] = time.monotonic() + ttl + 1  # announced 3599, lives 3600
        self.tokens_issued += 1
        return web.json_response({"access_token": token, "expires_in": str(int(ttl))})

    def _token_refusal(self, request: web.Request, *, b2c: bool) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme == "Bearer" else None
        if expiry is not None and time.monotonic() < expiry:
            return None
        self.tokens_refused += 1
        if b2c:
            return _error(401, "401.002.01", "Error Occurred - Invalid Access Token")
        return _error(404, "404.001.03", "Invalid Access Token")

    # -- the common gate -----------------------------------------------------------------------

    async def _admit(
        self,
        request: web.Request,
        party_of: Callable[[dict[str, Any]], str | None],
        *,
        b2c: bool = False,
    ) -> tuple[dict[str, Any], Plan] | web.Response:
        """Token, JSON, field checks, then the plan; or the error response Daraja would give."""
        refusal = self._token_refusal(request, b2c=b2c)
        if refusal is not None:
            return refusal
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        if not isinstance(body, dict):
            return _error(400, "400.002.02", "Bad Request - Invalid JSON")
        try:
            party = party_of(body)
        except _BadRequest as exc:
            return _error(400, "400.002.02", str(exc))
        plan = self.outcomes.take(party)
        if plan.outcome is Outcome.BAD_REQUEST:
            return _error(400, "400.002.02", "Bad Request - Invalid Request")
        if plan.outcome is Outcome.HTTP_500:
            return _error(500, "500.003.1001", "Internal Server Error")
        if plan.outcome is Outcome.RATE_LIMITED:
            return _error(429, "500.003.02", "Error Occurred: Spike Arrest Violation")
        if plan.outcome is Outcome.SLOW:
            await asyncio.sleep(self.settings.slow_answer_s)
        return body, plan

    async def _schedule(self, plan: Plan, settle: Callable[[], tuple[str, str, dict[str, Any]] | None]) -> None:
        """Settle the request and POST its result, now or later as the plan says.

        `settle` moves the money and returns (kind, url, payload) for the callback, or None.
        """

        async def deliver() -> None:
            delivery = settle()
            if delivery is None or plan.outcome is Outcome.NO_CALLBACK:
                return
            kind, url, payload = delivery
            body = json.dumps(payload).encode()
            reference = _reference_of(payload)
            for _ in range(2 if plan.outcome is Outcome.DUPLICATE_CALLBACK else 1):
                await self.dispatcher.post(url, body, kind=kind, reference=reference)

        if plan.outcome is Outcome.EARLY_CALLBACK:
            await deliver()
            return

        async def later() -> None:
            delay = plan.delay_s if plan.delay_s is not None else self.settings.callback_delay_s
            await asyncio.sleep(delay)
            await deliver()

        self.dispatcher.spawn(later())

    def _credential_ok(self, body: dict[str, Any]) -> bool:
        initiator = str(body.get("InitiatorName") or body.get("Initiator") or "")
        password = self.keys.decrypt(str(body.get("SecurityCredential") or ""))
        return (
            initiator == self.settings.daraja_initiator_name
            and password is not None
            and (secrets.compare_digest(password.encode(), self.settings.daraja_initiator_password.encode()))
        )

    # -- STK push and query --------------------------------------------------------------------

    def _stk_password_error(self, body: dict[str, Any]) -> web.Response | None:
        shortcode = str(body.get("BusinessShortCode", ""))
        timestamp = str(body.get("Timestamp", ""))
        try:
            stamped = parse_nairobi_timestamp(timestamp)
        except ValueError:
            return _error(400, "400.002.02", "Bad Request - Invalid Timestamp")
        if abs((datetime.now(UTC) - stamped).total_seconds()) > self.settings.daraja_timestamp_tolerance_s:
            return _error(400, "400.002.02", "Bad Request - Invalid Timestamp")
        if shortcode != self.settings.daraja_shortcode:
            return _error(500, "500.001.1001", "Merchant does not exist")
        # An independent computation of the password: a client bug cannot hide behind shared code.
        expected = base64.b64encode(f"{shortcode}{self.settings.daraja_passkey}{timestamp}".encode()).decode()
        if not secrets.compare_digest(str(body.get("Password", "")).encode(), expected.encode()):
            return _error(500, "500.001.1001", "Wrong credentials")
        return None

    async def stk_push(self, request: web.Request) -> web.Response:
        def validate(body: dict[str, Any]) -> str:
            if body.get("TransactionType") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
                raise _BadRequest("Bad Request - Invalid TransactionType")
            _amount(body)
            _url(body, "CallBackURL")
            _msisdn(body, "PartyA")
            _require(body, "PartyB")
            if len(str(body.get("AccountReference", ""))) > 12:
                raise _BadRequest("Bad Request - Invalid AccountReference")
            if len(str(body.get("TransactionDesc", ""))) > 13:
                raise _BadRequest("Bad Request - Invalid TransactionDesc")
            return _msisdn(body, "PhoneNumber")

        admitted = await self._admit(request, validate)
        if isinstance(admitted, web.Response):
            return admitted
        body, plan = admitted
        if (refusal := self._stk_password_error(body)) is not None:
            return refusal
        now = datetime.now(UTC)
        push = _StkPush(
            merchant_request_id=_request_id(),
            checkout_request_id=f"ws_CO_{now.astimezone(NAIROBI):%d%m%Y%H%M%S}{secrets.randbelow(10**6):06d}",
            phone=str(body["PhoneNumber"]),
            amount=_amount(body),
            account_reference=str(body.get("AccountReference", "")),
            callback_url=str(body["CallBackURL"]),
        )
        self._stk[push.checkout_request_id] = push
        await self._schedule(plan, lambda: self._settle_stk(push, plan))
        return web.json_response(
            {
                "MerchantRequestID": push.merchant_request_id,
                "CheckoutRequestID": push.checkout_request_id,
                "ResponseCode": "0",
                "ResponseDescription": "Success. Request accepted for processing",
                "CustomerMessage": "Success. Request accepted for processing",
            }
        )

    def _settle_stk(self, push: _StkPush, plan: Plan) -> tuple[str, str, dict[str, Any]]:
        now = datetime.now(UTC)
        push.completed_at = now
        callback: dict[str, Any] = {
            "MerchantRequestID": push.merchant_request_id,
            "CheckoutRequestID": push.checkout_request_id,
        }
        if plan.outcome in _FAILURES:
            push.result_code, push.result_desc = _FAILURES[plan.outcome]
            callback |= {"ResultCode": push.result_code, "ResultDesc": push.result_desc}
        else:
            push.result_code, push.result_desc = 0, _SUCCESS_DESC
            push.receipt = _receipt()
            self.books.record(
                transaction_id=push.receipt,
                kind="stk_push",
                account=WORKING,
                amount_minor=push.amount * 100,
                party=push.phone,
                at=now,
                reference=push.checkout_request_id,
                client_reference=push.account_reference,
            )
            callback |= {
                "ResultCode": 0,
                "ResultDesc": push.result_desc,
                "CallbackMetadata": {
                    "Item": [
                        # A float on purpose: Daraja writes 1.00 at times, and parsers must cope.
                        {"Name": "Amount", "Value": float(push.amount)},
                        {"Name": "MpesaReceiptNumber", "Value": push.receipt},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": int(_stamp(now))},
                        {"Name": "PhoneNumber", "Value": int(push.phone)},
                    ]
                },
            }
        return "stk_callback", push.callback_url, {"Body": {"stkCallback": callback}}

    async def stk_query(self, request: web.Request) -> web.Response:
        def validate(body: dict[str, Any]) -> str | None:
            _require(body, "CheckoutRequestID")
            return None

        admitted = await self._admit(request, validate)
        if isinstance(admitted, web.Response):
            return admitted
        body, _ = admitted
        if (refusal := self._stk_password_error(body)) is not None:
            return refusal
        push = self._stk.get(str(body["CheckoutRequestID"]))
        if push is None:
            return _error(400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")
        if push.result_code is None:
            return _error(500, "500.001.1001", "The transaction is being processed")
        return web.json_response(
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",  # sic
                "MerchantRequestID": push.merchant_request_id,
                "CheckoutRequestID": push.checkout_request_id,
                "ResultCode": str(push.result_code),
                "ResultDesc": push.result_desc,
            }
        )

    # -- Requests answered with a Result envelope ----------------------------------------------

    async def _result_api(
        self,
        request: web.Request,
        *,
        party_of: Callable[[dict[str, Any]], str | None],
        settle: Callable[[dict[str, Any], Plan, str, str], dict[str, Any]],
        b2c: bool = False,
    ) -> web.Response:
        """The shared life of B2C, B2B, status, reversal and balance requests."""

        def validate(body: dict[str, Any]) -> str | None:
            _url(body, "ResultURL")
            _url(body, "QueueTimeOutURL", "QueueTimeoutURL")
            _require(body, "SecurityCredential")
            _require(body, "Initiator", "InitiatorName")
            return party_of(body)

        admitted = await self._admit(request, validate, b2c=b2c)
        if isinstance(admitted, web.Response):
            return admitted
        body, plan = admitted
        now = datetime.now(UTC)
        originator = str(body.get("OriginatorConversationID") or f"{_request_id()}")
        if b2c:
            if originator in self._b2c_originators:
                return _error(400, "400.002.02", "Bad Request - Duplicate OriginatorConversationID")
            self._b2c_originators.add(originator)
        conversation = _conversation_id(now)
        result_url = str(body["ResultURL"])
        timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))

        def settle_now() -> tuple[str, str, dict[str, Any]]:
            if plan.outcome is Outcome.QUEUE_TIMEOUT:
                return "queue_timeout", timeout_url, _queue_timeout(originator, conversation)
            if not self._credential_ok(body):
                code, desc = _INVALID_INITIATOR
                return "result", result_url, _result(code, desc, originator, conversation, timeout_url)
            return "result", result_url, settle(body, plan, originator, conversation)

        await self._schedule(plan, settle_now)
        return web.json_response(
            {
                "ConversationID": conversation,
                "OriginatorConversationID": originator,
                "ResponseCode": "0",
                "ResponseDescription": _ACCEPTED,
            }
        )

    async def b2c(self, request: web.Request) -> web.Response:
        def party(body: dict[str, Any]) -> str:
            if body.get("CommandID") not in ("SalaryPayment", "BusinessPayment", "PromotionPayment"):
                raise _BadRequest("Bad Request - Invalid CommandID")
            _amount(body)
            _require(body, "PartyA")
            return _msisdn(body, "PartyB")

        def settle(body: dict[str, Any], plan: Plan, originator: str, conversation: str) -> dict[str, Any]:
            amount = _amount(body)
            timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))
            failure = self._payout_failure(plan, amount)
            if failure is None and amount < _B2C_MINIMUM_KES:
                failure = (2, "Declined due to limit rule: less than the minimum transaction amount.")
            if failure is not None:
                return _result(*failure, originator, conversation, timeout_url)
            now = datetime.now(UTC)
            receipt = _receipt()
            phone = str(body["PartyB"])
            self.books.record(
                transaction_id=receipt,
                kind="b2c",
                account=UTILITY,
                amount_minor=-amount * 100,
                party=phone,
                at=now,
                reference=originator,
                counterparty_name=f"{phone} - Sandbox Customer",
            )
            parameters = [
                {"Key": "TransactionAmount", "Value": amount},
                {"Key": "TransactionReceipt", "Value": receipt},
                {"Key": "B2CRecipientIsRegisteredCustomer", "Value": "Y"},
                {"Key": "B2CChargesPaidAccountAvailableFunds", "Value": 0.0},
                {"Key": "ReceiverPartyPublicName", "Value": f"{phone} - Sandbox Customer"},
                {"Key": "TransactionCompletedDateTime", "Value": f"{now.astimezone(NAIROBI):%d.%m.%Y %H:%M:%S}"},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": float(self.books.balance(UTILITY)) / 100},
                {"Key": "B2CWorkingAccountAvailableFunds", "Value": float(self.books.balance(WORKING)) / 100},
            ]
            return _result(0, _SUCCESS_DESC, originator, conversation, timeout_url, receipt, parameters)

        return await self._result_api(request, party_of=party, settle=settle, b2c=True)

    def _payout_failure(self, plan: Plan, amount: int) -> tuple[int, str] | None:
        if plan.outcome in _FAILURES:
            return _FAILURES[plan.outcome]
        if amount * 100 > self.books.balance(UTILITY):
            return _FAILURES[Outcome.INSUFFICIENT_FUNDS]
        return None

    async def b2b(self, request: web.Request) -> web.Response:
        def party(body: dict[str, Any]) -> str:
            command = body.get("CommandID")
            if command not in ("BusinessPayBill", "BusinessBuyGoods"):
                raise _BadRequest("Bad Request - Invalid CommandID")
            receiver_type = str(body.get("RecieverIdentifierType", ""))  # sic
            if receiver_type != ("4" if command == "BusinessPayBill" else "2"):
                raise _BadRequest("Bad Request - Invalid RecieverIdentifierType")
            _amount(body)
            party_b = _require(body, "PartyB")
            if not _SHORTCODE.fullmatch(party_b):
                raise _BadRequest("Bad Request - Invalid PartyB")
            return party_b

        def settle(body: dict[str, Any], plan: Plan, originator: str, conversation: str) -> dict[str, Any]:
            amount = _amount(body)
            timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))
            account_reference = str(body.get("AccountReference", ""))
            failure = self._payout_failure(plan, amount)
            if failure is not None:
                return _result(*failure, originator, conversation, timeout_url)
            now = datetime.now(UTC)
            receipt = _receipt()
            party_b = str(body["PartyB"])
            self.books.record(
                transaction_id=receipt,
                kind="b2b",
                account=UTILITY,
                amount_minor=-amount * 100,
                party=party_b,
                at=now,
                reference=originator,
                client_reference=account_reference,
                counterparty_name=f"{party_b} - Sandbox Merchant",
            )
            parameters = [
                {
                    "Key": "DebitAccountBalance",
                    "Value": f"{{Amount={{BasicAmount={_kes_text(self.books.balance(UTILITY))}}}}}",
                },
                {"Key": "Amount", "Value": amount},
                {
                    "Key": "DebitPartyAffectedAccountBalance",
                    "Value": f"{UTILITY}|KES|{_kes_text(self.books.balance(UTILITY))}",
                },
                {"Key": "TransCompletedTime", "Value": int(_stamp(now))},
                {"Key": "DebitPartyCharges", "Value": ""},
                {"Key": "ReceiverPartyPublicName", "Value": f"{party_b} - Sandbox Merchant"},
                {"Key": "Currency", "Value": "KES"},
                {"Key": "InitiatorAccountCurrentBalance", "Value": ""},
            ]
            reference = [
                {"Key": "BillReferenceNumber", "Value": account_reference},
                {"Key": "QueueTimeoutURL", "Value": timeout_url},
            ]
            return _result(0, _SUCCESS_DESC, originator, conversation, timeout_url, receipt, parameters, reference)

        return await self._result_api(request, party_of=party, settle=settle)

    async def transaction_status(self, request: web.Request) -> web.Response:
        def party(body: dict[str, Any]) -> None:
            # Daraja finds a transaction by its receipt or by the OriginatorConversationID of the
            # request that made it (for a B2C/B2B whose result never arrived).
            if not str(body.get("TransactionID") or "").strip():
                _require(body, "OriginalConversationID")
            return None

        def settle(body: dict[str, Any], plan: Plan, originator: str, conversation: str) -> dict[str, Any]:
            timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))
            if plan.outcome in _FAILURES:
                return _result(*_FAILURES[plan.outcome], originator, conversation, timeout_url)
            receipt = str(body.get("TransactionID") or "").strip()
            if receipt:
                entry = self.books.find(receipt)
            else:
                entry = self.books.find_by_reference(str(body["OriginalConversationID"]).strip())
            if entry is None:
                return _result("R000001", "The transaction could not be found.", originator, conversation, timeout_url)
            parameters = _status_parameters(entry, self.settings.daraja_shortcode)
            return _result(0, _SUCCESS_DESC, originator, conversation, timeout_url, None, parameters)

        return await self._result_api(request, party_of=party, settle=settle)

    async def reversal(self, request: web.Request) -> web.Response:
        def party(body: dict[str, Any]) -> None:
            _require(body, "TransactionID")
            _amount(body)
            if str(body.get("RecieverIdentifierType", "")) != "11":  # sic
                raise _BadRequest("Bad Request - Invalid RecieverIdentifierType")
            return None

        def settle(body: dict[str, Any], plan: Plan, originator: str, conversation: str) -> dict[str, Any]:
            timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))
            if plan.outcome in _FAILURES:
                return _result(*_FAILURES[plan.outcome], originator, conversation, timeout_url)
            original = self.books.find(str(body["TransactionID"]))
            if original is None or original.kind == "reversal":
                return _result("R000001", "The transaction could not be found.", originator, conversation, timeout_url)
            if original.status == "reversed":
                return _result(
                    "R000002", "The transaction has already been reversed.", originator, conversation, timeout_url
                )
            if _amount(body) * 100 != abs(original.amount_minor):
                return _result(
                    "R000003", "The amount does not match the transaction.", originator, conversation, timeout_url
                )
            now = datetime.now(UTC)
            receipt = _receipt()
            self.books.record(
                transaction_id=receipt,
                kind="reversal",
                account=original.account,
                amount_minor=-original.amount_minor,
                party=original.party,
                at=now,
                reference=originator,
                reverses=original.transaction_id,
            )
            self.books.mark(original.transaction_id, "reversed")
            parameters = [
                {
                    "Key": "DebitAccountBalance",
                    "Value": f"{original.account}|KES|{_kes_text(self.books.balance(original.account))}",
                },
                {"Key": "Amount", "Value": abs(original.amount_minor) // 100},
                {"Key": "TransCompletedTime", "Value": int(_stamp(now))},
                {"Key": "OriginalTransactionID", "Value": original.transaction_id},
                {"Key": "Charge", "Value": 0},
                {"Key": "CreditPartyPublicName", "Value": original.party},
                {"Key": "DebitPartyPublicName", "Value": f"{self.settings.daraja_shortcode} - Sauti Sandbox"},
            ]
            return _result(0, _SUCCESS_DESC, originator, conversation, timeout_url, receipt, parameters)

        return await self._result_api(request, party_of=party, settle=settle)

    async def account_balance(self, request: web.Request) -> web.Response:
        def party(body: dict[str, Any]) -> None:
            return None

        def settle(body: dict[str, Any], plan: Plan, originator: str, conversation: str) -> dict[str, Any]:
            timeout_url = str(body.get("QueueTimeOutURL") or body.get("QueueTimeoutURL"))
            if plan.outcome in _FAILURES:
                return _result(*_FAILURES[plan.outcome], originator, conversation, timeout_url)
            accounts = (WORKING, UTILITY, "Charges Paid Account")
            balance = "&".join(
                f"{name}|KES|{_kes_text(self.books.balance(name))}|{_kes_text(self.books.balance(name))}|0.00|0.00"
                for name in accounts
            )
            parameters = [
                {"Key": "AccountBalance", "Value": balance},
                {"Key": "BOCompletedTime", "Value": int(_stamp(datetime.now(UTC)))},
            ]
            return _result(0, _SUCCESS_DESC, originator, conversation, timeout_url, None, parameters)

        return await self._result_api(request, party_of=party, settle=settle)

    # -- C2B -----------------------------------------------------------------------------------

    async def c2b_register(self, request: web.Request) -> web.Response:
        def validate(body: dict[str, Any]) -> None:
            _require(body, "ShortCode")
            if body.get("ResponseType") not in ("Completed", "Cancelled"):
                raise _BadRequest("Bad Request - Invalid ResponseType")
            _url(body, "ConfirmationURL")
            _url(body, "ValidationURL")
            return None

        admitted = await self._admit(request, validate)
        if isinstance(admitted, web.Response):
            return admitted
        body, _ = admitted
        self._c2b_urls[str(body["ShortCode"])] = (
            str(body["ValidationURL"]),
            str(body["ConfirmationURL"]),
            str(body["ResponseType"]),
        )
        return web.json_response(
            {"OriginatorCoversationID": _request_id(), "ResponseCode": "0", "ResponseDescription": "Success"}  # sic
        )

    async def c2b_simulate(self, request: web.Request) -> web.Response:
        def validate(body: dict[str, Any]) -> str:
            _require(body, "ShortCode")
            if body.get("CommandID") not in ("CustomerPayBillOnline", "CustomerBuyGoodsOnline"):
                raise _BadRequest("Bad Request - Invalid CommandID")
            _amount(body)
            return _msisdn(body, "Msisdn")

        admitted = await self._admit(request, validate)
        if isinstance(admitted, web.Response):
            return admitted
        body, plan = admitted
        urls = self._c2b_urls.get(str(body["ShortCode"]))
        if urls is None:
            return _error(400, "400.002.02", "Bad Request - No URLs registered for this ShortCode")
        payment = {
            "TransactionType": "Pay Bill" if body["CommandID"] == "CustomerPayBillOnline" else "Buy Goods",
            "TransID": _receipt(),
            "TransTime": _stamp(datetime.now(UTC)),
            "TransAmount": f"{_amount(body)}.00",
            "BusinessShortCode": str(body["ShortCode"]),
            "BillRefNumber": str(body.get("BillRefNumber", "")),
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": str(body["Msisdn"]),
            "FirstName": "Sandbox",
            "MiddleName": "",
            "LastName": "Customer",
        }
        if plan.outcome is Outcome.EARLY_CALLBACK:
            await self._run_c2b(payment, urls, plan)
        else:
            self.dispatcher.spawn(self._after(plan, lambda: self._run_c2b(payment, urls, plan)))
        return web.json_response(
            {
                "OriginatorCoversationID": _request_id(),  # sic
                "ResponseCode": "0",
                "ResponseDescription": _ACCEPTED,
            }
        )

    async def _after(self, plan: Plan, job: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(plan.delay_s if plan.delay_s is not None else self.settings.callback_delay_s)
        await job()

    async def _run_c2b(self, payment: dict[str, Any], urls: tuple[str, str, str], plan: Plan) -> None:
        validation_url, confirmation_url, response_type = urls
        # Daraja waits ~8 s for a validation answer (`daraja_c2b_validation_timeout_s`), longer than
        # for other callbacks; past it, the registered ResponseType decides.
        status, answer = await self.dispatcher.post(
            validation_url,
            json.dumps(payment).encode(),
            kind="c2b_validation",
            reference=payment["TransID"],
            timeout_s=self.settings.daraja_c2b_validation_timeout_s,
        )
        if status is None or status >= 400:
            accepted = response_type == "Completed"  # what Daraja does when validation fails to answer
        else:
            try:
                accepted = str(json.loads(answer).get("ResultCode")) == "0"
            except (ValueError, AttributeError):
                accepted = response_type == "Completed"
        if not accepted:
            return
        amount_minor = int(Decimal(payment["TransAmount"]) * 100)
        self.books.record(
            transaction_id=payment["TransID"],
            kind="c2b",
            account=WORKING,
            amount_minor=amount_minor,
            party=payment["MSISDN"],
            at=datetime.now(UTC),
            client_reference=payment["BillRefNumber"],
        )
        if plan.outcome is Outcome.NO_CALLBACK:
            return
        confirmation = payment | {"OrgAccountBalance": _kes_text(self.books.balance(WORKING))}
        for _ in range(2 if plan.outcome is Outcome.DUPLICATE_CALLBACK else 1):
            await self.dispatcher.post(
                confirmation_url,
                json.dumps(confirmation).encode(),
                kind="c2b_confirmation",
                reference=payment["TransID"],
            )

    # -- control -------------------------------------------------------------------------------

    async def certificate(self, request: web.Request) -> web.Response:
        return web.Response(body=self.keys.certificate_pem, content_type="application/x-pem-file")

    async def statement(self, request: web.Request) -> web.Response:
        try:
            start = _moment(request.query.get("from"))
            end = _moment(request.query.get("to"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        entries = self.books.entries(start, end)
        balances = {name: _kes_text(self.books.balance(name)) for name in (WORKING, UTILITY)}
        return web.json_response({"transactions": [e.to_json() for e in entries], "balances": balances})

    async def expire_tokens(self, request: web.Request) -> web.Response:
        count = len(self._tokens)
        self._tokens.clear()
        return web.json_response({"expired": count})

    async def token_counts(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        active = sum(1 for expiry in self._tokens.values() if expiry > now)
        return web.json_response({"issued": self.tokens_issued, "refused": self.tokens_refused, "active": active})

    async def callbacks(self, request: web.Request) -> web.Response:
        return web.json_response({"attempts": [a.to_json() for a in self.dispatcher.attempts]})


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    if len(text) == 14 and text.isdigit():
        return parse_nairobi_timestamp(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _reference_of(payload: dict[str, Any]) -> str:
    inner = payload.get("Result") or payload.get("Body", {}).get("stkCallback") or {}
    return str(inner.get("OriginatorConversationID") or inner.get("CheckoutRequestID") or "")


def _result(
    code: int | str,
    desc: str,
    originator: str,
    conversation: str,
    timeout_url: str,
    transaction_id: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    reference: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ResultType": 0,
        "ResultCode": code,
        "ResultDesc": desc,
        "OriginatorConversationID": originator,
        "ConversationID": conversation,
        # Failures carry a TransactionID too on Daraja, but it points at nothing: mimic with a fresh one.
        "TransactionID": transaction_id or _receipt(),
    }
    if parameters is not None:
        result["ResultParameters"] = {"ResultParameter": parameters}
    items = reference or [{"Key": "QueueTimeoutURL", "Value": timeout_url}]
    result["ReferenceData"] = {"ReferenceItem": items[0] if len(items) == 1 else items}
    return {"Result": result}


def _queue_timeout(originator: str, conversation: str) -> dict[str, Any]:
    return {
        "Result": {
            "ResultType": 0,
            "ResultCode": 1,
            "ResultDesc": "The request was not processed: it timed out in the queue.",
            "OriginatorConversationID": originator,
            "ConversationID": conversation,
        }
    }


def _status_parameters(entry: BookEntry, shortcode: str) -> list[dict[str, Any]]:
    money_in = entry.amount_minor > 0
    us = f"{shortcode} - Sauti Sandbox"
    them = entry.counterparty_name or entry.party
    return [
        {"Key": "ReceiptNo", "Value": entry.transaction_id},
        {"Key": "ConversationID", "Value": entry.reference or ""},
        {"Key": "FinalisedTime", "Value": int(_stamp(entry.at))},
        {"Key": "Amount", "Value": abs(entry.amount_minor) // 100},
        {"Key": "TransactionStatus", "Value": "Completed" if entry.status == "completed" else "Reversed"},
        {"Key": "ReasonType", "Value": entry.kind},
        {"Key": "TransactionReason", "Value": entry.client_reference or ""},
        {"Key": "DebitPartyCharges", "Value": ""},
        {"Key": "DebitAccountType", "Value": "Utility Account"},
        {"Key": "InitiatedTime", "Value": int(_stamp(entry.at))},
        {"Key": "OriginatorConversationID", "Value": entry.reference or ""},
        {"Key": "CreditPartyName", "Value": us if money_in else them},
        {"Key": "DebitPartyName", "Value": them if money_in else us},
    ]


DARAJA = web.AppKey("daraja_sandbox", DarajaSandbox)


def create_daraja_sandbox(
    settings: SandboxSettings | None = None, keys: InitiatorKeys | None = None
) -> web.Application:
    """The Daraja sandbox app; its state is ``app[DARAJA]``."""
    sandbox = DarajaSandbox(settings or SandboxSettings(), keys)
    app = web.Application()
    app[DARAJA] = sandbox
    app.add_routes(sandbox.routes())
    app.cleanup_ctx.append(sandbox.lifetime)
    return app
