"""Errors at the edge, in one place: domain errors become clear JSON answers with the right status;
anything unexpected is logged with its traceback and answered with a short JSON 500 carrying a
reference, never a traceback. Under the JSON APIs' paths (``/v1/``) every error, an unknown path's
or a wrong method's included, has the APIs' own shape, ``{"error": {"code", "message", …}}``, so a
client reads one shape whatever refused it; under the operator dashboard's (``/ops``) a short page;
elsewhere (callbacks, health) ``{"error", "message"}``."""

from __future__ import annotations

import html
import logging
import uuid

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from gateway.access_log import redact_path
from gateway.api_requests import api_error
from gateway.reconciliation import CannotReconcile, StatementUnavailable
from payments import errors as pe
from payments import review
from payments.contacts import ContactLimitReached, ContactNotFound, DuplicateContact
from payments.fees import LimitExceeded
from payments.intents import IntentClosed, NotAMerchant, TooManyIntents, UnknownIntent
from payments.refunds import NotRefundable, UnknownPayment
from payments.suspense import AlreadyReleased, NotInSuspense
from payments.webhook_endpoints import TooManyWebhookEndpoints, UnknownWebhookEndpoint, WebhookEndpointDisabled

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[pe.PaymentsError], int], ...] = (
    (NotRefundable, 409),  # before InvalidRequest, its base: the payment's state forbids it, not the request
    (review.NotDecidable, 409),  # likewise
    (review.UnknownPayment, 404),
    (CannotReconcile, 422),  # before InvalidRequest, its base: a well-formed request with no statement to read
    (StatementUnavailable, 502),  # a provider's API, not the request, failed
    (NotInSuspense, 404),
    (AlreadyReleased, 409),
    (TooManyWebhookEndpoints, 422),  # likewise: a well-formed request the key's limit refuses
    (UnknownWebhookEndpoint, 404),
    (WebhookEndpointDisabled, 409),
    (ContactNotFound, 404),
    (DuplicateContact, 409),
    (ContactLimitReached, 422),
    (UnknownIntent, 404),
    (IntentClosed, 409),
    (TooManyIntents, 422),
    (NotAMerchant, 403),
    (pe.InvalidRequest, 400),
    (pe.UnknownAccount, 404),
    (pe.UnknownUser, 404),
    (pe.UnknownTransfer, 404),
    (UnknownPayment, 404),
    (pe.WrongPin, 401),
    (pe.AccountLocked, 423),
    (pe.AccountClosed, 403),
    (pe.IdempotencyConflict, 409),
    (pe.UserExists, 409),
    (pe.AlreadyReversed, 409),
    (pe.HoldNotPending, 409),
    (pe.InsufficientFunds, 422),
    (LimitExceeded, 422),  # a business refusal: the request is well formed, the rules say no
    (pe.CurrencyMismatch, 422),
    (pe.PinNotSet, 422),
)


def status_for(error: pe.PaymentsError) -> int:
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 400


#: Where the JSON APIs live (`gateway.payments_api`, `gateway.app_api`, `gateway.voice_api`).
API_PATHS = "/v1/"


def error_response(status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                   **extra) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status, headers=headers)


#: The operator dashboard (`gateway.ops_dashboard`): a person in a browser, who gets a page.
DASHBOARD_PATH = "/ops"


def _page(status: int, message: str, *, headers: dict[str, str] | None = None, **extra) -> web.Response:
    """A bare error page for the dashboard's browser (its own pages render their refusals)."""
    reference = f"<p>Reference: <code>{html.escape(str(extra['reference']))}</code></p>" if "reference" in extra else ""
    body = (f"<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{status}</title>"
            f"<h1>{status}</h1><p>{html.escape(message)}</p>{reference}<p><a href=\"{DASHBOARD_PATH}\">Back to "
            "the dashboard</a></p></html>")
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={**(headers or {}), "Content-Security-Policy": "default-src 'none'",
                                 "Cache-Control": "no-store"})


def _answer(request: web.Request, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
            **extra) -> web.Response:
    if request.path.startswith(API_PATHS):
        return api_error(status, code, message, headers=headers, extra=extra)
    if request.path == DASHBOARD_PATH or request.path.startswith(DASHBOARD_PATH + "/"):
        return _page(status, message, headers=headers, **extra)
    return error_response(status, code, message, headers=headers, **extra)


@web.middleware
async def error_middleware(request: web.Request, handler):
    response = await _answered(request, handler)
    if isinstance(request.content.exception(), RequestPayloadError):
        # The body did not decompress: what is left of it is not read. Without this aiohttp would read
        # on after the answer (a lingering close), meet the same error and log it as its own failure;
        # and this connection ends with the answer, its parser having stopped mid-body.
        request.content.feed_eof()
        response.force_close()
    return response


async def _answered(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json" or request.path == "/ussd":
            raise
        # A 405 keeps its Allow header: it is what tells the client which methods would do.
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _answer(request, exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, headers=allow)
    except pe.PaymentsError as exc:
        return _answer(request, status_for(exc), exc.code, str(exc))
    except RequestPayloadError:
        # A body sent as gzip or deflate that is not: the sender's mistake, on any route that reads one
        # (the JSON APIs and the forms say so themselves; this is for the callbacks and the rest).
        return _answer(request, 400, "unreadable_body", "The request body could not be read: does it match its "
                       "Content-Encoding?")
    except Exception:
        reference = uuid.uuid4().hex[:12]
        # The path may carry a secret (Daraja callback URLs): log it redacted, as the access log does.
        log.exception("unhandled error on %s %s (reference %s)", request.method, redact_path(request.path), reference)
        return _answer(request, 500, "internal_error",
                       "Something went wrong on our side; nothing was charged twice. "
                       "Quote this reference to support.", reference=reference)
