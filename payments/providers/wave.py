"""Client for the Wave Business API: checkout sessions (collect), payouts (send), balance and
the transactions statement.

Amounts travel as strings in major units (XOF has no decimals, so ``"5000"``); here they are
`Money`. Payouts carry an ``Idempotency-Key``: sending the same key and body again returns the same
payout, so a payout whose answer was lost may be sent again with its key. Errors map Wave's
``code`` to typed exceptions; 429 and 5xx are marked retryable.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Self, TypeVar

import aiohttp

from payments.money import Currency, Money, MoneyError
from payments.phones import parse_msisdn
from payments.providers.errors import ProviderError, ProviderProtocolError, transport_errors
from payments.providers.wave_signing import compute_signature

PROVIDER = "wave"
_E = TypeVar("_E", bound=enum.StrEnum)
PRODUCTION_URL = "https://api.wave.com"


# -- errors ----------------------------------------------------------------------------------------


class WaveError(ProviderError):
    """Wave answered ``{"code", "message", "details"}`` with an HTTP error status."""

    def __init__(
        self, message: str, *, code: str | None, http_status: int | None, details: tuple[Any, ...] = ()
    ) -> None:
        super().__init__(PROVIDER, message, code=code, http_status=http_status)
        self.details = details


class WaveAuthError(WaveError):
    """401: missing, unreadable, unknown or revoked API key, or a bad request signature."""


class WaveValidationError(WaveError):
    """400: a request Wave could not accept as written (``details`` says which field)."""


class WaveNotFound(WaveError):
    """404: no such session, payout or transaction."""


class WaveInsufficientFunds(WaveError):
    """``insufficient-funds``: our wallet cannot cover the payout and its fee."""


class WaveIdempotencyMismatch(WaveError):
    """``idempotency-mismatch``: this Idempotency-Key was used before with a different body.

    IMPORTANT: a bug on our side (one key, two requests), never a reason to pick a new key.
    """


class WaveRecipientRefused(WaveError):
    """The recipient or payer cannot take this payment (limit, blocked account, mobile mismatch)."""


class WaveReversalRefused(WaveError):
    """A payout that can no longer be reversed (time limit passed, account terminated)."""


class WaveConflict(WaveError):
    """409 for another reason than idempotency: the object is not in a state that allows this."""


class WaveRateLimited(WaveError):
    """429: slow down and try again."""

    retryable = True


class WaveServerError(WaveError):
    """5xx: Wave failed on its side; try again (with the same Idempotency-Key for payouts)."""

    retryable = True


_ERRORS_BY_CODE: dict[str, type[WaveError]] = {
    "missing-auth-header": WaveAuthError,
    "invalid-auth": WaveAuthError,
    "api-key-not-provided": WaveAuthError,
    "no-matching-api-key": WaveAuthError,
    "api-key-revoked": WaveAuthError,
    "invalid-wave-signature": WaveAuthError,
    "insufficient-funds": WaveInsufficientFunds,
    "idempotency-mismatch": WaveIdempotencyMismatch,
    "recipient-limit-exceeded": WaveRecipientRefused,
    "recipient-account-blocked": WaveRecipientRefused,
    "payer-mobile-mismatch": WaveRecipientRefused,
    "payout-reversal-time-limit-exceeded": WaveReversalRefused,
    "payout-reversal-account-terminated": WaveReversalRefused,
}


def _error_from(status: int, text: str) -> WaveError:
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    code = payload.get("code")
    code = str(code) if code is not None else None
    message = str(payload.get("message") or text[:200] or f"HTTP {status}")
    details = payload.get("details")
    details_tuple = tuple(details) if isinstance(details, list) else ()
    kind = _ERRORS_BY_CODE.get(code or "")
    if kind is None:
        if status == 429:
            kind = WaveRateLimited
        elif status >= 500:
            kind = WaveServerError
        elif status == 401:
            kind = WaveAuthError
        elif status == 404:
            kind = WaveNotFound
        elif status == 409:
            kind = WaveConflict
        elif status in (400, 422):
            kind = WaveValidationError
        else:
            kind = WaveError
    return kind(message, code=code, http_status=status, details=details_tuple)


# -- values ----------------------------------------------------------------------------------------


class CheckoutStatus(enum.StrEnum):
    OPEN = "open"
    COMPLETE = "complete"
    EXPIRED = "expired"


class PaymentStatus(enum.StrEnum):
    PROCESSING = "processing"
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"


class PayoutStatus(enum.StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERSED = "reversed"


@dataclass(frozen=True, slots=True)
class PaymentError:
    """Why a checkout payment or a payout failed, in Wave's words."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    amount: Money
    checkout_status: CheckoutStatus
    payment_status: PaymentStatus
    client_reference: str | None
    transaction_id: str | None
    #: The link (or QR code) the payer opens to approve in the Wave app.
    wave_launch_url: str
    business_name: str | None
    success_url: str | None
    error_url: str | None
    when_created: datetime | None
    when_expires: datetime | None
    when_completed: datetime | None
    last_payment_error: PaymentError | None

    @property
    def succeeded(self) -> bool:
        return self.payment_status is PaymentStatus.SUCCEEDED


@dataclass(frozen=True, slots=True)
class Payout:
    id: str
    #: What the recipient receives (``receive_amount``); the fee comes on top.
    receive_amount: Money
    fee: Money
    mobile: str
    name: str | None
    client_reference: str | None
    status: PayoutStatus
    error: PaymentError | None
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class WaveTransaction:
    """One line of the wallet statement. `amount` is signed: money in is positive."""

    transaction_id: str
    amount: Money
    fee: Money
    balance: Money | None
    timestamp: datetime | None
    transaction_type: str | None
    counterparty_name: str | None
    counterparty_mobile: str | None
    client_reference: str | None
    is_reversal: bool


@dataclass(frozen=True, slots=True)
class TransactionPage:
    items: tuple[WaveTransaction, ...]
    end_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class WaveSettings:
    api_key: str = field(repr=False)
    base_url: str = PRODUCTION_URL
    #: Set when the API key has request signing enabled: every request then carries Wave-Signature.
    signing_secret: str | None = field(default=None, repr=False)
    #: The country assumed for a mobile written without its country code (``77 123 45 67``).
    default_region: str = "SN"
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0


# -- parsing answers -------------------------------------------------------------------------------


def wave_amount(amount: Money) -> str:
    """`Money` as Wave writes it: a string in major units (``"5000"`` for XOF)."""
    if amount.currency is not Currency.XOF:
        raise ValueError(f"Wave moves XOF here, not {amount.currency.value}")
    return str(amount.major)


def _money(value: Any, currency: Any, what: str) -> Money:
    try:
        return Money.of(str(value), str(currency))
    except MoneyError as exc:
        raise ProviderProtocolError(PROVIDER, f"{what}: {exc}") from None


def _when(value: Any, what: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProviderProtocolError(PROVIDER, f"{what} {value!r} is not an ISO 8601 time") from None


def _enum(kind: type[_E], value: Any, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ProviderProtocolError(PROVIDER, f"unknown {what} {value!r}") from None


def _field(obj: Mapping[str, Any], key: str, what: str) -> Any:
    if obj.get(key) in (None, ""):
        raise ProviderProtocolError(PROVIDER, f"{what} has no {key}")
    return obj[key]


def _payment_error(value: Any, code_key: str, message_key: str) -> PaymentError | None:
    if not isinstance(value, Mapping) or not value.get(code_key):
        return None
    return PaymentError(str(value[code_key]), str(value.get(message_key) or ""))


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProviderProtocolError(PROVIDER, f"{what} is not a JSON object")
    return value


def parse_checkout_session(obj: Any) -> CheckoutSession:
    what = "checkout session"
    obj = _object(obj, what)
    currency = _field(obj, "currency", what)
    return CheckoutSession(
        id=str(_field(obj, "id", what)),
        amount=_money(_field(obj, "amount", what), currency, f"{what} amount"),
        checkout_status=_enum(CheckoutStatus, obj.get("checkout_status"), "checkout_status"),
        payment_status=_enum(PaymentStatus, obj.get("payment_status"), "payment_status"),
        client_reference=obj.get("client_reference"),
        transaction_id=obj.get("transaction_id"),
        wave_launch_url=str(obj.get("wave_launch_url") or ""),
        business_name=obj.get("business_name"),
        success_url=obj.get("success_url"),
        error_url=obj.get("error_url"),
        when_created=_when(obj.get("when_created"), "when_created"),
        when_expires=_when(obj.get("when_expires"), "when_expires"),
        when_completed=_when(obj.get("when_completed"), "when_completed"),
        last_payment_error=_payment_error(obj.get("last_payment_error"), "code", "message"),
    )


def parse_payout(obj: Any) -> Payout:
    what = "payout"
    obj = _object(obj, what)
    currency = _field(obj, "currency", what)
    return Payout(
        id=str(_field(obj, "id", what)),
        receive_amount=_money(_field(obj, "receive_amount", what), currency, "receive_amount"),
        fee=_money(obj.get("fee") or "0", currency, "fee"),
        mobile=str(obj.get("mobile") or ""),
        name=obj.get("name"),
        client_reference=obj.get("client_reference"),
        status=_enum(PayoutStatus, obj.get("status"), "payout status"),
        error=_payment_error(obj.get("payout_error"), "error_code", "error_message"),
        timestamp=_when(obj.get("timestamp"), "timestamp"),
    )


def parse_transaction(obj: Any) -> WaveTransaction:
    what = "transaction"
    obj = _object(obj, what)
    currency = obj.get("currency") or Currency.XOF.value
    balance = obj.get("balance")
    return WaveTransaction(
        transaction_id=str(_field(obj, "transaction_id", what)),
        amount=_money(_field(obj, "amount", what), currency, "amount"),
        fee=_money(obj.get("fee") or "0", currency, "fee"),
        balance=None if balance in (None, "") else _money(balance, currency, "balance"),
        timestamp=_when(obj.get("timestamp"), "timestamp"),
        transaction_type=obj.get("transaction_type"),
        counterparty_name=obj.get("counterparty_name"),
        counterparty_mobile=obj.get("counterparty_mobile"),
        client_reference=obj.get("client_reference"),
        is_reversal=bool(obj.get("is_reversal", False)),
    )


def _results(payload: Any, what: str) -> list[Any]:
    items = _object(payload, what).get("result")
    if not isinstance(items, list):
        raise ProviderProtocolError(PROVIDER, f"{what} answer has no result list")
    return items


# -- client ----------------------------------------------------------------------------------------


class WaveClient:
    """One Wave API key: an aiohttp session and one method per endpoint.

    Use as ``async with WaveClient(settings) as wave: ...`` or call `start` and `close`.
    """

    def __init__(self, settings: WaveSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock  # unix time, for request signatures
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=self._settings.timeout_s, sock_connect=self._settings.connect_timeout_s
            )
            self._session = aiohttp.ClientSession(timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- checkout ------------------------------------------------------------------------------

    async def create_checkout_session(
        self,
        amount: Money,
        *,
        success_url: str,
        error_url: str,
        client_reference: str | None = None,
        restrict_payer_mobile: str | None = None,
        aggregated_merchant_id: str | None = None,
    ) -> CheckoutSession:
        body: dict[str, Any] = {
            "amount": wave_amount(amount),
            "currency": amount.currency.value,
            "success_url": success_url,
            "error_url": error_url,
        }
        if client_reference is not None:
            if len(client_reference) > 255:
                raise ValueError("client_reference is limited to 255 characters")
            body["client_reference"] = client_reference
        if restrict_payer_mobile is not None:
            body["restrict_payer_mobile"] = parse_msisdn(restrict_payer_mobile, self._settings.default_region)
        if aggregated_merchant_id is not None:
            body["aggregated_merchant_id"] = aggregated_merchant_id
        return parse_checkout_session(await self._request("POST", "/v1/checkout/sessions", body=body))

    async def get_checkout_session(self, session_id: str) -> CheckoutSession:
        return parse_checkout_session(await self._request("GET", f"/v1/checkout/sessions/{session_id}"))

    async def get_checkout_session_by_transaction(self, transaction_id: str) -> CheckoutSession:
        answer = await self._request("GET", "/v1/checkout/sessions", params={"transaction_id": transaction_id})
        return parse_checkout_session(answer)

    async def search_checkout_sessions(self, client_reference: str) -> tuple[CheckoutSession, ...]:
        """Every session made with our reference: how to find a session again after a crash."""
        answer = await self._request(
            "GET", "/v1/checkout/sessions/search", params={"client_reference": client_reference}
        )
        return tuple(parse_checkout_session(s) for s in _results(answer, "session search"))

    async def expire_checkout_session(self, session_id: str) -> None:
        """Expire an open session: its link can no longer be paid. A session that is not open any
        more (paid, or expired already) is refused with `WaveConflict` (409): read it to know which."""
        await self._request("POST", f"/v1/checkout/sessions/{session_id}/expire")

    async def refund_checkout_session(self, session_id: str) -> None:
        """Refund a completed session. Refunding twice makes no second refund."""
        await self._request("POST", f"/v1/checkout/sessions/{session_id}/refund")

    # -- payouts -------------------------------------------------------------------------------

    async def create_payout(
        self,
        *,
        idempotency_key: str,
        receive_amount: Money,
        mobile: str,
        name: str | None = None,
        national_id: str | None = None,
        payment_reason: str | None = None,
        client_reference: str | None = None,
    ) -> Payout:
        """Send `receive_amount` (net: Wave's fee comes on top) to a Wave wallet.

        A failed payout (recipient blocked, over its limit) comes back as a `Payout` with status
        FAILED and its `error`; a refused request (insufficient funds, reused key) raises.
        """
        if not idempotency_key:
            raise ValueError("a payout needs an Idempotency-Key")
        body: dict[str, Any] = {
            "currency": receive_amount.currency.value,
            "receive_amount": wave_amount(receive_amount),
            "mobile": parse_msisdn(mobile, self._settings.default_region),
        }
        optional = {
            "name": name,
            "national_id": national_id,
            "payment_reason": payment_reason,
            "client_reference": client_reference,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        answer = await self._request("POST", "/v1/payout", body=body, idempotency_key=idempotency_key)
        return parse_payout(answer)

    async def get_payout(self, payout_id: str) -> Payout:
        return parse_payout(await self._request("GET", f"/v1/payout/{payout_id}"))

    async def search_payouts(self, client_reference: str) -> tuple[Payout, ...]:
        answer = await self._request("GET", "/v1/payouts/search", params={"client_reference": client_reference})
        return tuple(parse_payout(p) for p in _results(answer, "payout search"))

    async def reverse_payout(self, payout_id: str) -> None:
        await self._request("POST", f"/v1/payout/{payout_id}/reverse")

    # -- balance and statement -----------------------------------------------------------------

    async def get_balance(self) -> Money:
        answer = _object(await self._request("GET", "/v1/balance"), "balance")
        return _money(_field(answer, "amount", "balance"), _field(answer, "currency", "balance"), "balance")

    async def list_transactions(self, *, day: date | None = None, after: str | None = None) -> TransactionPage:
        """One page of the statement (of `day`, default today), after the cursor `after`."""
        params = {}
        if day is not None:
            params["date"] = day.isoformat()
        if after is not None:
            params["after"] = after
        answer = _object(await self._request("GET", "/v1/transactions", params=params), "transactions")
        items = answer.get("items")
        page_info = answer.get("page_info")
        if not isinstance(items, list) or not isinstance(page_info, Mapping):
            raise ProviderProtocolError(PROVIDER, "transactions answer lacks items or page_info")
        return TransactionPage(
            items=tuple(parse_transaction(t) for t in items),
            end_cursor=page_info.get("end_cursor"),
            has_next_page=bool(page_info.get("has_next_page")),
        )

    async def iter_transactions(self, *, day: date | None = None) -> AsyncIterator[WaveTransaction]:
        """Every statement line of `day`, following the cursor page after page."""
        after: str | None = None
        while True:
            page = await self.list_transactions(day=day, after=after)
            for item in page.items:
                yield item
            if not page.has_next_page or not page.end_cursor:
                return
            after = page.end_cursor

    async def refund_transaction(self, transaction_id: str) -> None:
        await self._request("POST", f"/v1/transactions/{transaction_id}/refund")

    # -- plumbing ------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("WaveClient is not started: use 'async with' or call start()")
        # Serialise once: the signature must cover exactly the bytes that go on the wire.
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": f"Bearer {self._settings.api_key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if self._settings.signing_secret:
            stamp = int(self._clock())
            signature = compute_signature(self._settings.signing_secret, stamp, raw)
            headers["Wave-Signature"] = f"t={stamp},v1={signature}"
        url = self._settings.base_url.rstrip("/") + path
        with transport_errors(PROVIDER):
            async with self._session.request(
                method, url, data=raw if body is not None else None, params=params, headers=headers
            ) as resp:
                status, text = resp.status, await resp.text()
        if status >= 400:
            raise _error_from(status, text)
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ProviderProtocolError(PROVIDER, f"answer is not JSON: {text[:200]!r}", http_status=status) from None
