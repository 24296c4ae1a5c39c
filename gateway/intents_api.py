"""The JSON API of payment intents (`payments.intents`): a merchant asks a customer to pay it, and
follows, cancels or lists what it asked; the customer's app reads, pays or declines what it is asked.

- ``POST /v1/payment_intents`` + ``Idempotency-Key``: a user key (its own wallet is paid) or a
  platform key (which names the ``payee``) asks;
- ``GET /v1/payment_intents?status=&limit=&before=``: the intents this key made, newest first
  (``to_pay=true``: those its user is asked to pay and may still pay, for the customer's app);
- ``GET /v1/payment_intents/{id}``: the key that made it, a key of the merchant or of the customer,
  or a platform key reads it;
- ``POST /v1/payment_intents/{id}/cancel``: the key that made it, or a key of the merchant;
- ``POST /v1/payment_intents/{id}/pay`` + ``Idempotency-Key`` and ``/decline``: a key of the
  customer, or a platform key (it acts for any payer, as in ``POST /v1/payments``).

What a key may not see is a 404, never a 403, so ids cannot be probed. Errors are the payments
API's (`gateway.payments_api`): 400, 401, 404, 409 (an idempotency conflict; an intent that has
ended: ``payment_intent_closed``), 422 (a limit; ``too_many_payment_intents``: too many open for one
customer, or from this merchant for that customer, or asked of them today).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from gateway.api_auth import authenticated, ensure_key_hasher
from gateway.api_requests import ApiError, amount_field, int_param, json_body, only, text_field
from gateway.keys import DB_ENGINE, PAYMENTS, SETTINGS
from gateway.payments_api import MAX_IDEMPOTENCY_KEY, own_or_named_wallet, scoped_idempotency_key
from payments.api_keys import ApiKey
from payments.commands import Channel
from payments.intent_store import IntentStatus, PaymentIntent
from payments.intents import MAX_EXPIRY_S, MIN_EXPIRY_S, CreateIntent, IntentView, PayIntent, PaymentIntents
from payments.payment_json import payment_json

#: A payment's key is the customer's joined to the intent's id (`payments.intents.payment_key`):
#: that much less of the payments API's allowance is the caller's.
_PAY_KEY_MOST = MAX_IDEMPOTENCY_KEY - len("intent:pi_:") - 26
_CREATE_FIELDS = frozenset({"amount", "currency", "payer", "payee", "description", "reference", "expires_in_s"})


def add_intent_api_routes(app: web.Application) -> None:
    """Mount the API on ``app``, which holds (or will hold, once started) `SETTINGS`, `DB_ENGINE`
    and `PAYMENTS`."""
    ensure_key_hasher(app)
    app.router.add_post("/v1/payment_intents", authenticated(create_intent))
    app.router.add_get("/v1/payment_intents", authenticated(list_intents))
    app.router.add_get("/v1/payment_intents/{public_id}", authenticated(read_intent))
    app.router.add_post("/v1/payment_intents/{public_id}/cancel", authenticated(cancel_intent))
    app.router.add_post("/v1/payment_intents/{public_id}/pay", authenticated(pay_intent))
    app.router.add_post("/v1/payment_intents/{public_id}/decline", authenticated(decline_intent))


def _intents(request: web.Request) -> PaymentIntents:
    return request.app[PAYMENTS].intents


def _merchant(caller: ApiKey) -> Callable[[PaymentIntent], bool]:
    """Whether the caller speaks for the merchant of an intent: the key that made it, or a key of
    the wallet it pays."""
    return lambda i: i.api_key_id == caller.id or (caller.user_id is not None and i.payee_user_id == caller.user_id)


def _customer(caller: ApiKey) -> Callable[[PaymentIntent], bool]:
    """Whether the caller speaks for the customer asked: a key of theirs, or a platform key (which
    acts for any payer, as in ``POST /v1/payments``)."""
    return lambda i: caller.is_platform or i.payer_user_id == caller.user_id


async def create_intent(request: web.Request, caller: ApiKey) -> web.Response:
    scoped_key = scoped_idempotency_key(
        request, caller, why="the same payment intent, so a retry never asks the customer twice")
    body = await json_body(request)
    only(body, _CREATE_FIELDS)
    payer = text_field(body, "payer")
    async with request.app[DB_ENGINE].connect() as conn:
        payee_id = (await own_or_named_wallet(conn, caller, body, "payee")).id
    expires = body.get("expires_in_s")
    # JSON numbers arrive as int, or as Decimal when they have a fraction or an exponent (`json_body`).
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int | Decimal)
                                or not Decimal(expires).is_finite()
                                or not MIN_EXPIRY_S <= expires <= MAX_EXPIRY_S):
        raise ApiError(400, "invalid_expires_in_s",
                       f"expires_in_s is a number of seconds, {MIN_EXPIRY_S} to {MAX_EXPIRY_S}.")
    description = body.get("description", "")
    reference = body.get("reference")
    for name, value in (("description", description), ("reference", reference)):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"invalid_{name}", f"{name} is text.")
    view, fresh = await _intents(request).create(CreateIntent(
        scoped_key, caller.id, payee_id, payer or "", amount_field(body), description=description or "",
        merchant_reference=reference, expires_in_s=None if expires is None else float(expires)))
    return web.json_response(view.json(), status=201 if fresh else 200)


async def list_intents(request: web.Request, caller: ApiKey) -> web.Response:
    """``GET /v1/payment_intents?status=&limit=&before=``: what this key asked, newest first; with
    ``to_pay=true`` (a user key), what its user is asked to pay and may still pay, newest first."""
    query = request.query
    only(query, {"status", "limit", "before", "to_pay"}, where="query parameter")
    most = request.app[SETTINGS].api.history_max_limit
    limit = int_param(query, "limit", default=min(20, most), low=1, high=most)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    status_text = query.get("status") or None
    if status_text is not None and status_text not in IntentStatus.__members__.values():
        raise ApiError(400, "invalid_status", f"status is one of {', '.join(s.value for s in IntentStatus)}.")
    to_pay = query.get("to_pay", "false")
    if to_pay not in ("true", "false") or (to_pay == "true" and (caller.user_id is None or status_text)):
        raise ApiError(400, "invalid_to_pay", "to_pay=true lists what a user key's own user is asked to pay "
                       "(all pending), without status.")
    if to_pay == "true":
        assert caller.user_id is not None
        found = await _intents(request).pending_for_payer(caller.user_id, limit=limit, before_id=before)
    else:
        found = await _intents(request).of_key(caller.id, status=IntentStatus(status_text) if status_text else None,
                                               limit=limit, before_id=before)
    return web.json_response({
        "payment_intents": [view.json() for view in found],
        "limit": limit,
        "next_before": found[-1].intent.id if len(found) == limit else None,
    })


async def read_intent(request: web.Request, caller: ApiKey) -> web.Response:
    merchant, customer = _merchant(caller), _customer(caller)
    view = await _intents(request).get(request.match_info["public_id"], may_see=lambda i: merchant(i) or customer(i))
    return web.json_response(view.json())


async def cancel_intent(request: web.Request, caller: ApiKey) -> web.Response:
    view = await _intents(request).cancel(request.match_info["public_id"], api_key_id=caller.id,
                                          user_id=caller.user_id)
    return web.json_response(view.json())


async def decline_intent(request: web.Request, caller: ApiKey) -> web.Response:
    intents = _intents(request)
    known = await intents.get(request.match_info["public_id"], may_see=_customer(caller))
    view = await intents.decline(known.intent.public_id, payer_user_id=known.intent.payer_user_id)
    return web.json_response(view.json())


async def pay_intent(request: web.Request, caller: ApiKey) -> web.Response:
    """Pay it from the customer's wallet: ``201`` with the intent and the payment made (a failed
    one, ``insufficient_funds``, leaves the intent pending), ``200`` when the key (or the intent's
    earlier payment) answers it already."""
    scoped_key = scoped_idempotency_key(request, caller, most=_PAY_KEY_MOST)
    intents = _intents(request)
    intent = (await intents.get(request.match_info["public_id"], may_see=_customer(caller))).intent
    view = await intents.pay(PayIntent(scoped_key, intent.payer_user_id, intent.public_id, Channel.API,
                                       api_key_id=caller.id))
    return web.json_response(_paid_json(view), status=201 if view.made_payment else 200)


def _paid_json(view: IntentView) -> dict[str, Any]:
    payment = view.payment
    return {"payment_intent": view.json(),
            "payment": payment_json(payment, view.parties.payer_phone) if payment is not None else None}

