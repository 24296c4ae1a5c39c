"""Webhook endpoints through the JSON API: each API key manages its own (`payments.webhook_endpoints`).

- ``POST /v1/webhook_endpoints`` ``{"url": "https://…"}``: 201 with the endpoint and its signing
  ``secret``, shown this once;
- ``GET /v1/webhook_endpoints``: the key's endpoints, disabled ones included, without secrets;
- ``DELETE /v1/webhook_endpoints/{id}``: disables it for good (200 with the endpoint; again, the same);
- ``POST /v1/webhook_endpoints/{id}/test``: queues a ``webhook.test`` event for it (202 with the
  event's id), to check one's signature checks before real payments depend on them;
- ``GET /v1/webhook_endpoints/{id}/deliveries?undelivered=true&limit=&before=``: its deliveries,
  newest first: each event, its status (``pending`` until tried or between tries, ``running``,
  ``done``, ``parked`` after the last try, ``dropped`` when the endpoint was disabled first), tries
  and, while not done, why the last try failed (the endpoint's answer, or why it could not be
  reached; a failure on our side is said to be ours, never where);
- ``POST /v1/webhook_endpoints/{id}/roll_secret`` ``{"previous_secret_valid_s"?: 86400}``: a new
  signing ``secret`` (200, shown this once), the one before still signing beside it for that many
  seconds (a day unless given; 0 to 604,800), until ``previous_secret_expires_at``.

Another key's endpoint is a 404, as a payment is. Which events reach an endpoint, and how to check
their signatures: the README's "Webhooks" and `payments.webhook_events`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api_auth import authenticated, ensure_key_hasher
from gateway.api_requests import ApiError, int_param, json_body, only
from gateway.keys import DB_ENGINE, SETTINGS
from payments.api_keys import ApiKey
from payments.payment_json import iso
from payments.webhook_delivery import public_error
from payments.webhook_endpoints import (
    PREVIOUS_SECRET_VALID,
    WebhookEndpoint,
    add_endpoint,
    disable_endpoint,
    get_endpoint,
    list_endpoints,
    previous_secret_validity,
    roll_secret,
)
from payments.webhook_events import EVENT_TYPES, TEST_EVENT, Delivery, deliveries_to, send_test_event

#: The most deliveries one page lists.
MAX_DELIVERIES = 100

PATH = "/v1/webhook_endpoints"


def add_webhook_api_routes(app: web.Application) -> None:
    """Mount the routes on ``app``, which holds (or will hold, once started) `SETTINGS` and `DB_ENGINE`."""
    ensure_key_hasher(app)
    app.router.add_post(PATH, authenticated(create_webhook_endpoint))
    app.router.add_get(PATH, authenticated(read_webhook_endpoints))
    app.router.add_delete(PATH + "/{endpoint_id}", authenticated(delete_webhook_endpoint))
    app.router.add_post(PATH + "/{endpoint_id}/test", authenticated(test_webhook_endpoint))
    app.router.add_post(PATH + "/{endpoint_id}/roll_secret", authenticated(roll_webhook_secret))
    app.router.add_get(PATH + "/{endpoint_id}/deliveries", authenticated(read_webhook_deliveries))


def endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"id": endpoint.public_id, "url": endpoint.url, "active": endpoint.active,
            "events": list(EVENT_TYPES), "created_at": iso(endpoint.created_at),
            "disabled_at": iso(endpoint.disabled_at),
            "previous_secret_expires_at": iso(endpoint.previous_secret_expires_at)}


async def create_webhook_endpoint(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request)
    only(body, {"url"})
    settings = request.app[SETTINGS].webhooks
    async with request.app[DB_ENGINE].begin() as conn:
        made = await add_endpoint(conn, caller.id, body.get("url"), allow_local=settings.allow_local_urls,
                                  max_per_key=settings.max_endpoints_per_key, actor=f"api_key:{caller.prefix}")
    return web.json_response(endpoint_json(made.endpoint) | {"secret": made.secret}, status=201)


async def read_webhook_endpoints(request: web.Request, caller: ApiKey) -> web.Response:
    async with request.app[DB_ENGINE].connect() as conn:
        endpoints = await list_endpoints(conn, api_key_id=caller.id)
    return web.json_response({"webhook_endpoints": [endpoint_json(e) for e in endpoints]})


async def delete_webhook_endpoint(request: web.Request, caller: ApiKey) -> web.Response:
    async with request.app[DB_ENGINE].begin() as conn:
        endpoint = await disable_endpoint(conn, request.match_info["endpoint_id"], api_key_id=caller.id,
                                          actor=f"api_key:{caller.prefix}")
    return web.json_response(endpoint_json(endpoint))


async def test_webhook_endpoint(request: web.Request, caller: ApiKey) -> web.Response:
    async with request.app[DB_ENGINE].begin() as conn:
        endpoint = await get_endpoint(conn, request.match_info["endpoint_id"], api_key_id=caller.id)
        event_id = await send_test_event(conn, endpoint)
    return web.json_response({"event": event_id, "type": TEST_EVENT, "endpoint": endpoint.public_id}, status=202)


async def roll_webhook_secret(request: web.Request, caller: ApiKey) -> web.Response:
    body = await json_body(request, empty_ok=True)
    only(body, {"previous_secret_valid_s"})
    valid = previous_secret_validity(body.get("previous_secret_valid_s",
                                              int(PREVIOUS_SECRET_VALID.total_seconds())))
    async with request.app[DB_ENGINE].begin() as conn:
        rolled = await roll_secret(conn, request.match_info["endpoint_id"], api_key_id=caller.id,
                                   previous_valid=valid, actor=f"api_key:{caller.prefix}")
    return web.json_response(endpoint_json(rolled.endpoint) | {"secret": rolled.secret})


def delivery_json(delivery: Delivery, endpoint: WebhookEndpoint) -> dict[str, Any]:
    """A delivery as its endpoint's owner reads it: a done one's earlier failures are no error."""
    status = delivery.status_for(endpoint)
    return {"id": delivery.job_id, "event": {"id": delivery.event_id, "type": delivery.event_type},
            "payment": delivery.payment, "status": status, "attempts": delivery.attempts,
            "last_error": public_error(delivery.last_error) if status not in ("done", "dropped") else None,
            "created_at": iso(delivery.created_at),
            "next_try_at": iso(delivery.run_after) if status == "pending" else None}


async def read_webhook_deliveries(request: web.Request, caller: ApiKey) -> web.Response:
    query = request.query
    only(query, {"undelivered", "limit", "before"}, where="query parameter")
    if query.get("undelivered", "") not in ("", "true", "false"):
        raise ApiError(400, "invalid_undelivered", "undelivered is true (only those not delivered yet) or false.")
    limit = int_param(query, "limit", default=20, low=1, high=MAX_DELIVERIES)
    before = int_param(query, "before", default=None, low=1, high=2**63 - 1)
    async with request.app[DB_ENGINE].connect() as conn:
        endpoint = await get_endpoint(conn, request.match_info["endpoint_id"], api_key_id=caller.id)
        found = await deliveries_to(conn, endpoint, undelivered=query.get("undelivered") == "true", limit=limit,
                                    before=before)
    return web.json_response({"deliveries": [delivery_json(d, endpoint) for d in found], "limit": limit,
                              # More may follow: pass it as ``before`` for the next (older) page.
                              "next_before": found[-1].job_id if len(found) == limit else None})
