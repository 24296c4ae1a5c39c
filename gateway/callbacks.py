"""Provider callbacks: the HTTP doors through which M-Pesa Daraja and Wave tell us how payments ended.

Daraja signs nothing, so its callback URLs carry a secret path segment,
``POST /callbacks/{secret}/<path>``: a wrong secret is answered exactly like an unknown path (404),
so a guesser learns nothing. While the secret is being changed, the one before it
(``payments.callback_previous_secret``) still lets in what Daraja says of requests made under it.
Wave signs its webhooks (``POST /callbacks/wave``): a delivery that fails verification is answered
401 and nothing is applied.

Each delivery is parsed by `payments.providers` (a malformed one gets a 400 JSON error, nothing
applied), then handed to the orchestrator (`Payments.on_*`), which records it in the transaction
that applies it: a replayed delivery changes nothing and is acknowledged all the same, so the
provider stops retrying. Only then do we answer, so an acknowledged delivery is never lost.

To add a Daraja callback, add one `DarajaCallback` to `DARAJA_CALLBACKS`: its path (the same one
the orchestrator gives Daraja, from `payments.payment_settings`), the parser of its body, the
`Payments` method that applies it, and, when Daraja expects more than an acknowledgement (C2B
validation), how to answer from what the method returned.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.errors import error_response
from gateway.keys import PAYMENTS
from gateway.payments_resources import CALLBACK_AUTH, WAVE_WEBHOOK_PATH
from payments.orchestrator import Payments
from payments.payment_settings import (
    CALLBACK_B2B_RESULT,
    CALLBACK_B2B_TIMEOUT,
    CALLBACK_B2C_RESULT,
    CALLBACK_B2C_TIMEOUT,
    CALLBACK_C2B_CONFIRMATION,
    CALLBACK_C2B_VALIDATION,
    CALLBACK_REVERSAL_RESULT,
    CALLBACK_REVERSAL_TIMEOUT,
    CALLBACK_STATUS_RESULT,
    CALLBACK_STATUS_TIMEOUT,
    CALLBACK_STK,
)
from payments.providers.daraja_callbacks import (
    MalformedCallback,
    callback_acknowledgement,
    parse_c2b_payment,
    parse_queue_timeout,
    parse_result,
    parse_stk_callback,
)
from payments.providers.wave_webhooks import MalformedWebhook, WebhookRejected, verify_webhook

log = logging.getLogger(__name__)


def acknowledge(outcome: Any) -> Mapping[str, Any]:
    """The answer to a Daraja callback whatever it did, once it is recorded (or recognised as a
    duplicate): Daraja only needs to know we have it, in the contract's words (`callback_acknowledgement`)."""
    return callback_acknowledgement()


@dataclass(frozen=True)
class DarajaCallback:
    """One Daraja callback route: ``POST /callbacks/{secret}`` + `path`."""

    #: The path after the secret, as `payments.provider_jobs` appends it to the callback base URL.
    path: str
    #: Raw body → typed payload; raises `MalformedCallback` on anything off-contract.
    parse: Callable[[bytes], Any]
    #: Applies the payload through the orchestrator; returns what it did (a word, for the log).
    apply: Callable[[Payments, Any], Awaitable[Any]]
    #: The JSON body Daraja gets back, from what `apply` returned.
    answer: Callable[[Any], Mapping[str, Any]] = acknowledge


DARAJA_CALLBACKS: tuple[DarajaCallback, ...] = (
    DarajaCallback(CALLBACK_STK, parse_stk_callback, Payments.on_stk_callback),
    DarajaCallback(CALLBACK_B2C_RESULT, parse_result, Payments.on_b2c_result),
    DarajaCallback(CALLBACK_B2C_TIMEOUT, parse_queue_timeout, Payments.on_b2c_queue_timeout),
    DarajaCallback(CALLBACK_B2B_RESULT, parse_result, Payments.on_b2b_result),
    DarajaCallback(CALLBACK_B2B_TIMEOUT, parse_queue_timeout, Payments.on_b2b_queue_timeout),
    DarajaCallback(CALLBACK_REVERSAL_RESULT, parse_result, Payments.on_reversal_result),
    DarajaCallback(CALLBACK_REVERSAL_TIMEOUT, parse_queue_timeout, Payments.on_reversal_queue_timeout),
    DarajaCallback(CALLBACK_STATUS_RESULT, parse_result, Payments.on_status_result),
    DarajaCallback(CALLBACK_STATUS_TIMEOUT, parse_queue_timeout, Payments.on_status_queue_timeout),
    # Validation is answered with the verdict itself (accept, or a C2B000xx rejection code).
    DarajaCallback(CALLBACK_C2B_VALIDATION, parse_c2b_payment, Payments.on_c2b_validation,
                   answer=lambda verdict: verdict),
    DarajaCallback(CALLBACK_C2B_CONFIRMATION, parse_c2b_payment, Payments.on_c2b_confirmation),
)


def add_callback_routes(app: web.Application) -> None:
    """Route every provider callback of `DARAJA_CALLBACKS` and the Wave webhook."""
    for callback in DARAJA_CALLBACKS:
        app.router.add_post("/callbacks/{secret}" + callback.path, _daraja_handler(callback))
    app.router.add_post(WAVE_WEBHOOK_PATH, wave_webhook)


def _secret_matches(request: web.Request) -> bool:
    given = request.match_info["secret"].encode()
    # Constant time, on bytes (compare_digest refuses non-ASCII str, and a path may hold anything);
    # every secret compared, so the time says nothing of which one matched.
    matches = [hmac.compare_digest(given, secret.encode()) for secret in request.app[CALLBACK_AUTH].daraja_secrets]
    return any(matches)


def _daraja_handler(callback: DarajaCallback) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not _secret_matches(request):
            raise web.HTTPNotFound()  # exactly what an unknown path gets: the secret stays unguessable
        raw = await request.read()
        try:
            payload = callback.parse(raw)
        except MalformedCallback as exc:
            log.warning("Daraja callback %s refused: %s", callback.path, exc)
            return error_response(400, "malformed_callback", str(exc))
        outcome = await callback.apply(request.app[PAYMENTS], payload)
        log.info("Daraja callback %s: %s", callback.path, outcome)
        return web.json_response(dict(callback.answer(outcome)))

    handle.__name__ = f"daraja_{callback.path.strip('/').replace('/', '_')}"
    return handle


async def wave_webhook(request: web.Request) -> web.StreamResponse:
    """A Wave webhook: verified on the raw body before anything is parsed, deduplicated on the
    event id by the orchestrator."""
    security = request.app[CALLBACK_AUTH].wave
    if security is None:
        raise web.HTTPNotFound()  # Wave is not configured here: there is no such endpoint
    raw = await request.read()
    try:
        event = verify_webhook(raw, request.headers, security)
        outcome = await request.app[PAYMENTS].on_wave_event(event)
    except WebhookRejected as exc:
        log.warning("Wave webhook rejected: %s", exc)
        return error_response(401, "invalid_signature", "The webhook signature was missing, wrong or too old.")
    except MalformedWebhook as exc:
        log.warning("Wave webhook refused: %s", exc)
        return error_response(400, "malformed_webhook", str(exc))
    log.info("Wave webhook %s (%s): %s", event.id, event.type, outcome)
    return web.json_response({"received": True})
