"""Client for Safaricom's M-Pesa Daraja API: OAuth, STK push and query, B2C, B2B, C2B, status,
reversal and balance.

Daraja answers most requests twice: a synchronous "accepted" now (returned here as a dataclass),
and the real result later as a POST to a URL we gave it (parsed by `daraja_callbacks`). Acceptance
is never payment. Daraja has no idempotency key and signs nothing, so the orchestrator confirms
outcomes with queries and reconciles against the statement.

Field names follow the contract to the letter, Safaricom's misspellings included
(``Occassion``, ``RecieverIdentifierType``, ``OriginatorCoversationID``).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import aiohttp

from payments.money import Currency, Money
from payments.phones import InvalidPhoneNumber, parse_msisdn, provider_msisdn
from payments.providers.daraja_credentials import nairobi_timestamp, security_credential, stk_password
from payments.providers.errors import ProviderError, ProviderProtocolError, transport_errors

PROVIDER = "daraja"

SANDBOX_URL = "https://sandbox.safaricom.co.ke"
PRODUCTION_URL = "https://api.safaricom.co.ke"

# Error codes from the contract, named so callers never compare against string literals.
INVALID_AUTHENTICATION = "400.008.01"
INVALID_ACCESS_TOKEN = "404.001.03"  # noqa: S105 (an error code, not a secret)
INVALID_ACCESS_TOKEN_B2C = "401.002.01"  # noqa: S105 (an error code)
BAD_REQUEST = "400.002.02"
WRONG_CREDENTIALS_OR_PROCESSING = "500.001.1001"

_TOKEN_ERRORS = {INVALID_ACCESS_TOKEN, INVALID_ACCESS_TOKEN_B2C}

#: STK ResultCode Safaricom answers in production while the payer still has the prompt ("The
#: transaction is still under processing"), in a query (treated like the 500.001.1001 error) or a
#: callback (`payments.provider_results`): no answer yet.
STK_STILL_PROCESSING = 4999


class DarajaError(ProviderError):
    """Daraja answered with ``{"requestId", "errorCode", "errorMessage"}`` or a non-zero ResponseCode."""

    def __init__(
        self, message: str, *, code: str | None, http_status: int | None, request_id: str | None = None
    ) -> None:
        super().__init__(PROVIDER, message, code=code, http_status=http_status)
        self.request_id = request_id


class DarajaAuthenticationFailed(DarajaError):
    """``400.008.01``: the consumer key/secret were refused."""


class DarajaInvalidToken(DarajaError):
    """``404.001.03`` / ``401.002.01``: still refused after fetching a fresh token."""


class DarajaBadRequest(DarajaError):
    """``400.002.02``: a field Daraja did not accept (phone, amount, URL, timestamp, duplicate id)."""


class DarajaRejected(DarajaError):
    """Refused for a business reason: wrong STK password, unknown merchant, non-zero ResponseCode."""


class DarajaServerError(DarajaError):
    """Daraja failed on its side (HTTP 5xx) or throttled us (429): worth trying again later."""

    retryable = True


class AmountNotPayable(ValueError):
    """An amount M-Pesa cannot move: not KES, not positive, or with cents (M-Pesa moves whole shillings)."""


class DarajaMisconfigured(RuntimeError):
    """The client lacks a setting the call needs (initiator, certificate)."""


def whole_shillings(amount: Money) -> int:
    """The M-Pesa ``Amount`` for `amount`: whole shillings, or `AmountNotPayable`.

    IMPORTANT: never round. KES 10.50 cannot be sent; the caller must decide what to do with cents.
    """
    if amount.currency is not Currency.KES:
        raise AmountNotPayable(f"M-Pesa moves KES only, not {amount.currency.value}")
    if amount.minor <= 0:
        raise AmountNotPayable(f"M-Pesa amounts must be positive, not {amount}")
    shillings, cents = divmod(amount.minor, Currency.KES.minor_per_major)
    if cents:
        raise AmountNotPayable(f"M-Pesa moves whole shillings only; {amount} has cents")
    return shillings


def mpesa_msisdn(phone: str) -> str:
    """A Kenyan mobile number as Daraja wants it: ``2547XXXXXXXX`` / ``2541XXXXXXXX`` (no ``+``)."""
    e164 = parse_msisdn(phone, "KE")
    if not e164.startswith("+254"):
        raise InvalidPhoneNumber(f"{phone!r} is not a Kenyan number; M-Pesa serves Kenya")
    return provider_msisdn(e164)


def _limit(name: str, value: str, most: int) -> str:
    if len(value) > most:
        raise ValueError(f"{name} is limited to {most} characters by Daraja, got {len(value)}: {value!r}")
    return value


class StkTransactionType(enum.StrEnum):
    PAYBILL = "CustomerPayBillOnline"
    BUY_GOODS = "CustomerBuyGoodsOnline"


class B2CCommand(enum.StrEnum):
    SALARY = "SalaryPayment"
    BUSINESS = "BusinessPayment"
    PROMOTION = "PromotionPayment"


class B2BCommand(enum.StrEnum):
    PAY_BILL = "BusinessPayBill"
    BUY_GOODS = "BusinessBuyGoods"


#: ``RecieverIdentifierType`` (sic) for each B2B command: 4 = paybill shortcode, 2 = till number.
_B2B_RECEIVER_TYPE = {B2BCommand.PAY_BILL: "4", B2BCommand.BUY_GOODS: "2"}


class StkState(enum.StrEnum):
    """What an STK query tells about a push."""

    PENDING = "pending"  # the payer has not answered yet: ask again later, never treat as failed
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DarajaSettings:
    """Everything the Daraja client needs. Secrets are kept out of ``repr`` so they never reach logs."""

    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    shortcode: str
    passkey: str = field(repr=False)
    base_url: str = SANDBOX_URL
    initiator_name: str | None = None
    #: Either the initiator password with the certificate to encrypt it with, or a
    #: SecurityCredential computed beforehand (Safaricom's portal can generate one).
    initiator_password: str | None = field(default=None, repr=False)
    certificate_pem: bytes | None = field(default=None, repr=False)
    security_credential: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    #: Refresh the cached token this long before Daraja says it expires.
    token_refresh_margin_s: float = 60.0


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    """Daraja accepted an STK push; the payer's answer comes to the CallBackURL later."""

    merchant_request_id: str
    checkout_request_id: str
    response_description: str
    customer_message: str


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    state: StkState
    checkout_request_id: str
    merchant_request_id: str | None
    #: The payer's outcome (0 paid, 1032 cancelled, ...); None while `state` is PENDING.
    result_code: int | None
    result_desc: str


@dataclass(frozen=True, slots=True)
class RequestAccepted:
    """Daraja queued a B2C/B2B/status/reversal/balance request; its ``Result`` comes to ResultURL."""

    conversation_id: str
    originator_conversation_id: str
    response_description: str


@dataclass(frozen=True, slots=True)
class C2BRegistration:
    originator_conversation_id: str
    response_description: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DarajaClient:
    """One Daraja account: an aiohttp session, a cached OAuth token, and one method per API.

    Use as ``async with DarajaClient(settings) as daraja: ...`` or call `start` and `close`.
    """

    def __init__(
        self,
        settings: DarajaSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._settings = settings
        self._clock = clock  # monotonic: for token expiry
        self._now = now  # wall clock: for Nairobi timestamps
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires_at = 0.0
        # One token fetch at a time: concurrent calls wait for it instead of each asking Daraja.
        self._token_lock = asyncio.Lock()
        self._credential: str | None = settings.security_credential

    @property
    def shortcode(self) -> str:
        """Our paybill: where money paid to us goes (a status answer's ``CreditPartyName`` starts with it)."""
        return self._settings.shortcode

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=self._settings.timeout_s, sock_connect=self._settings.connect_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- OAuth -------------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid bearer token, from the cache while it has more than the margin left to live."""
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires_at:
                return self._token
            token, lifetime = await self._fetch_token()
            self._token = token
            self._token_expires_at = self._clock() + max(0.0, lifetime - self._settings.token_refresh_margin_s)
            return token

    def _forget_token(self, token: str) -> None:
        # Only drop the token that failed: a concurrent call may already have fetched a new one.
        if self._token == token:
            self._token = None

    async def _fetch_token(self) -> tuple[str, float]:
        pair = f"{self._settings.consumer_key}:{self._settings.consumer_secret}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        url = self._url("/oauth/v1/generate")
        with transport_errors(PROVIDER):
            async with self._http().get(url, params={"grant_type": "client_credentials"}, headers=headers) as resp:
                status, text = resp.status, await resp.text()
        payload = _decode(status, text)
        if status >= 400 or "errorCode" in payload:
            raise _error_from(status, payload)
        token = payload.get("access_token")
        expires_in = payload.get("expires_in")  # a string, "3599"
        if not isinstance(token, str) or not token:
            raise ProviderProtocolError(PROVIDER, "OAuth answer has no access_token", http_status=status)
        try:
            lifetime = float(str(expires_in))
        except ValueError:
            raise ProviderProtocolError(
                PROVIDER, f"OAuth expires_in is not a number: {expires_in!r}", http_status=status
            ) from None
        return token, lifetime

    # -- M-Pesa Express (STK push) -------------------------------------------------------------

    async def stk_push(
        self,
        *,
        phone: str,
        amount: Money,
        account_reference: str,
        description: str,
        callback_url: str,
        transaction_type: StkTransactionType = StkTransactionType.PAYBILL,
        party_b: str | None = None,
    ) -> StkPushAccepted:
        """Ask the payer's phone for their PIN to pay `amount` to our shortcode (or `party_b`, a till)."""
        msisdn = mpesa_msisdn(phone)
        timestamp = nairobi_timestamp(self._now())
        body = {
            "BusinessShortCode": self._settings.shortcode,
            "Password": stk_password(self._settings.shortcode, self._settings.passkey, timestamp),
            "Timestamp": timestamp,
            "TransactionType": transaction_type.value,
            "Amount": whole_shillings(amount),
            "PartyA": msisdn,
            "PartyB": party_b or self._settings.shortcode,
            "PhoneNumber": msisdn,
            "CallBackURL": callback_url,
            "AccountReference": _limit("AccountReference", account_reference, 12),
            "TransactionDesc": _limit("TransactionDesc", description, 13),
        }
        answer = await self._call("/mpesa/stkpush/v1/processrequest", body)
        _require_accepted(answer)
        return StkPushAccepted(
            merchant_request_id=_text(answer, "MerchantRequestID"),
            checkout_request_id=_text(answer, "CheckoutRequestID"),
            response_description=str(answer.get("ResponseDescription", "")),
            customer_message=str(answer.get("CustomerMessage", "")),
        )

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Where an STK push stands. "Being processed" is PENDING, never a failure."""
        timestamp = nairobi_timestamp(self._now())
        body = {
            "BusinessShortCode": self._settings.shortcode,
            "Password": stk_password(self._settings.shortcode, self._settings.passkey, timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_request_id,
        }
        try:
            answer = await self._call("/mpesa/stkpushquery/v1/query", body)
        except DarajaRejected as exc:
            # 500.001.1001 means both "wrong credentials" and "the transaction is being processed";
            # only the message tells them apart. The latter is the common case on a query.
            if exc.code == WRONG_CREDENTIALS_OR_PROCESSING and "process" in exc.message.lower():
                return StkQueryResult(StkState.PENDING, checkout_request_id, None, None, exc.message)
            raise
        _require_accepted(answer)
        raw_code = answer.get("ResultCode")  # a string here, unlike in the callback
        try:
            result_code = int(str(raw_code))
        except ValueError:
            raise ProviderProtocolError(PROVIDER, f"STK query ResultCode is not a number: {raw_code!r}") from None
        if result_code == STK_STILL_PROCESSING:
            state = StkState.PENDING
        else:
            state = StkState.SUCCEEDED if result_code == 0 else StkState.FAILED
        return StkQueryResult(
            state=state,
            checkout_request_id=str(answer.get("CheckoutRequestID", checkout_request_id)),
            merchant_request_id=answer.get("MerchantRequestID"),
            result_code=None if state is StkState.PENDING else result_code,
            result_desc=str(answer.get("ResultDesc", "")),
        )

    # -- B2C, B2B ------------------------------------------------------------------------------

    async def b2c_payment(
        self,
        *,
        originator_conversation_id: str,
        phone: str,
        amount: Money,
        remarks: str,
        result_url: str,
        queue_timeout_url: str,
        command: B2CCommand = B2CCommand.BUSINESS,
        occasion: str = "",
    ) -> RequestAccepted:
        """Pay `amount` from our shortcode to a customer (B2C v3).

        `originator_conversation_id` is ours to choose (our payment id): it comes back in the result
        and is the key to deduplicate on.
        """
        body = {
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": self._initiator(),
            "SecurityCredential": self._security_credential(),
            "CommandID": command.value,
            "Amount": whole_shillings(amount),
            "PartyA": self._settings.shortcode,
            "PartyB": mpesa_msisdn(phone),
            "Remarks": _limit("Remarks", remarks, 100),
            "QueueTimeOutURL": queue_timeout_url,
            "ResultURL": result_url,
            "Occassion": occasion,  # sic: Daraja's spelling
        }
        return _accepted(await self._call("/mpesa/b2c/v3/paymentrequest", body))

    async def b2b_payment(
        self,
        *,
        command: B2BCommand,
        party_b: str,
        amount: Money,
        account_reference: str,
        remarks: str,
        result_url: str,
        queue_timeout_url: str,
    ) -> RequestAccepted:
        """Pay a paybill (with its account number) or a till from our shortcode."""
        body = {
            "Initiator": self._initiator(),
            "SecurityCredential": self._security_credential(),
            "CommandID": command.value,
            "SenderIdentifierType": "4",
            "RecieverIdentifierType": _B2B_RECEIVER_TYPE[command],  # sic
            "Amount": whole_shillings(amount),
            "PartyA": self._settings.shortcode,
            "PartyB": party_b,
            "AccountReference": _limit("AccountReference", account_reference, 13),
            "Remarks": _limit("Remarks", remarks, 100),
            "QueueTimeOutURL": queue_timeout_url,
            "ResultURL": result_url,
        }
        return _accepted(await self._call("/mpesa/b2b/v1/paymentrequest", body))

    # -- Status, reversal, balance --------------------------------------------------------------

    async def transaction_status(
        self,
        *,
        transaction_id: str | None = None,
        result_url: str,
        queue_timeout_url: str,
        remarks: str = "Status query",
        occasion: str = "",
        original_conversation_id: str | None = None,
    ) -> RequestAccepted:
        """Ask where a transaction stands; the answer comes to `result_url`. Name it by its M-Pesa
        receipt (`transaction_id`) or, when no receipt ever came back (a lost B2C/B2B result), by
        the OriginatorConversationID of the request that made it (`original_conversation_id`, sent
        as Daraja's ``OriginalConversationID``)."""
        if not transaction_id and not original_conversation_id:
            raise ValueError("name the transaction by its receipt or by its OriginatorConversationID")
        ids = {"TransactionID": transaction_id} if transaction_id else {}
        if original_conversation_id:
            ids["OriginalConversationID"] = original_conversation_id
        body = {
            "Initiator": self._initiator(),
            "SecurityCredential": self._security_credential(),
            "CommandID": "TransactionStatusQuery",
            **ids,
            "PartyA": self._settings.shortcode,
            "IdentifierType": "4",
            "ResultURL": result_url,
            "QueueTimeOutURL": queue_timeout_url,
            "Remarks": _limit("Remarks", remarks, 100),
            "Occasion": occasion,
        }
        return _accepted(await self._call("/mpesa/transactionstatus/v1/query", body))

    async def reverse(
        self,
        *,
        transaction_id: str,
        amount: Money,
        result_url: str,
        queue_timeout_url: str,
        remarks: str = "Reversal",
        occasion: str = "",
    ) -> RequestAccepted:
        body = {
            "Initiator": self._initiator(),
            "SecurityCredential": self._security_credential(),
            "CommandID": "TransactionReversal",
            "TransactionID": transaction_id,
            "Amount": whole_shillings(amount),
            "ReceiverParty": self._settings.shortcode,
            "RecieverIdentifierType": "11",  # sic
            "ResultURL": result_url,
            "QueueTimeOutURL": queue_timeout_url,
            "Remarks": _limit("Remarks", remarks, 100),
            "Occasion": occasion,
        }
        return _accepted(await self._call("/mpesa/reversal/v1/request", body))

    async def account_balance(
        self, *, result_url: str, queue_timeout_url: str, remarks: str = "Balance"
    ) -> RequestAccepted:
        body = {
            "Initiator": self._initiator(),
            "SecurityCredential": self._security_credential(),
            "CommandID": "AccountBalance",
            "PartyA": self._settings.shortcode,
            "IdentifierType": "4",
            "Remarks": _limit("Remarks", remarks, 100),
            "QueueTimeOutURL": queue_timeout_url,
            "ResultURL": result_url,
        }
        return _accepted(await self._call("/mpesa/accountbalance/v1/query", body))

    # -- C2B -------------------------------------------------------------------------------------

    async def register_c2b_urls(
        self,
        *,
        confirmation_url: str,
        validation_url: str,
        response_type: str = "Completed",
        shortcode: str | None = None,
    ) -> C2BRegistration:
        """Tell Daraja where to send C2B validation and confirmation for our shortcode.

        `response_type` (``Completed`` or ``Cancelled``) is what Daraja does when validation times out.
        """
        if response_type not in {"Completed", "Cancelled"}:
            raise ValueError(f"ResponseType must be Completed or Cancelled, not {response_type!r}")
        body = {
            "ShortCode": shortcode or self._settings.shortcode,
            "ResponseType": response_type,
            "ConfirmationURL": confirmation_url,
            "ValidationURL": validation_url,
        }
        answer = await self._call("/mpesa/c2b/v1/registerurl", body)
        _require_accepted(answer)
        return C2BRegistration(
            # sic: "Coversation"; accept the correct spelling too in case Safaricom fixes it
            originator_conversation_id=str(
                answer.get("OriginatorCoversationID", answer.get("OriginatorConversationID", ""))
            ),
            response_description=str(answer.get("ResponseDescription", "")),
        )

    async def simulate_c2b(
        self,
        *,
        phone: str,
        amount: Money,
        bill_ref_number: str,
        command_id: str = "CustomerPayBillOnline",
    ) -> C2BRegistration:
        """Sandbox only: make a customer pay our shortcode from their phone menu."""
        body = {
            "ShortCode": self._settings.shortcode,
            "CommandID": command_id,
            "Amount": whole_shillings(amount),
            "Msisdn": mpesa_msisdn(phone),
            "BillRefNumber": bill_ref_number,
        }
        answer = await self._call("/mpesa/c2b/v1/simulate", body)
        _require_accepted(answer)
        return C2BRegistration(
            originator_conversation_id=str(
                answer.get("OriginatorCoversationID", answer.get("OriginatorConversationID", ""))
            ),
            response_description=str(answer.get("ResponseDescription", "")),
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("DarajaClient is not started: use 'async with' or call start()")
        return self._session

    def _url(self, path: str) -> str:
        return self._settings.base_url.rstrip("/") + path

    def _initiator(self) -> str:
        if not self._settings.initiator_name:
            raise DarajaMisconfigured("initiator_name is needed for B2C, B2B, status, reversal and balance")
        return self._settings.initiator_name

    def _security_credential(self) -> str:
        if self._credential is None:
            password, certificate = self._settings.initiator_password, self._settings.certificate_pem
            if not password or not certificate:
                raise DarajaMisconfigured("set security_credential, or initiator_password with certificate_pem")
            self._credential = security_credential(password, certificate)
        return self._credential

    async def _call(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST with the cached token; on an invalid-token answer refresh once and try again."""
        token = await self.access_token()
        try:
            return await self._post(path, body, token)
        except DarajaInvalidToken:
            # A cached token can die before its announced expiry (revoked, clocks apart): one fresh
            # token, one more try, never a loop.
            self._forget_token(token)
            return await self._post(path, body, await self.access_token())

    async def _post(self, path: str, body: Mapping[str, Any], token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        with transport_errors(PROVIDER):
            async with self._http().post(self._url(path), json=body, headers=headers) as resp:
                status, text = resp.status, await resp.text()
        payload = _decode(status, text)
        if status >= 400 or "errorCode" in payload:
            raise _error_from(status, payload)
        return payload


def _decode(status: int, text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except ValueError:
        if status >= 500:
            raise DarajaServerError(text[:200] or "empty answer", code=None, http_status=status) from None
        raise ProviderProtocolError(PROVIDER, f"answer is not JSON: {text[:200]!r}", http_status=status) from None
    if not isinstance(payload, dict):
        raise ProviderProtocolError(PROVIDER, f"answer is not a JSON object: {text[:200]!r}", http_status=status)
    return payload


def _error_from(status: int, payload: Mapping[str, Any]) -> DarajaError:
    code = payload.get("errorCode")
    code = str(code) if code is not None else None
    message = str(payload.get("errorMessage", "")) or f"HTTP {status}"
    request_id = payload.get("requestId")
    kind: type[DarajaError]
    if code == INVALID_AUTHENTICATION:
        kind = DarajaAuthenticationFailed
    elif code in _TOKEN_ERRORS:
        kind = DarajaInvalidToken
    elif code == BAD_REQUEST:
        kind = DarajaBadRequest
    elif code == WRONG_CREDENTIALS_OR_PROCESSING:
        kind = DarajaRejected
    elif status >= 500 or status == 429:
        kind = DarajaServerError
    else:
        kind = DarajaError
    return kind(message, code=code, http_status=status, request_id=str(request_id) if request_id else None)


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ProviderProtocolError(PROVIDER, f"answer has no {key}")
    return value


def _require_accepted(answer: Mapping[str, Any]) -> None:
    code = str(answer.get("ResponseCode", ""))
    if code != "0":
        raise DarajaRejected(
            str(answer.get("ResponseDescription", "request not accepted")), code=code or None, http_status=200
        )


def _accepted(answer: Mapping[str, Any]) -> RequestAccepted:
    _require_accepted(answer)
    return RequestAccepted(
        conversation_id=_text(answer, "ConversationID"),
        originator_conversation_id=_text(answer, "OriginatorConversationID"),
        response_description=str(answer.get("ResponseDescription", "")),
    )
