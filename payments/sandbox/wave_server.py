"""A local Wave Business API: checkout sessions, payouts, balance, transactions, signed webhooks.

Follows ``shared/contracts/wave.md``: Bearer API key (401 with Wave's auth codes), optional request
signing (``Wave-Signature`` checked when ``wave_request_signing_secret`` is set), amounts as strings
of whole francs, errors as ``{"code", "message", "details"}``.

Checkout: a created session waits for its payer, like the Wave app showing the payment. The
payer's answer is a sandbox call, ``POST /_sandbox/checkout/sessions/{id}/approve`` (body
``{"payer_mobile": "+221…"}`` optional) or ``…/decline``; ``GET /c/{id}`` (the session's
``wave_launch_url``) shows both as buttons. Approval pays (less Wave's fee) unless the payer's
number says otherwise (see `outcomes`), then a ``checkout.session.completed`` or
``checkout.session.payment_failed`` webhook follows. A failed payment leaves the session ``open``
(``payment_status`` ``cancelled``, with ``last_payment_error``): the payer may try again with the same
link until the session expires, ``wave_checkout_ttl_s`` after its creation or when ``POST
/v1/checkout/sessions/{id}/expire`` expires it (409 ``checkout-session-not-open`` once it is paid or
expired). No webhook tells of an expiry (the contract has none): reading the session shows it.

Payouts: ``Idempotency-Key`` required; the same key and body give back the same payout, the same key
with another body gives 409 ``idempotency-mismatch``; a request with a key whose first request is still
being served (a client that gave up on a slow answer and retried) waits for it and gets its answer,
never a second payout. A payout is settled at once (``succeeded``)
or ``failed`` with ``payout_error``; a wallet that cannot cover amount + fee gives 400
``insufficient-funds``.

Webhooks go to the endpoint set in the settings or with ``POST /_sandbox/webhooks``
(``{"url", "strategy": "signing"|"shared_secret", "secrets": [...]}``), signed as Wave signs them,
retried with exponential backoff until one answer is 2xx (``webhook_max_attempts`` at most).
``GET /_sandbox/webhooks/deliveries`` lists attempts; ``POST /_sandbox/webhooks/test`` sends a
``test.test_event``.

Sandbox conventions where Wave's are not in the contract: 404 ``not-found``; 409
``checkout-session-not-open`` (expire/approve a session that is not open) and
``checkout-session-not-complete`` (refund one that was not paid); GET ``/v1/transactions``
without ``date`` lists every day; its cursor is opaque.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from payments.sandbox.books import BookEntry, Books
from payments.sandbox.delivery import Dispatcher
from payments.sandbox.outcomes import Outcome, OutcomeBook, Plan, outcome_routes
from payments.sandbox.settings import SandboxSettings

WALLET = "wallet"
CURRENCY = "XOF"
DEFAULT_PAYER = "+221770000100"

_SUPPORTED = {
    Outcome.INSUFFICIENT_FUNDS,
    Outcome.RECIPIENT_LIMIT_EXCEEDED,
    Outcome.RECIPIENT_ACCOUNT_BLOCKED,
    Outcome.USER_CANCELLED,
    Outcome.HTTP_500,
    Outcome.RATE_LIMITED,
    Outcome.NO_CALLBACK,
    Outcome.DUPLICATE_CALLBACK,
    Outcome.EARLY_CALLBACK,
    Outcome.SLOW,
    Outcome.IDEMPOTENCY_MISMATCH,
}

_PAYOUT_FAILURES = {
    Outcome.RECIPIENT_LIMIT_EXCEEDED: ("recipient-limit-exceeded", "The recipient's wallet limit would be exceeded."),
    Outcome.RECIPIENT_ACCOUNT_BLOCKED: ("recipient-account-blocked", "The recipient's account is blocked."),
}
_CHECKOUT_FAILURES = {
    Outcome.INSUFFICIENT_FUNDS: ("insufficient-client-funds", "The payer does not have enough funds."),
    Outcome.RECIPIENT_ACCOUNT_BLOCKED: ("blocked-account", "The payer's account is blocked."),
    Outcome.USER_CANCELLED: ("payment-failure", "The payer cancelled the payment."),
}

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    return web.json_response({"code": code, "message": message, "details": details or []}, status=status)


def _invalid(field: str, message: str) -> web.Response:
    return _error(
        400,
        "request-validation-error",
        "Request validation error",
        [{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _whole_francs(body: dict[str, Any], key: str) -> int:
    raw = body.get(key)
    if not isinstance(raw, str):
        raise _Invalid(key, "must be a string")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _Invalid(key, "is not a number") from None
    if not value.is_finite() or value != value.to_integral_value() or value <= 0:
        raise _Invalid(key, "must be a positive whole number of francs (XOF has no decimals)")
    return int(value)


def _mobile(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise _Invalid(key, "must be an E.164 number")
    return value


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(7)


@dataclass(slots=True)
class _Session:
    id: str
    amount: int
    client_reference: str | None
    restrict_payer_mobile: str | None
    aggregated_merchant_id: str | None
    success_url: str
    error_url: str
    launch_url: str
    when_created: datetime
    when_expires: datetime
    checkout_status: str = "open"
    payment_status: str = "processing"
    transaction_id: str | None = None
    when_completed: datetime | None = None
    last_payment_error: dict[str, str] | None = None
    refunded: bool = False


@dataclass(slots=True)
class _Payout:
    id: str
    receive_amount: int
    fee: int
    mobile: str
    name: str | None
    national_id: str | None
    payment_reason: str | None
    client_reference: str | None
    status: str
    timestamp: datetime
    transaction_id: str | None = None
    payout_error: dict[str, str] | None = None


@dataclass(slots=True)
class _WebhookEndpoint:
    url: str
    strategy: str
    secrets: tuple[str, ...]


class WaveSandbox:
    """State and handlers of one sandbox Wave. Reach it as ``app[WAVE]``."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.outcomes = OutcomeBook(_SUPPORTED)
        self.books = Books(CURRENCY, {WALLET: settings.wave_opening_balance_xof})
        self.dispatcher = Dispatcher(settings.callback_timeout_s)
        self._sessions: dict[str, _Session] = {}
        self._payouts: dict[str, _Payout] = {}
        self._idempotency: dict[str, tuple[str, str]] = {}  # key -> (body fingerprint, payout id)
        self._serving: dict[str, asyncio.Lock] = {}  # key -> held while its first request is served
        self.webhook: _WebhookEndpoint | None = (
            _WebhookEndpoint(settings.wave_webhook_url, settings.wave_webhook_strategy, settings.wave_webhook_secrets)
            if settings.wave_webhook_url
            else None
        )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/checkout/sessions", self.create_session),
            # "search" before "{id}": aiohttp tries routes in the order they were added.
            web.get("/v1/checkout/sessions/search", self.search_sessions),
            web.get("/v1/checkout/sessions", self.session_by_transaction),
            web.get("/v1/checkout/sessions/{id}", self.get_session),
            web.post("/v1/checkout/sessions/{id}/expire", self.expire_session),
            web.post("/v1/checkout/sessions/{id}/refund", self.refund_session),
            web.post("/v1/payout", self.create_payout),
            web.get("/v1/payout/{id}", self.get_payout),
            web.get("/v1/payouts/search", self.search_payouts),
            web.post("/v1/payout/{id}/reverse", self.reverse_payout),
            web.get("/v1/balance", self.balance),
            web.get("/v1/transactions", self.transactions),
            web.post("/v1/transactions/{id}/refund", self.refund_transaction),
            web.get("/c/{id}", self.launch_page),
            web.post("/_sandbox/checkout/sessions/{id}/approve", self.approve),
            web.post("/_sandbox/checkout/sessions/{id}/decline", self.decline),
            web.post("/_sandbox/webhooks", self.set_webhook),
            web.get("/_sandbox/webhooks/deliveries", self.deliveries),
            web.post("/_sandbox/webhooks/test", self.test_event),
            *outcome_routes(self.outcomes),
        ]

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        await self.dispatcher.open()
        yield
        await self.dispatcher.close()

    @web.middleware
    async def authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Wave's auth checks, on the public API only (the sandbox's own paths stay open)."""
        if not request.path.startswith("/v1/"):
            return await handler(request)
        header = request.headers.get("Authorization")
        if header is None:
            return _error(401, "missing-auth-header", "Your request should include an HTTP auth header.")
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer":
            return _error(401, "invalid-auth", "Your HTTP auth header can't be processed.")
        if not key.strip():
            return _error(401, "api-key-not-provided", "Your request should include an API key.")
        if not hmac.compare_digest(key.strip().encode(), self.settings.wave_api_key.encode()):
            return _error(401, "no-matching-api-key", "The key you provided doesn't exist in our system.")
        secret = self.settings.wave_request_signing_secret
        if secret and not self._signed(request.headers.get("Wave-Signature", ""), await request.read(), secret):
            return _error(401, "invalid-wave-signature", "The request signature is missing or wrong.")
        return await handler(request)

    @staticmethod
    def _signed(header: str, body: bytes, secret: str) -> bool:
        # Parsed and computed here independently of the client's code, so the tests can catch its bugs.
        fields = [part.strip().partition("=") for part in header.split(",")]
        stamps = [v for k, _, v in fields if k == "t"]
        signatures = [v for k, _, v in fields if k == "v1"]
        if len(stamps) != 1 or not stamps[0].isdigit() or abs(time.time() - int(stamps[0])) > 300:
            return False
        expected = hmac.new(secret.encode(), stamps[0].encode() + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(s.encode(), expected.encode()) for s in signatures)

    async def _gate(self, plan: Plan) -> web.Response | None:
        if plan.outcome is Outcome.HTTP_500:
            return _error(500, "internal-server-error", "Something went wrong on our side.")
        if plan.outcome is Outcome.RATE_LIMITED:
            return _error(429, "rate-limit-exceeded", "Too many requests.")
        if plan.outcome is Outcome.SLOW:
            await asyncio.sleep(self.settings.slow_answer_s)
        return None

    def _fee(self, amount: int) -> int:
        return math.ceil(amount * self.settings.wave_fee_bps / 10_000)

    # -- checkout ------------------------------------------------------------------------------

    def _session_json(self, session: _Session) -> dict[str, Any]:
        self._expire_if_due(session)
        return {
            "id": session.id,
            "amount": str(session.amount),
            "checkout_status": session.checkout_status,
            "client_reference": session.client_reference,
            "currency": CURRENCY,
            "error_url": session.error_url,
            "last_payment_error": session.last_payment_error,
            "business_name": self.settings.wave_business_name,
            "payment_status": session.payment_status,
            "transaction_id": session.transaction_id,
            "aggregated_merchant_id": session.aggregated_merchant_id,
            "success_url": session.success_url,
            "wave_launch_url": session.launch_url,
            "when_completed": _iso(session.when_completed),
            "when_created": _iso(session.when_created),
            "when_expires": _iso(session.when_expires),
            "restrict_payer_mobile": session.restrict_payer_mobile,
        }

    @staticmethod
    def _expire_if_due(session: _Session) -> None:
        if session.checkout_status == "open" and datetime.now(UTC) >= session.when_expires:
            session.checkout_status = "expired"

    async def create_session(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise _Invalid("body", "must be a JSON object")
            amount = _whole_francs(body, "amount")
            if body.get("currency") != CURRENCY:
                raise _Invalid("currency", f"must be {CURRENCY}")
            for key in ("success_url", "error_url"):
                if not isinstance(body.get(key), str) or not body[key].startswith(("https://", "http://")):
                    raise _Invalid(key, "must be a URL")
            reference = body.get("client_reference")
            if reference is not None and (not isinstance(reference, str) or len(reference) > 255):
                raise _Invalid("client_reference", "must be a string of at most 255 characters")
            restrict = body.get("restrict_payer_mobile")
            if restrict is not None:
                _mobile(restrict, "restrict_payer_mobile")
        except _Invalid as exc:
            return _invalid(exc.field, str(exc))
        except ValueError:
            return _invalid("body", "is not JSON")
        if (refusal := await self._gate(self.outcomes.take(restrict))) is not None:
            return refusal
        now = datetime.now(UTC)
        session_id = _new_id("cos-")
        session = _Session(
            id=session_id,
            amount=amount,
            client_reference=reference,
            restrict_payer_mobile=restrict,
            aggregated_merchant_id=body.get("aggregated_merchant_id"),
            success_url=body["success_url"],
            error_url=body["error_url"],
            launch_url=f"{request.url.origin()}/c/{session_id}",
            when_created=now,
            when_expires=now + timedelta(seconds=self.settings.wave_checkout_ttl_s),
        )
        self._sessions[session.id] = session
        return web.json_response(self._session_json(session))

    def _session(self, request: web.Request) -> _Session | None:
        return self._sessions.get(request.match_info["id"])

    async def get_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return _error(404, "not-found", "No checkout session with this id.")
        return web.json_response(self._session_json(session))

    async def session_by_transaction(self, request: web.Request) -> web.Response:
        transaction_id = request.query.get("transaction_id")
        session = next((s for s in self._sessions.values() if s.transaction_id == transaction_id), None)
        if session is None:
            return _error(404, "not-found", "No checkout session with this transaction id.")
        return web.json_response(self._session_json(session))

    async def search_sessions(self, request: web.Request) -> web.Response:
        reference = request.query.get("client_reference")
        found = [self._session_json(s) for s in self._sessions.values() if s.client_reference == reference]
        return web.json_response({"result": found})

    async def expire_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return _error(404, "not-found", "No checkout session with this id.")
        self._expire_if_due(session)
        if session.checkout_status != "open":
            return _error(409, "checkout-session-not-open", "Only an open session can be expired.")
        session.checkout_status = "expired"
        return web.json_response(self._session_json(session))

    async def refund_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return _error(404, "not-found", "No checkout session with this id.")
        return self._refund(session)

    async def refund_transaction(self, request: web.Request) -> web.Response:
        transaction_id = request.match_info["id"]
        session = next((s for s in self._sessions.values() if s.transaction_id == transaction_id), None)
        if session is None:
            return _error(404, "not-found", "No refundable transaction with this id.")
        return self._refund(session)

    def _refund(self, session: _Session) -> web.Response:
        if session.payment_status != "succeeded" or session.transaction_id is None:
            return _error(409, "checkout-session-not-complete", "Only a paid session can be refunded.")
        if not session.refunded:  # refunding twice makes no second refund
            original = self.books.find(session.transaction_id)
            fee = original.fee_minor if original else 0
            self.books.record(
                transaction_id=_new_id("T_"),
                kind="refund",
                account=WALLET,
                amount_minor=-session.amount,
                fee_minor=-fee,
                party=original.party if original else "",
                at=datetime.now(UTC),
                reference=session.id,
                client_reference=session.client_reference,
                reverses=session.transaction_id,
            )
            self.books.mark(session.transaction_id, "refunded")
            session.refunded = True
        return web.json_response({})

    async def approve(self, request: web.Request) -> web.Response:
        return await self._payer_answers(request, approved=True)

    async def decline(self, request: web.Request) -> web.Response:
        return await self._payer_answers(request, approved=False)

    async def _payer_answers(self, request: web.Request, *, approved: bool) -> web.Response:
        """The payer taps in the app: pay (approve) or refuse (decline) an open session."""
        session = self._session(request)
        if session is None:
            return _error(404, "not-found", "No checkout session with this id.")
        self._expire_if_due(session)
        if session.checkout_status != "open":
            return _error(409, "checkout-session-not-open", "The session is not open.")
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                parsed = json.loads(await request.read() or b"{}")
                body = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                return _invalid("body", "is not JSON")
        payer = str(body.get("payer_mobile") or session.restrict_payer_mobile or DEFAULT_PAYER)
        plan = self.outcomes.take(payer)
        now = datetime.now(UTC)
        failure: tuple[str, str] | None = None
        if not approved:
            failure = ("payment-failure", "The payer declined the payment.")
        elif session.restrict_payer_mobile and payer != session.restrict_payer_mobile:
            failure = ("payer-mobile-mismatch", "The payer is not the mobile this session is restricted to.")
        elif plan.outcome in _CHECKOUT_FAILURES:
            failure = _CHECKOUT_FAILURES[plan.outcome]
        if failure is None:
            session.checkout_status = "complete"
            session.payment_status = "succeeded"
            session.transaction_id = _new_id("T_")
            session.when_completed = now
            session.last_payment_error = None
            self.books.record(
                transaction_id=session.transaction_id,
                kind="checkout_payment",
                account=WALLET,
                amount_minor=session.amount,
                fee_minor=self._fee(session.amount),
                party=payer,
                at=now,
                reference=session.id,
                client_reference=session.client_reference,
                counterparty_name="Sandbox Payer",
            )
            event_type = "checkout.session.completed"
        else:
            session.payment_status = "cancelled"
            session.last_payment_error = {"code": failure[0], "message": failure[1]}
            event_type = "checkout.session.payment_failed"
        await self._announce(event_type, self._session_json(session), plan)
        return web.json_response(self._session_json(session))

    # -- payouts -------------------------------------------------------------------------------

    @staticmethod
    def _payout_json(payout: _Payout) -> dict[str, Any]:
        return {
            "id": payout.id,
            "currency": CURRENCY,
            "receive_amount": str(payout.receive_amount),
            "fee": str(payout.fee),
            "mobile": payout.mobile,
            "name": payout.name,
            "national_id": payout.national_id,
            "payment_reason": payout.payment_reason,
            "client_reference": payout.client_reference,
            "status": payout.status,
            "payout_error": payout.payout_error,
            "timestamp": _iso(payout.timestamp),
        }

    async def create_payout(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return _error(400, "missing-idempotency-key", "A payout needs an Idempotency-Key header.")
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise _Invalid("body", "must be a JSON object")
            if body.get("currency") != CURRENCY:
                raise _Invalid("currency", f"must be {CURRENCY}")
            amount = _whole_francs(body, "receive_amount")
            mobile = _mobile(body.get("mobile"), "mobile")
        except _Invalid as exc:
            return _invalid(exc.field, str(exc))
        except ValueError:
            return _invalid("body", "is not JSON")
        fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"))
        # One request per key at a time: a retry that comes while the first is still being served
        # (a slow answer its client gave up on) waits for it, then is answered as a replay.
        lock = self._serving.setdefault(key, asyncio.Lock())
        async with lock:
            return await self._create_payout(key, body, fingerprint, amount, mobile)

    async def _create_payout(self, key: str, body: dict[str, Any], fingerprint: str, amount: int,
                             mobile: str) -> web.Response:
        if key in self._idempotency:
            seen, payout_id = self._idempotency[key]
            if seen != fingerprint:
                return _idempotency_mismatch()
            return web.json_response(self._payout_json(self._payouts[payout_id]))
        plan = self.outcomes.take(mobile)
        if plan.outcome is Outcome.IDEMPOTENCY_MISMATCH:
            return _idempotency_mismatch()
        if plan.outcome is not Outcome.HTTP_500 and (refusal := await self._gate(plan)) is not None:
            return refusal
        fee = self._fee(amount)
        if plan.outcome is Outcome.INSUFFICIENT_FUNDS or amount + fee > self.books.balance(WALLET):
            return _error(400, "insufficient-funds", "The wallet cannot cover this payout and its fee.")
        payout = _Payout(
            id=_new_id("pt-"),
            receive_amount=amount,
            fee=fee,
            mobile=mobile,
            name=body.get("name"),
            national_id=body.get("national_id"),
            payment_reason=body.get("payment_reason"),
            client_reference=body.get("client_reference"),
            status="succeeded",
            timestamp=datetime.now(UTC),
        )
        if plan.outcome in _PAYOUT_FAILURES:
            code, message = _PAYOUT_FAILURES[plan.outcome]
            payout.status = "failed"
            payout.payout_error = {"error_code": code, "error_message": message}
        else:
            payout.transaction_id = _new_id("T_")
            self.books.record(
                transaction_id=payout.transaction_id,
                kind="payout",
                account=WALLET,
                amount_minor=-amount,
                fee_minor=fee,
                party=mobile,
                at=payout.timestamp,
                reference=payout.id,
                client_reference=payout.client_reference,
                counterparty_name=payout.name,
            )
        self._payouts[payout.id] = payout
        self._idempotency[key] = (fingerprint, payout.id)
        if plan.outcome is Outcome.HTTP_500:
            # The payout is made, then the answer is lost: only the Idempotency-Key can recover it.
            return _error(500, "internal-server-error", "Something went wrong on our side.")
        return web.json_response(self._payout_json(payout))

    async def get_payout(self, request: web.Request) -> web.Response:
        payout = self._payouts.get(request.match_info["id"])
        if payout is None:
            return _error(404, "not-found", "No payout with this id.")
        return web.json_response(self._payout_json(payout))

    async def search_payouts(self, request: web.Request) -> web.Response:
        reference = request.query.get("client_reference")
        found = [self._payout_json(p) for p in self._payouts.values() if p.client_reference == reference]
        return web.json_response({"result": found})

    async def reverse_payout(self, request: web.Request) -> web.Response:
        payout = self._payouts.get(request.match_info["id"])
        if payout is None:
            return _error(404, "not-found", "No payout with this id.")
        if payout.status == "reversed":
            return web.json_response({})
        if payout.status != "succeeded" or payout.transaction_id is None:
            return _error(409, "payout-not-reversible", "Only a succeeded payout can be reversed.")
        age = (datetime.now(UTC) - payout.timestamp).total_seconds()
        if age > self.settings.wave_payout_reversal_window_s:
            return _error(400, "payout-reversal-time-limit-exceeded", "The payout is too old to be reversed.")
        self.books.record(
            transaction_id=_new_id("T_"),
            kind="payout_reversal",
            account=WALLET,
            amount_minor=payout.receive_amount,
            fee_minor=-payout.fee,
            party=payout.mobile,
            at=datetime.now(UTC),
            reference=payout.id,
            client_reference=payout.client_reference,
            reverses=payout.transaction_id,
        )
        self.books.mark(payout.transaction_id, "reversed")
        payout.status = "reversed"
        return web.json_response({})

    # -- balance and statement -----------------------------------------------------------------

    async def balance(self, request: web.Request) -> web.Response:
        return web.json_response({"amount": str(self.books.balance(WALLET)), "currency": CURRENCY})

    async def transactions(self, request: web.Request) -> web.Response:
        entries = self.books.entries()
        day_text = request.query.get("date")
        if day_text:
            try:
                day = date.fromisoformat(day_text)
            except ValueError:
                return _error(400, "request-validation-error", "date must be YYYY-MM-DD")
            entries = [e for e in entries if e.at.astimezone(UTC).date() == day]
        start = 0
        after = request.query.get("after")
        if after:
            try:
                start = int(base64.urlsafe_b64decode(after.encode()).decode()) + 1
            except (ValueError, UnicodeDecodeError):
                return _error(400, "request-validation-error", "after is not a cursor from this API")
        size = self.settings.wave_transactions_page_size
        page = entries[start : start + size]
        end_index = start + len(page) - 1

        def cursor(index: int) -> str:
            return base64.urlsafe_b64encode(str(index).encode()).decode()

        return web.json_response(
            {
                "page_info": {
                    "start_cursor": cursor(start) if page else None,
                    "end_cursor": cursor(end_index) if page else None,
                    "has_next_page": start + size < len(entries),
                },
                "date": day_text,
                "items": [_transaction_json(e) for e in page],
            }
        )

    # -- webhooks ------------------------------------------------------------------------------

    async def set_webhook(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            url = str(body["url"])
            strategy = str(body.get("strategy", "signing"))
            chosen = body.get("secrets") or list(self.settings.wave_webhook_secrets)
            if strategy not in ("signing", "shared_secret") or not all(isinstance(s, str) and s for s in chosen):
                raise ValueError("strategy must be signing or shared_secret, secrets non-empty strings")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad webhook endpoint: {exc}"}, status=400)
        self.webhook = _WebhookEndpoint(url, strategy, tuple(chosen))
        return web.json_response({"url": url, "strategy": strategy})

    async def deliveries(self, request: web.Request) -> web.Response:
        return web.json_response({"attempts": [a.to_json() for a in self.dispatcher.attempts]})

    async def test_event(self, request: web.Request) -> web.Response:
        event = await self._announce("test.test_event", {"message": "This is a test event."}, Plan(Outcome.SUCCESS))
        return web.json_response({"id": event["id"] if event else None})

    def _webhook_headers(self, endpoint: _WebhookEndpoint, body: bytes) -> dict[str, str]:
        if endpoint.strategy == "shared_secret":
            return {"Authorization": f"Bearer {endpoint.secrets[0]}"}
        stamp = str(int(time.time()))
        signatures = [
            hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).hexdigest() for secret in endpoint.secrets
        ]
        return {"Wave-Signature": ",".join([f"t={stamp}", *(f"v1={s}" for s in signatures)])}

    async def _announce(self, event_type: str, data: dict[str, Any], plan: Plan) -> dict[str, Any] | None:
        """Send an event to the webhook endpoint as the plan says; returns it (None when no endpoint)."""
        endpoint = self.webhook
        if endpoint is None:
            return None
        event = {"id": _new_id("EV_"), "type": event_type, "data": data}
        if plan.outcome is Outcome.NO_CALLBACK:
            return event
        body = json.dumps(event).encode()
        copies = 2 if plan.outcome is Outcome.DUPLICATE_CALLBACK else 1
        for _ in range(copies):
            if plan.outcome is Outcome.EARLY_CALLBACK:
                # The first try happens before the answer to the caller; retries, if any, after.
                if not await self._attempt(endpoint, event, body, 1):
                    self.dispatcher.spawn(self._deliver(endpoint, event, body, first_attempt=2))
            else:
                self.dispatcher.spawn(self._deliver(endpoint, event, body, first_attempt=1, delay=plan.delay_s))
        return event

    async def _attempt(self, endpoint: _WebhookEndpoint, event: dict[str, Any], body: bytes, attempt: int) -> bool:
        status, _ = await self.dispatcher.post(
            endpoint.url,
            body,
            kind=event["type"],
            reference=event["id"],
            attempt=attempt,
            headers=self._webhook_headers(endpoint, body),  # a fresh timestamp per attempt
        )
        return status is not None and 200 <= status < 300

    async def _deliver(
        self,
        endpoint: _WebhookEndpoint,
        event: dict[str, Any],
        body: bytes,
        *,
        first_attempt: int,
        delay: float | None = None,
    ) -> None:
        await asyncio.sleep(delay if delay is not None else self.settings.callback_delay_s)
        for attempt in range(first_attempt, self.settings.webhook_max_attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.settings.webhook_retry_base_s * 2 ** (attempt - 2))
            if await self._attempt(endpoint, event, body, attempt):
                return

    # -- the payer's page ----------------------------------------------------------------------

    async def launch_page(self, request: web.Request) -> web.Response:
        session = self._session(request)
        if session is None:
            return web.Response(status=404, text="No such checkout session.")
        self._expire_if_due(session)
        base = f"/_sandbox/checkout/sessions/{session.id}"
        html = (
            "<!doctype html><meta charset='utf-8'><title>Wave sandbox</title>"
            f"<h1>{self.settings.wave_business_name}</h1>"
            f"<p>Pay {session.amount} F CFA? Status: {session.checkout_status} / {session.payment_status}</p>"
            f"<form method='post' action='{base}/approve'><button>Approve</button></form>"
            f"<form method='post' action='{base}/decline'><button>Decline</button></form>"
        )
        return web.Response(text=html, content_type="text/html")


def _idempotency_mismatch() -> web.Response:
    return _error(409, "idempotency-mismatch", "This Idempotency-Key was used with a different request.")


def _transaction_json(entry: BookEntry) -> dict[str, Any]:
    return {
        "timestamp": _iso(entry.at),
        "transaction_id": entry.transaction_id,
        "transaction_type": entry.kind,
        "amount": str(entry.amount_minor),
        "fee": str(entry.fee_minor),
        "balance": str(entry.balance_after_minor),
        "currency": entry.currency,
        "counterparty_name": entry.counterparty_name,
        "counterparty_mobile": entry.party or None,
        "client_reference": entry.client_reference,
        "is_reversal": entry.reverses is not None,
        "status": entry.status,
    }


WAVE = web.AppKey("wave_sandbox", WaveSandbox)


def create_wave_sandbox(settings: SandboxSettings | None = None) -> web.Application:
    """The Wave sandbox app; its state is ``app[WAVE]``."""
    sandbox = WaveSandbox(settings or SandboxSettings())
    app = web.Application(middlewares=[sandbox.authenticate])
    app[WAVE] = sandbox
    app.add_routes(sandbox.routes())
    app.cleanup_ctx.append(sandbox.lifetime)
    return app
